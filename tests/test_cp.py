"""CP tensors: full tensors, entries by both paths, their gradients, the factorization module."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import tensorly as tl
import torch
from conftest import (
    SHAPES,
    all_indices,
    brute_force_cp,
    brute_force_entries,
    random_factors,
    random_indices,
    relative_error,
)

from tflib.cp import (
    DENSE_ENTRIES_PER_REQUEST,
    DENSE_MAX_ENTRIES,
    CPFactorization,
    balance_factors,
    component_norms,
    cp_entries,
    cp_to_tensor,
    khatri_rao,
    uses_dense_path,
)

METHODS = ["dense", "gather", "auto"]
RANK = 3


def requested_indices(shape, seed=0):
    """Every index of the tensor once, then random repeats: every entry and some duplicates."""
    return torch.cat([all_indices(shape), random_indices(shape, 7, seed=seed)])


def gradients(factors, indices, method, weights):
    """Gradients of sum_m weights_m * entry_m with respect to every factor."""
    entries = cp_entries(factors, indices, method)
    return torch.autograd.grad((entries * weights).sum(), factors)


def reference_entries(factors, indices):
    """Entries from the factor rows selected by explicit Python loops: plain autograd, no tflib."""
    out = []
    for row in indices.tolist():
        product = factors[0][row[0]]
        for n in range(1, len(factors)):
            product = product * factors[n][row[n]]
        out.append(product.sum())
    return torch.stack(out)


# --- the full tensor ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_cp_to_tensor_matches_brute_force(shape):
    factors = random_factors(shape, RANK, seed=1)
    full = cp_to_tensor(factors)
    assert full.shape == shape
    np.testing.assert_allclose(full.numpy(), brute_force_cp(factors), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_cp_to_tensor_matches_tensorly(shape):
    factors = random_factors(shape, RANK, seed=2)
    with tl.backend_context("numpy"):
        expected = tl.cp_to_tensor((np.ones(RANK), [f.numpy() for f in factors]))
    np.testing.assert_allclose(cp_to_tensor(factors).numpy(), expected, rtol=1e-12, atol=1e-12)


def test_cp_to_tensor_matches_tensorly_pytorch_backend():
    shape = (2, 3, 4)
    factors = random_factors(shape, RANK, seed=3)
    with tl.backend_context("pytorch"):
        expected = tl.cp_to_tensor((torch.ones(RANK, dtype=torch.float64), factors))
    torch.testing.assert_close(cp_to_tensor(factors), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_cp_to_tensor_of_rank_one_factors_is_outer_product(shape):
    factors = random_factors(shape, 1, seed=4)
    expected = np.ones(())
    for f in factors:
        expected = np.multiply.outer(expected, f[:, 0].numpy())
    np.testing.assert_allclose(cp_to_tensor(factors).numpy(), expected, rtol=1e-12, atol=1e-14)


# --- entries --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", SHAPES)
def test_cp_entries_match_brute_force(shape, method):
    factors = random_factors(shape, RANK, seed=5)
    indices = requested_indices(shape)
    entries = cp_entries(factors, indices, method)
    assert entries.shape == (indices.shape[0],)
    np.testing.assert_allclose(
        entries.numpy(), brute_force_entries(factors, indices), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_dense_and_gather_give_the_same_values(shape):
    factors = random_factors(shape, RANK, seed=6)
    indices = random_indices(shape, 20, seed=6)
    torch.testing.assert_close(
        cp_entries(factors, indices, "dense"),
        cp_entries(factors, indices, "gather"),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_dense_and_gather_give_the_same_gradients(shape):
    factors = random_factors(shape, RANK, seed=7, requires_grad=True)
    indices = requested_indices(shape, seed=7)
    weights = torch.randn(indices.shape[0], dtype=torch.float64)
    dense = gradients(factors, indices, "dense", weights)
    gather = gradients(factors, indices, "gather", weights)
    for d, g in zip(dense, gather):
        torch.testing.assert_close(d, g, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["dense", "gather"])
@pytest.mark.parametrize("shape", SHAPES)
def test_entry_gradients_match_autograd_of_a_loop_reference(shape, method):
    factors = random_factors(shape, RANK, seed=8, requires_grad=True)
    indices = requested_indices(shape, seed=8)
    weights = torch.randn(indices.shape[0], dtype=torch.float64)
    expected = torch.autograd.grad((reference_entries(factors, indices) * weights).sum(), factors)
    for actual, wanted in zip(gradients(factors, indices, method, weights), expected):
        torch.testing.assert_close(actual, wanted, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_dense_path_passes_gradcheck_with_duplicate_indices(shape):
    factors = random_factors(shape, 2, seed=9, requires_grad=True)
    indices = random_indices(shape, 6, seed=9)
    indices = torch.cat([indices, indices[:3], indices[:1]])  # every duplicate pattern
    assert torch.autograd.gradcheck(
        lambda *fs: cp_entries(list(fs), indices, "dense"), tuple(factors)
    )


def test_gather_path_passes_gradcheck_with_duplicate_indices():
    shape = (2, 3, 4)
    factors = random_factors(shape, 2, seed=10, requires_grad=True)
    indices = torch.tensor([[0, 1, 2], [1, 2, 3], [0, 1, 2], [0, 1, 2]])
    assert torch.autograd.gradcheck(
        lambda *fs: cp_entries(list(fs), indices, "gather"), tuple(factors)
    )


def test_dense_second_derivatives_are_right():
    """Double backward through the dense path gives the gather path's numbers."""
    shape = (2, 3, 4)
    factors = random_factors(shape, 2, seed=11, requires_grad=True)
    indices = torch.tensor([[0, 1, 2], [1, 2, 3], [0, 1, 2]])
    direction = [torch.randn_like(f) for f in factors]

    def hessian_vector_product(method):
        loss = cp_entries(factors, indices, method).pow(2).sum()
        grads = torch.autograd.grad(loss, factors, create_graph=True)
        inner = sum((g * v).sum() for g, v in zip(grads, direction))
        return torch.autograd.grad(inner, factors)

    expected = hessian_vector_product("gather")
    for a, e in zip(hessian_vector_product("dense"), expected):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", ["dense", "gather", "auto"])
def test_float32_agrees_with_float64_at_the_paper_setting(method):
    shape, rank, n_requested = (10, 10, 10, 10), 1000, 2000
    factors64 = random_factors(shape, rank, seed=12, std=1e-2, requires_grad=True)
    factors32 = [f.detach().float().requires_grad_() for f in factors64]
    generator = torch.Generator().manual_seed(12)
    flat = torch.randperm(math.prod(shape), generator=generator)[:n_requested]
    indices = torch.stack(torch.unravel_index(flat, shape), dim=1)
    weights = torch.randn(n_requested, dtype=torch.float64, generator=generator)

    entries64 = cp_entries(factors64, indices, method)
    entries32 = cp_entries(factors32, indices, method)
    assert entries32.dtype == torch.float32
    assert relative_error(entries32, entries64) < 1e-5
    worst = (entries32.detach().double() - entries64.detach()).abs().max()
    assert float(worst) < 1e-5 * float(entries64.detach().abs().max())
    grads64 = torch.autograd.grad((entries64 * weights).sum(), factors64)
    grads32 = torch.autograd.grad((entries32 * weights.float()).sum(), factors32)
    for g32, g64 in zip(grads32, grads64):
        assert g32.dtype == torch.float32
        assert relative_error(g32, g64) < 1e-5


@pytest.mark.parametrize("method", METHODS)
def test_no_requested_entries_give_an_empty_result(method):
    factors = random_factors((2, 3), RANK, requires_grad=True)
    entries = cp_entries(factors, torch.zeros(0, 2, dtype=torch.int64), method)
    assert entries.shape == (0,)
    grads = torch.autograd.grad(entries.sum(), factors, allow_unused=True)
    assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_cp_entries_accept_any_integer_index_dtype(dtype):
    shape = (2, 3, 4)
    factors = random_factors(shape, RANK, seed=13)
    indices = all_indices(shape)
    np.testing.assert_allclose(
        cp_entries(factors, indices.to(dtype)).numpy(),
        brute_force_entries(factors, indices),
        rtol=1e-12,
        atol=1e-12,
    )


# --- how "auto" decides ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "n_requested", "dense"),
    [
        ((10, 10, 10, 10), 2000, True),  # the paper's setting: 10^4 entries for 2,000 requests
        ((10, 10, 10, 10), 100, False),  # 10^4 > 64 * 100
        ((8, 8), 1, True),  # 64 entries for one request: exactly at the ratio
        ((5, 13), 1, False),  # 65 entries for one request: just above it
        ((2048, 2048), 65536, True),  # 2^22 entries: exactly at the size limit
        ((2048, 2049), 10**9, False),  # one row more than the size limit
    ],
)
def test_uses_dense_path_decisions(shape, n_requested, dense):
    assert DENSE_MAX_ENTRIES == 2**22 and DENSE_ENTRIES_PER_REQUEST == 64
    assert uses_dense_path(shape, n_requested) is dense


@pytest.mark.parametrize(("n_requested", "backward_name"), [(40, "Take"), (1, "Sum")])
def test_auto_method_takes_the_path_uses_dense_path_chooses(n_requested, backward_name):
    shape = (4, 5, 6)  # 120 entries: dense for 40 requests (120 <= 2560), gather for 1 (120 > 64)
    factors = random_factors(shape, 2, requires_grad=True)
    entries = cp_entries(factors, random_indices(shape, n_requested), "auto")
    assert backward_name in type(entries.grad_fn).__name__


# --- Khatri-Rao products, component norms, balancing ----------------------------------------------


@pytest.mark.parametrize("dims", [(4,), (3, 4), (2, 3, 4), (5, 1, 3), (2, 2, 2, 2, 2)])
def test_khatri_rao_matches_an_explicit_loop(dims):
    matrices = random_factors(dims, RANK, seed=14)
    expected = np.zeros((math.prod(dims), RANK))
    for row, index in enumerate(itertools.product(*(range(d) for d in dims))):
        for r in range(RANK):
            expected[row, r] = math.prod(float(m[i, r]) for m, i in zip(matrices, index))
    np.testing.assert_allclose(khatri_rao(matrices).numpy(), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape", SHAPES)
def test_component_norms_are_norms_of_the_outer_products(shape):
    factors = random_factors(shape, RANK, seed=15)
    expected = [
        np.linalg.norm(brute_force_cp([f[:, r : r + 1] for f in factors])) for r in range(RANK)
    ]
    np.testing.assert_allclose(component_norms(factors).numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_balance_factors_keeps_the_tensor(shape):
    factors = random_factors(shape, RANK, seed=16)
    factors[0] = factors[0] * 10.0  # unbalanced on purpose
    np.testing.assert_allclose(
        brute_force_cp(balance_factors(factors)), brute_force_cp(factors), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_balance_factors_equalizes_the_vector_norms(shape):
    factors = random_factors(shape, RANK, seed=17)
    factors[-1] = factors[-1] * 0.01
    balanced = balance_factors(factors)
    component = np.array(
        [np.linalg.norm(brute_force_cp([f[:, r : r + 1] for f in factors])) for r in range(RANK)]
    )
    for f in balanced:
        np.testing.assert_allclose(
            np.linalg.norm(f.numpy(), axis=0), component ** (1 / len(shape)), rtol=1e-12
        )


def test_balance_factors_keeps_a_zero_component_finite():
    factors = random_factors((2, 3, 4), RANK, seed=19)
    factors[0][:, 1] = 0.0  # the second component is zero
    balanced = balance_factors(factors)
    assert all(torch.isfinite(f).all() for f in balanced)
    np.testing.assert_allclose(
        brute_force_cp(balanced), brute_force_cp(factors), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 4)])
def test_dense_and_gather_gradients_of_a_plain_sum_agree(shape):
    # the gradient reaching the custom backward is then an expanded (stride-0) tensor
    factors = random_factors(shape, RANK, seed=20, requires_grad=True)
    indices = requested_indices(shape, seed=20)
    dense = torch.autograd.grad(cp_entries(factors, indices, "dense").sum(), factors)
    gather = torch.autograd.grad(cp_entries(factors, indices, "gather").sum(), factors)
    for d, g in zip(dense, gather):
        torch.testing.assert_close(d, g, rtol=1e-12, atol=1e-12)


# --- CPFactorization ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_factorization_has_one_d_by_r_factor_per_mode(shape):
    model = CPFactorization(shape, 7, 0.1, seed=0)
    assert model.order == len(shape)
    assert [tuple(f.shape) for f in model.factors] == [(d, 7) for d in shape]
    assert all(isinstance(f, torch.nn.Parameter) and f.requires_grad for f in model.factors)
    assert all(f.dtype == torch.float32 for f in model.factors)


def test_factorization_same_seed_gives_same_factors():
    a = CPFactorization((3, 4, 5), 6, 0.1, seed=3)
    b = CPFactorization((3, 4, 5), 6, 0.1, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.factors, b.factors))


def test_factorization_different_seeds_give_different_factors():
    a = CPFactorization((3, 4, 5), 6, 0.1, seed=3)
    b = CPFactorization((3, 4, 5), 6, 0.1, seed=4)
    assert not any(torch.equal(x, y) for x, y in zip(a.factors, b.factors))


def test_factorization_seed_gives_the_same_draw_in_every_dtype():
    a = CPFactorization((3, 4), 5, 0.1, seed=8, dtype=torch.float64)
    b = CPFactorization((3, 4), 5, 0.1, seed=8, dtype=torch.float32)
    assert all(torch.equal(x.float(), y) for x, y in zip(a.factors, b.factors))


@pytest.mark.parametrize("init_std", [1e-3, 0.5])
def test_factorization_init_std_is_the_std_of_the_entries(init_std):
    model = CPFactorization((400, 300), 50, init_std, seed=1, dtype=torch.float64)
    entries = torch.cat([f.detach().reshape(-1) for f in model.factors])
    assert abs(float(entries.std()) / init_std - 1) < 0.03
    assert abs(float(entries.mean())) < 0.03 * init_std


def test_factorization_init_mean_shifts_the_entries():
    model = CPFactorization((400, 300), 50, 0.1, init_mean=2.0, seed=1, dtype=torch.float64)
    entries = torch.cat([f.detach().reshape(-1) for f in model.factors])
    assert abs(float(entries.mean()) - 2.0) < 0.01
    assert abs(float(entries.std()) - 0.1) < 0.01


def test_factorization_zero_init_std_gives_constant_factors():
    model = CPFactorization((3, 4), 2, 0.0, init_mean=0.5, seed=1)
    assert all(torch.equal(f, torch.full_like(f, 0.5)) for f in model.factors)


def test_set_factors_copies_the_given_values():
    model = CPFactorization((2, 3, 4), RANK, 0.1, seed=0, dtype=torch.float64)
    factors = random_factors((2, 3, 4), RANK, seed=18)
    model.set_factors(factors)
    assert all(torch.equal(p, f) for p, f in zip(model.factors, factors))
    assert all(isinstance(p, torch.nn.Parameter) for p in model.factors)


def test_set_factors_rejects_a_wrong_shape():
    model = CPFactorization((2, 3, 4), RANK, 0.1)
    factors = random_factors((2, 3, 5), RANK)
    with pytest.raises(ValueError, match=r"factor 2 has shape \(5, 3\), expected \(4, 3\)"):
        model.set_factors(factors)


def test_set_factors_rejects_a_wrong_number_of_factors():
    model = CPFactorization((2, 3, 4), RANK, 0.1)
    with pytest.raises(ValueError):
        model.set_factors(random_factors((2, 3), RANK))


@pytest.mark.parametrize("shape", SHAPES)
def test_factorization_full_matches_brute_force(shape):
    model = CPFactorization(shape, RANK, 0.7, seed=2, dtype=torch.float64)
    np.testing.assert_allclose(
        model.full().detach().numpy(), brute_force_cp(model.factors), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", SHAPES)
def test_factorization_forward_gives_the_entries_at_the_indices(shape, method):
    model = CPFactorization(shape, RANK, 0.7, seed=3, dtype=torch.float64, method=method)
    indices = requested_indices(shape, seed=3)
    np.testing.assert_allclose(
        model(indices).detach().numpy(),
        brute_force_entries(model.factors, indices),
        rtol=1e-12,
        atol=1e-12,
    )


def test_factorization_forward_equals_cp_entries():
    model = CPFactorization((3, 4, 5), RANK, 0.7, seed=4, dtype=torch.float64)
    indices = random_indices((3, 4, 5), 30, seed=4)
    torch.testing.assert_close(model(indices), cp_entries(list(model.factors), indices))


def test_factorization_component_norms_match_the_function():
    model = CPFactorization((3, 4, 5), RANK, 0.7, seed=5, dtype=torch.float64)
    torch.testing.assert_close(model.component_norms(), component_norms(list(model.factors)))


def test_forward_rechecks_a_different_indices_tensor():
    model = CPFactorization((3, 4), RANK, 0.1)
    model(torch.tensor([[0, 0], [2, 3]]))
    with pytest.raises(IndexError, match="mode 1"):
        model(torch.tensor([[0, 0], [2, 4]]))


def test_forward_rechecks_indices_modified_in_place():
    model = CPFactorization((3, 4), RANK, 0.1)
    indices = torch.tensor([[0, 0], [2, 3]])
    model(indices)
    indices[1, 0] = 3
    with pytest.raises(IndexError, match="mode 0"):
        model(indices)


def test_forward_rechecks_indices_modified_in_place_through_a_view():
    model = CPFactorization((3, 4), RANK, 0.1)
    indices = torch.tensor([[0, 0], [2, 3]])
    model(indices)
    indices[:, 1].add_(5)
    with pytest.raises(IndexError, match="mode 1"):
        model(indices)


def test_forward_rechecks_after_a_failed_check():
    model = CPFactorization((3, 4), RANK, 0.1)
    bad = torch.tensor([[0, 4]])
    for _ in range(2):
        with pytest.raises(IndexError, match="mode 1"):
            model(bad)


def test_forward_still_computes_after_the_indices_are_cached():
    model = CPFactorization((3, 4), RANK, 0.7, seed=6, dtype=torch.float64)
    indices = torch.tensor([[0, 0], [2, 3]])
    first = model(indices).detach().clone()
    with torch.no_grad():
        model.factors[0].mul_(2.0)
    torch.testing.assert_close(model(indices), 2 * first)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4), (2, 3, 2, 3), (4,)])
def test_loss_and_gradients_match_autograd_of_a_loop_reference(shape, method):
    model = CPFactorization(shape, RANK, 0.7, seed=7, dtype=torch.float64, method=method)
    indices = requested_indices(shape, seed=7)
    targets = torch.randn(
        len(indices), dtype=torch.float64, generator=torch.Generator().manual_seed(7)
    )
    factors = [f.detach().clone().requires_grad_() for f in model.factors]
    expected = ((reference_entries(factors, indices) - targets) ** 2).mean()
    expected_grads = torch.autograd.grad(expected, factors)
    loss, grads = model.loss_and_gradients(indices, targets)
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-12, atol=1e-14)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)


def test_loss_and_gradients_rejects_targets_that_do_not_match():
    model = CPFactorization((3, 4), RANK, 0.1)
    with pytest.raises(ValueError, match=r"targets of shape \(3,\) do not match"):
        model.loss_and_gradients(torch.tensor([[0, 0], [2, 3]]), torch.zeros(3))


# --- bad input ------------------------------------------------------------------------------------


def test_factor_that_is_not_a_matrix_is_rejected():
    factors = random_factors((2, 3), RANK)
    factors[1] = factors[1][:, 0]
    with pytest.raises(ValueError, match=r"factor 1 has shape \(3,\)"):
        cp_to_tensor(factors)


def test_factor_with_three_dimensions_is_rejected():
    factors = random_factors((2, 3), RANK)
    factors[0] = factors[0][..., None]
    with pytest.raises(ValueError, match=r"factor 0 has shape \(2, 3, 1\)"):
        cp_entries(factors, torch.zeros(1, 2, dtype=torch.int64))


def test_factors_with_different_numbers_of_components_are_rejected():
    factors = random_factors((2, 3, 4), RANK)
    factors[2] = factors[2][:, :2]
    with pytest.raises(ValueError, match=r"number of components R.*\[3, 3, 2\]"):
        cp_to_tensor(factors)


@pytest.mark.parametrize("function", [cp_to_tensor, component_norms, balance_factors])
def test_non_tensor_factor_is_rejected(function):
    factors = random_factors((2, 3), RANK)
    factors[0] = factors[0].numpy()
    with pytest.raises(TypeError, match="factor 0 is a ndarray, expected a torch.Tensor"):
        function(factors)


def test_integer_factors_are_rejected():
    factors = [torch.ones(2, RANK, dtype=torch.int64), torch.ones(3, RANK, dtype=torch.int64)]
    with pytest.raises(TypeError, match="factor 0 has dtype torch.int64; expected a floating"):
        cp_to_tensor(factors)


def test_factors_of_different_dtypes_are_rejected():
    factors = random_factors((2, 3), RANK)
    factors[1] = factors[1].float()
    with pytest.raises(TypeError, match="different dtypes"):
        cp_to_tensor(factors)


@pytest.mark.parametrize("factors", [[], ()], ids=["list", "tuple"])
def test_empty_factors_are_rejected(factors):
    with pytest.raises(ValueError, match="non-empty sequence"):
        cp_to_tensor(factors)


def test_a_single_tensor_instead_of_a_factor_list_is_rejected():
    with pytest.raises(ValueError, match="non-empty sequence"):
        cp_to_tensor(torch.ones(3, 2))


def test_factors_on_different_devices_are_rejected():
    factors = random_factors((2, 3), RANK)
    factors[1] = factors[1].to("meta")
    with pytest.raises(ValueError, match="factor 0 on cpu, factor 1 on meta"):
        cp_to_tensor(factors)


def test_indices_on_another_device_than_factors_on_meta_are_rejected():
    factors = [f.to("meta") for f in random_factors((2, 3), RANK)]
    with pytest.raises(ValueError, match="different devices.*factors on meta.*indices on cpu"):
        cp_entries(factors, torch.zeros(1, 2, dtype=torch.int64))


def test_indices_on_meta_with_factors_on_cpu_are_rejected():
    factors = random_factors((2, 3), RANK)
    indices = torch.zeros(1, 2, dtype=torch.int64, device="meta")
    with pytest.raises(ValueError, match="different devices.*indices on meta"):
        cp_entries(factors, indices)


def test_factorization_rejects_indices_on_another_device():
    model = CPFactorization((2, 3), RANK, 0.1)
    indices = torch.zeros(1, 2, dtype=torch.int64, device="meta")
    with pytest.raises(ValueError, match="different devices.*indices on meta"):
        model(indices)


@pytest.mark.parametrize("shape", [(4,), (5,), (2, 1, 4)])
def test_indices_that_are_not_a_matrix_are_rejected(shape):
    factors = random_factors((2, 3, 4), RANK)
    with pytest.raises(ValueError, match=r"indices must have shape \(M, N\)"):
        cp_entries(factors, torch.zeros(shape, dtype=torch.int64))


def test_indices_with_the_wrong_number_of_columns_are_rejected():
    factors = random_factors((2, 3, 4), RANK)
    with pytest.raises(ValueError, match="indices has 2 columns but the tensor has order 3"):
        cp_entries(factors, torch.zeros(5, 2, dtype=torch.int64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bool, torch.complex64])
def test_non_integer_indices_are_rejected(dtype):
    factors = random_factors((2, 3), RANK)
    with pytest.raises(TypeError, match="indices must have an integer dtype"):
        cp_entries(factors, torch.zeros(1, 2, dtype=dtype))


def test_indices_that_are_not_a_tensor_are_rejected():
    factors = random_factors((2, 3), RANK)
    with pytest.raises(TypeError, match="indices must be a torch.Tensor"):
        cp_entries(factors, [[0, 0]])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("bad", "mode", "span"),
    [((0, -1, 0), 1, r"\[-1, 2\]"), ((2, 0, 0), 0, r"\[1, 2\]"), ((0, 0, 4), 2, r"\[3, 4\]")],
    ids=["negative", "too-large-first-mode", "too-large-last-mode"],
)
def test_out_of_range_indices_are_rejected_naming_the_mode(method, bad, mode, span):
    factors = random_factors((2, 3, 4), RANK)
    indices = torch.tensor([[1, 2, 3], bad])
    with pytest.raises(IndexError, match=rf"out of range in mode {mode}: values span {span}"):
        cp_entries(factors, indices, method)


@pytest.mark.parametrize("method", ["dense ", "Dense", "einsum", ""])
def test_unknown_method_is_rejected(method):
    factors = random_factors((2, 3), RANK)
    with pytest.raises(ValueError, match='method must be "auto", "dense" or "gather"'):
        cp_entries(factors, torch.zeros(1, 2, dtype=torch.int64), method)


def test_factorization_rejects_an_unknown_method():
    with pytest.raises(ValueError, match='method must be "auto", "dense" or "gather"'):
        CPFactorization((2, 3), RANK, 0.1, method="fast")


@pytest.mark.parametrize("init_std", [-0.1, float("nan"), float("inf")])
def test_factorization_rejects_a_bad_init_std(init_std):
    with pytest.raises(ValueError, match="init_std must be a finite number >= 0"):
        CPFactorization((2, 3), RANK, init_std)


def test_factorization_rejects_a_nan_init_mean():
    with pytest.raises(ValueError, match="init_mean must be a finite number, got nan"):
        CPFactorization((2, 3), RANK, 0.1, float("nan"))


@pytest.mark.parametrize("rank", [0, -2])
def test_factorization_rejects_a_non_positive_rank(rank):
    with pytest.raises(ValueError, match="rank must be a positive number of components"):
        CPFactorization((2, 3), rank, 0.1)


@pytest.mark.parametrize("shape", [(2, 0, 3), (-1, 3), (0,), ()])
def test_factorization_rejects_non_positive_dimensions(shape):
    with pytest.raises(ValueError, match="shape must be a non-empty list of positive dimensions"):
        CPFactorization(shape, RANK, 0.1)
