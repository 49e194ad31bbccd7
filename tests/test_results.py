"""What the experiments share: configs per scale, JSON results written atomically, shards."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from tflib.experiments.results import (
    Results,
    add_common_options,
    cli_overrides,
    config_at_scale,
    in_shard,
    run_options,
    write_json,
)
from tflib.train import History


@dataclass(frozen=True)
class ToyConfig:
    sizes: tuple[int, ...] = (1, 2)
    steps: int = 10
    seeds: tuple[int, ...] = (0, 1)


class ToyResults(Results):
    config_type: ClassVar[type] = ToyConfig


def history(value: float) -> History:
    return History(steps=[0, 5], loss=[1.0, value], metrics={"norms": [[1, 2], [3, 4]]})


def test_config_at_scale_overrides_fields_of_the_scale():
    scales = {"book": ToyConfig(), "paper": ToyConfig(steps=99)}
    assert config_at_scale(scales, "paper", sizes=(3,)) == ToyConfig(sizes=(3,), steps=99)


def test_config_at_scale_counts_the_seeds_from_the_given_one():
    scales = {"book": ToyConfig()}
    assert config_at_scale(scales, "book", seed=5).seeds == (5, 6)
    assert config_at_scale(scales, "book", seed=5, seeds=(9,)).seeds == (9,)


def test_config_at_scale_rejects_an_unknown_scale():
    with pytest.raises(ValueError, match=r"scale must be one of \['book'\], got 'huge'"):
        config_at_scale({"book": ToyConfig()}, "huge")


def test_results_round_trip_with_tuple_keys_and_tuple_config_fields(tmp_path):
    results = ToyResults(ToyConfig(), {(0, 0.5): history(0.1), ("natural", 3, 1): history(0.2)})
    results.save(tmp_path / "r.json")
    loaded = ToyResults.load(tmp_path / "r.json")
    assert loaded == results
    assert isinstance(loaded.config.sizes, tuple)


def test_write_json_leaves_no_partial_file(tmp_path):
    write_json(tmp_path / "deep" / "r.json", {"a": [1, 2]})
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["r.json"]
    assert json.loads((tmp_path / "deep" / "r.json").read_text()) == {"a": [1, 2]}


@pytest.mark.parametrize("content", ["{not json", '{"config": {}}', '{"runs": []}'])
def test_loading_a_damaged_file_names_it(tmp_path, content):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(RuntimeError, match=r"cannot read ToyResults from .*r\.json"):
        ToyResults.load(path)


def test_shards_split_the_runs_without_overlap_or_gap():
    shards = [[p for p in range(10) if in_shard(p, (k, 3))] for k in range(3)]
    assert sorted(sum(shards, [])) == list(range(10))
    assert shards[1] == [1, 4, 7]
    assert all(in_shard(p, None) for p in range(10))


@pytest.mark.parametrize("shard", [(3, 3), (-1, 2), (0, 0)])
def test_a_bad_shard_is_rejected(shard):
    with pytest.raises(ValueError, match="shard must be"):
        in_shard(0, shard)


def test_merge_joins_disjoint_shards():
    a = ToyResults(ToyConfig(), {(0,): history(0.1)})
    b = ToyResults(ToyConfig(), {(1,): history(0.2), (2,): history(0.3)})
    merged = ToyResults.merge([a, b])
    assert sorted(merged.runs) == [(0,), (1,), (2,)]
    assert merged.runs[(1,)] == history(0.2)


def test_merge_refuses_overlapping_runs_or_different_configs():
    a = ToyResults(ToyConfig(), {(0,): history(0.1)})
    with pytest.raises(ValueError, match=r"runs \[\(0,\)\] appear in more than one part"):
        ToyResults.merge([a, ToyResults(ToyConfig(), {(0,): history(0.2)})])
    with pytest.raises(ValueError, match="different configs"):
        ToyResults.merge([a, ToyResults(ToyConfig(steps=3), {(1,): history(0.2)})])
    with pytest.raises(ValueError, match="nothing to merge"):
        ToyResults.merge([])


def test_results_are_interrupted_when_any_run_is():
    result = ToyResults(ToyConfig(), {(0,): history(0.5)})
    assert not result.interrupted
    result.runs[(1,)] = History(steps=[0, 3], loss=[1.0, 0.9], status="interrupted")
    assert result.interrupted


def test_the_command_line_overrides_only_what_it_was_given():
    parser = argparse.ArgumentParser()
    add_common_options(parser, {"book": ToyConfig()}, "results/toy", run=print)
    parser.add_argument("--max-steps", type=int)
    args = parser.parse_args(["--seeds", "3", "4"])
    assert cli_overrides(args, "max_steps") == {"seeds": (3, 4)}
    args = parser.parse_args(["--max-steps", "9", "--dtype", "float64", "--out", "x"])
    assert cli_overrides(args, "max_steps") == {"max_steps": 9}
    assert run_options(args) == {
        "device": None,
        "dtype": torch.float64,
        "out_dir": Path("x"),
        "progress": True,
    }
    assert args.run is print
