"""Rank-one convergence: best rank-one approximation, rank-one trajectories, the experiment.

References are independent of the code under test: NumPy's SVD, tensors whose best rank-one
approximation is known in closed form, first-order perturbation theory, and gradient descent on
the full factorization with all but one component exactly zero.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tflib.cp import CPFactorization
from tflib.data import observe, random_cp_tensor, sample_entries
from tflib.experiments import RankOneResult, rank_one_config, run_rank_one
from tflib.experiments.__main__ import main
from tflib.experiments.rank_one import leave_origin, rank_one_trajectory
from tflib.metrics import best_rank_one, rank_one_distance
from tflib.theory import trajectory_distances
from tflib.train import fit

F64 = torch.float64


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def outer(vectors) -> torch.Tensor:
    """The outer product of vectors, by broadcasting (no tflib)."""
    result = vectors[0]
    for vector in vectors[1:]:
        result = result[..., None] * vector
    return result


def orthonormal_columns(d: int, k: int, seed: int) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(d, k, dtype=F64, generator=generator(seed))).Q


# --- best_rank_one and rank_one_distance ----------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 7), (8, 3), (1, 4)])
def test_matrix_distance_is_the_tail_of_the_singular_values(shape):
    matrix = torch.randn(shape, dtype=F64, generator=generator(0))
    singular = np.linalg.svd(matrix.numpy(), compute_uv=False)
    sigma, vectors = best_rank_one(matrix)
    assert sigma == pytest.approx(singular[0], rel=1e-12)
    assert [v.shape for v in vectors] == [(shape[0],), (shape[1],)]
    expected = np.sqrt(np.sum(singular[1:] ** 2)) / np.linalg.norm(singular)
    assert rank_one_distance(matrix) == pytest.approx(expected, rel=1e-10, abs=1e-15)


def test_power_method_on_a_matrix_with_a_unit_mode_matches_the_svd():
    # a (d, e, 1) tensor is a matrix: the power method of order 3 must find its top singular value
    matrix = torch.randn(6, 9, dtype=F64, generator=generator(1))
    sigma, vectors = best_rank_one(matrix[:, :, None])
    assert sigma == pytest.approx(np.linalg.svd(matrix.numpy(), compute_uv=False)[0], rel=1e-10)
    assert all(v.norm() == pytest.approx(1.0) for v in vectors)


@pytest.mark.parametrize("shape", [(4, 5, 6), (3, 3, 3, 3), (2, 5, 2, 3, 2)])
def test_rank_one_tensor_is_recovered_exactly(shape):
    vectors = [torch.randn(d, dtype=F64, generator=generator(d)) for d in shape]
    tensor = 3.0 * outer(vectors)
    sigma, found = best_rank_one(tensor)
    assert sigma == pytest.approx(float(tensor.norm()), rel=1e-12)
    assert torch.allclose(sigma * outer(found), tensor, atol=1e-12)
    assert rank_one_distance(tensor) < 1e-14


def tangent_projection(vectors) -> torch.Tensor:
    """Projection onto the tangent space of the rank-one tensors at the outer product of vectors:
    the span of the tensors obtained by replacing one vector by any other. The spanning set is
    redundant (the scale can move to any mode), so an orthonormal basis comes from its SVD."""
    basis = []
    for n, vector in enumerate(vectors):
        for i in range(len(vector)):
            replaced = list(vectors)
            replaced[n] = torch.zeros_like(vector).index_fill(0, torch.tensor([i]), 1.0)
            basis.append(outer(replaced).flatten())
    u, s, _ = torch.linalg.svd(torch.stack(basis, dim=1), full_matrices=False)
    u = u[:, s > 1e-10 * s[0]]
    assert u.shape[1] == sum(len(v) for v in vectors) - len(vectors) + 1
    return u @ u.T


@pytest.mark.parametrize("shape", [(4, 5, 6), (3, 4, 3, 2)])
def test_rank_one_plus_small_noise_matches_first_order_perturbation(shape):
    # to first order in the noise, the best rank-one approximation absorbs the noise's tangent
    # part, so the distance is the norm of its normal part
    vectors = [torch.randn(d, dtype=F64, generator=generator(10 + d)) for d in shape]
    clean = outer(vectors)
    noise = 1e-6 * clean.norm() * torch.randn(shape, dtype=F64, generator=generator(2))
    normal = noise.flatten() - tangent_projection(vectors) @ noise.flatten()
    expected = float(normal.norm() / (clean + noise).norm())
    assert rank_one_distance(clean + noise) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("shape, rank", [((5, 6, 7), 3), ((4, 4, 4, 4), 4)])
def test_orthogonally_decomposable_tensor_has_its_largest_term_as_best_approximation(shape, rank):
    # for sum_i lambda_i u_i (x) v_i (x) w_i with orthonormal u's, v's, w's, the best rank-one
    # approximation is the term of largest lambda (closed form)
    weights = torch.tensor([1.0, 2.5, 1.7, 0.4][:rank], dtype=F64)
    columns = [orthonormal_columns(d, rank, seed=20 + n) for n, d in enumerate(shape)]
    tensor = sum(weights[i] * outer([c[:, i] for c in columns]) for i in range(rank))
    sigma, _ = best_rank_one(tensor)
    assert sigma == pytest.approx(2.5, rel=1e-10)
    expected = float(torch.sqrt(weights.square().sum() - 2.5**2) / weights.norm())
    assert rank_one_distance(tensor) == pytest.approx(expected, rel=1e-9)


def test_restarts_never_make_the_approximation_worse():
    tensor = torch.randn(5, 5, 5, dtype=F64, generator=generator(3))
    sigmas = [best_rank_one(tensor, restarts=k)[0] for k in (1, 4, 8)]
    assert sigmas[0] <= sigmas[1] <= sigmas[2]
    assert rank_one_distance(tensor, restarts=8) <= rank_one_distance(tensor, restarts=1) + 1e-12


def test_distance_lies_between_zero_and_one_and_ignores_scale():
    tensor = torch.randn(3, 4, 5, dtype=F64, generator=generator(4))
    distance = rank_one_distance(tensor)
    assert 0 < distance < 1
    assert rank_one_distance(1e-30 * tensor) == pytest.approx(distance, rel=1e-8)
    assert rank_one_distance(tensor.float()) == pytest.approx(distance, rel=1e-5)


@pytest.mark.parametrize("tensor", [torch.zeros(3, 4, 5), torch.zeros(2, 2), torch.ones(4)])
def test_zero_tensors_and_vectors_are_refused(tensor):
    with pytest.raises(ValueError, match="non-zero tensor of order at least 2"):
        rank_one_distance(tensor)


# --- leaving the origin, rank-one trajectories, their distance ------------------------------------

SHAPE = (4, 4, 4)


def small_problem(target_rank: int = 1, seed: int = 0):
    target = random_cp_tensor(SHAPE, target_rank, 1.0, seed=seed, dtype=F64)
    indices = sample_entries(SHAPE, 40, seed=seed + 1)
    return target, indices, observe(target, indices)


def test_leave_origin_stops_at_the_first_step_below_the_threshold():
    _, indices, targets = small_problem()
    model = CPFactorization(SHAPE, 10, 1e-2, seed=2, dtype=F64)
    history = leave_origin(model, indices, targets, lr=20.0, max_steps=10_000, track_every=1)
    threshold = 0.9 * float(targets.square().mean())
    assert history.status == "converged"
    assert history["loss"][-1] < threshold <= history["loss"][:-1].min()


def test_alignment_recovers_a_known_shift():
    # the same trajectory started `shift` steps later leaves the origin `shift` steps earlier,
    # at the same point
    _, indices, targets = small_problem()
    early = CPFactorization(SHAPE, 10, 1e-2, seed=2, dtype=F64)
    late = CPFactorization(SHAPE, 10, 1e-2, seed=2, dtype=F64)
    shift = 37
    fit(late, indices, targets, steps=shift, lr=20.0, progress=False)
    kwargs = dict(lr=20.0, max_steps=10_000, progress=False)
    steps_early = leave_origin(early, indices, targets, **kwargs).steps[-1]
    steps_late = leave_origin(late, indices, targets, **kwargs).steps[-1]
    assert steps_early - steps_late == shift
    for a, b in zip(early.factors, late.factors):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-14)


def test_leave_origin_says_what_to_do_when_the_budget_is_too_short():
    _, indices, targets = small_problem()
    model = CPFactorization(SHAPE, 10, 1e-4, seed=2, dtype=F64)
    with pytest.raises(RuntimeError, match="raise max_steps"):
        leave_origin(model, indices, targets, lr=1.0, max_steps=5, progress=False)


def test_rank_one_trajectory_is_the_full_factorization_with_other_components_at_zero():
    # components with all-zero factors get zero gradients, so gradient descent on the full
    # factorization with only its largest component non-zero is the rank-one trajectory
    _, indices, targets = small_problem(target_rank=2)
    model = CPFactorization(SHAPE, 6, 0.3, seed=3, dtype=F64)
    largest = int(model.component_norms().argmax())
    reference = rank_one_trajectory(model, indices, targets, steps=50, lr=5.0, track_every=5)
    keep = torch.zeros(6, dtype=F64).index_fill(0, torch.tensor([largest]), 1.0)
    model.set_factors([f.detach() * keep for f in model.factors])
    track = {"tensor": lambda m: m.full().flatten()}
    full = fit(
        model, indices, targets, steps=50, lr=5.0, track=track, track_every=5, progress=False
    )
    np.testing.assert_allclose(reference["tensor"], full["tensor"], rtol=1e-10, atol=1e-14)
    assert reference.steps == list(range(0, 51, 5))
    assert max(rank_one_distance(torch.tensor(t).reshape(SHAPE)) for t in full["tensor"]) < 1e-12


def test_trajectory_distances_of_a_trajectory_and_its_shifted_copy():
    growth = np.exp(0.1 * np.arange(30))[:, None] * np.linspace(1.0, 2.0, 12)
    assert np.allclose(trajectory_distances(growth, growth), 0.0)
    shifted = trajectory_distances(growth[1:], growth[:-1])
    assert np.allclose(shifted, np.exp(0.1) - 1)  # one record late: off by the growth of a step


@pytest.mark.parametrize("shapes", [((5, 8), (6, 8)), ((5, 8), (5, 2, 4)), ((8,), (8,))])
def test_trajectories_of_different_shapes_are_refused(shapes):
    with pytest.raises(ValueError, match="cannot be compared"):
        trajectory_distances(np.ones(shapes[0]), np.ones(shapes[1]))


# --- the experiment -------------------------------------------------------------------------------

TINY = dict(
    shape=(4, 4, 4),
    rank=10,
    n_observations=40,
    init_stds=(1e-1, 1e-2),
    lr=20.0,
    window=60,
    track_every=10,
    max_steps=20_000,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("rank_one")
    config = rank_one_config("book", **TINY)
    return run_rank_one(config, device="cpu", out_dir=out_dir, progress=False), out_dir


def test_run_rank_one_records_a_window_and_a_plateau_per_init_scale(tiny):
    result, _ = tiny
    assert sorted(result.runs) == sorted((0, s) for s in TINY["init_stds"])
    for std in TINY["init_stds"]:
        window = result.window(std)
        assert window.steps == list(range(0, 61, 10))
        assert set(window.metrics) == {
            "rank_one_distance",
            "norm_ratio",
            "trajectory_distance",
            "error",
        }
        assert np.all((window["norm_ratio"] >= 0) & (window["norm_ratio"] <= 1))
    assert result.plateau(1e-2) > result.plateau(1e-1)


def test_smaller_init_stays_closer_to_rank_one(tiny):
    result, _ = tiny
    for metric in ("rank_one_distance", "norm_ratio", "trajectory_distance"):
        largest = result.largest(metric)
        assert largest[1e-2] < largest[1e-1] / 10, metric


def test_rank_one_results_round_trip_and_resume_without_training(tiny):
    result, out_dir = tiny
    assert RankOneResult.load(out_dir / "results.json") == result
    stamps = {p: p.stat().st_mtime_ns for p in out_dir.glob("*.pt")}
    assert len(stamps) == 4
    again = run_rank_one(result.config, device="cpu", out_dir=out_dir, progress=False)
    assert again == result
    assert {p: p.stat().st_mtime_ns for p in out_dir.glob("*.pt")} == stamps


def test_cli_runs_the_rank_one_experiment(tmp_path, monkeypatch, capsys):
    from tflib.experiments import rank_one

    monkeypatch.setitem(rank_one.SCALES, "book", rank_one_config("book", **TINY))
    out = tmp_path / "out"
    main(["rank-one", "--out", str(out), "--no-progress"])
    assert (out / "figure-seed0.png").stat().st_size > 0
    assert len(RankOneResult.load(out / "results.json").runs) == 2
    assert "largest trajectory distance" in capsys.readouterr().out


def test_records_give_each_run_its_plateau_largest_distances_and_departure(tiny):
    from tflib.experiments.rank_one import run_records

    result, _ = tiny
    records = run_records(result)
    assert [(r["seed"], r["init_std"]) for r in records] == [(0, 1e-2), (0, 1e-1)]
    for record in records:
        window = result.window(record["init_std"])
        assert record["plateau"] == result.plateau(record["init_std"])
        for metric, value in record["largest"].items():
            assert value == pytest.approx(window[metric].max(), rel=5e-3)
        assert record["closest"] == pytest.approx(window["rank_one_distance"].min(), rel=5e-3)
        far = window["rank_one_distance"] > 0.1
        assert record["left"] == (int(window["steps"][far.argmax()]) if far.any() else None)
