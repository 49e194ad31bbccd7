"""The figures the chapters draw, in one style.

Every function takes plain arrays (or a result of the ``tflib.experiments`` module), draws on a
given ``matplotlib`` axis or a new figure, and returns what it drew on, so a chapter can adjust it.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

#: The book's figure style: light grid, no top or right spines, readable sizes.
STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "lines.linewidth": 1.6,
}
#: One color per curve, in order (colorblind-safe, Okabe & Ito).
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


def styled(draw: Callable) -> Callable:
    """Run a drawing function inside the book's style."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with plt.style.context(STYLE):
            return draw(*args, **kwargs)

    return wrapper


def _axis(ax: Axes | None, size: tuple[float, float] = (5, 3.5)) -> Axes:
    return ax if ax is not None else plt.figure(figsize=size).add_subplot()


@styled
def plot_component_norms(
    steps: Sequence[int], norms: np.ndarray, ax: Axes | None = None, title: str | None = None
) -> Axes:
    """Norms of the largest components against iterations, one line per rank (largest first).

    Explained in the CP dynamics chapter.

    Parameters
    ----------
    steps : (T,) recorded iterations
    norms : (T, K) the K largest component norms at each recorded iteration
    """
    ax = _axis(ax)
    norms = np.asarray(norms)
    palette = plt.get_cmap("viridis")(np.linspace(0, 0.9, norms.shape[1]))
    for k in range(norms.shape[1]):
        ax.plot(steps, norms[:, k], color=palette[k])
    ax.set_xlabel("iteration")
    ax.set_ylabel("component norm")
    ax.set_title(title or f"the {norms.shape[1]} largest components")
    return ax


@styled
def plot_errors(
    curves: Mapping[str, tuple[Sequence[int], Sequence[float]]],
    ax: Axes | None = None,
    ylabel: str = "reconstruction error",
    log: bool = True,
) -> Axes:
    """Curves of an error against iterations, one per label (e.g. per init scale).

    Explained in the CP dynamics chapter.

    Parameters
    ----------
    curves : label -> (steps, values)
    """
    ax = _axis(ax)
    for color, (label, (steps, values)) in zip(itertools.cycle(COLORS), curves.items()):
        ax.plot(steps, values, color=color, label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.legend()
    return ax


@styled
def dynamics_figure(
    norms_steps: Sequence[int],
    norms: np.ndarray,
    norms_label: str,
    error_curves: Mapping[str, tuple[Sequence[int], Sequence[float]]],
) -> Figure:
    """The paper's dynamics figure: component norms (left) and reconstruction errors (right).

    Explained in the CP dynamics chapter.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    plot_component_norms(norms_steps, norms, ax=left, title=f"component norms, {norms_label}")
    plot_errors(error_curves, ax=right)
    right.set_title("reconstruction error")
    return fig


def dynamics_result_figure(result, seed: int | None = None) -> Figure:
    """:func:`dynamics_figure` of a :class:`~tflib.experiments.dynamics.DynamicsResult`.

    Component norms for the smallest init scale, reconstruction errors for every init scale, all
    of one seed (the first if not given).

    Explained in the CP dynamics chapter.
    """
    stds = result.config.init_stds
    smallest = result.history(min(stds), seed)
    curves = {
        f"init {s:g}": (result.history(s, seed)["steps"], result.history(s, seed)["error"])
        for s in stds
    }
    return dynamics_figure(smallest["steps"], smallest["norms"], f"init {min(stds):g}", curves)


@styled
def norm_law_figure(checks: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> Figure:
    """Measured against predicted rates of change of component norms, one panel per order.

    Explained in the CP dynamics chapter.

    Parameters
    ----------
    checks : panel title -> (predicted, measured), arrays of the same shape; points on the
        diagonal agree with the theorem.
    """
    fig, axes = plt.subplots(1, len(checks), figsize=(3.3 * len(checks), 3.2), layout="constrained")
    for ax, color, (title, (predicted, measured)) in zip(
        np.atleast_1d(axes), itertools.cycle(COLORS), checks.items()
    ):
        predicted, measured = np.ravel(predicted), np.ravel(measured)
        ax.scatter(predicted, measured, s=6, color=color, alpha=0.6)
        low, high = min(predicted.min(), measured.min()), max(predicted.max(), measured.max())
        ax.plot([low, high], [low, high], color="black", linewidth=0.8, linestyle="--")
        ax.set_title(title)
        ax.set_xlabel("predicted rate")
    np.atleast_1d(axes)[0].set_ylabel("measured rate")
    return fig


@styled
def plot_final_errors(
    errors: Mapping[str, Sequence[float]], threshold: float | None = None, ax: Axes | None = None
) -> Axes:
    """The final errors of many runs, one column of points per label (e.g. per init scale), each
    with its median as a bar; ``threshold`` draws the line below which a run counts as completed.

    Explained in the CP dynamics chapter.
    """
    ax = _axis(ax, size=(1.5 + 1.3 * len(errors), 3.5))
    jitter = np.random.default_rng(0)  # a fixed spread of the points, the same at every call
    for x, (color, values) in enumerate(zip(itertools.cycle(COLORS), errors.values())):
        values = np.asarray(values, dtype=float)
        ax.scatter(x + jitter.uniform(-0.2, 0.2, len(values)), values, s=14, color=color, alpha=0.7)
        ax.plot([x - 0.3, x + 0.3], [np.median(values)] * 2, color="black", linewidth=1.4)
    if threshold is not None:
        ax.axhline(threshold, color="gray", linestyle="--", linewidth=0.9, label="completion threshold")
        ax.legend(loc="upper left")
    ax.set_xticks(range(len(errors)), list(errors))
    ax.set_yscale("log")
    ax.set_ylabel("final reconstruction error")
    return ax
