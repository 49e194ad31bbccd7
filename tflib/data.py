"""Synthetic tensor-completion problems: low-rank targets and sets of observed entries.

Explained in the CP dynamics chapter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from tflib.cp import cp_to_tensor


def _generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def random_cp_factors(
    shape: Sequence[int], rank: int, *, seed: int | None = None
) -> list[torch.Tensor]:
    r"""The factors :math:`W^n \in \mathbb{R}^{d_n \times R}` of a random CP tensor: i.i.d.
    standard normal entries, drawn in float64 on the CPU (the draw :func:`random_cp_tensor` uses).

    Explained in the CP dynamics chapter.

    Returns
    -------
    list of N tensors of shape (d_n, rank)
    """
    shape = tuple(int(d) for d in shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"shape must be a non-empty list of positive dimensions, got {shape}")
    if rank < 1:
        raise ValueError(f"rank must be positive, got {rank}")
    generator = _generator(seed)
    return [torch.randn(d, rank, generator=generator, dtype=torch.float64) for d in shape]


def random_cp_tensor(
    shape: Sequence[int],
    rank: int,
    fro_norm: float | None = 1.0,
    *,
    seed: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""A random tensor of CP rank at most ``rank``, as in the paper's experiments.

    The factors :math:`W^n \in \mathbb{R}^{d_n \times R}` have i.i.d. standard normal entries; the
    tensor :math:`\mathcal{W}^* = \sum_r \mathbf{w}_r^1 \otimes \cdots \otimes \mathbf{w}_r^N` is
    then rescaled to Frobenius norm ``fro_norm`` (left as drawn if ``fro_norm`` is None).
    Drawn in float64 on the CPU, so a seed gives the same tensor on every device.

    Explained in the CP dynamics chapter.

    Returns
    -------
    tensor of shape ``shape``
    """
    if fro_norm is not None and not fro_norm > 0:
        raise ValueError(
            f"fro_norm must be positive (or None to keep the drawn scale), got {fro_norm}"
        )
    tensor = cp_to_tensor(random_cp_factors(shape, rank, seed=seed))
    if fro_norm is not None:
        tensor = tensor * (fro_norm / tensor.norm())
    return tensor.to(device=device, dtype=dtype)


def sample_entries(
    shape: Sequence[int],
    n: int,
    *,
    seed: int | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``n`` distinct multi-indices drawn uniformly without replacement from a tensor of ``shape``.

    Explained in the CP dynamics chapter.

    Returns
    -------
    int64 tensor of shape (n, N), rows in the order drawn
    """
    shape = tuple(int(d) for d in shape)
    total = math.prod(shape)
    if not 0 <= n <= total:
        raise ValueError(f"cannot draw {n} distinct entries from a tensor with {total} entries")
    flat = torch.randperm(total, generator=_generator(seed))[:n]
    return torch.stack(torch.unravel_index(flat, shape), dim=1).to(device)


def observe(tensor: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """The entries of ``tensor`` at the ``(M, N)`` multi-indices, shape ``(M,)``."""
    if indices.ndim != 2 or indices.shape[1] != tensor.ndim:
        raise ValueError(
            f"indices of shape {tuple(indices.shape)} do not index a tensor of order {tensor.ndim}"
        )
    return tensor[tuple(indices.T)]
