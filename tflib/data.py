"""Tensor-completion problems: synthetic low-rank targets and observed entries; natural data
sets (the bundled digits; MNIST and Fashion-MNIST from :mod:`tflib.mnist`) turned into completion
problems, with their randomized variants.

Explained in the CP dynamics, "Tensor completion as prediction" and "Natural vs. random data"
chapters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from tflib.cp import cp_to_tensor
from tflib.hierarchical import HierarchicalFactorization


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
    tensor = cp_to_tensor(random_cp_factors(shape, rank, seed=seed))
    return _scaled(tensor, fro_norm, device, dtype)


def _scaled(tensor: torch.Tensor, fro_norm: float | None, device, dtype) -> torch.Tensor:
    if fro_norm is not None and not fro_norm > 0:
        raise ValueError(
            f"fro_norm must be positive (or None to keep the drawn scale), got {fro_norm}"
        )
    if fro_norm is not None:
        tensor = tensor * (fro_norm / tensor.norm())
    return tensor.to(device=device, dtype=dtype)


def random_hierarchical_tensor(
    shape: Sequence[int],
    ranks: Sequence[int],
    fro_norm: float | None = 1.0,
    *,
    pool: int = 2,
    seed: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""A random tensor whose matricization at a node of level l of the mode tree of ``pool`` has
    rank at most ``ranks[l]``: a :class:`~tflib.hierarchical.HierarchicalFactorization` of widths
    ``ranks``, its matrices i.i.d. standard normal (drawn as :func:`random_cp_tensor` draws its
    factors) and its output weights ones, scaled as there. One level
    (``pool >= N``) gives the tensor :func:`random_cp_tensor` draws with the same seed.

    Explained in the "Beyond CP: hierarchical tensor factorization" chapter.
    """
    model = HierarchicalFactorization(shape, ranks, 0.0, pool=pool, seed=0, dtype=torch.float64)
    generator = _generator(seed)
    with torch.no_grad():
        for weights in [*model.leaves, *model.inner]:
            weights.copy_(torch.randn(weights.shape, generator=generator, dtype=torch.float64))
        model.output.fill_(1.0)
        return _scaled(model.full(), fro_norm, device, dtype)


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


# --- prediction tasks as tensor completion -------------------------------------------------------
#
# A labelled data set whose inputs have N discrete features, each taking one of k levels, is a
# tensor-completion problem: an input addresses one entry of a tensor of shape (k, ..., k), its
# label is that entry's value. Explained in the "Tensor completion as prediction" chapter.


class CompletionData(NamedTuple):
    """A prediction task as tensor completion: ``indices`` (M, N), ``targets`` (M,), and the
    ``shape`` (k, ..., k) of the tensor they index."""

    indices: torch.Tensor
    targets: torch.Tensor
    shape: tuple[int, ...]


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 handwritten digits (8 x 8 pixels, bundled with the package: offline).

    Returns
    -------
    images : float32 tensor of shape (1797, 8, 8), intensities in [0, 1]
    labels : int64 tensor of shape (1797,), the digits 0 to 9
    """
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32)
    return images, torch.tensor(digits.target, dtype=torch.int64)


def quantize(images: torch.Tensor, levels: int) -> torch.Tensor:
    r"""Intensities in [0, 1] to the levels :math:`0, \ldots, k - 1`, by rounding
    :math:`x (k-1)`; a value half-way between two levels goes up. ``levels=2`` binarizes, as the
    paper does (an intensity of at least 1/2 becomes 1).

    Returns
    -------
    uint8 tensor of the shape of ``images``
    """
    if not 2 <= levels <= 256:
        raise ValueError(f"levels must be between 2 and 256, got {levels}")
    images = torch.as_tensor(images, dtype=torch.float64)
    if images.numel() and not (
        torch.isfinite(images).all() and 0 <= images.min() <= images.max() <= 1
    ):
        raise ValueError(
            "intensities must be finite and lie in [0, 1]; scale the images first "
            f"(got values in [{float(images.min())}, {float(images.max())}])"
        )
    return torch.floor(images * (levels - 1) + 0.5).to(torch.uint8)


def one_vs_all(labels: torch.Tensor, positive: int = 6, value: float = 2.0) -> torch.Tensor:
    """Regression targets of the paper: ``value`` for the class ``positive``, 0 for every other."""
    labels = torch.as_tensor(labels)
    return torch.where(labels == positive, value, 0.0).to(torch.float32)


def completion_data(features: torch.Tensor, targets: torch.Tensor, levels: int) -> CompletionData:
    """The task "predict ``targets`` from ``features``" as tensor completion.

    Parameters
    ----------
    features : integer tensor of shape (M, ...), every value one of the levels 0 to k - 1 (the
        output of :func:`quantize`); each example is flattened to its N features
    targets : tensor of shape (M,)
    levels : k, the number of values each feature takes

    Returns
    -------
    :class:`CompletionData` with indices of shape (M, N) (uint8) into a tensor of shape (k,) * N
    """
    features, targets = torch.as_tensor(features), torch.as_tensor(targets)
    if len(features) == 0:
        raise ValueError("the data set is empty: there is nothing to complete")
    if targets.shape != (len(features),):
        raise ValueError(
            f"{len(features)} examples but targets of shape {tuple(targets.shape)}; "
            "give one target per example"
        )
    if features.is_floating_point() or not 2 <= levels <= 256:
        raise ValueError("features must be integer levels (see quantize) and 2 <= levels <= 256")
    low, high = int(features.min()), int(features.max())
    if low < 0 or high >= levels:
        raise ValueError(f"feature values span [{low}, {high}] but must lie in [0, {levels - 1}]")
    indices = features.reshape(len(features), -1).to(torch.uint8)
    return CompletionData(indices, targets.to(torch.float32), (levels,) * indices.shape[1])


def random_labels(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """The labels in a random order: each label count is kept, any tie to the inputs is lost."""
    return labels[torch.randperm(len(labels), generator=_generator(seed))]


def random_images(features: torch.Tensor, levels: int, seed: int) -> torch.Tensor:
    """Images of uniformly random levels, of the shape of ``features`` (the labels stay)."""
    shape = torch.as_tensor(features).shape
    return torch.randint(levels, shape, generator=_generator(seed), dtype=torch.uint8)
