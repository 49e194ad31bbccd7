"""Hierarchical tensor factorization against independent references: a float64 brute force that
walks the tree entry by entry, CP factorizations, hand-computed norms and NumPy matricizations;
the random target, the local-component law check, the experiment and its command line."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import all_indices, brute_force_cp

from tflib import HierarchicalFactorization, fit
from tflib.data import observe, random_cp_tensor, random_hierarchical_tensor, sample_entries
from tflib.experiments import (
    HierarchicalResult,
    dynamics_config,
    hierarchical_config,
    hierarchical_norm_law_check,
    run_hierarchical,
)
from tflib.experiments.__main__ import main
from tflib.experiments.dynamics import problem as dynamics_problem
from tflib.experiments.hierarchical import problem
from tflib.hierarchical import matricization, matricization_ranks, mode_tree

#: (shape, widths, pool): orders 2 to 5, binary and wider pooling, a mode carried up alone (odd
#: orders), one level (a CP factorization with output weights), widths that differ per level.
CASES = [
    ((3, 4), (2,), 2),
    ((3, 4, 2, 3), (3, 4), 2),
    ((2, 3, 4), (2, 3), 2),
    ((2, 3, 2, 2, 3), (2, 3, 2), 2),
    ((3, 2, 2, 3), (3, 2), 3),
    ((2, 2, 3, 2, 2), (2, 3), 3),
    ((4, 3, 2), (5,), 3),
]


def model_of(shape, widths, pool, seed=0, **options) -> HierarchicalFactorization:
    return HierarchicalFactorization(
        shape, widths, 1.0, pool=pool, seed=seed, dtype=torch.float64, **options
    )


def brute_force_entry(model: HierarchicalFactorization, index, pool: int) -> float:
    """One entry, by loops over plain NumPy arrays: pool windows of adjacent nodes (a short one at
    the end), multiply their channel vectors, then map by the node's matrix (none at the root)."""
    leaves = [w.detach().numpy() for w in model.leaves]
    inner = [w.detach().numpy() for w in model.inner]
    nodes = [leaves[n][i] for n, i in enumerate(index)]
    level = 0
    while True:
        groups = [nodes[i : i + pool] for i in range(0, len(nodes), pool)]
        pooled = []
        for group in groups:
            product = np.ones_like(group[0])
            for vector in group:
                product = product * vector
            pooled.append(product)
        if len(pooled) == 1:
            return float(pooled[0] @ model.output.detach().numpy())
        nodes = [vector @ inner[level][k] for k, vector in enumerate(pooled)]
        level += 1


def brute_force_tensor(model, pool) -> np.ndarray:
    tensor = np.zeros(model.shape)
    for index in itertools.product(*(range(d) for d in model.shape)):
        tensor[index] = brute_force_entry(model, index, pool)
    return tensor


# --- the mode tree --------------------------------------------------------------------------------


def test_mode_tree_pools_adjacent_modes_and_carries_the_last_one_up_alone():
    assert mode_tree(5) == [
        [(0,), (1,), (2,), (3,), (4,)],
        [(0, 1), (2, 3), (4,)],
        [(0, 1, 2, 3), (4,)],
        [(0, 1, 2, 3, 4)],
    ]
    assert mode_tree(4, pool=3) == [[(0,), (1,), (2,), (3,)], [(0, 1, 2), (3,)], [(0, 1, 2, 3)]]
    assert mode_tree(3, pool=3) == [[(0,), (1,), (2,)], [(0, 1, 2)]]


@pytest.mark.parametrize("order, pool", [(1, 2), (0, 2), (4, 1)])
def test_mode_tree_rejects_bad_order_or_pool(order, pool):
    with pytest.raises(ValueError, match="order >= 2 and pool >= 2"):
        mode_tree(order, pool)


# --- the tensor, its entries and the network view -------------------------------------------------


@pytest.mark.parametrize("shape, widths, pool", CASES)
def test_full_tensor_matches_brute_force(shape, widths, pool):
    model = model_of(shape, widths, pool)
    expected = brute_force_tensor(model, pool)
    np.testing.assert_allclose(model.full().detach().numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["gather", "dense", "auto"])
@pytest.mark.parametrize("shape, widths, pool", CASES)
def test_entries_match_brute_force_by_every_method(shape, widths, pool, method):
    model = model_of(shape, widths, pool, method=method)
    indices = sample_entries(shape, min(7, int(np.prod(shape))), seed=3)
    expected = [brute_force_entry(model, index.tolist(), pool) for index in indices]
    np.testing.assert_allclose(model(indices).detach().numpy(), expected, rtol=1e-12, atol=1e-12)


def test_network_of_torch_layers_gives_the_entries():
    """The network view built from standard layers: one-hot inputs, linear maps, products."""
    shape = (3, 2, 4, 2)
    model = model_of(shape, (3, 2), 2, method="gather")
    indices = all_indices(shape)
    hot = [torch.nn.functional.one_hot(indices[:, n], d).double() for n, d in enumerate(shape)]
    channels = [h @ w for h, w in zip(hot, model.leaves)]
    left = (channels[0] * channels[1]) @ model.inner[0][0]
    right = (channels[2] * channels[3]) @ model.inner[0][1]
    outputs = (left * right) @ model.output
    torch.testing.assert_close(outputs, model(indices))


def test_one_level_with_unit_output_is_the_cp_factorization_of_its_leaves():
    shape = (3, 4, 2)
    model = model_of(shape, 5, pool=3)
    with torch.no_grad():
        model.output.fill_(1.0)
    expected = brute_force_cp(list(model.leaves))
    np.testing.assert_allclose(model.full().detach().numpy(), expected, rtol=1e-12)
    norms = model.local_component_norms()
    assert len(norms) == 1 and norms[0].shape == (1, 5)
    cp_norms = np.prod([np.linalg.norm(w.detach().numpy(), axis=0) for w in model.leaves], axis=0)
    np.testing.assert_allclose(norms[0][0].detach().numpy(), cp_norms)


@pytest.mark.parametrize("method", ["gather", "dense"])
def test_autograd_gradient_matches_finite_differences(method):
    model = model_of((2, 3, 2), (2, 3), 2, method=method)
    indices = torch.tensor([[0, 1, 1], [1, 2, 0], [1, 0, 1]])
    names, values = zip(
        *[(n, p.detach().clone().requires_grad_()) for n, p in model.named_parameters()]
    )

    def entries(*values):
        return torch.func.functional_call(model, dict(zip(names, values)), (indices,))

    assert torch.autograd.gradcheck(entries, values)


def test_fit_trains_it_on_observed_entries():
    shape = (3, 3, 3, 3)
    target = random_cp_tensor(shape, 2, 9.0, seed=0)
    indices = sample_entries(shape, 60, seed=1)
    model = HierarchicalFactorization(shape, 6, 0.3, seed=2)
    options = {"steps": 1000, "optimizer": "adaptive_gd", "progress": False}
    history = fit(model, indices, observe(target, indices), **options)
    assert history.loss[-1] < 1e-2 * history.loss[0]


# --- local components -----------------------------------------------------------------------------


def test_local_component_norms_of_all_ones_weights():
    """Every column of a (a, b) matrix of ones has norm sqrt(a), every row sqrt(b)."""
    shape, widths = (2, 3, 4, 5), (2, 3)
    model = HierarchicalFactorization(shape, widths, 0.0, dtype=torch.float64)
    for parameter in model.parameters():
        parameter.data.fill_(1.0)
    level1, root = (n.detach() for n in model.local_component_norms())
    row = np.sqrt(widths[1])  # a row of an inner (r_1, r_2) matrix
    expected1 = [[np.sqrt(2 * 3) * row] * 2, [np.sqrt(4 * 5) * row] * 2]
    np.testing.assert_allclose(level1.numpy(), expected1)
    np.testing.assert_allclose(root.numpy(), [[np.sqrt(widths[0]) ** 2 * 1.0] * 3])


def test_local_component_norm_is_the_product_of_its_vector_norms():
    model = model_of((2, 3, 2, 2, 3), (2, 3, 2), 2, seed=4)
    leaves = [w.detach().numpy() for w in model.leaves]
    inner = [w.detach().numpy() for w in model.inner]
    output = model.output.detach().numpy()
    norms = model.local_component_norms()
    # level 1: nodes (0, 1), (2, 3) and (4,) carried up; its rows are in inner[0]
    for node, kids in enumerate([(0, 1), (2, 3), (4,)]):
        for r in range(2):
            expected = np.prod([np.linalg.norm(leaves[k][:, r]) for k in kids])
            expected *= np.linalg.norm(inner[0][node, r])
            assert norms[0][node, r].item() == pytest.approx(expected)
    # level 2: nodes (0..3) from level-1 nodes 0 and 1, and (4,) from node 2; rows in inner[1]
    for node, kids in enumerate([(0, 1), (2,)]):
        for r in range(3):
            expected = np.prod([np.linalg.norm(inner[0][k][:, r]) for k in kids])
            expected *= np.linalg.norm(inner[1][node, r])
            assert norms[1][node, r].item() == pytest.approx(expected)
    # the root pools the two level-2 nodes; its rows are the output weights
    for r in range(2):
        expected = np.prod([np.linalg.norm(inner[1][k][:, r]) for k in (0, 1)]) * abs(output[r])
        assert norms[2][0, r].item() == pytest.approx(expected)


@pytest.mark.parametrize("shape, widths, pool", CASES)
def test_balance_keeps_the_tensor_and_equalizes_every_local_components_vectors(shape, widths, pool):
    model = model_of(shape, widths, pool, seed=5)
    before = model.full().detach().clone()
    model.balance()
    torch.testing.assert_close(model.full().detach(), before, rtol=1e-10, atol=1e-12)
    for level in range(1, len(model.tree)):
        for kids, own in model.local_vectors(level):
            norms = torch.stack([k.norm(dim=0) for k in kids] + [own.norm(dim=1)])
            assert (norms.max(0).values / norms.min(0).values).max() < 1 + 1e-9


def test_an_unbalanced_model_is_not_reported_balanced():
    model = model_of((3, 4, 2, 3), (3, 4), 2, seed=5)
    kids, own = model.local_vectors(2)[0]
    norms = torch.stack([k.norm(dim=0) for k in kids] + [own.norm(dim=1)])
    assert (norms.max(0).values / norms.min(0).values).max() > 1.5


# --- matricizations and hierarchical rank ---------------------------------------------------------


@pytest.mark.parametrize("modes", [(0,), (1, 3), (2, 0), (0, 1, 2, 3), (3, 1, 0)])
def test_matricization_matches_numpy(modes):
    tensor = torch.randn(
        2, 3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    rest = [n for n in range(4) if n not in modes]
    array = np.transpose(tensor.numpy(), (*modes, *rest))
    expected = array.reshape(int(np.prod([tensor.shape[n] for n in modes])), -1)
    np.testing.assert_array_equal(matricization(tensor, modes).numpy(), expected)


@pytest.mark.parametrize("modes", [(), (0, 0), (4,), (-1,)])
def test_matricization_rejects_bad_modes(modes):
    with pytest.raises(ValueError, match="distinct modes of an order-4 tensor"):
        matricization(torch.zeros(2, 2, 2, 2), modes)


def test_matricization_ranks_of_a_rank_one_and_of_a_zero_tensor():
    vectors = [torch.arange(1.0, d + 1, dtype=torch.float64) for d in (2, 3, 4, 5)]
    rank_one = torch.einsum("a,b,c,d->abcd", *vectors)
    tree = mode_tree(4)
    assert set(matricization_ranks(rank_one, tree).values()) == {1}
    assert set(matricization_ranks(torch.zeros(2, 3, 4, 5), tree).values()) == {0}


def test_matricization_ranks_count_singular_values_above_the_tolerance():
    a, b = torch.eye(4, dtype=torch.float64)[:2]
    tensor = torch.einsum("a,b->ab", a, a) + 1e-8 * torch.einsum("a,b->ab", b, b)
    tensor = tensor.reshape(2, 2, 2, 2)  # its (0, 1) matricization has singular values 1, 1e-8
    assert matricization_ranks(tensor, mode_tree(4), rtol=1e-6)[(0, 1)] == 1
    assert matricization_ranks(tensor, mode_tree(4), rtol=1e-10)[(0, 1)] == 2


def test_interactions_across_the_tree_need_rank_at_its_top():
    """A product of a matrix of modes (0, 1) and one of modes (2, 3), of rank k each, has rank one
    at the level-1 nodes; the same entries with modes 1 and 2 swapped have rank k**2 there."""
    local = random_hierarchical_tensor((5, 5, 5, 5), (2, 1), seed=0, dtype=torch.float64)
    ranks = matricization_ranks(local, mode_tree(4))
    assert ranks == {(0,): 2, (1,): 2, (2,): 2, (3,): 2, (0, 1): 1, (2, 3): 1}
    far = matricization_ranks(local.permute(0, 2, 1, 3), mode_tree(4))
    assert far == {(0,): 2, (1,): 2, (2,): 2, (3,): 2, (0, 1): 4, (2, 3): 4}


# --- the random target ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape, ranks, pool", [((4, 5, 3, 4), (2, 3), 2), ((3, 3, 3), (2, 2), 2)])
def test_random_hierarchical_tensor_has_the_requested_norm_and_hierarchical_rank(
    shape, ranks, pool
):
    """A node of level l below the root pools r_l channels and passes on r_(l+1): generically its
    matricization has rank min(r_l, r_(l+1)) (r_1 at the leaves), unless the matrix is smaller."""
    tensor = random_hierarchical_tensor(shape, ranks, 2.5, pool=pool, seed=1, dtype=torch.float64)
    assert tensor.norm().item() == pytest.approx(2.5)
    tree, bounds = mode_tree(len(shape), pool), [ranks[0], *ranks]
    for level, nodes in enumerate(tree[:-1]):
        for node in nodes:
            rows = int(np.prod([shape[n] for n in node]))
            expected = min(bounds[level], bounds[level + 1], rows, tensor.numel() // rows)
            assert matricization_ranks(tensor, tree)[node] == expected


def test_random_hierarchical_tensor_of_one_level_is_random_cp_tensor():
    shape = (3, 4, 2, 3)
    tensor = random_hierarchical_tensor(shape, (3,), 2.0, pool=4, seed=7, dtype=torch.float64)
    expected = random_cp_tensor(shape, 3, 2.0, seed=7, dtype=torch.float64)
    torch.testing.assert_close(tensor, expected)


def test_random_hierarchical_tensor_is_reproducible_per_seed_and_differs_across_seeds():
    draw = lambda seed: random_hierarchical_tensor((3, 3, 3, 3), (2, 2), seed=seed)  # noqa: E731
    torch.testing.assert_close(draw(3), draw(3))
    assert not torch.allclose(draw(3), draw(4))


def test_random_hierarchical_tensor_rejects_bad_arguments():
    with pytest.raises(ValueError, match="fro_norm must be positive"):
        random_hierarchical_tensor((3, 3), (2,), 0.0)
    with pytest.raises(ValueError, match="widths must be 2 positive numbers"):
        random_hierarchical_tensor((3, 3, 3, 3), (2,))


# --- bad inputs to the model ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments, message",
    [
        (((3, 0, 2), 2, 0.1), "shape must hold positive dimensions"),
        (((3,), 2, 0.1), "order >= 2"),
        (((3, 3, 3, 3), (2, 2, 2), 0.1), r"widths must be 2 positive numbers, one per pooling"),
        (((3, 3, 3, 3), (2, 0), 0.1), "widths must be 2 positive numbers"),
        (((3, 3), 2, -1.0), "init_std must be a finite number >= 0"),
    ],
)
def test_model_rejects_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        HierarchicalFactorization(*arguments)


def test_model_rejects_an_unknown_method():
    with pytest.raises(ValueError, match='method must be "auto", "dense" or "gather"'):
        HierarchicalFactorization((3, 3), 2, 0.1, method="fast")


@pytest.mark.parametrize("method", ["gather", "dense"])
def test_model_rejects_bad_indices(method):
    model = HierarchicalFactorization((3, 4, 2), 2, 0.1, method=method)
    with pytest.raises(ValueError, match="indices has 2 columns but the tensor has order 3"):
        model(torch.zeros(5, 2, dtype=torch.int64))
    with pytest.raises(IndexError, match="out of range in mode 1"):
        model(torch.tensor([[0, 4, 0]]))
    with pytest.raises(TypeError, match="integer dtype"):
        model(torch.zeros(5, 3))


# --- the local-component law ----------------------------------------------------------------------


def test_local_component_law_holds_along_gradient_descent():
    check = hierarchical_norm_law_check(steps=400)
    assert check.measured.shape == check.predicted.shape == (399, 2 * 4 + 4)
    assert check.worst_relative_deviation() < 0.02


def test_local_component_law_deviation_shrinks_with_the_step():
    """Gradient descent deviates from gradient flow by O(step): halving it halves the gap."""
    coarse = hierarchical_norm_law_check(3, lr=2e-2, steps=150).worst_relative_deviation()
    fine = hierarchical_norm_law_check(3, lr=1e-2, steps=300).worst_relative_deviation()
    assert 1.6 < coarse / fine < 2.4


def test_local_component_law_check_detects_a_wrong_prediction():
    check = hierarchical_norm_law_check(steps=200)
    check.predicted = check.predicted * 1.1
    assert check.worst_relative_deviation() > 0.05


# --- the experiment -------------------------------------------------------------------------------

TINY = dict(shape=(3, 3, 3, 3), target_ranks=(2,), target_pool=4, n_observations=50, widths=(4, 4))
TINY |= dict(init_std=0.1, max_steps=60, track_every=20, seeds=(0,))


@pytest.fixture(scope="module")
def tiny() -> HierarchicalResult:
    return run_hierarchical(hierarchical_config(**TINY), device="cpu", progress=False)


def test_run_hierarchical_tracks_norms_effective_ranks_and_error(tiny):
    history = tiny.history()
    assert history.steps == [0, 20, 40, 60]
    assert history["norms"].shape == (4, 3, 4)  # 2 level-1 nodes and the root, 4 largest each
    assert history["effective_ranks"].shape == (4, 6)  # 4 leaves and 2 level-1 nodes
    assert np.all(np.diff(history["norms"], axis=-1) <= 0)  # largest first


def test_run_hierarchical_error_is_the_error_of_the_target(tiny):
    config = tiny.config
    target = random_cp_tensor(config.shape, 2, 9.0, seed=0, dtype=torch.float64)
    model = HierarchicalFactorization(config.shape, config.widths, config.init_std, seed=2)
    error = float((model.full().detach().double() - target).norm() / target.norm())
    assert tiny.history()["error"][0] == pytest.approx(error, rel=1e-5)


def test_problem_of_one_level_is_the_dynamics_problem_scaled():
    config = hierarchical_config(**TINY)
    target, indices, values = problem(config, 3, dtype=torch.float64)
    cp = dynamics_config(shape=config.shape, target_rank=2, n_observations=50)
    cp_target, cp_indices, _ = dynamics_problem(cp, 3, dtype=torch.float64)
    assert torch.allclose(target, 9.0 * cp_target) and torch.equal(indices, cp_indices)
    assert torch.equal(values, target[tuple(indices.T)])


def test_hierarchical_results_round_trip_and_resume(tiny, tmp_path):
    first = run_hierarchical(tiny.config, device="cpu", out_dir=tmp_path, progress=False)
    loaded = HierarchicalResult.load(tmp_path / "results.json")
    assert loaded.config == tiny.config and loaded.history().loss == first.history().loss
    again = run_hierarchical(tiny.config, device="cpu", out_dir=tmp_path, progress=False)
    assert again.history().steps == first.history().steps == tiny.history().steps


def test_cli_runs_the_hierarchical_experiment(tmp_path, capsys, monkeypatch):
    from tflib.experiments import hierarchical

    monkeypatch.setitem(hierarchical.SCALES, "book", hierarchical_config(**TINY))
    main(["hierarchical", "--out", str(tmp_path), "--no-progress", "--seeds", "1"])
    assert (tmp_path / "figure-seed1.png").stat().st_size > 0
    assert "seed 1: final error" in capsys.readouterr().out


def test_mode_order_rearranges_the_target_and_keeps_the_observed_positions():
    config = hierarchical_config(**TINY)
    swapped = hierarchical_config(**TINY, mode_order=(0, 2, 1, 3))
    target, indices, _ = problem(config, 0, dtype=torch.float64)
    far, far_indices, values = problem(swapped, 0, dtype=torch.float64)
    assert torch.equal(far, target.permute(0, 2, 1, 3)) and torch.equal(indices, far_indices)
    assert torch.equal(values, far[tuple(indices.T)])


@pytest.mark.parametrize("order", [(0, 1, 2), (0, 1, 1, 3)])
def test_mode_order_must_be_a_permutation_of_the_modes(order):
    with pytest.raises(ValueError, match="mode_order"):
        hierarchical_config(**TINY, mode_order=order)


def test_records_compare_the_solution_with_the_target_node_by_node(tiny):
    from tflib.experiments.hierarchical import run_records

    (record,) = run_records(tiny)
    history = tiny.history()
    target = problem(tiny.config, 0, dtype=torch.float64)[0]
    assert record["target_ranks"] == list(matricization_ranks(target, mode_tree(4), 1e-2).values())
    assert record["root_rank"] == record["target_ranks"][-2] == 2  # a CP target of rank 2
    assert len(record["ranks"]) == len(record["effective_ranks"]) == 6
    assert record["error"] == pytest.approx(history["error"][-1], rel=1e-3)
    assert record["steps"] == 60 and isinstance(record["in_turn"], bool)


def test_records_keep_the_error_at_the_first_record_below_each_loss_level(tiny):
    from tflib.experiments.hierarchical import LOSS_LEVELS, run_records

    (record,) = run_records(tiny)
    history = tiny.history()
    for level in LOSS_LEVELS:
        below = np.flatnonzero(history["loss"] < level)
        expected = history["error"][below[0]] if len(below) else None
        stored = record["error_at_loss"][f"{level:g}"]
        assert stored == expected or stored == pytest.approx(expected, rel=1e-3)
