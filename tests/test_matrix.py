"""Deep matrix factorization: the end-to-end product, its entries, singular values, loss and
gradients; the nuclear-norm baseline; the matrix experiments and their command line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import all_indices

import tflib.experiments.matrix as experiment
from tflib.data import observe, random_cp_tensor, sample_entries
from tflib.experiments import MatrixResult, matrix_config, norms_versus_rank, run_matrix
from tflib.experiments.__main__ import main
from tflib.matrix import DeepMatrixFactorization, nuclear_norm_completion
from tflib.metrics import effective_rank
from tflib.train import fit

#: The 2 x 2 problem of Razin & Cohen (2020): w12, w21 and w22 observed.
RAZIN_COHEN_INDICES = torch.tensor([[0, 1], [1, 0], [1, 1]])
CASES = [((3, 4), 1, None), ((3, 4), 2, None), ((4, 3), 3, None), ((5, 2), 4, 3), ((1, 5), 2, 2)]


def product_by_hand(factors) -> np.ndarray:
    """W_L ... W_1 with an explicit triple loop per product, in float64."""
    product = np.asarray(factors[0].detach().double())
    for factor in factors[1:]:
        left = np.asarray(factor.detach().double())
        out = np.zeros((left.shape[0], product.shape[1]))
        for i in range(left.shape[0]):
            for j in range(product.shape[1]):
                out[i, j] = sum(left[i, k] * product[k, j] for k in range(left.shape[1]))
        product = out
    return product


@pytest.mark.parametrize(("shape", "depth", "width"), CASES)
def test_factor_shapes_follow_the_docstring(shape, depth, width):
    model = DeepMatrixFactorization(shape, depth, 0.1, width=width, seed=0)
    inner = width or min(shape)
    expected = (
        [(shape[0], shape[1])]
        if depth == 1
        else ([(inner, shape[1])] + [(inner, inner)] * (depth - 2) + [(shape[0], inner)])
    )
    assert [tuple(f.shape) for f in model.factors] == expected


@pytest.mark.parametrize(("shape", "depth", "width"), CASES)
def test_full_is_the_product_of_the_factors(shape, depth, width):
    model = DeepMatrixFactorization(shape, depth, 0.8, width=width, seed=1, dtype=torch.float64)
    full = model.full()
    assert full.shape == shape
    np.testing.assert_allclose(
        full.detach().numpy(), product_by_hand(model.factors), rtol=1e-12, atol=1e-14
    )


@pytest.mark.parametrize(("shape", "depth", "width"), CASES)
def test_forward_gives_the_entries_at_the_indices(shape, depth, width):
    model = DeepMatrixFactorization(shape, depth, 0.8, width=width, seed=2, dtype=torch.float64)
    indices = torch.cat([all_indices(shape), all_indices(shape)[:2]])
    expected = product_by_hand(model.factors)
    np.testing.assert_allclose(
        model(indices).detach().numpy(),
        [expected[i, j] for i, j in indices.tolist()],
        rtol=1e-12,
        atol=1e-14,
    )


@pytest.mark.parametrize(("shape", "depth", "width"), CASES)
def test_singular_values_match_numpy(shape, depth, width):
    model = DeepMatrixFactorization(shape, depth, 0.8, width=width, seed=3, dtype=torch.float64)
    expected = np.linalg.svd(product_by_hand(model.factors), compute_uv=False)
    np.testing.assert_allclose(model.singular_values().numpy(), expected, rtol=1e-10, atol=1e-12)


def test_same_seed_gives_same_factors():
    a = DeepMatrixFactorization((3, 4), 3, 0.1, seed=5)
    b = DeepMatrixFactorization((3, 4), 3, 0.1, seed=5)
    c = DeepMatrixFactorization((3, 4), 3, 0.1, seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a.factors, b.factors))
    assert not any(torch.equal(x, z) for x, z in zip(a.factors, c.factors))


def test_gradient_flows_to_every_factor():
    model = DeepMatrixFactorization((3, 4), 3, 0.5, seed=7)
    model(torch.tensor([[0, 1], [2, 3]])).sum().backward()
    assert all(f.grad is not None and torch.count_nonzero(f.grad) > 0 for f in model.factors)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (((3, 4, 5), 2, 0.1), r"shape must be \(rows, columns\)"),
        (((3, 0), 2, 0.1), r"shape must be \(rows, columns\)"),
        (((3, 4), 0, 0.1), "depth must be at least 1"),
        (((3, 4), 2, -0.1), "init_std must be a finite number >= 0"),
        (((3, 4), 2, float("inf")), "init_std must be a finite number >= 0"),
        (((3, 4), 2, 0.1, 0), "width must be a finite number >= 1, got 0"),
    ],
)
def test_bad_arguments_are_rejected(args, message):
    *args, width = args if len(args) == 4 else (*args, None)
    with pytest.raises(ValueError, match=message):
        DeepMatrixFactorization(*args, width=width)


def test_out_of_range_indices_are_rejected_naming_the_mode():
    model = DeepMatrixFactorization((3, 4), 2, 0.1)
    with pytest.raises(IndexError, match="mode 1"):
        model(torch.tensor([[0, 4]]))


def test_indices_on_another_device_are_rejected():
    model = DeepMatrixFactorization((3, 4), 2, 0.1)
    with pytest.raises(ValueError, match="different devices.*indices on meta"):
        model(torch.zeros(1, 2, dtype=torch.int64, device="meta"))


# --- loss and gradients ------------------------------------------------------------------------


def loss_by_hand(factors, indices, targets) -> float:
    """The mean squared error at the observed entries, from the triple-loop product, in float64."""
    full = product_by_hand(factors)
    return float(np.mean([(full[i, j] - y) ** 2 for (i, j), y in zip(indices.tolist(), targets)]))


def gradients_by_finite_differences(factors, indices, targets, h=1e-6) -> list[np.ndarray]:
    """Central differences of :func:`loss_by_hand` in every factor entry."""
    arrays = [f.detach().double().numpy().copy() for f in factors]
    gradients = []
    for array in arrays:
        gradient = np.zeros_like(array)
        for position in np.ndindex(array.shape):
            saved = array[position]
            array[position] = saved + h
            up = loss_by_hand([torch.from_numpy(a) for a in arrays], indices, targets)
            array[position] = saved - h
            down = loss_by_hand([torch.from_numpy(a) for a in arrays], indices, targets)
            array[position] = saved
            gradient[position] = (up - down) / (2 * h)
        gradients.append(gradient)
    return gradients


@pytest.mark.parametrize(("shape", "depth", "width"), CASES)
def test_gradients_of_the_loss_match_a_float64_brute_force(shape, depth, width):
    model = DeepMatrixFactorization(shape, depth, 0.8, width=width, seed=8, dtype=torch.float64)
    indices = torch.cat([all_indices(shape)[::2], all_indices(shape)[:3]])  # with repeats
    generator = torch.Generator().manual_seed(9)
    targets = torch.randn(len(indices), dtype=torch.float64, generator=generator)
    loss = torch.nn.functional.mse_loss(model(indices), targets)
    assert loss.item() == pytest.approx(
        loss_by_hand(model.factors, indices, targets.numpy()), rel=1e-12
    )
    gradients = torch.autograd.grad(loss, list(model.factors))
    expected = gradients_by_finite_differences(model.factors, indices, targets.numpy())
    for gradient, reference in zip(gradients, expected, strict=True):
        np.testing.assert_allclose(gradient.numpy(), reference, rtol=1e-6, atol=1e-8)


def test_depth_one_never_moves_an_unobserved_entry():
    # the gradient of the loss is zero at every unobserved entry: gradient descent leaves it alone
    model = DeepMatrixFactorization((4, 5), 1, 0.1, seed=11, dtype=torch.float64)
    start = model.full().detach().clone()
    indices = all_indices((4, 5))[::2]
    fit(
        model,
        indices,
        torch.ones(len(indices), dtype=torch.float64),
        steps=200,
        lr=5.0,
        progress=False,
    )
    unobserved = torch.ones(4, 5, dtype=torch.bool)
    unobserved[indices[:, 0], indices[:, 1]] = False
    assert torch.equal(model.full().detach()[unobserved], start[unobserved])
    torch.testing.assert_close(
        model(indices).detach(), torch.ones(len(indices), dtype=torch.float64)
    )


# --- the effective rank of the 2 x 2 problem ------------------------------------------------------


@pytest.mark.parametrize("x", [0.0, 0.5, -3.0, 40.0])
def test_effective_rank_of_every_completion_of_the_two_by_two_problem(x):
    # [[x, 1], [1, 0]] has singular values (sqrt(x^2 + 4) +- |x|) / 2, with product 1
    big, small = (np.sqrt(x * x + 4) + abs(x)) / 2, (np.sqrt(x * x + 4) - abs(x)) / 2
    p = np.array([big, small]) / (big + small)
    expected = np.exp(-np.sum(p * np.log(p)))
    matrix = torch.tensor([[x, 1.0], [1.0, 0.0]], dtype=torch.float64)
    assert effective_rank(matrix) == pytest.approx(expected, rel=1e-12)
    assert 1 < effective_rank(matrix) <= 2


def test_effective_rank_of_the_two_by_two_completions_falls_towards_one_as_x_grows():
    ranks = [effective_rank(torch.tensor([[x, 1.0], [1.0, 0.0]])) for x in (0, 1, 10, 100, 1e4)]
    assert ranks[0] == pytest.approx(2.0)
    assert all(a > b for a, b in zip(ranks, ranks[1:]))
    assert ranks[-1] < 1.002


# --- the nuclear-norm baseline --------------------------------------------------------------------


def test_nuclear_norm_completion_of_the_two_by_two_problem_fills_in_zero():
    # ||[[x, 1], [1, 0]]||_* = sqrt(x^2 + 4): smallest, 2, at x = 0
    solution = nuclear_norm_completion((2, 2), RAZIN_COHEN_INDICES, torch.tensor([1.0, 1.0, 0.0]))
    assert solution.dtype == torch.float64 and solution.shape == (2, 2)
    np.testing.assert_allclose(solution.numpy(), [[0.0, 1.0], [1.0, 0.0]], atol=1e-5)
    assert float(torch.linalg.svdvals(solution).sum()) == pytest.approx(2.0, abs=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_nuclear_norm_completion_recovers_a_densely_observed_rank_one_matrix(seed):
    target = random_cp_tensor((12, 10), 1, 10.0, seed=seed, dtype=torch.float64)
    indices = sample_entries((12, 10), 90, seed=seed + 100)  # three entries in four
    solution = nuclear_norm_completion((12, 10), indices, observe(target, indices))
    assert float((solution - target).norm() / target.norm()) < 1e-5


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
def test_nuclear_norm_completion_that_stops_short_of_optimal_raises():
    target = random_cp_tensor((12, 10), 2, 10.0, seed=12, dtype=torch.float64)
    indices = sample_entries((12, 10), 60, seed=13)
    with pytest.raises(RuntimeError, match="status 'optimal_inaccurate', not 'optimal'"):
        nuclear_norm_completion((12, 10), indices, observe(target, indices), max_iters=3)


def test_nuclear_norm_completion_rejects_bad_inputs():
    with pytest.raises(IndexError, match="mode 1"):
        nuclear_norm_completion((2, 2), torch.tensor([[0, 2]]), torch.ones(1))
    with pytest.raises(ValueError, match=r"values of shape \(2,\) do not match"):
        nuclear_norm_completion((2, 2), torch.tensor([[0, 1]]), torch.ones(2))


# --- the experiments ------------------------------------------------------------------------------

TINY = dict(
    shape=(6, 5),
    target_rank=1,
    n_observations=(14, 20),
    depths=(1, 2),
    init_stds=(1e-2,),
    max_steps=300,
    track_every=50,
    n_tracked=3,
    seeds=(0,),
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny completion experiment in float64, run once: (result, its out_dir)."""
    out_dir = tmp_path_factory.mktemp("matrix")
    config = matrix_config("book", **TINY)
    return run_matrix(
        config, device="cpu", dtype=torch.float64, out_dir=out_dir, progress=False
    ), out_dir


def test_run_matrix_runs_every_depth_and_the_baseline_for_every_number_of_observations(tiny):
    result, _ = tiny
    assert sorted(result.runs) == [(0, n, d, 1e-2) for n in (14, 20) for d in (1, 2)]
    assert sorted(result.baselines) == [(0, 14), (0, 20)]
    for history in result.runs.values():
        assert history.steps == list(range(0, 301, 50))
        assert history["singular_values"].shape == (7, 3)
        assert history["effective_rank"].shape == history["error"].shape == (7,)
    for baseline in result.baselines.values():
        assert len(baseline["singular_values"]) == 3 and baseline["error"] < 1


def test_run_matrix_records_the_error_and_singular_values_of_the_final_factors(tiny):
    result, out_dir = tiny
    size = np.sqrt(30)
    target = random_cp_tensor((6, 5), 1, size, seed=0, dtype=torch.float64).numpy()
    for depth in (1, 2):
        state = torch.load(out_dir / f"seed0_m20_depth{depth}_init0.01.pt", weights_only=True)[
            "model"
        ]
        full = product_by_hand([state[f"factors.{j}"] for j in range(depth)])
        history = result.history(20, depth)
        assert history["error"][-1] == pytest.approx(
            np.linalg.norm(full - target) / np.linalg.norm(target), rel=1e-9
        )
        np.testing.assert_allclose(
            history["singular_values"][-1], np.linalg.svd(full, compute_uv=False)[:3], rtol=1e-9
        )


def test_run_matrix_observes_nested_sets_of_entries_of_a_target_with_unit_mean_square(tiny):
    target = random_cp_tensor((6, 5), 1, np.sqrt(30), seed=0, dtype=torch.float64)
    assert float(target.square().mean()) == pytest.approx(1.0)
    few, many = sample_entries((6, 5), 14, seed=1), sample_entries((6, 5), 20, seed=1)
    assert torch.equal(few, many[:14])


def test_final_gives_one_row_per_number_of_observations_and_one_column_per_seed(tiny):
    result, _ = tiny
    finals = result.final()
    assert list(finals) == ["depth 1", "depth 2", "nuclear norm"]
    assert all(errors.shape == (2, 1) for errors in finals.values())
    assert finals["depth 2"][1, 0] == result.history(20, 2)["error"][-1]
    assert finals["nuclear norm"][0, 0] == result.baselines[(0, 14)]["error"]


def test_matrix_results_round_trip_through_json_keys_with_strings_and_none(tiny):
    result, out_dir = tiny
    assert MatrixResult.load(out_dir / "results.json") == result


def test_run_matrix_again_trains_nothing_and_solves_nothing(tiny, monkeypatch):
    result, out_dir = tiny
    checkpoints = sorted(out_dir.glob("*.pt"))
    stamps = [p.stat().st_mtime_ns for p in checkpoints]

    def refuse(*args, **kwargs):
        raise AssertionError("the nuclear-norm completion was solved again")

    monkeypatch.setattr(experiment, "nuclear_norm_completion", refuse)
    again = run_matrix(
        result.config, device="cpu", dtype=torch.float64, out_dir=out_dir, progress=False
    )
    assert again == result
    assert [p.stat().st_mtime_ns for p in checkpoints] == stamps


def test_matrix_config_incremental_follows_two_depths_from_two_init_scales():
    config = matrix_config("book", seed=4, incremental=True)
    book = matrix_config("book")
    assert config.depths == (2, 3) and config.init_stds == (1e-2, 1e-3)
    assert config.n_observations == book.n_observations[1:2] and config.seeds == (4,)
    assert not config.nuclear_norm and config.shape == book.shape
    assert matrix_config("paper").shape == (100, 100) and matrix_config("book", seed=2).seeds == (
        2,
        3,
        4,
    )


def test_matrix_config_rejects_an_unknown_scale():
    with pytest.raises(ValueError, match=r"scale must be one of \['book', 'paper'\], got 'huge'"):
        matrix_config("huge")


def test_norms_versus_rank_starts_balanced_with_a_positive_determinant_and_keeps_it():
    history = norms_versus_rank(3, steps=600, seed=5, progress=False)
    assert history.steps[0] == 0 and history.steps[-1] == 600
    assert history["determinant"][0] == pytest.approx(0.1**6)  # (0.1^2)^3: three rotations
    assert np.all(history["determinant"] > 0)
    assert history["effective_rank"][0] == pytest.approx(2.0)
    assert np.all(np.diff(history["unobserved"]) > 0) and history["unobserved"][-1] > 2
    assert history.loss[-1] < 0.05 * history.loss[0]


def test_cli_writes_results_and_figure(tmp_path, capsys):
    main(["matrix", "--out", str(tmp_path), "--max-steps", "20", "--no-progress", "--seeds", "0"])
    result = MatrixResult.load(tmp_path / "results.json")
    assert result.config.max_steps == 20 and result.config.seeds == (0,)
    assert len(result.runs) == 3 * 3 and len(result.baselines) == 3  # three sizes, three depths
    assert (tmp_path / "figure.png").stat().st_size > 0
    assert "nuclear norm: median errors" in capsys.readouterr().out


def test_fitting_targets_of_the_wrong_shape_is_rejected():
    model = DeepMatrixFactorization((3, 4), 2, 0.1)
    with pytest.raises(ValueError, match=r"targets must have shape \(M,\) = \(2,\)"):
        fit(model, torch.tensor([[0, 0], [1, 1]]), torch.zeros(2, 1), steps=1, progress=False)


def test_records_hold_each_run_and_each_baseline_as_the_results_do(tiny):
    result, _ = tiny
    records = experiment.run_records(result)
    assert len(records) == 4 + 2, "two numbers of observations x two depths, and two baselines"
    for record in records:
        if record["method"] == "nuclear norm":
            baseline = result.baselines[(record["seed"], record["observed"])]
            assert record["error"] == pytest.approx(baseline["error"], rel=1e-3)
            continue
        history = result.history(record["observed"], int(record["method"][-1]), record["init_std"])
        assert record["error"] == pytest.approx(history["error"][-1], rel=1e-3)
        assert record["lowest_effective_rank"] <= record["effective_rank"] * (1 + 1e-3)
        assert record["steps"] == history.steps[-1] and record["status"] == history.status
        assert set(record["jumps"]) <= {1, 2, 3} and isinstance(record["in_turn"], bool)


def test_cli_stores_the_records_with_the_command_and_the_overridden_observations(
    tmp_path, monkeypatch
):
    import json

    monkeypatch.setitem(experiment.SCALES, "book", matrix_config("book", **TINY))
    store, out = tmp_path / "stored.json", tmp_path / "out"
    main(["matrix", "--out", str(out), "--no-progress", "--n-observations", "12", "--depths", "2"])
    main(
        ["matrix", "--out", str(out), "--no-progress", "--n-observations", "12", "--depths", "2"]
        + ["--store", str(store), "--name", "twelve"]
    )
    entry = json.loads(store.read_text())["twelve"]
    assert entry["command"].endswith("--n-observations 12 --depths 2")
    assert {(r["observed"], r["method"]) for r in entry["runs"]} == {
        (12, "depth 2"),
        (12, "nuclear norm"),
    }
