"""The paper's experiments on tiny configurations: results, resuming, stored numbers, the CLI.

``tests/data/dynamics_small.json`` holds the final numbers of the tiny dynamics run in float64 on
the CPU. Regenerate it, after a change that is meant to alter them, with
``TFLIB_REGENERATE=1 pytest tests/test_experiments.py``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import brute_force_cp

from tflib.data import random_cp_tensor
from tflib.experiments import (
    DynamicsConfig,
    DynamicsResult,
    dynamics_config,
    norm_law_check,
    run_dynamics,
)
from tflib.experiments.__main__ import main
from tflib.experiments.dynamics import problem, sharpness, step_size, timed_run
from tflib.train import make_optimizer

STORED = Path(__file__).parent / "data" / "dynamics_small.json"
TINY = dict(
    shape=(4, 4, 4),
    rank=20,
    n_observations=30,
    target_rank=2,
    max_steps=200,
    init_stds=(0.1, 0.01),
    track_every=10,
)


def tiny_config() -> DynamicsConfig:
    return dynamics_config("book", **TINY)


def run_tiny(out_dir) -> DynamicsResult:
    return run_dynamics(
        tiny_config(), device="cpu", dtype=torch.float64, out_dir=out_dir, progress=False
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny dynamics experiment, run once for the module: (result, its out_dir)."""
    out_dir = tmp_path_factory.mktemp("dynamics")
    return run_tiny(out_dir), out_dir


def final_numbers(result: DynamicsResult) -> dict:
    """What the stored file holds: per init scale, the final error and final top norms."""
    return {
        f"{std:g}": {
            "final_error": float(result.history(std)["error"][-1]),
            "final_top_norms": result.history(std)["norms"][-1].tolist(),
        }
        for std in result.config.init_stds
    }


def regenerate_stored_numbers(result: DynamicsResult) -> None:
    """Write the numbers of ``result`` to ``STORED`` (only when ``TFLIB_REGENERATE=1``)."""
    STORED.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "about": "tiny dynamics run of tests/test_experiments.py, float64 on the CPU",
        "config": TINY,
        "runs": final_numbers(result),
    }
    STORED.write_text(json.dumps(payload, indent=2) + "\n")


def final_factors(out_dir: Path, std: float) -> list[torch.Tensor]:
    state = torch.load(out_dir / f"seed0_init{std:g}.pt", weights_only=True)["model"]
    return [state[f"factors.{n}"] for n in range(len(TINY["shape"]))]


# --- run_dynamics ---------------------------------------------------------------------------------


def test_run_dynamics_records_norms_and_error_for_every_init_scale(tiny):
    result, _ = tiny
    assert sorted(result.runs) == [(0, 0.01), (0, 0.1)]
    for history in result.runs.values():
        assert history.status == "budget"
        assert history.steps == list(range(0, 201, 10))
        assert history["norms"].shape == (21, 10)
        assert history["error"].shape == (21,)
        assert np.all(np.diff(history["norms"], axis=1) <= 0)  # largest first


def test_run_dynamics_error_is_the_error_of_the_final_factors(tiny):
    result, out_dir = tiny
    target = random_cp_tensor((4, 4, 4), 2, 1.0, seed=0, dtype=torch.float64).numpy()
    for std in TINY["init_stds"]:
        full = brute_force_cp(final_factors(out_dir, std))
        expected = np.linalg.norm(full - target) / np.linalg.norm(target)
        assert result.history(std)["error"][-1] == pytest.approx(expected, rel=1e-10)


def test_run_dynamics_norms_are_the_largest_of_the_final_factors(tiny):
    result, out_dir = tiny
    for std in TINY["init_stds"]:
        factors = [f.numpy() for f in final_factors(out_dir, std)]
        norms = np.prod([np.linalg.norm(f, axis=0) for f in factors], axis=0)
        np.testing.assert_allclose(
            result.history(std)["norms"][-1], np.sort(norms)[::-1][:10], rtol=1e-12
        )


def test_small_init_learns_fewer_large_components(tiny):
    # the implicit regularization the experiment is about, visible even at this size
    result, _ = tiny
    small, large = result.history(0.01)["norms"][-1], result.history(0.1)["norms"][-1]
    assert small[1] / small[0] < 0.01 < large[1] / large[0]


def test_results_json_round_trips_through_load(tiny):
    result, out_dir = tiny
    loaded = DynamicsResult.load(out_dir / "results.json")
    assert loaded == result
    assert loaded.config == tiny_config()


def test_run_dynamics_again_returns_the_same_result_without_training(tiny):
    result, out_dir = tiny
    checkpoints = sorted(out_dir.glob("*.pt"))
    assert len(checkpoints) == 2
    stamps = [p.stat().st_mtime_ns for p in checkpoints]
    assert run_tiny(out_dir) == result
    assert [p.stat().st_mtime_ns for p in checkpoints] == stamps


def test_run_dynamics_resumes_a_partly_done_experiment(tiny, tmp_path):
    result, out_dir = tiny
    shutil.copy(out_dir / "seed0_init0.1.pt", tmp_path)  # only the first run had finished
    assert run_tiny(tmp_path) == result


def test_final_errors_lists_one_value_per_seed(tiny):
    result, _ = tiny
    errors = result.final_errors()
    assert list(errors) == [0.1, 0.01]
    assert errors[0.1] == [result.history(0.1)["error"][-1]]


def test_tiny_dynamics_matches_the_stored_numbers(tiny):
    result, _ = tiny
    if os.environ.get("TFLIB_REGENERATE") == "1":
        regenerate_stored_numbers(result)
    stored = json.loads(STORED.read_text())
    assert stored["config"] == json.loads(json.dumps(TINY))
    actual = final_numbers(result)
    assert sorted(actual) == sorted(stored["runs"])
    for std, numbers in stored["runs"].items():
        np.testing.assert_allclose(actual[std]["final_error"], numbers["final_error"], rtol=1e-6)
        np.testing.assert_allclose(
            actual[std]["final_top_norms"], numbers["final_top_norms"], rtol=1e-6
        )


def test_dynamics_result_load_of_a_corrupt_file_names_it(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=f"cannot read DynamicsResult from {path}.*--force"):
        DynamicsResult.load(path)


def test_dynamics_config_overrides_fields():
    config = dynamics_config("paper", max_steps=7)
    assert config.max_steps == 7
    assert config.seeds == (0, 1, 2, 3, 4)
    assert config.shape == (10, 10, 10, 10) and config.rank == 1000


def test_dynamics_config_rejects_an_unknown_scale():
    with pytest.raises(ValueError, match=r"scale must be one of \['book', 'paper'\], got 'huge'"):
        dynamics_config("huge")


def test_dynamics_config_stops_by_the_research_codes_rule_at_both_scales():
    for scale in ("book", "paper"):
        config = dynamics_config(scale)
        assert (config.loss_tol, config.patience, config.track_every) == (1e-8, 50, 25)
        assert (config.shape, config.rank, config.n_observations) == ((10,) * 4, 1000, 2000)
        assert config.init_stds == (5e-2, 1e-2, 5e-3) and config.optimizer == "adaptive_gd"
    assert dynamics_config("book").seeds == (0,)


# --- gradient-flow time and sharpness -------------------------------------------------------------


@pytest.mark.parametrize("optimizer, lr", [("adaptive_gd", 1e-2), ("gd", 0.5)])
def test_step_size_is_how_far_a_step_moves_per_unit_of_gradient(optimizer, lr):
    config = dynamics_config("book", **TINY)
    _, indices, targets = problem(config, 0, dtype=torch.float64)
    model = tflib_model(config)
    parameters = list(model.parameters())
    opt = make_optimizer(optimizer, parameters, lr)
    for _ in range(5):
        loss, gradients = model.loss_and_gradients(indices, targets)
        before = [p.detach().clone() for p in parameters]
        for parameter, gradient in zip(parameters, gradients):
            parameter.grad = gradient
        opt.step()
        moved = torch.sqrt(sum((p.detach() - b).square().sum() for p, b in zip(parameters, before)))
        gradient_norm = torch.sqrt(sum(g.square().sum() for g in gradients))
        assert step_size(opt) == pytest.approx(float(moved / gradient_norm), rel=1e-9)


def tflib_model(config):
    from tflib.cp import CPFactorization
    from tflib.experiments.results import INIT, seed_for

    return CPFactorization(
        config.shape, config.rank, 0.1, seed=seed_for(0, INIT), dtype=torch.float64
    )


def test_step_size_refuses_an_optimizer_that_is_not_gradient_descent():
    opt = make_optimizer("adam", [torch.zeros(2, requires_grad=True)], 1e-3)
    with pytest.raises(ValueError, match="gradient descent"):
        step_size(opt)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"optimizer": "gd", "lr": 0.5},
        {"loss_tol": 2e-3, "patience": 3},  # stops by the rule, at the same step as fit
        {"loss_tol": 2e-3, "patience": None},  # stops at the first crossing
    ],
    ids=["adaptive", "plain", "patience", "first-crossing"],
)
def test_timed_run_follows_run_dynamics_and_sums_the_step_sizes(options):
    config = dynamics_config("book", **(TINY | {"init_stds": (0.1,)} | options))
    reference = run_dynamics(config, device="cpu", dtype=torch.float64, progress=False)
    history, model = timed_run(config, 0, 0.1, dtype=torch.float64)
    expected = reference.history(0.1)
    assert (history.steps, history.status) == (expected.steps, expected.status)
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-9)
    np.testing.assert_allclose(history["norms"], expected["norms"], rtol=1e-9)
    np.testing.assert_allclose(history["error"], expected["error"], rtol=1e-9)
    time = history["time"]
    assert time[0] == 0 and np.all(np.diff(time) > 0)
    if options.get("optimizer") == "gd":
        np.testing.assert_allclose(time, options["lr"] * history["steps"], rtol=1e-12)
    full = brute_force_cp([f.detach().numpy() for f in model.factors])
    target = problem(config, 0, dtype=torch.float64)[0].numpy()
    error = np.linalg.norm(full - target) / np.linalg.norm(target)
    assert history["error"][-1] == pytest.approx(error, rel=1e-10)


def test_timed_run_of_the_tiny_experiment_stops_where_its_rule_says():
    converged = dynamics_config("book", **(TINY | {"loss_tol": 2e-3, "patience": 3}))
    history, _ = timed_run(converged, 0, 0.1, dtype=torch.float64)
    assert history.status == "converged" and history.steps[-1] < TINY["max_steps"]
    losses = dict(zip(history.steps, history.loss))
    last = [losses[s] for s in history.steps if s % TINY["track_every"] == 0][-3:]
    assert all(loss < 2e-3 for loss in last)


def test_sharpness_is_the_largest_eigenvalue_of_the_brute_force_hessian():
    shape, rank = (3, 2, 4), 2
    config = dynamics_config(
        "book", **(TINY | {"shape": shape, "rank": rank, "n_observations": 12})
    )
    model = tflib_model(config)
    _, indices, targets = problem(config, 0, dtype=torch.float64)
    factors = [f.detach().clone() for f in model.factors]
    sizes = [f.numel() for f in factors]

    def loss(flat):
        parts = torch.split(flat, sizes)
        entries = [
            sum(
                torch.prod(
                    torch.stack([p.view(f.shape)[i, r] for p, f, i in zip(parts, factors, idx)])
                )
                for r in range(rank)
            )
            for idx in indices.tolist()
        ]
        return torch.mean((torch.stack(entries) - targets) ** 2)

    hessian = torch.autograd.functional.hessian(loss, torch.cat([f.flatten() for f in factors]))
    eigenvalues = torch.linalg.eigvalsh(hessian)
    largest = eigenvalues[eigenvalues.abs().argmax()]
    assert sharpness(model, indices, targets, iterations=500) == pytest.approx(
        float(largest), rel=1e-6
    )


# --- the component-norm law -----------------------------------------------------------------------


def test_norm_law_holds_along_gradient_descent_for_order_two():
    check = norm_law_check(2, steps=300)
    assert check.order == 2
    assert check.measured.shape == check.predicted.shape == check.norms.shape == (299, 4)
    assert check.worst_relative_deviation() < 0.02


def test_norm_law_check_detects_a_wrong_prediction():
    check = norm_law_check(2, steps=300)
    check.predicted = check.predicted * 1.1
    assert check.worst_relative_deviation() > 0.05


# --- the command line -----------------------------------------------------------------------------


def test_cli_writes_results_and_figure(tmp_path, capsys):
    out = tmp_path / "out"
    main(["dynamics", "--out", str(out), "--max-steps", "20", "--no-progress", "--seeds", "0"])
    assert (out / "figure-seed0.png").stat().st_size > 0
    result = DynamicsResult.load(out / "results.json")
    assert result.config.max_steps == 20 and result.config.seeds == (0,)
    assert len(result.runs) == 3
    assert all(history.steps[-1] == 20 for history in result.runs.values())
    assert "final reconstruction error" in capsys.readouterr().out


def test_cli_rejects_an_unknown_scale(tmp_path):
    with pytest.raises(SystemExit):
        main(["dynamics", "--scale", "huge", "--out", str(tmp_path)])
