r"""What the theorems predict, so that measurements can be compared with predictions.

Notation: the CP factorization :math:`\mathcal{W} = \sum_r \mathcal{W}_r` with components
:math:`\mathcal{W}_r = \mathbf{w}_r^1 \otimes \cdots \otimes \mathbf{w}_r^N`, a loss
:math:`\mathcal{L}(\mathcal{W})` of the end tensor, and gradient flow
:math:`\frac{d}{dt}\mathbf{w}_r^n = -\partial \mathcal{L} / \partial \mathbf{w}_r^n`.

Explained in the CP dynamics chapter.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tflib.cp import check_factors, component_norms, khatri_rao


def component_inner_products(factors: Sequence[torch.Tensor], tensor: torch.Tensor) -> torch.Tensor:
    r"""Inner products :math:`\langle \mathcal{T}, \mathcal{W}_r \rangle` with every component.

    :math:`\mathcal{W}_r = \mathbf{w}_r^1 \otimes \cdots \otimes \mathbf{w}_r^N`.

    Returns
    -------
    tensor of shape (R,)
    """
    shape = check_factors(factors)
    if tuple(tensor.shape) != shape:
        raise ValueError(f"tensor has shape {tuple(tensor.shape)}, the factors describe {shape}")
    return tensor.reshape(-1) @ khatri_rao(factors)


def component_norm_rates(
    factors: Sequence[torch.Tensor], loss_gradient: torch.Tensor
) -> torch.Tensor:
    r"""The rate :math:`\frac{d}{dt}\|\mathcal{W}_r\|` the component-norm theorem predicts.

    For a balanced factorization (:math:`\|\mathbf{w}_r^1\| = \cdots = \|\mathbf{w}_r^N\|`, which
    gradient flow preserves), Theorem 1 of Razin, Maman & Cohen (2021) gives exactly

    .. math::
        \frac{d}{dt}\|\mathcal{W}_r\| = N \, \|\mathcal{W}_r\|^{2 - 2/N}
        \left\langle -\nabla \mathcal{L}(\mathcal{W}),\, \widehat{\mathcal{W}}_r \right\rangle,
        \qquad \widehat{\mathcal{W}}_r = \mathcal{W}_r / \|\mathcal{W}_r\| .

    Explained in the CP dynamics chapter.

    Parameters
    ----------
    factors : sequence of N tensors of shape (d_n, R), balanced
    loss_gradient : :math:`\nabla \mathcal{L}(\mathcal{W})`, shape (d_1, ..., d_N)

    Returns
    -------
    tensor of shape (R,)
    """
    order = len(factors)
    norms = component_norms(factors)
    inner = component_inner_products(factors, loss_gradient)
    # <-grad, W_r / ||W_r||> * N ||W_r||^(2 - 2/N), written without dividing by a zero norm
    return -order * inner * norms ** (1 - 2 / order)


def mse_tensor_gradient(
    tensor: torch.Tensor, indices: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    r"""Gradient :math:`\nabla \mathcal{L}(\mathcal{W})` of the mean squared error on observations.

    For :math:`\mathcal{L}(\mathcal{W}) = \frac{1}{M} \sum_m (\mathcal{W}_{i^{(m)}} - y_m)^2` it is
    zero off the observed entries and :math:`\frac{2}{M}(\mathcal{W}_{i^{(m)}} - y_m)` on them.
    """
    positions = tuple(indices.T)
    residual = tensor[positions] - targets
    return torch.zeros_like(tensor).index_put(
        positions, 2 * residual / len(targets), accumulate=True
    )


def trajectory_distances(tensors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    r"""Distances :math:`\|\mathcal{W}(t) - \overline{\mathcal{W}}(t)\| /
    \|\overline{\mathcal{W}}(t)\|` between two trajectories of T tensors recorded at the same
    steps, as arrays of shape (T, ...); returns shape (T,).

    Explained in the rank-one convergence chapter.
    """
    tensors, reference = np.asarray(tensors), np.asarray(reference)
    if tensors.shape != reference.shape or tensors.ndim < 2:
        raise ValueError(
            f"trajectories of shapes {tensors.shape} and {reference.shape} cannot be compared: "
            "record both as (T, ...) arrays at the same steps"
        )
    difference = np.linalg.norm((tensors - reference).reshape(len(tensors), -1), axis=1)
    return difference / np.linalg.norm(reference.reshape(len(reference), -1), axis=1)
