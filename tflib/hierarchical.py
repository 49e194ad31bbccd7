r"""Hierarchical tensor factorization: a tree of local factorizations, a deep network with product
pooling (Razin, Maman & Cohen, 2022).

The modes :math:`1, \ldots, N` are the leaves of a *mode tree*; each level pools adjacent nodes, in
windows of ``pool`` (2: a binary tree; a node left over at the end is carried up alone). Read as a
network on an input :math:`(i_1, \ldots, i_N)`:

1. each leaf n maps its one-hot input to :math:`r_1` channels, row :math:`i_n` of
   :math:`W^{(0, n)} \in \mathbb{R}^{d_n \times r_1}`;
2. at level :math:`l = 1, \ldots, L` every node multiplies its children's channels entrywise
   (product pooling) and, below the root, maps the result linearly to :math:`r_{l+1}` channels by
   :math:`W^{(l, \nu)} \in \mathbb{R}^{r_l \times r_{l+1}}`;
3. the root's :math:`r_L` channels are summed with the weights :math:`\mathbf{w}^{\mathrm{out}}`.

A CP factorization with R components is the special case of one level (``pool >= N``) with
:math:`\mathbf{w}^{\mathrm{out}} = \mathbf{1}`. The *local components* of a node are what CP's
components are to the whole tensor: channel r of a pooling node ties together column r of each
child's weight matrix and row r of the node's own; its norm is the product of their norms.

Explained in the "Beyond CP: hierarchical tensor factorization" chapter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from tflib.cp import check_indices, khatri_rao


def mode_tree(order: int, pool: int = 2) -> list[list[tuple[int, ...]]]:
    """The levels of the mode tree, leaves first: each level lists its nodes as tuples of modes.

    >>> mode_tree(4)
    [[(0,), (1,), (2,), (3,)], [(0, 1), (2, 3)], [(0, 1, 2, 3)]]
    """
    if order < 2 or pool < 2:
        raise ValueError(f"a mode tree needs order >= 2 and pool >= 2, got {order} and {pool}")
    levels = [[(n,) for n in range(order)]]
    while len(levels[-1]) > 1:
        nodes = levels[-1]
        levels.append([sum(nodes[i : i + pool], ()) for i in range(0, len(nodes), pool)])
    return levels


class HierarchicalFactorization(nn.Module):
    r"""A hierarchical tensor factorization (see the module's docstring), trainable by
    :func:`~tflib.train.fit`.

    Explained in the "Beyond CP: hierarchical tensor factorization" chapter.

    Parameters
    ----------
    shape : :math:`(d_1, \ldots, d_N)`
    widths : :math:`(r_1, \ldots, r_L)`, the number of channels of each level (an int: the same
        for all); no constraint on the hierarchical rank when each is at least the largest
        matricization rank
    init_std, init_mean : the parameters are drawn i.i.d. normal with this std and mean
    pool : the pooling window (2: a binary mode tree)
    seed, device, dtype : as for :class:`~tflib.CPFactorization`

    Attributes
    ----------
    leaves : the N matrices :math:`W^{(0, n)}`, shape :math:`(d_n, r_1)`
    inner : per level l = 1, ..., L - 1 one parameter of shape (nodes, :math:`r_l, r_{l+1}`)
    output : :math:`\mathbf{w}^{\mathrm{out}}`, shape :math:`(r_L,)`
    """

    def __init__(
        self,
        shape: Sequence[int],
        widths: int | Sequence[int],
        init_std: float,
        init_mean: float = 0.0,
        *,
        pool: int = 2,
        seed: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.shape = tuple(int(d) for d in shape)
        if min(self.shape, default=0) < 1:
            raise ValueError(f"shape must hold positive dimensions, got {self.shape}")
        self.tree, self.pool = mode_tree(len(self.shape), pool), pool
        depth = len(self.tree) - 1
        self.widths = (int(widths),) * depth if isinstance(widths, int) else tuple(widths)
        if len(self.widths) != depth or min(self.widths) < 1:
            raise ValueError(
                f"widths must be {depth} positive numbers, one per level of the mode tree "
                f"{self.tree[1:]}, got {widths}"
            )
        if not init_std >= 0:
            raise ValueError(f"init_std must be non-negative, got {init_std}")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None

        def draw(*size: int) -> nn.Parameter:
            values = torch.randn(*size, generator=generator, dtype=torch.float64)
            return nn.Parameter((values * init_std + init_mean).to(device=device, dtype=dtype))

        self.leaves = nn.ParameterList(draw(d, self.widths[0]) for d in self.shape)
        self.inner = nn.ParameterList(
            draw(len(self.tree[level]), self.widths[level - 1], self.widths[level])
            for level in range(1, depth)
        )
        self.output = draw(self.widths[-1])

    def _children(self, level: int) -> list[range]:
        """For each node of ``level`` (1 to L), the positions of its children in ``level - 1``."""
        below = len(self.tree[level - 1])
        return [range(i, min(i + self.pool, below)) for i in range(0, below, self.pool)]

    def _propagate(self, leaves: Sequence[torch.Tensor], pool) -> torch.Tensor:
        """Run the tree bottom-up from per-leaf channel values; ``pool`` combines a node's children
        (an entrywise product for entries, a Khatri–Rao product for the full tensor)."""
        nodes = list(leaves)
        for level in range(1, len(self.tree)):
            nodes = [pool([nodes[c] for c in kids]) for kids in self._children(level)]
            if level < len(self.tree) - 1:
                nodes = [h @ w for h, w in zip(nodes, self.inner[level - 1])]
        return nodes[0] @ self.output

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        """Entries at the ``(M, N)`` multi-indices, shape ``(M,)``: the network's outputs."""
        check_indices(indices, self.shape)
        indices = indices.to(torch.int64)
        leaves = [w.index_select(0, indices[:, n]) for n, w in enumerate(self.leaves)]
        return self._propagate(leaves, lambda hs: math.prod(hs))

    def full(self) -> torch.Tensor:
        """The whole tensor, shape ``(d_1, ..., d_N)``."""
        return self._propagate(list(self.leaves), khatri_rao).reshape(self.shape)

    def local_component_norms(self) -> list[torch.Tensor]:
        """Norms of the local components of every pooling node, level by level (1 to L): a
        tensor of shape (nodes, :math:`r_l`) per level. Channel r of a node: the product of the
        norms of column r of each child's weight matrix and of row r of the node's own (the entry
        of :math:`\\mathbf{w}^{\\mathrm{out}}` at the root)."""
        incoming = [torch.stack([w.norm(dim=0) for w in self.leaves])]
        incoming += [w.norm(dim=1) for w in self.inner]  # column norms: (nodes, r_{l+1})
        outgoing = [w.norm(dim=2) for w in self.inner] + [self.output.abs()[None]]
        return [
            torch.stack([incoming[level - 1][kids].prod(dim=0) for kids in self._children(level)])
            * outgoing[level - 1]
            for level in range(1, len(self.tree))
        ]


def matricization(tensor: torch.Tensor, modes: Sequence[int]) -> torch.Tensor:
    """The matrix whose rows are indexed by ``modes`` and whose columns by the other modes."""
    rest = [n for n in range(tensor.ndim) if n not in modes]
    rows = math.prod(tensor.shape[n] for n in modes)
    return tensor.permute(*modes, *rest).reshape(rows, -1)


def matricization_ranks(
    tensor: torch.Tensor, tree: Sequence[Sequence[tuple[int, ...]]], rtol: float = 1e-6
) -> dict[tuple[int, ...], int]:
    """The rank of the matricization of ``tensor`` at every node of ``tree`` but the root (the
    hierarchical tensor rank): singular values above ``rtol`` times the largest count."""
    ranks = {}
    for level in tree[:-1]:
        for node in level:
            values = torch.linalg.svdvals(matricization(tensor, node).to(torch.float64))
            ranks[node] = int((values > rtol * values[0]).sum()) if values[0] > 0 else 0
    return ranks
