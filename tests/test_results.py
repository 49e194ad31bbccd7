"""The loop every experiment shares: configs per scale, results written atomically, fingerprints,
shards and their merge, the lock on a results folder, and interrupted runs."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar

import pytest

from tflib.experiments.results import (
    InputError,
    Results,
    ResultsFolder,
    check_config,
    config_at_scale,
    in_shard,
    parse_shard,
    run_keys,
    seed_for,
    write_json,
)
from tflib.train import History


@dataclass(frozen=True)
class ToyConfig:
    sizes: tuple[int, ...] = (1, 2)
    steps: int = 10
    lr: float = 0.5
    seeds: tuple[int, ...] = (0, 1)

    def __post_init__(self):
        check_config(self, positive=("lr",))


class ToyResults(Results):
    config_type: ClassVar[type] = ToyConfig
    key_names: ClassVar[tuple[str, ...]] = ("seed", "size")


def history(value: float, status: str = "budget") -> History:
    return History([0, 5], [1.0, value], {"norms": [[1, 2], [3, 4]]}, status)


def toy_run(calls: list):
    """A run that records its key and returns a history made from it."""

    def run(key, checkpoint):
        calls.append((key, checkpoint()))
        return history(key[0] + key[1] / 10)

    return run


def keys(config: ToyConfig) -> list[tuple]:
    return [(seed, size) for seed in config.seeds for size in config.sizes]


# --- configs and seeds ----------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    "fields, error, message",
    [
        ({"seeds": (0, 0)}, ValueError, r"seeds must be distinct, got \(0, 0\)"),
        ({"seeds": (-1,)}, ValueError, "seeds must be a finite number >= 0, got -1"),
        ({"seeds": ()}, ValueError, "seeds must not be empty"),
        ({"steps": 2.5}, TypeError, "steps must be an integer, got 2.5"),
        ({"lr": 0.0}, ValueError, "lr must be a finite number > 0"),
        ({"lr": float("nan")}, ValueError, "lr must be a finite number > 0, got nan"),
        ({"sizes": (1, float("inf"))}, TypeError, "sizes must be an integer"),
    ],
)
def test_a_config_with_a_bad_field_is_refused_naming_it(fields, error, message):
    with pytest.raises(error, match=message):
        ToyConfig(**fields)


def test_each_part_of_a_draw_has_its_own_seed():
    seeds = {seed_for(s, part, draw) for s in range(50) for part in range(3) for draw in range(2)}
    assert len(seeds) == 300
    assert seed_for(3, 2) == 3002  # the scheme the stored results were made with


# --- results --------------------------------------------------------------------------------------


def test_results_round_trip_with_tuple_keys_values_and_baselines(tmp_path):
    results = ToyResults(
        ToyConfig(),
        {(0, 1): history(0.1), ("natural", 3, 1): history(0.2)},
        values={(0, 1): {"plateau": 7}},
        baselines={(0,): {"error": 0.5}},
        settings={"dtype": "torch.float64"},
    )
    results.save(tmp_path / "r.json")
    loaded = ToyResults.load(tmp_path / "r.json")
    assert loaded == results
    assert isinstance(loaded.config.sizes, tuple)


def test_an_interrupted_run_is_kept_in_memory_but_not_written(tmp_path):
    results = ToyResults(ToyConfig(), {(0, 1): history(0.1), (0, 2): history(0.2, "interrupted")})
    assert results.interrupted
    results.save(tmp_path / "r.json")
    assert list(ToyResults.load(tmp_path / "r.json").runs) == [(0, 1)]


def test_write_json_leaves_no_partial_file(tmp_path):
    write_json(tmp_path / "deep" / "r.json", {"a": [1, 2]})
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["r.json"]
    assert json.loads((tmp_path / "deep" / "r.json").read_text()) == {"a": [1, 2]}


@pytest.mark.parametrize("content", ["{not json", '{"config": {}}', '{"runs": []}'])
def test_loading_a_damaged_file_names_it_and_says_what_to_do(tmp_path, content):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=r"cannot read ToyResults from .*r\.json.*--force"):
        ToyResults.load(path)


# --- shards ---------------------------------------------------------------------------------------


def test_shards_split_the_runs_without_overlap_or_gap():
    shards = [[p for p in range(10) if in_shard(p, (k, 3))] for k in range(3)]
    assert sorted(sum(shards, [])) == list(range(10))
    assert shards[1] == [1, 4, 7]
    assert all(in_shard(p, None) for p in range(10))


@pytest.mark.parametrize("text", ["2", "1/2/3", "-1/2", "2/2", "a/b", "0/0", ""])
def test_a_bad_shard_is_refused_with_the_syntax(text):
    with pytest.raises(ValueError, match="a shard is k/n with 0 <= k < n"):
        parse_shard(text)


def test_merge_joins_disjoint_shards():
    a = ToyResults(ToyConfig(), {(0, 1): history(0.1)}, values={(0, 1): {"v": 1}})
    b = ToyResults(ToyConfig(), {(1, 1): history(0.2), (1, 2): history(0.3)})
    merged = ToyResults.merge([a, b])
    assert sorted(merged.runs) == [(0, 1), (1, 1), (1, 2)]
    assert merged.values == {(0, 1): {"v": 1}}


def test_merge_refuses_overlapping_runs_or_other_fingerprints():
    a = ToyResults(ToyConfig(), {(0, 1): history(0.1)})
    with pytest.raises(ValueError, match=r"runs \[\(0, 1\)\] appear in more than one part"):
        ToyResults.merge([a, ToyResults(ToyConfig(), {(0, 1): history(0.2)})])
    with pytest.raises(ValueError, match="steps: 3 there, 10 now"):
        ToyResults.merge([a, ToyResults(ToyConfig(steps=3), {(1, 1): history(0.2)})])
    with pytest.raises(ValueError, match="nothing to merge"):
        ToyResults.merge([])


# --- the loop -------------------------------------------------------------------------------------


def test_run_keys_runs_every_key_once_and_resumes_without_running_again(tmp_path):
    config, calls = ToyConfig(), []
    first = run_keys(ToyResults(config), keys(config), toy_run(calls), out_dir=tmp_path)
    assert [key for key, _ in calls] == keys(config)
    assert calls[0][1] == tmp_path / "seed0_size1.pt"
    again = run_keys(ToyResults(config), keys(config), toy_run(calls), out_dir=tmp_path)
    assert again == first and len(calls) == 4


def test_run_keys_without_a_folder_checkpoints_nowhere():
    calls = []
    run_keys(ToyResults(ToyConfig()), keys(ToyConfig()), toy_run(calls))
    assert [where for _, where in calls] == [None] * 4


def test_run_keys_stops_at_an_interrupted_run_and_keeps_the_finished_ones(tmp_path):
    config = ToyConfig()

    def run(key, checkpoint):
        return history(0.0, "interrupted" if key == (1, 1) else "budget")

    result = run_keys(ToyResults(config), keys(config), run, out_dir=tmp_path)
    assert result.interrupted and list(result.runs) == [(0, 1), (0, 2), (1, 1)]
    assert list(ToyResults.load(tmp_path / "results.json").runs) == [(0, 1), (0, 2)]


def test_a_changed_config_is_not_resumed_into_an_old_folder(tmp_path):
    run_keys(ToyResults(ToyConfig()), keys(ToyConfig()), toy_run([]), out_dir=tmp_path)
    before = (tmp_path / "results.json").read_text()
    calls, changed = [], ToyConfig(steps=30, lr=0.25)
    with pytest.raises(InputError, match=r"other settings \(lr: 0.5 there, 0.25 now; steps: 10"):
        run_keys(ToyResults(changed), keys(changed), toy_run(calls), out_dir=tmp_path)
    assert calls == [] and (tmp_path / "results.json").read_text() == before


def test_force_discards_the_old_results(tmp_path):
    run_keys(ToyResults(ToyConfig()), keys(ToyConfig()), toy_run([]), out_dir=tmp_path)
    (tmp_path / "seed0_size1.pt").write_text("old")
    calls, changed = [], ToyConfig(steps=30)
    result = run_keys(
        ToyResults(changed), keys(changed), toy_run(calls), out_dir=tmp_path, force=True
    )
    assert len(calls) == 4 and result.config == changed
    assert not (tmp_path / "seed0_size1.pt").exists()


def test_results_of_another_setting_such_as_the_dtype_are_refused(tmp_path):
    run_keys(
        ToyResults(ToyConfig(), settings={"dtype": "a"}), [(0, 1)], toy_run([]), out_dir=tmp_path
    )
    with pytest.raises(InputError, match="dtype: 'a' there, 'b' now"):
        ResultsFolder(tmp_path, ToyResults(ToyConfig(), settings={"dtype": "b"}))


def test_an_out_folder_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is a file; give a folder"):
        ResultsFolder(tmp_path / "file", ToyResults(ToyConfig()))


def test_two_shards_write_only_their_own_files(tmp_path):
    config = ToyConfig()
    for k in range(2):
        run_keys(ToyResults(config), keys(config), toy_run([]), out_dir=tmp_path, shard=(k, 2))
    names = sorted(p.name for p in tmp_path.glob("*.json"))
    assert names == ["results-shard0of2.json", "results-shard1of2.json"]
    parts = [ToyResults.load(tmp_path / name) for name in names]
    assert sorted(ToyResults.merge(parts).runs) == keys(config)


@pytest.fixture
def other_process():
    """A live process that is not this one (it sleeps until the test ends)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process.pid
    process.kill()
    process.wait()


def test_a_folder_in_use_by_another_live_process_is_refused(tmp_path, other_process):
    (tmp_path / "results.json.lock").write_text(str(other_process))
    with pytest.raises(InputError, match=f"in use by process {other_process}"):
        run_keys(ToyResults(ToyConfig()), [(0, 1)], toy_run([]), out_dir=tmp_path)


def test_shards_of_one_split_may_run_side_by_side_but_not_overlap(tmp_path, other_process):
    (tmp_path / "results-shard0of2.json.lock").write_text(str(other_process))
    run_keys(ToyResults(ToyConfig()), [(0, 1), (0, 2)], toy_run([]), out_dir=tmp_path, shard=(1, 2))
    for shard in [(0, 2), None, (0, 3)]:
        with pytest.raises(InputError, match="in use by process"):
            ResultsFolder(tmp_path, ToyResults(ToyConfig()), shard)


def test_a_lock_left_by_a_dead_process_is_taken_over_and_given_back(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "results.json.lock").write_text(str(dead.pid))
    run_keys(ToyResults(ToyConfig()), [(0, 1)], toy_run([]), out_dir=tmp_path)
    assert not (tmp_path / "results.json.lock").exists()


def test_the_fingerprint_is_written_before_the_first_run(tmp_path):
    seen = []

    def run(key, checkpoint):
        seen.append(json.loads((tmp_path / "results.json").read_text())["config"]["steps"])
        return history(0.0)

    run_keys(ToyResults(ToyConfig(steps=4)), [(0, 1)], run, out_dir=tmp_path)
    assert seen == [4]
