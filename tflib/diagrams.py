"""Diagrams of factorizations as networks: nodes, edges and labels, drawn in the book's style.

Explained in the "Tensor completion as prediction" and "Beyond CP: hierarchical tensor
factorization" chapters.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from tflib.hierarchical import mode_tree
from tflib.plots import COLORS, styled


def _nodes(ax: Axes, x: float, ys: Sequence[float], colors=None, text="", active=None) -> list:
    """Draw a column of nodes at abscissa x and return their centers. Nodes are white unless
    ``colors`` says otherwise; node number ``active`` (a one-hot input's 1) is orange."""
    colors = list(colors or ["white"] * len(ys))
    if active is not None:
        colors[active] = COLORS[4]
    ax.scatter([x] * len(ys), ys, s=130, c=colors, edgecolors="black", linewidths=0.8, zorder=3)
    for y in ys if text else []:
        ax.text(x, y, text, ha="center", va="center", fontsize=10, zorder=4)
    return [(x, y) for y in ys]


def _edges(ax: Axes, sources: Sequence, targets: Sequence, color: str = "0.7") -> None:
    for (x0, y0), (x1, y1) in itertools.product(sources, targets):
        ax.plot([x0, x1], [y0, y1], color=color, linewidth=0.7, zorder=1)


def _column(n: int, center: float = 0.0, gap: float = 0.5) -> list[float]:
    return [center + gap * ((n - 1) / 2 - k) for k in range(n)]


@styled
def factorization_networks_figure(
    depth: int = 3, order: int = 3, dim: int = 5, rank: int = 3
) -> Figure:
    r"""Matrix factorization as a linear network (left), CP factorization as a non-linear one.

    Left: the one-hot column :math:`\mathbf{e}_j` passes through :math:`W_1, \ldots, W_L` (no
    activation, hidden width ``rank``); row i of the output is the entry
    :math:`[W_L \cdots W_1]_{ij}`. Right: each of the N one-hot inputs :math:`\mathbf{e}_{i_n}` is
    mapped by :math:`(W^n)^\top` to R channels; each channel multiplies its values across the
    positions (product pooling, the non-linearity); the output sums the channels. The 1 of each
    one-hot input is orange.

    Explained in the "Tensor completion as prediction" chapter.

    Parameters
    ----------
    depth : L, the number of matrices on the left
    order : N, the number of input positions on the right
    dim : the number of values of every input (d = d' = d_n)
    rank : the hidden width on the left, the number of channels R on the right
    """
    if min(depth, order, dim, rank) < 1 or dim < 2:
        raise ValueError(
            f"need depth, order, rank >= 1 and dim >= 2; got {depth, order, dim, rank}"
        )
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    half = max(dim, rank) / 2  # half the height of the left network
    top = max(0.5 * dim, 0.4 * rank) + 0.5  # the height of one position's block on the right
    height = max(half + 0.8, top * order / 2, 0.45 * rank + 0.8)
    layers = [_nodes(left, 0, _column(dim, gap=1), active=1)]
    for layer in range(1, depth + 1):
        size = dim if layer == depth else rank
        active = 1 if layer == depth else None  # the row read out
        layers.append(_nodes(left, 1.5 * layer, _column(size, gap=1), active=active))
        _edges(left, layers[-2], layers[-1])
        left.text(1.5 * layer - 0.75, half + 0.2, f"$W_{layer}$", ha="center")
    x, y = layers[-1][1]
    arrow = {"arrowstyle": "<-", "color": COLORS[4]}
    left.annotate(r"$[W_L \cdots W_1]_{ij}$", (x, y), (x + 0.7, y), va="center", arrowprops=arrow)
    left.text(0, -half - 0.2, "one-hot\ncolumn $j$", ha="center", va="top")
    left.text(x, -half - 0.2, "read\nrow $i$", ha="center", va="top")
    left.set_title("matrix factorization: a linear network")
    palette = [COLORS[r % len(COLORS)] for r in range(rank)]  # one color per channel
    products = _nodes(right, 3.2, _column(rank, gap=0.9), palette, r"$\times$")
    for n in range(order):
        center = top * ((order - 1) / 2 - n)
        inputs = _nodes(right, 0, _column(dim, center), active=(2 * n + 1) % dim)
        channels = _nodes(right, 1.6, _column(rank, center, 0.4), palette)
        _edges(right, inputs, channels)
        for channel, product, color in zip(channels, products, palette):
            _edges(right, [channel], [product], color)
        right.text(0.8, center + dim / 4 + 0.05, f"$(W^{n + 1})^\\top$", ha="center")
        right.text(-0.3, center, f"$\\mathbf{{e}}_{{i_{n + 1}}}$", ha="right", va="center")
    total = _nodes(right, 4.4, [0.0], text="+")
    _edges(right, products, total, "black")
    arrow["color"] = "black"
    right.annotate(
        r"$\mathcal{W}_{i_1 \ldots i_N}$", total[0], (5.0, 0.0), va="center", arrowprops=arrow
    )
    right.text(3.2, -rank * 0.45 - 0.3, "product\npooling", ha="center", va="top")
    right.set_title("CP factorization: a non-linear network")
    left.set_xlim(-0.8, 1.5 * depth + 1.8)
    right.set_xlim(-0.8, 5.9)
    for ax in (left, right):
        ax.axis("off")
        ax.set_ylim(-height - 0.3, height + 0.3)
    return fig


@styled
def hierarchical_network_figure(
    order: int = 4, dim: int = 3, width: int = 3, pool: int = 2
) -> Figure:
    r"""A hierarchical tensor factorization as a network: one-hot inputs (the 1 orange), the
    leaves' channels, then per level product pooling of the children's channels (one color per
    channel: channel r of a node is its local component r) and, below the root, a linear map; the
    output weighs the root's channels. ``width`` channels at every level.

    Explained in the "Beyond CP: hierarchical tensor factorization" chapter.
    """
    tree, block = mode_tree(order, pool), 0.5 * max(dim, width) + 0.7
    fig, ax = plt.subplots(figsize=(2.4 * len(tree) + 3, block * order / 1.6), layout="constrained")
    palette, channels, x = [COLORS[r % len(COLORS)] for r in range(width)], [], 1.5
    for n in range(order):
        y = block * ((order - 1) / 2 - n)
        inputs = _nodes(ax, 0, _column(dim, y), active=(2 * n + 1) % dim)
        channels.append(_nodes(ax, x, _column(width, y, 0.4), palette))
        _edges(ax, inputs, channels[-1])
        ax.text(-0.3, y, f"$\\mathbf{{e}}_{{i_{n + 1}}}$", ha="right", va="center")
        ax.text(0.75, y + dim / 4 + 0.1, f"$W^{{(0, {n + 1})}}$", ha="center")
    for level in range(1, len(tree)):
        x, pooled = x + 1.5, []
        for i in range(0, len(channels), pool):
            ys = [y for child in channels[i : i + pool] for _, y in child]
            pooled.append(_nodes(ax, x, _column(width, np.mean(ys), 0.4), palette, r"$\times$"))
            for child in channels[i : i + pool]:
                for source, target, color in zip(child, pooled[-1], palette):
                    _edges(ax, [source], [target], color)
        ax.text(x, -block * order / 2, f"level {level}:\nproduct\npooling", ha="center", va="top")
        if level < len(tree) - 1:
            x, channels = x + 1.2, [_nodes(ax, x + 1.2, [y for _, y in p], palette) for p in pooled]
            for source, target in zip(pooled, channels):
                _edges(ax, source, target)
                ax.text(x - 0.6, source[0][1] + 0.3, f"$W^{{({level}, \\nu)}}$", ha="center")
    total = _nodes(ax, x + 1.3, [np.mean([y for _, y in pooled[0]])], text="+")
    _edges(ax, pooled[0], total, "black")
    ax.text(x + 0.65, total[0][1] + 0.5, r"$\mathbf{w}^{\mathrm{out}}$", ha="center")
    arrow = {"arrowstyle": "<-", "color": "black"}
    ax.annotate(
        r"$\mathcal{W}_{i_1 \ldots i_N}$",
        total[0],
        (x + 1.9, total[0][1]),
        va="center",
        arrowprops=arrow,
    )
    ax.set_title(f"order {order}, mode tree " + " → ".join(map(str, tree[1:])))
    ax.axis("off")
    return fig
