"""Key checks repeated on a CUDA device; skipped (see conftest.py) where there is none."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    SHAPES,
    all_indices,
    brute_force_entries,
    random_factors,
    random_indices,
    relative_error,
)

from tflib.cp import CPFactorization, cp_entries
from tflib.data import random_cp_tensor, sample_entries
from tflib.experiments import dynamics_config, run_dynamics, run_natural
from tflib.network import CPNetwork
from tflib.train import fit

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


@pytest.mark.parametrize("method", ["dense", "gather", "auto"])
@pytest.mark.parametrize("shape", SHAPES)
def test_cuda_entries_match_float64_brute_force(shape, method):
    factors = random_factors(shape, 3, seed=1)
    indices = torch.cat([all_indices(shape), random_indices(shape, 5)])
    entries = cp_entries([f.to(CUDA) for f in factors], indices.to(CUDA), method)
    assert entries.device.type == "cuda"
    np.testing.assert_allclose(
        entries.cpu().numpy(), brute_force_entries(factors, indices), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_cuda_dense_and_gather_gradients_match_the_cpu(shape):
    indices = torch.cat([all_indices(shape), random_indices(shape, 5)])
    weights = torch.randn(indices.shape[0], dtype=torch.float64)
    cpu = random_factors(shape, 3, seed=2, requires_grad=True)
    expected = torch.autograd.grad((cp_entries(cpu, indices, "gather") * weights).sum(), cpu)
    for method in ("dense", "gather"):
        cuda = [f.detach().to(CUDA).requires_grad_() for f in cpu]
        entries = cp_entries(cuda, indices.to(CUDA), method)
        grads = torch.autograd.grad((entries * weights.to(CUDA)).sum(), cuda)
        for g, e in zip(grads, expected):
            torch.testing.assert_close(g.cpu(), e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["dense", "gather"])
def test_cuda_float32_agrees_with_float64_at_the_paper_setting(method):
    shape = (10, 10, 10, 10)
    factors64 = [f.to(CUDA).requires_grad_() for f in random_factors(shape, 1000, seed=3, std=1e-2)]
    factors32 = [f.detach().float().requires_grad_() for f in factors64]
    generator = torch.Generator().manual_seed(3)
    flat = torch.randperm(math.prod(shape), generator=generator)[:2000]
    indices = torch.stack(torch.unravel_index(flat, shape), dim=1).to(CUDA)
    weights = torch.randn(2000, dtype=torch.float64, generator=generator).to(CUDA)
    e64, e32 = cp_entries(factors64, indices, method), cp_entries(factors32, indices, method)
    assert relative_error(e32, e64) < 1e-5
    g64 = torch.autograd.grad((e64 * weights).sum(), factors64)
    g32 = torch.autograd.grad((e32 * weights.float()).sum(), factors32)
    assert all(relative_error(a, b) < 1e-5 for a, b in zip(g32, g64))


def test_cuda_seeded_draws_match_the_cpu():
    cpu = CPFactorization((3, 4, 5), 6, 0.1, seed=4, dtype=torch.float64)
    cuda = CPFactorization((3, 4, 5), 6, 0.1, seed=4, dtype=torch.float64, device=CUDA)
    assert all(torch.equal(a, b.cpu()) for a, b in zip(cpu.factors, cuda.factors))
    target_cpu = random_cp_tensor((3, 4, 5), 2, seed=4, dtype=torch.float64)
    target_cuda = random_cp_tensor((3, 4, 5), 2, seed=4, dtype=torch.float64, device=CUDA)
    assert torch.equal(target_cpu, target_cuda.cpu())
    assert torch.equal(
        sample_entries((3, 4, 5), 9, seed=4),
        sample_entries((3, 4, 5), 9, seed=4, device=CUDA).cpu(),
    )


@pytest.mark.parametrize("optimizer", ["gd", "adaptive_gd"])
def test_cuda_fit_matches_the_cpu(optimizer):
    shape = (3, 4, 5)
    indices = sample_entries(shape, 30, seed=5)
    targets = torch.randn(30, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    runs = []
    for device in ("cpu", CUDA):
        model = CPFactorization(shape, 4, 0.3, seed=5, dtype=torch.float64, device=device)
        history = fit(
            model,
            indices.to(device),
            targets.to(device),
            steps=50,
            optimizer=optimizer,
            lr=0.01,
            track_every=10,
            progress=False,
        )
        runs.append((model, history))
    (cpu_model, cpu_history), (cuda_model, cuda_history) = runs
    assert cuda_history.steps == cpu_history.steps
    np.testing.assert_allclose(cuda_history.loss, cpu_history.loss, rtol=1e-10)
    for a, b in zip(cpu_model.factors, cuda_model.factors):
        torch.testing.assert_close(b.detach().cpu(), a.detach(), rtol=1e-10, atol=1e-12)


def test_cuda_rejects_indices_on_the_cpu():
    factors = [f.to(CUDA) for f in random_factors((2, 3), 2)]
    with pytest.raises(ValueError, match="different devices"):
        cp_entries(factors, torch.zeros(1, 2, dtype=torch.int64))


def test_cuda_tiny_dynamics_matches_the_stored_numbers(tmp_path):
    from test_experiments import TINY, final_numbers

    result = run_dynamics(
        dynamics_config("book", **TINY),
        device=CUDA,
        dtype=torch.float64,
        out_dir=tmp_path,
        progress=False,
    )
    stored = json.loads((Path(__file__).parent / "data" / "dynamics_small.json").read_text())
    actual = final_numbers(result)
    for std, numbers in stored["runs"].items():
        np.testing.assert_allclose(actual[std]["final_error"], numbers["final_error"], rtol=1e-5)
        np.testing.assert_allclose(
            actual[std]["final_top_norms"], numbers["final_top_norms"], rtol=1e-5
        )


# --- the CP network (the natural-vs-random chapter's engine) -------------------------------------


def order_784_network(device, dtype=torch.float64):
    """Ranks 1, 2, 3 side by side at order 784, with negative and zero factors, on ``device``."""
    model = CPNetwork((2,) * 784, (1, 2, 3), 1e-2, 1.0, seed=11, dtype=torch.float64)
    with torch.no_grad():
        model.weight[::97] *= -1
        model.weight[5, 1] = 0.0
    on_device = CPNetwork((2,) * 784, (1, 2, 3), 0.0, device=device, dtype=dtype)
    with torch.no_grad():
        on_device.weight.copy_(model.weight)
    return on_device


def test_cuda_network_matches_float64_brute_force_at_order_784():
    indices = (torch.rand(20, 784, generator=torch.Generator().manual_seed(11)) < 0.3).long()
    model = order_784_network(CUDA)
    outputs = model(indices.to(CUDA)).detach().cpu()
    columns = np.cumsum((0, 1, 2, 3))
    for g in range(3):
        factors = [f[:, columns[g] : columns[g + 1]].detach().cpu() for f in model.factors]
        np.testing.assert_allclose(
            outputs[:, g].numpy(), brute_force_entries(factors, indices), rtol=1e-10
        )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_network_loss_and_gradients_match_the_cpu(dtype):
    indices = (torch.rand(300, 784, generator=torch.Generator().manual_seed(12)) < 0.3).long()
    targets = 2.0 * (torch.rand(300, generator=torch.Generator().manual_seed(12)) < 0.1).double()
    cpu_loss, (cpu_grad,) = order_784_network("cpu").loss_and_gradients(indices, targets)
    loss, (grad,) = order_784_network(CUDA, dtype).loss_and_gradients(
        indices.to(CUDA), targets.to(CUDA, dtype)
    )
    tolerance = 1e-10 if dtype == torch.float64 else 1e-3
    assert relative_error(loss.cpu().double(), cpu_loss) < tolerance
    assert relative_error(grad.cpu().double(), cpu_grad) < tolerance


def test_cuda_tiny_natural_experiment_matches_the_cpu():
    from test_natural import tiny_config

    cpu, cuda = (
        run_natural(tiny_config(), device=device, dtype=torch.float64, progress=False)
        for device in ("cpu", CUDA)
    )
    assert cpu.runs.keys() == cuda.runs.keys()
    for key, history in cpu.runs.items():
        assert cuda.runs[key].steps == history.steps
        for split in ("train", "test"):
            np.testing.assert_allclose(cuda.runs[key][split], history[split], rtol=1e-8)
