"""Deep matrix factorization: the end-to-end product, its entries and singular values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import all_indices

from tflib.matrix import DeepMatrixFactorization

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
        (((3, 4), 2, -0.1), "init_std must be non-negative"),
    ],
)
def test_bad_arguments_are_rejected(args, message):
    with pytest.raises(ValueError, match=message):
        DeepMatrixFactorization(*args)


def test_out_of_range_indices_are_rejected_naming_the_mode():
    model = DeepMatrixFactorization((3, 4), 2, 0.1)
    with pytest.raises(IndexError, match="mode 1"):
        model(torch.tensor([[0, 4]]))


def test_indices_on_another_device_are_rejected():
    model = DeepMatrixFactorization((3, 4), 2, 0.1)
    with pytest.raises(ValueError, match="different devices.*indices on meta"):
        model(torch.zeros(1, 2, dtype=torch.int64, device="meta"))
