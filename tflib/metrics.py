"""Numbers that summarize a solution: reconstruction error, effective rank, component norms.

Explained in the CP dynamics chapter.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tflib.cp import component_norms


def normalized_reconstruction_error(tensor: torch.Tensor, target: torch.Tensor) -> float:
    r"""The relative distance :math:`\|\mathcal{W} - \mathcal{W}^*\|_F / \|\mathcal{W}^*\|_F`."""
    if tensor.shape != target.shape:
        raise ValueError(
            f"tensor has shape {tuple(tensor.shape)} but target has shape {tuple(target.shape)}"
        )
    target_norm = target.norm()
    if target_norm == 0:
        raise ValueError("target is zero: the normalized error is undefined")
    return float((tensor - target).norm() / target_norm)


def effective_rank(x: torch.Tensor) -> float:
    r"""Effective rank of Roy & Vetterli (2007): :math:`\exp(-\sum_i p_i \log p_i)`.

    For a matrix, :math:`p` is its singular values divided by their sum; for a vector (say, the
    component norms of a CP factorization), :math:`p` is the vector divided by its sum. The result
    lies between 1 and the number of non-zero values, and equals k when k values are equal and the
    rest zero.
    """
    if x.ndim == 2:
        values = torch.linalg.svdvals(x.to(torch.float64))
    elif x.ndim == 1:
        values = x.to(torch.float64)
        if (values < 0).any():
            raise ValueError("effective_rank of a vector needs non-negative values")
    else:
        raise ValueError(f"effective_rank takes a matrix or a vector, got shape {tuple(x.shape)}")
    total = values.sum()
    if total == 0:
        return 0.0
    p = values[values > 0] / total
    return float(torch.exp(-(p * p.log()).sum()))


def largest_component_norms(factors: Sequence[torch.Tensor], k: int = 10) -> torch.Tensor:
    """The ``k`` largest component norms, in decreasing order (fewer if R < k)."""
    norms = component_norms(factors)
    return norms.topk(min(k, norms.numel())).values


def learned_components(norms: torch.Tensor, threshold: float) -> torch.Tensor:
    """How many components are above ``threshold`` at each recorded step.

    Parameters
    ----------
    norms : tensor of shape (T, K): component norms at T recorded steps
    threshold : the norm a component must reach to count as learned

    Returns
    -------
    int tensor of shape (T,)
    """
    return (torch.as_tensor(norms) > threshold).sum(dim=1)


def count_jumps(norms: torch.Tensor, threshold: float) -> list[int]:
    """Sizes of the successive increases in the number of learned components.

    A list of ones, of length equal to the number of large components at the end, means the
    components were learned *one at a time*: between two recorded steps at most one new
    component crossed the threshold.

    Explained in the CP dynamics chapter.
    """
    learned = learned_components(norms, threshold)
    increases = learned.diff()
    return increases[increases > 0].tolist()
