r"""A CP factorization as a neural network, numerically sound for hundreds of input positions.

Read an index :math:`(i_1, \ldots, i_N)` as an input of N discrete variables. The network

1. represents variable n by its one-hot vector :math:`\mathbf{e}_{i_n} \in \mathbb{R}^{d_n}`;
2. maps it linearly to R channels, :math:`\mathbf{h}_n = (W^n)^\top \mathbf{e}_{i_n}` (row
   :math:`i_n` of the factor matrix :math:`W^n`);
3. pools the positions by a product, channel by channel: :math:`p_r = \prod_n [\mathbf{h}_n]_r`;
4. sums the channels: the output :math:`\sum_r p_r` is the CP entry :math:`\mathcal{W}_{i_1 \ldots
   i_N}`.

Step 3 multiplies N numbers per channel: for N = 784 (binary MNIST) the product under- or overflows
in float32 long before the end. So it is computed in the log domain. With :math:`l_r` the sum of
:math:`\log |[\mathbf{h}_n]_r|` over the non-zero factors, :math:`s_r` the number of negative ones
and :math:`z_r` the number of zeros, :math:`p_r = (-1)^{s_r} e^{l_r} [z_r = 0]`. All three sums
are linear in the one-hot inputs, so matrix products of the encoded inputs, shape (B, K), with
tables of shape (K, R) evaluate a whole batch: one for :math:`l_r`, and one for the counts
:math:`s_r` and :math:`z_r` over only the inputs' columns at which some factor's sign (or being
zero) differs from its mode's reference level, usually few (none while every factor is positive);
the gradient is one more matrix product.

Explained in the "Tensor completion as prediction" chapter; the engine of the "Natural vs. random
data" chapter.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from tflib.checks import check_indices, check_number
from tflib.cp import component_norms, cp_to_tensor


def _log_table(weight: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """log|w| per entry of ``weight`` (K, R), 0 where w = 0, padded with zero columns to a width
    that is a multiple of 16, where matrix products run fastest; and whether some w is 0."""
    magnitude = weight.abs()
    has_zero = bool(magnitude.amin() == 0)
    logs = torch.where(magnitude == 0, 0.0, magnitude.log()) if has_zero else magnitude.log_()
    return _padded(logs), has_zero


def _padded(matrix: torch.Tensor) -> torch.Tensor:
    return nn.functional.pad(matrix, (0, -matrix.shape[1] % 16))


class _Layout:
    """Where the rows of the stacked factors sit: mode n, level j is row ``offset[n] + j``.

    A batch is encoded by the indicators :math:`[i_n = j]` for the levels :math:`j \\geq 1`
    (level 0 is the reference every table entry is relative to): K columns in all.
    """

    def __init__(self, shape: Sequence[int], device: torch.device) -> None:
        offsets = [0, *itertools.accumulate(shape)][:-1]
        self.rows = torch.tensor(
            [o + j for o, d in zip(offsets, shape) for j in range(1, d)], device=device
        )
        self.reference = torch.tensor(
            [o for o, d in zip(offsets, shape) for _ in range(1, d)], device=device
        )
        self.mode = torch.tensor(
            [n for n, d in enumerate(shape) for _ in range(1, d)], device=device
        )
        self.level = torch.tensor([j for d in shape for j in range(1, d)], device=device)
        self.offsets = torch.tensor(offsets, device=device)
        self.modes = len(shape)
        self.binary = all(d == 2 for d in shape)
        if self.binary:  # rows 2n and 2n + 1: strided views select them faster than index lists
            self.reference = self.offsets = slice(0, None, 2)
            self.rows = slice(1, None, 2)

    def encode(self, indices: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The (B, K) indicators of the non-reference levels of each input."""
        if self.binary:  # one column per mode: the indicator of level 1 is the index itself
            return indices.to(dtype)
        return (indices[:, self.mode] == self.level).to(dtype)


def _relative(table: torch.Tensor, layout: _Layout) -> tuple[torch.Tensor, torch.Tensor]:
    """A per-row table as what the encoded inputs multiply: the rows of the non-reference levels
    minus their mode's reference row, shape (K, ·), and the sum of the reference rows."""
    return table[layout.rows] - table[layout.reference], table[layout.offsets].sum(dim=0)


def _counts(encoded: torch.Tensor, indicators: torch.Tensor, layout: _Layout) -> torch.Tensor:
    """For every input, the number of its selected factors at which each column of the 0/1
    ``indicators`` (one row per factor row) is 1: a matrix product over only the encoded columns
    whose level and reference differ in some column, shape (B, ·); exact integers."""
    relative, base = _relative(indicators.to(encoded.dtype), layout)
    used = relative.ne(0).any(dim=1).nonzero().flatten()
    if len(used) > relative.shape[0] // 2:  # most columns differ: the whole product is cheaper
        return torch.addmm(base, encoded, relative)
    return torch.addmm(base, encoded.index_select(1, used), relative.index_select(0, used))


def _components(
    encoded: torch.Tensor, weight: torch.Tensor, layout: _Layout
) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""Every channel's product :math:`p_r` for every input, shape (B, R), and, if some factor is
    zero, the product of each channel's non-zero factors where exactly one is zero (what the
    gradient at that zero needs; None otherwise). Signs are counted only in the channels that
    have a negative factor."""
    table, has_zero = _log_table(weight)
    relative, base = _relative(table, layout)
    magnitude = torch.addmm(base, encoded, relative)[:, : weight.shape[1]].exp()
    channels = (weight.amin(dim=0) < 0).nonzero().flatten()  # those with a negative factor
    if len(channels):
        negative = weight.index_select(1, channels) < 0
        odd = _counts(encoded, negative, layout).round().to(torch.int32) & 1
        flipped = magnitude.index_select(1, channels) * (1 - 2 * odd)
        magnitude.index_copy_(1, channels, flipped)
    if not has_zero:
        return magnitude, None
    zeros = _counts(encoded, weight == 0, layout).round()
    return torch.where(zeros == 0, magnitude, 0.0), torch.where(zeros == 1, magnitude, 0.0)


def _weight_gradient(
    grad: torch.Tensor,
    encoded: torch.Tensor,
    products: torch.Tensor,
    others: torch.Tensor | None,
    weight: torch.Tensor,
    layout: _Layout,
) -> torch.Tensor:
    r"""Gradient for the stacked factors, given the gradient ``grad`` (B, R) of the products.

    :math:`\partial p_r / \partial w = p_r / w` for a non-zero factor w, and the product of the
    others for a zero one; summed over the inputs that select each row: one matrix product for the
    non-reference levels, and the total minus those for the reference level.
    """
    rank = weight.shape[1]
    weighted = grad * products if others is None else torch.cat([grad * products, grad * others], 1)
    selected = (_padded(weighted).T @ encoded).T[:, : weighted.shape[1]]
    per_mode = selected  # binary modes have one non-reference level each
    if not layout.binary:
        per_mode = selected.new_zeros(layout.modes, selected.shape[1])
        per_mode.index_add_(0, layout.mode, selected)
    by_row = selected.new_empty(weight.shape[0], selected.shape[1])
    by_row[layout.offsets] = weighted.sum(dim=0) - per_mode
    by_row[layout.rows] = selected
    if others is None:
        return by_row / weight
    return torch.where(
        weight == 0, by_row[:, rank:], by_row[:, :rank] / weight.where(weight != 0, 1.0)
    )


class _LogDomainProducts(torch.autograd.Function):
    """:func:`_components` with its closed-form gradient (exact at zero factors too)."""

    @staticmethod
    def forward(ctx, encoded: torch.Tensor, weight: torch.Tensor, layout: _Layout) -> torch.Tensor:
        products, others = _components(encoded, weight, layout)
        ctx.save_for_backward(encoded, products, weight)
        ctx.others, ctx.layout = others, layout
        return products

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        encoded, products, weight = ctx.saved_tensors
        return None, _weight_gradient(grad, encoded, products, ctx.others, weight, ctx.layout), None


class CPNetwork(nn.Module):
    r"""A CP factorization read as a network: one-hot inputs, a linear map to R channels per
    position, product pooling over positions, a sum at the output (see the module's docstring).

    Its outputs equal :func:`~tflib.cp.cp_entries` of :attr:`factors`, computed in the log domain so
    that they stay finite for hundreds of positions. With ``rank`` a sequence of ranks
    :math:`(R_1, \ldots, R_G)`, the module holds G independent factorizations side by side (one
    evaluation trains several models at once) and outputs shape (B, G).

    Explained in the "Tensor completion as prediction" chapter.

    Parameters
    ----------
    shape : :math:`(d_1, \ldots, d_N)`, the number of values of each input variable
    rank : R, or a sequence of ranks for several models side by side
    init_std, init_mean : the factor entries are drawn i.i.d. normal with this std and mean (the
        paper's natural-data experiments use mean 1 and std 1e-3, so the products start near 1)
    seed, device, dtype : as for :class:`~tflib.CPFactorization`

    Attributes
    ----------
    weight : the factors stacked, one parameter of shape :math:`(\sum_n d_n, \sum_g R_g)`;
        :attr:`factors` gives its views, N matrices of shape (d_n, sum of the ranks)
    """

    def __init__(
        self,
        shape: Sequence[int],
        rank: int | Sequence[int],
        init_std: float,
        init_mean: float = 0.0,
        *,
        seed: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.shape = tuple(int(d) for d in shape)
        self.ranks = (int(rank),) if isinstance(rank, int) else tuple(int(r) for r in rank)
        if not self.shape or min(self.shape) < 1 or not self.ranks or min(self.ranks) < 1:
            raise ValueError(f"shape and ranks must be positive, got {self.shape} and {rank}")
        check_number("init_std", init_std, low=0)
        check_number("init_mean", init_mean)
        self.grouped = not isinstance(rank, int)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        draw = torch.randn(
            sum(self.shape), sum(self.ranks), generator=generator, dtype=torch.float64
        )
        self.weight = nn.Parameter((draw * init_std + init_mean).to(device=device, dtype=dtype))
        self.layout = _Layout(self.shape, self.weight.device)
        groups = torch.repeat_interleave(torch.arange(len(self.ranks)), torch.tensor(self.ranks))
        self.register_buffer("group_sum", nn.functional.one_hot(groups).to(dtype), persistent=False)

    @property
    def factors(self) -> list[torch.Tensor]:
        """The factor matrices :math:`W^n`, views of :attr:`weight` (in-place edits change it)."""
        return list(self.weight.split(self.shape))

    def _outputs(self, products: torch.Tensor) -> torch.Tensor:
        outputs = products @ self.group_sum
        return outputs if self.grouped else outputs[:, 0]

    def _check(self, indices: torch.Tensor) -> None:
        """:func:`~tflib.checks.check_indices`, called only when a cheaper sufficient test (integer
        inputs of the right shape, all within the smallest mode) fails; it then says what is wrong.
        Checking mode by mode costs more than the rest of a step's elementwise work."""
        if not (
            isinstance(indices, torch.Tensor)
            and indices.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
            and indices.ndim == 2
            and indices.shape[1] == len(self.shape)
            and len(indices) > 0
            and 0 <= (extremes := torch.aminmax(indices))[0]
            and extremes[1] < min(self.shape)
        ):
            check_indices(indices, self.shape)

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        """Outputs at the ``(B, N)`` inputs: shape (B,), or (B, G) for several ranks."""
        self._check(indices)
        encoded = self.layout.encode(indices, self.weight.dtype)
        return self._outputs(_LogDomainProducts.apply(encoded, self.weight, self.layout))

    def loss_and_gradients(
        self, indices: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The mean squared error (summed over the G models) and its gradient, in closed form."""
        self._check(indices)
        with torch.no_grad():
            encoded = self.layout.encode(indices, self.weight.dtype)
            products, others = _components(encoded, self.weight, self.layout)
            residual = self._outputs(products) - (targets[:, None] if self.grouped else targets)
            loss = residual.square().mean(dim=0).sum()
            grad = (residual.reshape(len(targets), -1) * (2 / len(targets))) @ self.group_sum.T
            gradient = _weight_gradient(grad, encoded, products, others, self.weight, self.layout)
        return loss, [gradient]

    def full(self) -> torch.Tensor:
        """The whole tensor (small shapes only), summed over all G models."""
        if math.prod(self.shape) > 2**24:
            raise ValueError(f"a tensor of shape {self.shape} is too large to build in full")
        return cp_to_tensor(self.factors)

    def component_norms(self) -> torch.Tensor:
        """Norms of the components of every model, shape (sum of the ranks,)."""
        return component_norms(self.factors)

    def extra_repr(self) -> str:
        return (
            f"shape={self.shape if len(self.shape) <= 6 else len(self.shape)}, ranks={self.ranks}"
        )
