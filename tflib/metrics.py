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


def rise_steps(
    steps: Sequence[int], values: torch.Tensor, k: int, low: float = 0.05, high: float = 0.9
) -> tuple[list[int], list[int]]:
    """When each of the ``k`` largest tracked values first passes ``low`` and ``high`` times its
    final value: the start and the end of its rise.

    The ``k`` values were learned *in turn* when each rise ends before the next starts,
    ``all(e < s for e, s in zip(ends, starts[1:]))``.

    Parameters
    ----------
    steps : the T recorded steps
    values : tensor of shape (T, K), K >= k: the largest values (component norms, singular
        values) at each recorded step, in decreasing order
    k : how many of them to follow

    Returns
    -------
    (starts, ends): two lists of k steps

    Explained in the Matrix factorization chapter.
    """
    values = torch.as_tensor(values)[:, :k]
    final = values[-1]
    steps = [int(step) for step in steps]
    starts = [steps[i] for i in (values > low * final).int().argmax(dim=0).tolist()]
    ends = [steps[i] for i in (values > high * final).int().argmax(dim=0).tolist()]
    return starts, ends


def best_rank_one(
    tensor: torch.Tensor,
    *,
    restarts: int = 3,
    tol: float = 1e-10,
    max_iter: int = 200,
    seed: int = 0,
) -> tuple[float, list[torch.Tensor]]:
    r"""The best rank-one approximation :math:`\sigma\, \mathbf{u}^1 \otimes \cdots \otimes
    \mathbf{u}^N` of a tensor, as ``(sigma, [u^1, ..., u^N])`` with unit vectors, in float64.

    For a matrix, the leading singular triplet. For :math:`N \geq 3`, the higher-order power
    method: each :math:`\mathbf{u}^n` in turn becomes the contraction of the tensor with the other
    vectors, normalized, until none moves by more than ``tol``; from the leading singular vectors
    of the unfoldings and ``restarts - 1`` random starts, the largest :math:`\sigma` is kept.

    Explained in the rank-one convergence chapter.
    """
    t = tensor.detach().to(torch.float64)
    if t.ndim < 2 or t.norm() == 0:
        raise ValueError(f"need a non-zero tensor of order at least 2, got shape {tuple(t.shape)}")
    if t.ndim == 2:
        u, s, vh = torch.linalg.svd(t)
        return float(s[0]), [u[:, 0], vh[0]]
    modes, generator = list(range(t.ndim)), torch.Generator().manual_seed(seed)

    def contract(vectors: list[torch.Tensor], keep: int | None) -> torch.Tensor:
        others = [x for m in modes if m != keep for x in (vectors[m], [m])]
        return torch.einsum(t, modes, *others, [] if keep is None else [keep])

    unfoldings = [t.movedim(n, 0).reshape(t.shape[n], -1) for n in modes]
    starts = [[torch.linalg.svd(a, full_matrices=False)[0][:, 0] for a in unfoldings]]
    starts += [
        [torch.randn(d, generator=generator, dtype=t.dtype) for d in t.shape]
        for _ in range(restarts - 1)
    ]
    best: tuple[float, list[torch.Tensor]] = (-1.0, [])
    for vectors in starts:
        vectors = [v / v.norm() for v in vectors]
        for _ in range(max_iter):
            moved = 0.0
            for n in modes:
                new = contract(vectors, n)
                new = new / new.norm()
                moved, vectors[n] = max(moved, float((new - vectors[n]).norm())), new
            if moved < tol:
                break
        best = max(best, (float(contract(vectors, None)), vectors), key=lambda b: b[0])
    return best


def rank_one_distance(tensor: torch.Tensor, **options) -> float:
    r"""The distance to the rank-one tensors relative to the norm, between 0 and 1, through
    :func:`best_rank_one` (``options`` passed on). The residual is computed entry by entry in
    float64, so that distances down to about :math:`10^{-12}` are resolved.

    Explained in the rank-one convergence chapter.
    """
    sigma, vectors = best_rank_one(tensor, **options)
    approximation = sigma * vectors[0]
    for vector in vectors[1:]:
        approximation = approximation[..., None] * vector
    t = tensor.detach().to(torch.float64)
    return float((t - approximation).norm() / t.norm())
