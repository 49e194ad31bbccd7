r"""CP (CANDECOMP/PARAFAC) tensors.

A CP factorization with :math:`R` components writes an order-:math:`N` tensor
:math:`\mathcal{W} \in \mathbb{R}^{d_1 \times \cdots \times d_N}` as a sum of outer products,

.. math:: \mathcal{W} = \sum_{r=1}^{R} \mathbf{w}_r^1 \otimes \cdots \otimes \mathbf{w}_r^N ,

stored, as in TensorLy, as ``factors``: N matrices :math:`W^n \in \mathbb{R}^{d_n \times R}` whose
r-th columns are the vectors :math:`\mathbf{w}_r^n`.

Entries can be computed two ways that give the same numbers:

* **dense**: build the whole tensor as one matrix product of two Khatri–Rao products (the first
  modes against the last ones) and read the requested entries. Matrix products run near the
  machine's peak, so this wins whenever the tensor is small, as in the dynamics chapter;
* **gather**: for each requested index, multiply the N factor rows it selects. Memory grows with
  the number of requested entries, not with the tensor, so this is the only way for large tensors.

Both are differentiable by autograd. Training takes a faster route on the dense path:
:meth:`CPFactorization.loss_and_gradients` computes the loss and its gradient in closed form.

Explained in the CP dynamics chapter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from tflib.checks import check_indices, check_number, check_same_device

#: Largest tensor (number of entries) that :func:`cp_entries` builds in full when asked for "auto".
DENSE_MAX_ENTRIES = 2**22
#: In "auto" mode the full tensor is built only if it has at most this many entries per request.
DENSE_ENTRIES_PER_REQUEST = 64


def check_factors(factors: Sequence[torch.Tensor]) -> tuple[int, ...]:
    """Validate CP factors and return the shape of the tensor they represent.

    Raises ``ValueError`` (or ``TypeError``) with a message naming the problem: no factors, a
    factor that is not a matrix, factors with different numbers of columns, devices or dtypes.
    """
    if isinstance(factors, torch.Tensor) or len(factors) == 0:
        raise ValueError("factors must be a non-empty sequence of (d_n, R) matrices, one per mode")
    for n, factor in enumerate(factors):
        if not isinstance(factor, torch.Tensor):
            raise TypeError(f"factor {n} is a {type(factor).__name__}, expected a torch.Tensor")
        if factor.ndim != 2:
            raise ValueError(f"factor {n} has shape {tuple(factor.shape)}; expected (d_{n}, R)")
        if not factor.is_floating_point():
            raise TypeError(f"factor {n} has dtype {factor.dtype}; expected a floating dtype")
    ranks = {f.shape[1] for f in factors}
    if len(ranks) > 1:
        columns = [f.shape[1] for f in factors]
        raise ValueError(f"factors must share the number of components R; got columns {columns}")
    check_same_device(**{f"factor {n}": f for n, f in enumerate(factors)})
    dtypes = {f.dtype for f in factors}
    if len(dtypes) > 1:
        raise TypeError(f"factors have different dtypes {sorted(map(str, dtypes))}; use one")
    return tuple(f.shape[0] for f in factors)


def khatri_rao(matrices: Sequence[torch.Tensor]) -> torch.Tensor:
    r"""Column-wise Kronecker product of matrices :math:`A^k \in \mathbb{R}^{d_k \times R}`.

    Row :math:`(i_1, \ldots, i_K)`, in row-major order (the first matrix's index varies slowest),
    column r holds :math:`\prod_k A^k_{i_k r}`.

    Returns
    -------
    tensor of shape :math:`(\prod_k d_k, R)`
    """
    product = matrices[0]
    for matrix in matrices[1:]:
        product = (product[:, None, :] * matrix[None, :, :]).reshape(-1, matrix.shape[1])
    return product


def _split_point(shape: Sequence[int]) -> int:
    """The mode k, 1 <= k < N, that makes prod(shape[:k]) and prod(shape[k:]) most balanced."""
    total = math.prod(shape)
    return min(range(1, len(shape)), key=lambda k: abs(math.log(math.prod(shape[:k]) ** 2 / total)))


def _khatri_rao_backward(
    grad: torch.Tensor, matrices: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """Gradients with respect to each matrix, given the gradient of their Khatri–Rao product."""
    if len(matrices) == 1:
        return [grad]
    dims, rank = [m.shape[0] for m in matrices], grad.shape[1]
    grad = grad.reshape(*dims, rank)
    grads = []
    for k in range(len(matrices)):
        # the product of the other matrices, laid out along their own axes (size 1 along axis k)
        others = khatri_rao([m for j, m in enumerate(matrices) if j != k])
        others = others.reshape(*[1 if j == k else d for j, d in enumerate(dims)], rank)
        grads.append((grad * others).sum(dim=[j for j in range(len(dims)) if j != k]))
    return grads


def _dense_factor_gradients(
    scattered: torch.Tensor,
    left: torch.Tensor,
    right: torch.Tensor,
    factors: Sequence[torch.Tensor],
    split: int,
) -> list[torch.Tensor]:
    r"""Gradients of :math:`\langle G, L R^\top \rangle` with respect to each factor.

    :math:`G` is a ``(P, Q)`` gradient on the full tensor; the gradients of :math:`L` and
    :math:`R` are :math:`G R` and :math:`G^\top L`, then the Khatri–Rao products' chain rule.
    """
    return [
        *_khatri_rao_backward(scattered @ right, factors[:split]),
        *_khatri_rao_backward(scattered.T @ left, factors[split:]),
    ]


def _dense_squared_error(
    flat: torch.Tensor, targets: torch.Tensor, split: int, factors: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    r"""The loss :math:`\frac1M \sum_m (\mathcal{W}_{i^{(m)}} - y_m)^2` and its gradient with
    respect to every factor, in closed form on the dense path.

    One pass builds the full tensor and the residuals at the observed (flat) positions; the
    gradient scatters :math:`\frac2M` times the residuals onto the full tensor and applies
    :func:`_dense_factor_gradients`. No autograd graph is built: this is the training step of the
    dynamics chapter at the speed of its three matrix products.
    """
    left, right = khatri_rao(factors[:split]), khatri_rao(factors[split:])
    residual = (left @ right.T).reshape(-1).take(flat) - targets
    scattered = residual.new_zeros(left.shape[0] * right.shape[0])
    scattered.index_add_(0, flat, residual * (2 / len(residual)))
    scattered = scattered.reshape(left.shape[0], right.shape[0])
    loss = residual.dot(residual) / len(residual)
    return loss, _dense_factor_gradients(scattered, left, right, factors, split)


def _dense(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The full tensor as a ``(P, Q)`` matrix, the product of two Khatri–Rao products."""
    if len(factors) == 1:
        return factors[0].sum(dim=1, keepdim=True)
    k = _split_point([f.shape[0] for f in factors])
    return khatri_rao(factors[:k]) @ khatri_rao(factors[k:]).T


def _dense_entries(factors: Sequence[torch.Tensor], indices: torch.Tensor) -> torch.Tensor:
    return _dense(factors).reshape(-1).take(flat_indices(indices, [f.shape[0] for f in factors]))


def cp_to_tensor(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    r"""The full tensor :math:`\sum_r \mathbf{w}_r^1 \otimes \cdots \otimes \mathbf{w}_r^N`.

    Explained in the CP dynamics chapter.

    Parameters
    ----------
    factors : sequence of N tensors of shape (d_n, R)

    Returns
    -------
    tensor of shape (d_1, ..., d_N)
    """
    shape = check_factors(factors)
    return _dense(factors).reshape(shape)


def flat_indices(indices: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Row-major positions of ``(M, N)`` multi-indices in a flattened tensor of ``shape``."""
    strides = [math.prod(shape[n + 1 :]) for n in range(len(shape))]
    return (indices.to(torch.int64) * torch.tensor(strides, device=indices.device)).sum(dim=1)


def _gathered(factors: Sequence[torch.Tensor], indices: torch.Tensor) -> torch.Tensor:
    """Entries from the factor rows each index selects: memory O(M R), whatever the tensor size."""
    indices = indices.to(torch.int64)
    product = factors[0].index_select(0, indices[:, 0])
    for n in range(1, len(factors)):
        product = product * factors[n].index_select(0, indices[:, n])
    return product.sum(dim=1)


def uses_dense_path(shape: Sequence[int], n_requested: int) -> bool:
    """Whether "auto" builds the full tensor: it is small, and small next to the request."""
    entries = math.prod(shape)
    return entries <= DENSE_MAX_ENTRIES and entries <= DENSE_ENTRIES_PER_REQUEST * n_requested


def cp_entries(
    factors: Sequence[torch.Tensor], indices: torch.Tensor, method: str = "auto"
) -> torch.Tensor:
    r"""Entries :math:`\mathcal{W}_{i_1 \ldots i_N}` of a CP tensor at a list of multi-indices.

    Explained in the CP dynamics chapter.

    Parameters
    ----------
    factors : sequence of N tensors of shape (d_n, R)
    indices : integer tensor of shape (M, N); row m is the multi-index of the m-th entry
    method : "auto", "dense" or "gather"
        "dense" builds the full tensor through Khatri–Rao products and reads the entries;
        "gather" multiplies the factor rows each index selects; "auto" takes "dense" when the
        tensor is small (see :func:`uses_dense_path`). Both give the same numbers and gradients.

    Returns
    -------
    tensor of shape (M,)
    """
    check_method(method)
    shape = check_factors(factors)
    check_same_device(factors=factors[0], indices=indices)
    check_indices(indices, shape)
    return _entries(factors, indices, method)


def check_method(method: str) -> None:
    if method not in ("auto", "dense", "gather"):
        raise ValueError(f'method must be "auto", "dense" or "gather", got {method!r}')


def _entries(factors: Sequence[torch.Tensor], indices: torch.Tensor, method: str) -> torch.Tensor:
    """:func:`cp_entries` without the checks, for callers that made them already."""
    if method == "auto":
        shape = [f.shape[0] for f in factors]
        method = "dense" if uses_dense_path(shape, indices.shape[0]) else "gather"
    if method == "dense":
        return _dense_entries(factors, indices)
    return _gathered(factors, indices)


def component_norms(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    r"""Frobenius norms of the R rank-one components of a CP factorization.

    The r-th component is :math:`\mathbf{w}_r^1 \otimes \cdots \otimes \mathbf{w}_r^N`; its norm is
    the product of the norms of its factor vectors, :math:`\prod_n \|\mathbf{w}_r^n\|`.

    Explained in the CP dynamics chapter.

    Parameters
    ----------
    factors : sequence of N tensors of shape (d_n, R)

    Returns
    -------
    tensor of shape (R,)
    """
    check_factors(factors)
    return torch.stack([f.norm(dim=0) for f in factors]).prod(dim=0)


def balance_factors(factors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    r"""Rescale each component's factor vectors to a common norm, keeping the tensor unchanged.

    Afterwards :math:`\|\mathbf{w}_r^1\| = \cdots = \|\mathbf{w}_r^N\| = \|\mathcal{W}_r\|^{1/N}`
    for every component r: the *balanced* initialization under which the component-norm law of
    the dynamics chapter holds exactly for gradient flow.

    Explained in the CP dynamics chapter.
    """
    check_factors(factors)
    vector_norms = [f.norm(dim=0) for f in factors]
    common = torch.stack(vector_norms).prod(dim=0) ** (1 / len(factors))
    tiny = torch.finfo(common.dtype).tiny  # a zero component stays zero instead of 0/0
    return [f * (common / norms.clamp_min(tiny)) for f, norms in zip(factors, vector_norms)]


class CPFactorization(nn.Module):
    r"""A CP tensor whose factor vectors are trainable parameters.

    :math:`\mathcal{W} = \sum_{r=1}^R \mathbf{w}_r^1 \otimes \cdots \otimes \mathbf{w}_r^N`.

    Explained in the CP dynamics chapter.

    Parameters
    ----------
    shape : dimensions :math:`(d_1, \ldots, d_N)` of the tensor
    rank : number of components R
    init_std : standard deviation of the i.i.d. normal factor entries at initialization
        (the *init scale*); must be non-negative
    init_mean : mean of the factor entries at initialization
    seed : seeds the initialization; the draw is made on the CPU so that a seed gives the same
        factors on every device
    device, dtype : where the factors live and their precision
    method : how entries are computed, as in :func:`cp_entries`

    Attributes
    ----------
    factors : ``nn.ParameterList`` of N parameters of shape (d_n, R); set them by hand with
        ``model.factors[n].data.copy_(...)`` or :meth:`set_factors`.
    """

    def __init__(
        self,
        shape: Sequence[int],
        rank: int,
        init_std: float,
        init_mean: float = 0.0,
        *,
        seed: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        method: str = "auto",
    ) -> None:
        super().__init__()
        shape = tuple(int(d) for d in shape)
        if not shape or min(shape) < 1:
            raise ValueError(f"shape must be a non-empty list of positive dimensions, got {shape}")
        if rank < 1:
            raise ValueError(f"rank must be a positive number of components, got {rank}")
        check_number("init_std", init_std, low=0)
        check_number("init_mean", init_mean)
        check_method(method)
        self.shape, self.rank, self.method = shape, int(rank), method
        self._checked_indices: tuple[torch.Tensor, int, torch.Tensor] | None = None
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.factors = nn.ParameterList(
            nn.Parameter(
                (
                    torch.randn(d, rank, generator=generator, dtype=torch.float64) * init_std
                    + init_mean
                ).to(device=device, dtype=dtype)
            )
            for d in shape
        )

    @property
    def order(self) -> int:
        """The number of modes N."""
        return len(self.shape)

    @property
    def device(self) -> torch.device:
        return self.factors[0].device

    def _check(self, indices: torch.Tensor) -> torch.Tensor:
        """Check indices and return their flat positions, once: training passes the same tensor
        at every step."""
        checked = self._checked_indices
        if checked is None or checked[0] is not indices or checked[1] != indices._version:
            check_same_device(model=self.factors[0], indices=indices)
            check_indices(indices, self.shape)
            checked = (indices, indices._version, flat_indices(indices, self.shape))
            self._checked_indices = checked
        return checked[2]

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        """Entries at the ``(M, N)`` multi-indices, shape ``(M,)``."""
        self._check(indices)
        return _entries(list(self.factors), indices, self.method)

    def loss_and_gradients(
        self, indices: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The mean squared error at the observed entries and its gradient for every factor.

        On the dense path both come in closed form, without autograd (:func:`~tflib.train.fit` calls
        this); on the gather path autograd computes the gradient.
        """
        flat = self._check(indices)
        if targets.shape != indices.shape[:1]:
            raise ValueError(f"targets of shape {tuple(targets.shape)} do not match the indices")
        factors = list(self.factors)
        method = self.method
        if method == "auto":
            method = "dense" if uses_dense_path(self.shape, len(indices)) else "gather"
        if method == "gather" or self.order == 1:
            loss = nn.functional.mse_loss(_entries(factors, indices, method), targets)
            return loss.detach(), list(torch.autograd.grad(loss, factors))
        with torch.no_grad():
            return _dense_squared_error(flat, targets, _split_point(self.shape), factors)

    def full(self) -> torch.Tensor:
        """The whole tensor, shape ``(d_1, ..., d_N)``."""
        return cp_to_tensor(list(self.factors))

    def component_norms(self) -> torch.Tensor:
        """Norms of the R components, shape ``(R,)``; see :func:`component_norms`."""
        return component_norms(list(self.factors))

    @torch.no_grad()
    def set_factors(self, factors: Sequence[torch.Tensor]) -> None:
        """Copy the given factors (shapes as in ``self.factors``) into the parameters."""
        for n, (parameter, factor) in enumerate(zip(self.factors, factors, strict=True)):
            if factor.shape != parameter.shape:
                raise ValueError(
                    f"factor {n} has shape {tuple(factor.shape)}, expected {tuple(parameter.shape)}"
                )
            parameter.copy_(factor)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, rank={self.rank}, method={self.method!r}"
