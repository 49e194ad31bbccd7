r"""A numerical check of the component-norm law along a gradient-descent trajectory.

From a small *balanced* initialization, gradient descent with a small step follows gradient flow
closely; the rate of change of each component norm, measured by central differences of the
recorded norms, is compared with the rate :func:`tflib.theory.component_norm_rates` predicts,
:math:`N \|\mathcal{W}_r\|^{2-2/N}
\langle -\nabla\mathcal{L}(\mathcal{W}), \widehat{\mathcal{W}}_r \rangle`.

Explained in the CP dynamics chapter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tflib.cp import CPFactorization, balance_factors, component_norms
from tflib.data import observe, random_cp_tensor, sample_entries
from tflib.hierarchical import HierarchicalFactorization
from tflib.theory import component_norm_rates, mse_tensor_gradient
from tflib.train import fit


@dataclass
class NormLawCheck:
    """Measured and predicted rates :math:`\\frac{d}{dt}\\|\\mathcal{W}_r\\|`, shape (T, R) each.

    ``time`` is gradient-flow time, the iteration times the step size.
    """

    order: int
    time: np.ndarray
    norms: np.ndarray
    predicted: np.ndarray
    measured: np.ndarray

    def relative_deviation(self) -> np.ndarray:
        """Per component, the largest gap between measured and predicted rate over the trajectory,
        relative to the largest predicted rate of that component. Shape (R,)."""
        gap = np.abs(self.measured - self.predicted).max(axis=0)
        return gap / np.abs(self.predicted).max(axis=0)

    def worst_relative_deviation(self) -> float:
        return float(self.relative_deviation().max())


def norm_law_check(
    order: int,
    *,
    dim: int = 4,
    rank: int = 4,
    target_rank: int = 2,
    target_norm: float | None = None,
    n_observations: int | None = None,
    init_std: float = 0.3,
    lr: float = 1e-3,
    steps: int = 4000,
    seed: int = 0,
) -> NormLawCheck:
    """Run gradient descent in float64 from a balanced small init and compare rates with the law.

    The default sizes keep the check to seconds; ``n_observations`` defaults to half the entries
    and ``target_norm`` to the square root of their number (entries of order one).

    Explained in the CP dynamics chapter.
    """
    shape = (dim,) * order
    n_observations = n_observations or dim**order // 2
    target_norm = target_norm or dim ** (order / 2)
    target = random_cp_tensor(shape, target_rank, target_norm, seed=seed, dtype=torch.float64)
    indices = sample_entries(shape, n_observations, seed=seed + 1)
    targets = observe(target, indices)
    model = CPFactorization(shape, rank, init_std, seed=seed + 2, dtype=torch.float64)
    model.set_factors(balance_factors(list(model.factors)))

    def predicted_rates(m: CPFactorization) -> torch.Tensor:
        gradient = mse_tensor_gradient(m.full(), indices, targets)
        return component_norm_rates(list(m.factors), gradient)

    def norms(m: CPFactorization) -> torch.Tensor:
        return component_norms(list(m.factors))

    return _along_trajectory(model, indices, targets, norms, predicted_rates, lr, steps, order)


def _along_trajectory(model, indices, targets, norms, rates, lr, steps, order) -> NormLawCheck:
    """Plain gradient descent recording ``norms(model)`` and ``rates(model)`` at every step; the
    measured rates are central differences of the norms."""
    track = {"norms": norms, "rates": rates}
    history = fit(
        model, indices, targets, steps=steps, lr=lr, track=track, track_every=1, progress=False
    )
    norms, predicted = history["norms"], history["rates"]
    measured = (norms[2:] - norms[:-2]) / (2 * lr)
    time = history["steps"][1:-1] * lr
    return NormLawCheck(order, time, norms[1:-1], predicted[1:-1], measured)


def hierarchical_norm_law_check(
    order: int = 4,
    *,
    pool: int = 2,
    dim: int = 3,
    widths: int = 4,
    target_rank: int = 2,
    init_std: float = 0.5,
    lr: float = 5e-3,
    steps: int = 6000,
    seed: int = 0,
) -> NormLawCheck:
    r""":func:`norm_law_check` for the local components of a balanced hierarchical factorization
    (all nodes' components as columns, level by level), against the law's rate
    :math:`K \|\mathcal{C}\|^{1-2/K} \langle -\partial \mathcal{L} / \partial \mathbf{w},
    \mathbf{w} \rangle` (:math:`\mathbf{w}` any of the component's K vectors: its node's row).
    Half the entries of a CP target with entries of order one are observed.

    Explained in the "Beyond CP: hierarchical tensor factorization" chapter.
    """
    shape, dtype = (dim,) * order, torch.float64
    target = random_cp_tensor(shape, target_rank, dim ** (order / 2), seed=seed, dtype=dtype)
    indices = sample_entries(shape, dim**order // 2, seed=seed + 1)
    targets = observe(target, indices)
    model = HierarchicalFactorization(
        shape, widths, init_std, pool=pool, seed=seed + 2, dtype=dtype
    )
    model.balance()

    def norms(m: HierarchicalFactorization) -> torch.Tensor:
        return torch.cat([n.flatten() for n in m.local_component_norms()])

    def rates(m: HierarchicalFactorization) -> torch.Tensor:
        own = [*m.inner, m.output]  # the row of each local component, at every level
        with torch.enable_grad():
            gradients = torch.autograd.grad(nn.functional.mse_loss(m(indices), targets), own)
        result = []
        for level, (w, g, n) in enumerate(zip(own, gradients, m.local_component_norms()), 1):
            k = torch.tensor([[len(kids) + 1.0] for kids, _ in m.local_vectors(level)])
            result.append(-k * n ** (1 - 2 / k) * (w * g).reshape(*n.shape, -1).sum(-1))
        return torch.cat([r.flatten() for r in result])

    return _along_trajectory(model, indices, targets, norms, rates, lr, steps, order)
