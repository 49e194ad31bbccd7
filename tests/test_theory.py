"""What the theorems predict, against gradient flow computed by autograd and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SHAPES, brute_force_cp, random_factors, random_indices

from tflib.cp import balance_factors
from tflib.theory import component_inner_products, component_norm_rates, mse_tensor_gradient

RANK = 3


def loss_problem(shape, seed):
    """Observed indices (with repeats) and random targets for an MSE loss."""
    indices = random_indices(shape, 2 * len(shape) + 3, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    targets = torch.randn(indices.shape[0], dtype=torch.float64, generator=generator)
    return indices, targets


def loss_of_factors(factors, indices, targets):
    """The MSE of the CP tensor on the observations, by explicit row products (no tflib)."""
    product = factors[0][indices[:, 0]]
    for n in range(1, len(factors)):
        product = product * factors[n][indices[:, n]]
    return ((product.sum(dim=1) - targets) ** 2).mean()


def loss_of_tensor(tensor, indices, targets):
    return ((tensor[tuple(indices.T)] - targets) ** 2).mean()


def tensor_gradient(factors, indices, targets):
    """The gradient of the loss with respect to the end tensor, by autograd on a leaf tensor."""
    tensor = torch.tensor(brute_force_cp(factors), requires_grad=True)
    return torch.autograd.grad(loss_of_tensor(tensor, indices, targets), tensor)[0]


def component_norm(factors, r):
    return torch.stack([f[:, r].norm() for f in factors]).prod()


def balanced_factors(shape, seed):
    factors = random_factors(shape, RANK, seed=seed, std=0.8)
    factors[0] = factors[0] * 3.0  # so that balancing has something to do
    return [f.requires_grad_() for f in balance_factors(factors)]


def exact_rates(factors, indices, targets):
    """d/dt ||W_r|| under gradient flow: sum_n <d||W_r||/dw_r^n, -dL/dw_r^n>, by autograd."""
    flow = [-g for g in torch.autograd.grad(loss_of_factors(factors, indices, targets), factors)]
    rates = []
    for r in range(RANK):
        grads = torch.autograd.grad(component_norm(factors, r), factors)
        rates.append(sum(float((g * v).sum()) for g, v in zip(grads, flow)))
    return np.array(rates)


@pytest.mark.parametrize("shape", SHAPES)
def test_component_norm_rates_match_gradient_flow_by_autograd(shape):
    factors = balanced_factors(shape, seed=1)
    indices, targets = loss_problem(shape, seed=1)
    predicted = component_norm_rates(
        [f.detach() for f in factors], tensor_gradient(factors, indices, targets)
    )
    np.testing.assert_allclose(
        predicted.numpy(), exact_rates(factors, indices, targets), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_component_norm_rates_match_a_finite_difference_of_the_flow(shape):
    factors = balanced_factors(shape, seed=2)
    indices, targets = loss_problem(shape, seed=2)
    flow = [-g for g in torch.autograd.grad(loss_of_factors(factors, indices, targets), factors)]
    h = 1e-6
    with torch.no_grad():
        ahead = [f + h * v for f, v in zip(factors, flow)]
        behind = [f - h * v for f, v in zip(factors, flow)]
        measured = [
            float(component_norm(ahead, r) - component_norm(behind, r)) / (2 * h)
            for r in range(RANK)
        ]
    predicted = component_norm_rates(
        [f.detach() for f in factors], tensor_gradient(factors, indices, targets)
    )
    np.testing.assert_allclose(predicted.numpy(), measured, rtol=1e-6, atol=1e-9)


def test_component_norm_rates_need_balanced_factors():
    # unbalanced factors move their norms at another rate than the law gives: the law's hypothesis
    shape = (2, 3, 4)
    factors = random_factors(shape, RANK, seed=3, requires_grad=True)
    with torch.no_grad():
        factors[0].mul_(4.0)
    indices, targets = loss_problem(shape, seed=3)
    predicted = component_norm_rates(
        [f.detach() for f in factors], tensor_gradient(factors, indices, targets)
    )
    assert not np.allclose(predicted.numpy(), exact_rates(factors, indices, targets), rtol=1e-3)


@pytest.mark.parametrize("shape", SHAPES)
def test_mse_tensor_gradient_matches_autograd(shape):
    generator = torch.Generator().manual_seed(4)
    tensor = torch.randn(shape, dtype=torch.float64, generator=generator, requires_grad=True)
    indices, targets = loss_problem(shape, seed=4)
    indices = torch.cat([indices, indices[:2]])  # repeated observations count twice
    targets = torch.cat([targets, targets[:2] + 1.0])
    expected = torch.autograd.grad(loss_of_tensor(tensor, indices, targets), tensor)[0]
    torch.testing.assert_close(
        mse_tensor_gradient(tensor.detach(), indices, targets), expected, rtol=1e-12, atol=1e-14
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_component_inner_products_match_brute_force(shape):
    factors = random_factors(shape, RANK, seed=5)
    tensor = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    expected = [
        float(np.sum(tensor.numpy() * brute_force_cp([f[:, r : r + 1] for f in factors])))
        for r in range(RANK)
    ]
    np.testing.assert_allclose(
        component_inner_products(factors, tensor).numpy(), expected, rtol=1e-12, atol=1e-12
    )


def test_component_inner_products_reject_a_tensor_of_another_shape():
    factors = random_factors((2, 3), RANK)
    with pytest.raises(
        ValueError, match=r"tensor has shape \(3, 2\), the factors describe \(2, 3\)"
    ):
        component_inner_products(factors, torch.zeros(3, 2, dtype=torch.float64))
