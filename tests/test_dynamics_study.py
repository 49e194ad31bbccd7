"""The reproduction study of the dynamics experiment: runs, records, shards, the command line, the
paired comparisons, and the stored study ``book/data/dynamics_study.json``: regression checks of
the stored data, and live checks that re-run one record per study and init scale.

The chapter re-runs seed 0 of ``init_scales`` at every init scale and of ``plain_gd`` at 1e-2
(:data:`CHECKED_IN_CHAPTER`); this module re-runs, for every other study and init scale, the
record that took the fewest steps."""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import brute_force_cp, stored_command

from tflib.data import random_cp_factors
from tflib.experiments import dynamics_config, dynamics_study, run_dynamics
from tflib.experiments.__main__ import main
from tflib.experiments.dynamics import LARGE, problem
from tflib.experiments.dynamics_study import (
    SCALES,
    compare,
    draw_properties,
    per_init_scale,
    run_records,
)

STORED = Path(__file__).parents[1] / "book" / "data" / "dynamics_study.json"
TINY = dict(
    shape=(4, 4, 4),
    rank=20,
    n_observations=30,
    target_rank=2,
    max_steps=200,
    init_stds=(0.3, 0.01),
    track_every=10,
    seeds=(0, 1, 2),
)


def study(out_dir, shard=None, **overrides):
    config = dynamics_config("book", **(TINY | overrides))
    options = {"dtype": torch.float64, "out_dir": out_dir, "progress": False, "shard": shard}
    return run_dynamics(config, device="cpu", **options)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny study, run once for the module: (result, its out_dir)."""
    out_dir = tmp_path_factory.mktemp("study")
    return study(out_dir), out_dir


def final_factors(out_dir: Path, seed: int, std: float) -> list[np.ndarray]:
    state = torch.load(out_dir / f"seed{seed}_init{std:g}.pt", weights_only=True)
    return [state["model"][f"factors.{n}"].numpy() for n in range(3)]


def test_study_runs_every_seed_and_init_scale_of_the_config(tiny):
    result, _ = tiny
    assert sorted(result.runs) == [(s, std) for s in (0, 1, 2) for std in (0.01, 0.3)]


def test_study_runs_are_the_runs_of_the_dynamics_experiment(tiny, tmp_path):
    result, _ = tiny
    alone = run_dynamics(result.config, device="cpu", dtype=torch.float64, progress=False)
    assert alone.runs == result.runs


def test_records_match_a_brute_force_reading_of_the_final_factors(tiny):
    result, out_dir = tiny
    records = run_records(result)
    assert len(records) == 6
    for record in records:
        seed, std = record["seed"], record["init_std"]
        factors = final_factors(out_dir, seed, std)
        target = problem(result.config, seed, dtype=torch.float64)[0].numpy()
        gap = brute_force_cp(factors) - target
        norms = np.prod([np.linalg.norm(f, axis=0) for f in factors], axis=0)
        norms /= np.linalg.norm(target)
        error = np.linalg.norm(gap) / np.linalg.norm(target)
        assert record["error"] == pytest.approx(error, rel=1e-3)  # stored to 4 digits
        assert record["norm"] == pytest.approx(
            np.linalg.norm(gap + target) / np.linalg.norm(target), rel=1e-3
        )
        assert record["n_large"] == np.sum(norms > LARGE)
        assert record["worst_entry"] == pytest.approx(np.max(gap**2) / np.sum(gap**2), rel=1e-3)
        assert record["steps"] == 200 and record["status"] == "budget"
        assert record["completed"] == (error < 0.05)


def test_study_again_returns_the_same_result_without_training(tiny):
    result, out_dir = tiny
    stamps = {p: p.stat().st_mtime_ns for p in out_dir.glob("*.pt")}
    assert len(stamps) == 6
    assert study(out_dir) == result
    assert {p: p.stat().st_mtime_ns for p in out_dir.glob("*.pt")} == stamps


def test_shards_split_the_runs_and_together_give_the_whole_study(tiny, tmp_path):
    result, _ = tiny
    first, second = study(tmp_path, shard=(0, 2)), study(tmp_path, shard=(1, 2))
    assert sorted(first.runs) == [(0, 0.3), (1, 0.3), (2, 0.3)]  # every other run
    assert sorted(second.runs) == [(0, 0.01), (1, 0.01), (2, 0.01)]
    assert first.runs | second.runs == result.runs


def test_another_init_draw_keeps_the_target_and_observations(tmp_path):
    config = dynamics_config("book", **TINY)
    again = dynamics_config("book", **(TINY | {"init_draw": 1}))
    for seed in config.seeds:
        for a, b in zip(problem(config, seed), problem(again, seed)):
            assert torch.equal(a, b)
    first = study(tmp_path / "a", seeds=(0,), max_steps=0)
    other = study(tmp_path / "b", seeds=(0,), max_steps=0, init_draw=1)
    assert first.runs[(0, 0.3)]["norms"][0, 0] != other.runs[(0, 0.3)]["norms"][0, 0]


def test_per_init_scale_counts_rates_intervals_medians_and_budget_runs():
    records = [
        {"init_std": 0.01, "error": e, "completed": e < 0.05, "status": s}
        for e, s in [(0.01, "converged"), (0.02, "converged"), (1.5, "budget"), (0.3, "converged")]
    ] + [{"init_std": 0.05, "error": 0.08, "completed": False, "status": "converged"}]
    table = per_init_scale(records)
    assert list(table) == [0.05, 0.01]
    assert table[0.01] == {
        "runs": 4,
        "completed": 2,
        "rate": 0.5,
        "interval": pytest.approx((0.1500, 0.8500), abs=1e-4),  # Wilson, 2 of 4
        "median_error": pytest.approx(0.16),
        "largest_error": 1.5,
        "completed_error": pytest.approx(0.015),
        "budget": 1,
    }
    assert table[0.05]["completed"] == 0 and np.isnan(table[0.05]["completed_error"])


def records_of(outcomes: dict[int, float]) -> list[dict]:
    return [{"seed": s, "error": e, "completed": e < 0.05} for s, e in outcomes.items()]


def test_compare_pairs_the_draws_both_settings_ran():
    first = records_of({0: 0.01, 1: 0.02, 2: 0.5, 3: 0.03, 4: 0.9, 5: 0.04, 9: 0.01})
    second = records_of({0: 0.005, 1: 0.01, 2: 0.01, 3: 0.4, 4: 0.6, 5: 0.03, 7: 0.01})
    result = compare(first, second)
    assert result.seeds == (0, 1, 2, 3, 4, 5)  # 7 and 9 ran under one setting only
    counts = result.completion
    assert (counts.first_only, counts.second_only, counts.both, counts.neither) == (1, 1, 3, 1)
    assert counts.p == 1.0
    assert result.both == (0, 1, 5)
    assert result.medians == pytest.approx((0.02, 0.01))
    assert (result.errors.n, result.errors.positive) == (3, 3)
    assert result.errors.p == pytest.approx(0.25)  # all three of 2^3 sign patterns, both tails


def test_compare_refuses_repeated_or_unshared_draws():
    with pytest.raises(ValueError, match="one record per seed"):
        compare(records_of({0: 0.1}) * 2, records_of({0: 0.1}))
    with pytest.raises(ValueError, match="share no draw"):
        compare(records_of({0: 0.1}), records_of({1: 0.1}))


def test_cli_stores_the_records_under_a_name_with_the_command(tmp_path, capsys):
    store = tmp_path / "stored.json"
    for name, steps in (("first", "5"), ("second", "10")):
        main(
            ["dynamics-study", "--seeds", "3", "--max-steps", steps, "--init-stds", "0.05"]
            + ["--out", str(tmp_path / name), "--store", str(store), "--name", name]
            + ["--no-progress", "--device", "cpu"]
        )
    stored = json.loads(store.read_text())
    assert sorted(stored) == ["first", "second"]
    assert stored["second"]["config"]["max_steps"] == 10
    assert stored["second"]["config"]["dtype"] == "torch.float32"
    assert [r["seed"] for r in stored["second"]["runs"]] == [3]
    assert stored["second"]["command"] == (
        "python -m tflib.experiments dynamics-study --seeds 3 --max-steps 10 --init-stds 0.05 "
        f"--out {tmp_path / 'second'}"
    )
    assert "0 of 1 runs completed (95% interval 0% to 79%)" in capsys.readouterr().out


@pytest.mark.parametrize("seed", [0, 3])
def test_draw_properties_match_a_brute_force_reading_of_the_draw(seed):
    config = dynamics_config("book", **TINY)
    factors = [f.numpy() for f in random_cp_factors((4, 4, 4), 2, seed=1000 * seed)]  # a TARGET
    target, indices, _ = problem(config, seed, dtype=torch.float64)
    scale = np.linalg.norm(brute_force_cp(factors))
    np.testing.assert_allclose(brute_force_cp(factors) / scale, target.numpy(), rtol=1e-12)
    norms = np.prod([np.linalg.norm(f, axis=0) for f in factors], axis=0) / scale
    shares = []
    for r in range(2):
        component = brute_force_cp([f[:, r : r + 1] for f in factors])
        observed = sum(component[tuple(index)] ** 2 for index in indices.tolist())
        shares.append(observed / np.sum(component**2) / (30 / 64))
    fewest = min(np.sum(indices[:, n].numpy() == i) for n in range(3) for i in range(4))
    properties = draw_properties(config, seed)
    assert properties["smallest"] == pytest.approx(norms.min(), rel=1e-12)
    assert properties["worst_sampled"] == pytest.approx(min(shares), rel=1e-12)
    assert properties["fewest_in_slice"] == fewest


def test_paper_scale_is_the_papers_setting_over_thirty_draws():
    config = SCALES["paper"]
    assert len(config.seeds) == 30 and config.max_steps == 200_000
    assert (config.loss_tol, config.patience, config.track_every) == (1e-8, 50, 25)
    assert (config.shape, config.rank, config.n_observations) == ((10,) * 4, 1000, 2000)


# --- the stored study: regression checks of the stored data ---------------------------------------

STUDY = json.loads(STORED.read_text())

#: The records the chapter re-runs: (study, init scale) -> seed.
CHECKED_IN_CHAPTER = {
    ("init_scales", 0.05): 0,
    ("init_scales", 0.01): 0,
    ("init_scales", 0.005): 0,
    ("plain_gd", 0.01): 0,
}


def regenerated_config(command: str):
    """The config and dtype a stored dynamics-study command runs with."""
    experiment, config, dtype = stored_command(command)
    assert experiment is dynamics_study.COMMAND, command
    return config, dtype


def test_stored_study_is_small_and_has_one_record_per_run():
    assert STORED.stat().st_size < 200_000
    for name, summary in STUDY.items():
        config = summary["config"]
        keys = {(r["seed"], r["init_std"]) for r in summary["runs"]}
        assert len(keys) == len(summary["runs"]), name
        assert keys == {(s, std) for s in config["seeds"] for std in config["init_stds"]}, name


@pytest.mark.parametrize("name", sorted(STUDY))
def test_stored_command_regenerates_the_stored_config_under_the_papers_rule(name):
    command, stored = STUDY[name]["command"], STUDY[name]["config"]
    config, dtype = regenerated_config(command)
    regenerated = json.loads(json.dumps(dataclasses.asdict(config)))
    assert regenerated | {"dtype": f"torch.{dtype}"} == stored
    assert (config.loss_tol, config.patience, config.track_every) == (1e-8, 50, 25)
    out = shlex.split(command)[shlex.split(command).index("--out") + 1]
    assert out.startswith("results/study/"), f"{name}: a relative --out, as a reader would run it"


# --- the stored study: live checks ---------------------------------------------------------------


def shortest_records():
    """Per study and init scale not re-run in the chapter, its record of fewest steps."""
    chosen = []
    for name, summary in sorted(STUDY.items()):
        for std in summary["config"]["init_stds"]:
            if (name, std) in CHECKED_IN_CHAPTER:
                continue
            runs = [r for r in summary["runs"] if r["init_std"] == std]
            record = min(runs, key=lambda r: (r["steps"], r["seed"]))
            chosen.append(pytest.param(name, record, id=f"{name}-{std:g}-seed{record['seed']}"))
    return chosen


def test_the_chapters_records_are_stored():
    for (name, std), seed in CHECKED_IN_CHAPTER.items():
        if name not in STUDY:  # a study still running: the chapter checks it once it is stored
            continue
        assert any((r["seed"], r["init_std"]) == (seed, std) for r in STUDY[name]["runs"]), (
            f"{name} has no record of seed {seed} at init {std:g}"
        )


@pytest.mark.parametrize("name, record", shortest_records())
def test_stored_record_is_reproduced(name, record):
    """The run is made again from scratch by the course's code and must land on its record, as
    the chapter checks its own: the steps within 5%, the error within 20%, the rest exactly."""
    config, _ = regenerated_config(STUDY[name]["command"])
    config = dataclasses.replace(config, seeds=(record["seed"],), init_stds=(record["init_std"],))
    rerun = run_records(run_dynamics(config, device="cpu", progress=False))[0]
    assert (rerun["status"], rerun["completed"]) == (record["status"], record["completed"])
    assert rerun["n_large"] == record["n_large"]
    assert rerun["steps"] == pytest.approx(record["steps"], rel=0.05)
    assert rerun["error"] == pytest.approx(record["error"], rel=0.2)
