"""The figures the chapters draw, in one style.

Every function takes plain arrays (or a result of the ``tflib.experiments`` module), draws on a
given ``matplotlib`` axis or a new figure, and returns what it drew on, so a chapter can adjust it.
The diagrams of factorizations as networks are in :mod:`tflib.diagrams`; the figures of the CP
dynamics experiment are beside it, in :mod:`tflib.experiments.dynamics`.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

if TYPE_CHECKING:  # the result figures read these; at run time plots imports no experiment
    from tflib.experiments import MatrixResult, NaturalResult, RankOneResult

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
    title = title or f"the {norms.shape[1]} largest components"
    ax.set(xlabel="iteration", ylabel="component norm", title=title)
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
    ax.set(yscale="log" if log else "linear", xlabel="iteration", ylabel=ylabel)
    ax.legend()
    return ax


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


#: The rank-one figure's panels: tracked metric -> title.
RANK_ONE_PANELS = {
    "rank_one_distance": "distance to the rank-one tensors",
    "norm_ratio": "second / largest component norm",
    "trajectory_distance": "distance to the rank-one trajectory",
}


@styled
def rank_one_figure(
    result: RankOneResult, seed: int | None = None, metrics: Sequence[str] = tuple(RANK_ONE_PANELS)
) -> Figure:
    """Distances over the window of a :class:`~tflib.experiments.rank_one.RankOneResult`: one panel
    per metric, one curve per init scale. Explained in the rank-one convergence chapter."""
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(4.3 * len(metrics), 3.4), layout="constrained"
    )
    for k, (ax, metric) in enumerate(zip(np.atleast_1d(axes), metrics)):
        runs = {f"init {s:g}": result.window(s, seed) for s in result.config.init_stds}
        plot_errors({label: (h["steps"], h[metric]) for label, h in runs.items()}, ax=ax, ylabel="")
        ax.set(
            title=RANK_ONE_PANELS.get(metric, metric), xlabel="iterations since leaving the origin"
        )
        if k > 0:
            ax.get_legend().remove()
    return fig


@styled
def plot_scaling(
    init_stds: Sequence[float],
    values: Mapping[str, Sequence[float]],
    fit_below: float = np.inf,
    ax: Axes | None = None,
) -> Axes:
    """Values (label -> one per init scale) against the init scale on log-log axes, with the slope
    of a least-squares line through the points of init scale at most ``fit_below``.

    Explained in the rank-one convergence chapter.
    """
    ax = _axis(ax)
    x = np.asarray(init_stds)
    for color, (label, ys) in zip(itertools.cycle(COLORS), values.items()):
        used = x <= fit_below
        slope, intercept = np.polyfit(np.log10(x[used]), np.log10(np.asarray(ys)[used]), 1)
        ax.plot(x, ys, "o", color=color, label=f"{label} (slope {slope:.2g})")
        ax.plot(x[used], 10 ** (intercept + slope * np.log10(x[used])), color=color, lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="init scale", ylabel="largest over the window")
    ax.legend()
    return ax


@styled
def plot_rank_errors(
    ranks: Sequence[int],
    errors: Mapping[tuple[str, str], np.ndarray],
    variance: float,
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Mean error against tensor rank: mean and standard deviation over seeds, one color per data
    variant, train solid and test dashed, and the label variance as a reference line.

    Explained in the "Natural vs. random data" chapter.

    Parameters
    ----------
    ranks : (R,) the ranks fitted
    errors : (variant, "train" or "test") -> (S, R) the final errors of S seeds
    variance : the variance of the 0/1 labels, the error of the best constant predictor
    """
    ax = _axis(ax)
    colors: dict[str, str] = {}
    for (variant, split), values in errors.items():
        color = colors.setdefault(variant, COLORS[len(colors) % len(COLORS)])
        values, label = np.atleast_2d(values), f"{variant.replace('_', ' ')}, {split}"
        style = {"ls": "--", "marker": "s", "alpha": 0.7} if split == "test" else {"marker": "o"}
        mean, std = values.mean(axis=0), values.std(axis=0)
        ax.errorbar(ranks, mean, std, color=color, ms=3.5, capsize=2, label=label, **style)
    ax.axhline(variance, color="black", linewidth=1.0, linestyle=":", label="label variance")
    ax.set(yscale="log", xticks=list(ranks), xlabel="tensor rank", ylabel="mean error")
    ax.set_title(title or "")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return ax


#: How the data sets are called in figure titles.
DATASET_TITLES = {"digits": "digits (8 x 8)", "mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}


@styled
def natural_result_figure(result: NaturalResult) -> Figure:
    """:func:`plot_rank_errors` of a :class:`~tflib.experiments.natural.NaturalResult`, one panel
    per data set, with one legend.

    Explained in the "Natural vs. random data" chapter.
    """
    datasets = list(dict.fromkeys(key[0] for key in result.runs))
    size = (4.6 * len(datasets) + 2, 3.6)
    fig, axes = plt.subplots(1, len(datasets), figsize=size, layout="constrained", squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        errors = {
            (variant, split): result.final_errors(dataset, variant, split)
            for variant in result.config.variants
            for split in ("train", "test")
            if (dataset, variant) in {key[:2] for key in result.runs}
        }
        title = DATASET_TITLES.get(dataset, dataset)
        plot_rank_errors(result.config.ranks, errors, result.variance(dataset), ax=ax, title=title)
        ax.get_legend().remove()  # one legend for all panels
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside right center", fontsize=9)
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
        ax.axhline(
            threshold, color="gray", linestyle="--", linewidth=0.9, label="completion threshold"
        )
        ax.legend(loc="upper left")
    ax.set_xticks(range(len(errors)), list(errors))
    ax.set_yscale("log")
    ax.set_ylabel("final reconstruction error")
    return ax


@styled
def completion_figure(result: MatrixResult) -> Figure:
    """Reconstruction error against the number of observed entries, one curve per method (depth
    or nuclear norm) of a :class:`~tflib.experiments.matrix.MatrixResult`: the median over seeds,
    and a dot per seed.

    Explained in the Matrix factorization chapter.
    """
    finals, n = result.final(), np.asarray(result.config.n_observations)
    ax = plot_errors({method: (n, np.median(errors, axis=1)) for method, errors in finals.items()})
    for color, errors in zip(itertools.cycle(COLORS), finals.values()):
        ax.plot(np.repeat(n, errors.shape[1]), errors.ravel(), ".", color=color, alpha=0.5)
    ax.set_xlabel("observed entries")
    return ax.figure


@styled
def singular_values_figure(result: MatrixResult, seed: int | None = None) -> Figure:
    """Singular values of the end-to-end matrix against iterations, one panel per depth (rows) and
    init scale (columns) of a :class:`~tflib.experiments.matrix.MatrixResult`, at its first number
    of observations and seed.

    Explained in the Matrix factorization chapter.
    """
    depths, stds, n = result.config.depths, result.config.init_stds, result.config.n_observations[0]
    fig, axes = plt.subplots(
        len(depths),
        len(stds),
        figsize=(4.5 * len(stds), 3 * len(depths)),
        sharex=True,
        squeeze=False,
        layout="constrained",
    )
    for (depth, std), ax in zip(itertools.product(depths, stds), axes.flat):
        history = result.history(n, depth, std, seed)
        title = f"depth {depth}, init {std:g}"
        plot_component_norms(history["steps"], history["singular_values"], ax=ax, title=title)
        ax.set_ylabel("singular value")
    for ax in axes[:-1].flat:
        ax.set_xlabel("")
    return fig


@styled
def metric_panels(
    histories: Mapping, metrics: Mapping[str, str], log: Sequence[str] = ()
) -> Figure:
    """One panel per tracked metric (name -> axis label), one curve per run (label ->
    :class:`~tflib.train.History`), against iterations; metrics named in ``log`` on a log scale.

    Explained in the Matrix factorization chapter.
    """
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(3.6 * len(metrics), 3.2), layout="constrained"
    )
    for ax, (name, label) in zip(np.atleast_1d(axes), metrics.items()):
        curves = {run: (h["steps"], h[name]) for run, h in histories.items()}
        plot_errors(curves, ax=ax, ylabel=label, log=name in log)
    return fig


@styled
def plot_images(images: np.ndarray, titles: Sequence[str] | None = None) -> Figure:
    """A row of grayscale images, intensity 0 black and 1 white (a 3-pixel image is 1 x 3).

    Explained in the "Tensor completion as prediction" chapter.

    Parameters
    ----------
    images : (K, h, w) intensities in [0, 1]
    titles : K titles, one per image
    """
    images = np.asarray(images, dtype=float)
    if images.ndim != 3 or not len(images):
        raise ValueError(f"images must have shape (K, h, w) with K >= 1, got {images.shape}")
    scale = 1.4 / max(images.shape[1:])
    figsize = (len(images) * max(images.shape[2] * scale, 1.4), images.shape[1] * scale + 0.5)
    fig, axes = plt.subplots(1, len(images), figsize=figsize, layout="constrained", squeeze=False)
    for ax, image, title in zip(axes[0], images, titles or [""] * len(images)):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        ax.set(xticks=[], yticks=[], title=title)
        ax.grid(False)
        ax.spines[:].set_visible(True)
        for x in range(1, image.shape[1]):  # pixel borders
            ax.axvline(x - 0.5, color="0.5", linewidth=1.2)
        for y in range(1, image.shape[0]):
            ax.axhline(y - 0.5, color="0.5", linewidth=1.2)
    return fig


@styled
def plot_tensor_slices(
    tensors: Mapping[str, np.ndarray],
    observed: np.ndarray | None = None,
    names: Sequence[str] = ("pixel 1", "pixel 2", "pixel 3"),
) -> Figure:
    """Order-3 tensors as rows of slices, one slice per index of the first mode.

    Entries are colored by value on one shared scale; NaN entries (unknown) are light gray; the
    observed entries are marked with a dot.

    Explained in the "Tensor completion as prediction" chapter.

    Parameters
    ----------
    tensors : row label -> tensor of shape (d_1, d_2, d_3), all of one shape
    observed : boolean mask of that shape, or None
    names : the names of the three modes
    """
    arrays = [np.asarray(t, dtype=float) for t in tensors.values()]
    shapes = {a.shape for a in arrays} | ({np.shape(observed)} if observed is not None else set())
    if len(shapes) != 1 or len(arrays[0].shape) != 3:
        raise ValueError(f"need order-3 tensors (and mask) of one shape, got shapes {shapes}")
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays])
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.9")
    d1 = arrays[0].shape[0]
    fig, axes = plt.subplots(
        len(arrays), d1, figsize=(1.45 * d1 + 0.8, 1.55 * len(arrays)), squeeze=False
    )
    for row, (label, array) in zip(axes, zip(tensors, arrays)):
        for i, ax in enumerate(row):
            image = ax.imshow(array[i], cmap=cmap, vmin=finite.min(), vmax=finite.max())
            if observed is not None:
                rows, columns = np.nonzero(np.asarray(observed)[i])
                ax.scatter(columns, rows, s=12, color="white", edgecolor="black", linewidth=0.6)
            ax.set(xticks=range(array.shape[2]), yticks=range(array.shape[1]))
            ax.tick_params(labelsize=7, length=0)
            ax.grid(False)
        row[0].set_ylabel(f"{label}\n{names[1]}")
    for i, ax in enumerate(axes[0]):
        ax.set_title(f"{names[0]} = {i}", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel(names[2])
    fig.colorbar(image, ax=axes, shrink=0.8, label="entry")
    return fig


@styled
def norms_side_by_side(panels: Mapping[str, tuple[Sequence[int], np.ndarray, str]]) -> Figure:
    """:func:`plot_component_norms` panels side by side: title -> (steps, norms, y label).

    Explained in the "Beyond CP: hierarchical tensor factorization" chapter.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels), 3.4), layout="constrained")
    for ax, (title, (steps, norms, ylabel)) in zip(np.atleast_1d(axes), panels.items()):
        plot_component_norms(steps, norms, ax=ax, title=title)
        ax.set_ylabel(ylabel)
    return fig
