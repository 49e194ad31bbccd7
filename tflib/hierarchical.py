r"""Hierarchical tensor factorization, a deep network with product pooling (Razin, Maman & Cohen
2022): the modes are the leaves of a *mode tree*, whose levels pool adjacent nodes in windows of
``pool`` (a node left over at the end is carried up alone); see :class:`HierarchicalFactorization`.

Explained in the "Beyond CP: hierarchical tensor factorization" chapter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from tflib.checks import check_indices, check_number, check_same_device
from tflib.cp import check_method, flat_indices, khatri_rao, uses_dense_path


def mode_tree(order: int, pool: int = 2) -> list[list[tuple[int, ...]]]:
    """The levels of the mode tree, leaves first, each a list of nodes (tuples of modes).

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
    r"""Leaf n maps its one-hot input to :math:`r_1` channels, row :math:`i_n` of
    :math:`W^{(0, n)} \in \mathbb{R}^{d_n \times r_1}`; at levels :math:`l = 1, \ldots, L` a node
    multiplies its children's channels entrywise and, below the root, maps them by
    :math:`W^{(l, \nu)} \in \mathbb{R}^{r_l \times r_{l+1}}`; the output weighs the root's channels
    by :math:`\mathbf{w}^{\mathrm{out}}`. Local component r of a node is its channel r: column r of
    each child's matrix and row r of its own (:math:`w^{\mathrm{out}}_r` at the root), K vectors in
    which the tensor is multilinear. One level with :math:`\mathbf{w}^{\mathrm{out}} = \mathbf{1}`
    is a CP factorization. Trained by :func:`~tflib.train.fit`.

    Parameters
    ----------
    shape : :math:`(d_1, \ldots, d_N)`, N >= 2
    widths : :math:`(r_1, \ldots, r_L)` (an int: the same at every level); the matricization at a
        node of level l < L has rank at most :math:`r_{l+1}` (and :math:`r_l`, if l >= 1)
    init_std : the weights are i.i.d. normal with mean 0 and this std
    pool : the pooling window of the mode tree (2: binary)
    seed, device, dtype : as for :class:`~tflib.CPFactorization`
    method : "gather" runs the network on the indices, "dense" reads the entries off :meth:`full`,
        "auto" chooses as :func:`~tflib.cp.cp_entries` does

    Attributes
    ----------
    tree : :func:`mode_tree` ``(N, pool)``
    leaves : the N matrices :math:`W^{(0, n)}`
    inner : per level l = 1, ..., L - 1, shape (nodes of level l, :math:`r_l, r_{l+1}`)
    output : :math:`\mathbf{w}^{\mathrm{out}}`, shape :math:`(r_L,)`

    Explained in the "Beyond CP: hierarchical tensor factorization" chapter.
    """

    def __init__(
        self,
        shape: Sequence[int],
        widths: int | Sequence[int],
        init_std: float,
        *,
        pool: int = 2,
        seed: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        method: str = "auto",
    ) -> None:
        super().__init__()
        self.shape = tuple(int(d) for d in shape)
        if min(self.shape, default=0) < 1:
            raise ValueError(f"shape must hold positive dimensions, got {self.shape}")
        check_method(method)
        self.tree, self.pool, self.method = mode_tree(len(self.shape), pool), pool, method
        depth = len(self.tree) - 1
        self.widths = (widths,) * depth if isinstance(widths, int) else tuple(widths)
        if len(self.widths) != depth or min(self.widths) < 1:
            raise ValueError(
                f"widths must be {depth} positive numbers, one per pooling level of the mode tree "
                f"{self.tree[1:]}, got {widths}"
            )
        check_number("init_std", init_std, low=0)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None

        def draw(*size: int) -> nn.Parameter:
            values = torch.randn(*size, generator=generator, dtype=torch.float64) * init_std
            return nn.Parameter(values.to(device=device, dtype=dtype))

        self.leaves = nn.ParameterList(draw(d, self.widths[0]) for d in self.shape)
        self.inner = nn.ParameterList(
            draw(len(self.tree[k]), *self.widths[k - 1 : k + 1]) for k in range(1, depth)
        )
        self.output = draw(self.widths[-1])

    def _children(self, level: int) -> list[range]:
        """For each node of ``level`` (1 to L), the positions of its children in ``level - 1``."""
        below = len(self.tree[level - 1])
        return [range(i, min(i + self.pool, below)) for i in range(0, below, self.pool)]

    def _propagate(self, leaves: Sequence[torch.Tensor], pool) -> torch.Tensor:
        """Run the tree bottom-up from the leaves' channels; ``pool`` combines a node's children
        (an entrywise product for entries, a Khatri–Rao product for the full tensor)."""
        nodes = list(leaves)
        for level in range(1, len(self.tree)):
            nodes = [pool([nodes[c] for c in kids]) for kids in self._children(level)]
            if level < len(self.tree) - 1:
                nodes = [h @ w for h, w in zip(nodes, self.inner[level - 1])]
        return nodes[0] @ self.output

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        """Entries at the ``(M, N)`` multi-indices, shape ``(M,)``."""
        check_same_device(model=self.output, indices=indices)
        check_indices(indices, self.shape)
        if self.method == "dense" or (
            self.method == "auto" and uses_dense_path(self.shape, len(indices))
        ):
            return self.full().reshape(-1).take(flat_indices(indices, self.shape))
        rows = [w.index_select(0, indices[:, n].long()) for n, w in enumerate(self.leaves)]
        return self._propagate(rows, math.prod)

    def full(self) -> torch.Tensor:
        """The whole tensor, shape ``(d_1, ..., d_N)``."""
        return self._propagate(list(self.leaves), khatri_rao).reshape(self.shape)

    def local_vectors(self, level: int) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
        """Per node of pooling ``level`` (1 to L): its children's matrices, whose columns, and its
        own matrix (a column at the root), whose rows are the vectors of its local components."""
        below = list(self.leaves) if level == 1 else list(self.inner[level - 2])
        own = self.inner[level - 1] if level < len(self.tree) - 1 else self.output[None, :, None]
        return [([below[c] for c in kids], own[i]) for i, kids in enumerate(self._children(level))]

    def local_component_norms(self) -> list[torch.Tensor]:
        """Per pooling level (1 to L), the norms of its nodes' local components, shape (nodes,
        :math:`r_l`): the products of the norms of each child's column r and of the node's row r."""
        return [
            torch.stack([_vector_norms(*vectors).prod(0) for vectors in self.local_vectors(k)])
            for k in range(1, len(self.tree))
        ]

    @torch.no_grad()
    def balance(self, sweeps: int = 200) -> None:
        """Rescale the weights, keeping the tensor, until the vectors of every local component have
        equal norms: each sweep sets them, level by level, to their geometric mean (rows and
        columns of a matrix belong to two levels, so this is repeated until it settles)."""
        for _ in range(sweeps):
            for level in range(1, len(self.tree)):
                for kids, own in self.local_vectors(level):
                    norms = _vector_norms(kids, own)
                    tiny = torch.finfo(norms.dtype).tiny
                    scales = norms.prod(0) ** (1 / len(norms)) / norms.clamp_min(tiny)
                    for weights, scale in zip([*kids, own.T], scales):
                        weights.mul_(scale)


def _vector_norms(kids: Sequence[torch.Tensor], own: torch.Tensor) -> torch.Tensor:
    """Norms of the K vectors of a node's local components, shape (K, r): columns, then rows."""
    return torch.stack([k.norm(dim=0) for k in kids] + [own.norm(dim=1)])


def matricization(tensor: torch.Tensor, modes: Sequence[int]) -> torch.Tensor:
    """The matrix whose rows are indexed by ``modes`` (in that order) and columns by the rest.

    Explained in the "Beyond CP: hierarchical tensor factorization" chapter.
    """
    modes = [int(n) for n in modes]
    if not modes or len(set(modes)) < len(modes) or not 0 <= min(modes) <= max(modes) < tensor.ndim:
        raise ValueError(
            f"modes must be distinct modes of an order-{tensor.ndim} tensor, got {modes}"
        )
    rest = [n for n in range(tensor.ndim) if n not in modes]
    return tensor.permute(*modes, *rest).reshape(math.prod(tensor.shape[n] for n in modes), -1)


def matricization_ranks(tensor: torch.Tensor, tree, rtol: float = 1e-6) -> dict[tuple, int]:
    """The ranks of the matricizations at the nodes of ``tree`` below the root, its hierarchical
    rank: the numbers of singular values above ``rtol`` times the largest.

    Explained in the "Beyond CP: hierarchical tensor factorization" chapter.
    """
    ranks = {}
    for node in (node for level in tree[:-1] for node in level):
        values = torch.linalg.svdvals(matricization(tensor.detach(), node).double())
        ranks[node] = int((values > rtol * values[0]).sum()) if values[0] > 0 else 0
    return ranks
