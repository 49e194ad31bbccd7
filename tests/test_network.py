"""The CP network: its outputs and gradients against float64 brute force, at orders up to 784."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import brute_force_entries, random_indices

from tflib.cp import cp_entries
from tflib.network import CPNetwork, _LogDomainProducts
from tflib.train import fit

SHAPES = [(3,), (2, 3, 4), (5, 5, 5), (2,) * 8, (3, 1, 2, 4), (4, 2)]


def network(shape, rank, *, zeros=True, negatives=True, seed=0, std=0.8, mean=0.0):
    """A float64 network whose factors hold some exact zeros and negative entries (or none)."""
    model = CPNetwork(shape, rank, std, mean, seed=seed, dtype=torch.float64)
    with torch.no_grad():
        if not negatives:
            model.weight.abs_()
        if zeros:
            generator = torch.Generator().manual_seed(seed)
            model.weight[torch.rand(model.weight.shape, generator=generator) < 0.15] = 0.0
    return model


def loop_loss(weight, shape, indices, targets):
    """The mean squared error of CP entries written with explicit row products (plain autograd)."""
    factors = weight.split(shape)
    entries = []
    for row in indices.tolist():
        product = factors[0][row[0]]
        for n in range(1, len(factors)):
            product = product * factors[n][row[n]]
        entries.append(product.sum())
    return ((torch.stack(entries) - targets) ** 2).mean()


@pytest.mark.parametrize("zeros", [False, True])
@pytest.mark.parametrize("negatives", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_outputs_match_brute_force(shape, negatives, zeros):
    model = network(shape, 3, zeros=zeros, negatives=negatives)
    indices = random_indices(shape, 40, seed=1)
    np.testing.assert_allclose(
        model(indices).detach().numpy(),
        brute_force_entries(model.factors, indices),
        rtol=1e-10,
        atol=1e-12,
    )


@pytest.mark.parametrize("zeros", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_loss_and_gradients_match_autograd_of_a_loop_reference(shape, zeros):
    model = network(shape, 3, zeros=zeros, seed=2)
    indices = random_indices(shape, 30, seed=2)
    targets = torch.randn(30, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    weight = model.weight.detach().clone().requires_grad_()
    expected = loop_loss(weight, shape, indices, targets)
    (expected_grad,) = torch.autograd.grad(expected, weight)
    loss, (grad,) = model.loss_and_gradients(indices, targets)
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)


def test_gradient_through_forward_matches_the_closed_form_one():
    shape = (3, 2, 4)
    model = network(shape, 4, seed=3)
    indices = random_indices(shape, 25, seed=3)
    targets = torch.randn(25, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    (autograd,) = torch.autograd.grad(((model(indices) - targets) ** 2).mean(), model.weight)
    torch.testing.assert_close(autograd, model.loss_and_gradients(indices, targets)[1][0])


@pytest.mark.parametrize("zeros", [False, True])
def test_the_products_pass_gradcheck(zeros):
    shape = (2, 3, 2)
    model = network(shape, 2, zeros=zeros, seed=4)
    encoded = model.layout.encode(random_indices(shape, 10, seed=4), torch.float64)
    weight = model.weight.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda w: _LogDomainProducts.apply(encoded, w, model.layout), (weight,)
    )


def test_outputs_equal_cp_entries_of_the_factors():
    shape = (4, 3, 5)
    model = CPNetwork(shape, 6, 0.5, seed=5)
    indices = random_indices(shape, 50, seed=5)
    torch.testing.assert_close(model(indices), cp_entries(model.factors, indices, "gather"))


@pytest.mark.parametrize(
    "edits",
    [
        [(0, 1, -1.0)],  # one negative factor at a mode's reference level: few columns counted
        [(0, 1, -1.0), (1, 1, -1.0)],  # both levels of mode 0 negative: a constant sign
        [(4, 0, -1.0), (7, 2, 0.0)],  # a negative and a zero at non-reference levels
        [(r, c, -1.0) for r in range(0, 14, 2) for c in range(3)],  # most columns: dense product
    ],
)
def test_signs_and_zeros_counted_over_few_columns_match_brute_force(edits):
    shape = (2, 3, 2, 4, 2, 2)
    model = CPNetwork(shape, 3, 0.3, 1.0, seed=7, dtype=torch.float64)
    with torch.no_grad():
        for row, column, factor in edits:
            model.weight[row, column] *= factor
    indices = random_indices(shape, 60, seed=7)
    np.testing.assert_allclose(
        model(indices).detach().numpy(), brute_force_entries(model.factors, indices), rtol=1e-10
    )


# --- hundreds of positions ---------------------------------------------------------------------


def order_784(dtype, negatives=False, zeros=False):
    model = CPNetwork((2,) * 784, 3, 1e-2, 1.0, seed=6, dtype=dtype)
    with torch.no_grad():
        if negatives:  # a few negative entries: signs flip products without breaking magnitudes
            model.weight[::97] *= -1
        if zeros:
            model.weight[5, 1] = 0.0
    indices = (torch.rand(20, 784, generator=torch.Generator().manual_seed(6)) < 0.3).long()
    return model, indices


@pytest.mark.parametrize("negatives, zeros", [(False, False), (True, False), (True, True)])
def test_order_784_outputs_are_finite_and_match_float64_brute_force(negatives, zeros):
    reference_model, indices = order_784(torch.float64, negatives, zeros)
    expected = brute_force_entries(reference_model.factors, indices)
    model, _ = order_784(torch.float32, negatives, zeros)
    outputs = model(indices).detach().numpy()
    assert np.isfinite(outputs).all()
    np.testing.assert_allclose(outputs, expected, rtol=2e-4)


def test_order_784_products_that_underflow_step_by_step_come_out_right():
    # factors of 0.5 and 2 alternate: the running product of a naive loop dips to 2^-392 (zero in
    # float32), while the true product is exactly 1
    model = CPNetwork((2,) * 784, 1, 0.0, seed=0)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5], [2.0]] * 392 + [[2.0], [0.5]] * 392))
    indices = torch.zeros(1, 784, dtype=torch.long)
    assert model(indices).item() == pytest.approx(1.0, rel=1e-4)  # float32 sums of 784 logs
    naive = torch.ones(1)
    for factor in model.factors:
        naive = naive * factor[0]
    assert naive.item() == 0.0, "the naive product underflows, which is the point of this test"


def test_order_784_gradient_matches_float64_autograd():
    model, indices = order_784(torch.float32, negatives=True)
    reference, _ = order_784(torch.float64, negatives=True)
    targets = torch.linspace(0, 2, 20)
    weight = reference.weight.detach().clone().requires_grad_()
    factors = weight.reshape(784, 2, 3)
    entries = factors[torch.arange(784), indices].prod(dim=1).sum(dim=1)
    (expected,) = torch.autograd.grad(((entries - targets.double()) ** 2).mean(), weight)
    (grad,) = model.loss_and_gradients(indices, targets)[1]
    np.testing.assert_allclose(grad.numpy(), expected.numpy(), rtol=1e-3, atol=1e-4)


# --- several models side by side ----------------------------------------------------------------


def test_grouped_ranks_give_one_output_per_model():
    shape, ranks = (3, 4, 2), (1, 2, 3)
    model = CPNetwork(shape, ranks, 0.7, seed=7, dtype=torch.float64)
    indices = random_indices(shape, 15, seed=7)
    outputs = model(indices)
    assert outputs.shape == (15, 3)
    columns = np.cumsum((0,) + ranks)
    for g in range(3):
        factors = [f[:, columns[g] : columns[g + 1]] for f in model.factors]
        torch.testing.assert_close(outputs[:, g], cp_entries(factors, indices, "gather"))


def test_grouped_loss_is_the_sum_of_the_models_losses_and_gradients_separate():
    shape, ranks = (3, 4, 2), (2, 3)
    model = CPNetwork(shape, ranks, 0.7, seed=8, dtype=torch.float64)
    indices = random_indices(shape, 12, seed=8)
    targets = torch.randn(12, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    loss, (grad,) = model.loss_and_gradients(indices, targets)
    total = torch.zeros((), dtype=torch.float64)
    for g, columns in enumerate((slice(0, 2), slice(2, 5))):
        single = CPNetwork(shape, ranks[g], 0.0, dtype=torch.float64)
        with torch.no_grad():
            single.weight.copy_(model.weight[:, columns])
        single_loss, (single_grad,) = single.loss_and_gradients(indices, targets)
        total += single_loss
        torch.testing.assert_close(grad[:, columns], single_grad)
    torch.testing.assert_close(loss, total)


def test_fit_trains_the_network_with_mini_batches():
    shape = (2,) * 10
    indices = random_indices(shape, 200, seed=9)
    targets = 2.0 * (indices[:, 0] == indices[:, 1]).double()  # a rank-2 function of two bits
    model = CPNetwork(shape, 4, 0.1, 1.0, seed=9, dtype=torch.float64)
    history = fit(
        model,
        indices,
        targets,
        steps=600,
        optimizer="adam",
        lr=0.02,
        batch_size=50,
        progress=False,
    )
    assert history.loss[-1] < 1e-2 * history.loss[0]


# --- the model's attributes and bad input ------------------------------------------------------


def test_factors_are_views_of_the_weight():
    model = CPNetwork((2, 3), 2, 0.5, seed=10)
    assert [tuple(f.shape) for f in model.factors] == [(2, 2), (3, 2)]
    with torch.no_grad():
        model.factors[1][0, 0] = 7.0
    assert model.weight[2, 0] == 7.0


def test_full_and_component_norms_use_the_factors():
    model = CPNetwork((2, 3, 2), 2, 0.5, seed=11, dtype=torch.float64)
    np.testing.assert_allclose(
        model.full().detach().numpy().reshape(-1),
        brute_force_entries(model.factors, torch.cartesian_prod(*map(torch.arange, (2, 3, 2)))),
        rtol=1e-12,
    )
    assert model.component_norms().shape == (2,)


def test_full_refuses_a_tensor_too_large_to_build():
    with pytest.raises(ValueError, match="too large to build in full"):
        CPNetwork((2,) * 64, 1, 0.1).full()


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (torch.tensor([[0, 2, 0]]), IndexError, "mode 1"),
        (torch.tensor([[0, 1]]), ValueError, "indices has 2 columns"),
        (torch.tensor([[0.0, 1.0, 0.0]]), TypeError, "integer dtype"),
    ],
)
def test_bad_indices_are_rejected(bad, error, message):
    model = CPNetwork((2, 2, 3), 2, 0.1)
    with pytest.raises(error, match=message):
        model(bad)
    with pytest.raises(error, match=message):
        model.loss_and_gradients(bad, torch.zeros(len(bad)))


@pytest.mark.parametrize("shape, rank", [((), 2), ((2, 0), 2), ((2, 2), 0), ((2, 2), (1, 0))])
def test_bad_shapes_and_ranks_are_rejected(shape, rank):
    with pytest.raises(ValueError, match="shape and ranks must be positive"):
        CPNetwork(shape, rank, 0.1)


@pytest.mark.parametrize(
    "init_std, init_mean, message",
    [(float("inf"), 1.0, "init_std must be a finite"), (1e-3, float("nan"), "init_mean must be")],
)
def test_a_non_finite_initialization_is_rejected(init_std, init_mean, message):
    with pytest.raises(ValueError, match=message):
        CPNetwork((2, 2, 2), 3, init_std, init_mean)
