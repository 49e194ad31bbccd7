"""Figure regression tests: the book's figures drawn from fixed synthetic arrays (no training).

Baselines live in ``tests/baseline``; after an intended change of a figure, regenerate them with
``pytest tests/test_plots.py --mpl-generate-path=tests/baseline`` and look at them.
"""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from tflib.experiments import DynamicsConfig, DynamicsResult, NaturalResult, natural_config
from tflib.plots import (
    dynamics_figure,
    dynamics_result_figure,
    natural_result_figure,
    norm_law_figure,
    plot_component_norms,
    plot_errors,
    plot_final_errors,
    plot_rank_errors,
    plot_scaling,
    rank_one_figure,
)
from tflib.train import History

matplotlib.use("Agg")

#: The book's own style underneath (pytest-mpl would otherwise draw in "classic"), and a tight box
#: as the chapters and the CLI save, so that axis labels are part of the comparison.
COMPARE = pytest.mark.mpl_image_compare(
    tolerance=5, style="default", savefig_kwargs={"dpi": 80, "bbox_inches": "tight"}
)


def synthetic_norms(steps: np.ndarray, k: int = 5) -> np.ndarray:
    """(T, k) component norms learned one at a time: logistic rises at staggered iterations."""
    onsets = 150 + 180 * np.arange(k)
    heights = 1.0 / (1 + np.arange(k))
    return heights / (1 + np.exp(-(steps[:, None] - onsets) / 25.0)) + 1e-3


def synthetic_errors(steps: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Error curves of three init scales: smaller init, lower final error, longer plateau."""
    curves = {}
    for std, floor, delay in [(0.05, 3e-1, 100), (0.01, 3e-2, 250), (0.005, 3e-3, 400)]:
        curves[f"init {std:g}"] = (steps, floor + np.exp(-np.maximum(steps - delay, 0) / 120.0))
    return curves


STEPS = np.arange(0, 1001, 25)


@COMPARE
def test_plot_component_norms_figure():
    ax = plot_component_norms(STEPS, synthetic_norms(STEPS))
    assert len(ax.lines) == 5
    assert ax.get_title() == "the 5 largest components"
    return ax.figure


@COMPARE
def test_plot_errors_figure():
    ax = plot_errors(synthetic_errors(STEPS))
    assert [line.get_label() for line in ax.lines] == ["init 0.05", "init 0.01", "init 0.005"]
    assert ax.get_yscale() == "log"
    return ax.figure


@COMPARE
def test_dynamics_figure():
    figure = dynamics_figure(STEPS, synthetic_norms(STEPS), "init 0.005", synthetic_errors(STEPS))
    left, right = figure.axes
    assert left.get_title() == "component norms, init 0.005"
    assert right.get_title() == "reconstruction error"
    return figure


@COMPARE
def test_norm_law_figure():
    predicted = np.linspace(-1.0, 2.0, 60).reshape(20, 3)
    wobble = 0.05 * np.sin(np.arange(60)).reshape(20, 3)
    checks = {"order 2": (predicted, predicted + wobble), "order 3": (2 * predicted, 2 * predicted)}
    figure = norm_law_figure(checks)
    assert [ax.get_title() for ax in figure.axes] == ["order 2", "order 3"]
    return figure


@COMPARE
def test_norm_law_figure_with_one_panel():
    predicted = np.linspace(0.0, 1.0, 30)
    return norm_law_figure({"order 4": (predicted, predicted**1.1)})


def test_plot_errors_draws_on_a_given_axis():
    figure, ax = plt.subplots()
    try:
        assert plot_errors(synthetic_errors(STEPS), ax=ax, log=False) is ax
        assert ax.get_yscale() == "linear"
    finally:
        plt.close(figure)


def test_plot_errors_draws_every_curve_even_beyond_the_palette():
    curves = {f"seed {i}": (STEPS, 1.0 / (1 + i + STEPS)) for i in range(10)}
    ax = plot_errors(curves)
    try:
        assert [line.get_label() for line in ax.lines] == list(curves)
    finally:
        plt.close(ax.figure)


def test_norm_law_figure_fills_every_panel_even_beyond_the_palette():
    predicted = np.linspace(0.0, 1.0, 5)
    checks = {f"check {i}": (predicted, predicted) for i in range(9)}
    figure = norm_law_figure(checks)
    try:
        assert [ax.get_title() for ax in figure.axes] == list(checks)
        assert all(len(ax.collections) == 1 for ax in figure.axes)
    finally:
        plt.close(figure)


@COMPARE
def test_dynamics_result_figure_draws_the_smallest_init_and_every_error_curve():
    config = DynamicsConfig(init_stds=(5e-2, 5e-3), seeds=(0,))
    errors = synthetic_errors(STEPS)
    runs = {
        (0, std): History(
            steps=STEPS.tolist(),
            loss=[0.0] * len(STEPS),
            metrics={"norms": (scale * synthetic_norms(STEPS)).tolist(), "error": list(curve[1])},
            status="converged",
        )
        for scale, std, curve in zip((2.0, 1.0), config.init_stds, errors.values())
    }
    figure = dynamics_result_figure(DynamicsResult(config, runs))
    left, right = figure.axes
    assert left.get_title() == "component norms, init 0.005"
    assert [line.get_label() for line in right.get_lines()] == ["init 0.05", "init 0.005"]
    np.testing.assert_allclose(left.get_lines()[0].get_ydata(), synthetic_norms(STEPS)[:, 0])
    return figure


# --- the rank-one chapter -------------------------------------------------------------------------


def synthetic_rank_one_result():
    """A rank-one result whose distances fall like init^3 after a take-off of 50 iterations."""
    from tflib.experiments import RankOneConfig, RankOneResult

    config = RankOneConfig(init_stds=(1e-1, 1e-2, 1e-3), window=300, track_every=10, seeds=(0,))
    steps = np.arange(0, 301, 10)
    runs = {}
    for std in config.init_stds:
        level = np.minimum(1.0, 300 * std**3) * (1 + 4 * np.exp(-steps / 20.0))
        metrics = {name: (level * k).tolist() for k, name in enumerate(RANK_ONE_METRICS, start=1)}
        runs[(0, std)] = History(steps.tolist(), [0.0] * len(steps), metrics, "budget")
        runs[(0, std, "plateau")] = History([0, int(3 / std)], [1.0, 0.5], {}, "converged")
    return RankOneResult(config, runs)


RANK_ONE_METRICS = ("rank_one_distance", "norm_ratio", "trajectory_distance")


@COMPARE
def test_rank_one_figure_draws_a_panel_per_distance_and_a_curve_per_init():
    result = synthetic_rank_one_result()
    figure = rank_one_figure(result)
    assert [ax.get_title() for ax in figure.axes] == [
        "distance to the rank-one tensors",
        "second / largest component norm",
        "distance to the rank-one trajectory",
    ]
    assert all(len(ax.get_lines()) == 3 for ax in figure.axes)
    assert figure.axes[0].get_legend() is not None and figure.axes[1].get_legend() is None
    np.testing.assert_allclose(
        figure.axes[2].get_lines()[1].get_ydata(), result.window(1e-2)["trajectory_distance"]
    )
    return figure


def test_rank_one_figure_draws_the_chosen_metrics_only():
    figure = rank_one_figure(synthetic_rank_one_result(), metrics=("trajectory_distance",))
    try:
        assert [ax.get_title() for ax in figure.axes] == ["distance to the rank-one trajectory"]
    finally:
        plt.close(figure)


@COMPARE
def test_plot_scaling_fits_the_slope_of_a_power_law():
    stds = np.array([1e-1, 1e-2, 1e-3, 1e-4])
    values = {"cube": np.minimum(1.0, 50 * stds**3), "square": 3 * stds**2}
    ax = plot_scaling(stds, values, fit_below=1e-2)
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["cube (slope 3)", "square (slope 2)"]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert len(ax.get_lines()[1].get_xdata()) == 3  # the fit uses the init scales <= 1e-2
    return ax.figure


# --- the natural-vs-random chapter ---------------------------------------------------------------


RANKS = np.arange(1, 16)


def synthetic_rank_errors(seeds: int = 3) -> dict[tuple[str, str], np.ndarray]:
    """(seeds, 15) errors shaped like the chapter's: natural data fit at every rank, random data
    fit better with rank on train only, test errors of random data above the variance."""
    wobble = 1 + 0.1 * np.sin(np.arange(seeds)[:, None] + RANKS)
    return {
        ("natural", "train"): 0.008 * RANKS**-1.0 * wobble,
        ("natural", "test"): 0.012 + 0.0002 * RANKS * wobble,
        ("random_labels", "train"): 0.085 * RANKS**-0.45 * wobble,
        ("random_labels", "test"): 0.11 + 0.003 * RANKS * wobble,
        ("random_images", "train"): 0.075 * RANKS**-0.5 * wobble,
        ("random_images", "test"): 0.12 + 0.001 * RANKS * wobble,
    }


@COMPARE
def test_plot_rank_errors_figure():
    errors = synthetic_rank_errors()
    ax = plot_rank_errors(RANKS, errors, variance=0.089, title="digits")
    labels = [container.get_label() for container in ax.containers]
    assert labels == [f"{v.replace('_', ' ')}, {s}" for v, s in errors]
    for container, values in zip(ax.containers, errors.values()):
        np.testing.assert_allclose(container.lines[0].get_ydata(), values.mean(axis=0))
    variance = [line for line in ax.lines if line.get_label() == "label variance"]
    assert len(variance) == 1 and variance[0].get_ydata()[0] == 0.089
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "tensor rank"
    return ax.figure


@COMPARE
def test_natural_result_figure_draws_a_panel_per_data_set():
    config = natural_config("paper", seeds=(0, 1))
    runs = {}
    for d, dataset in enumerate(config.datasets):
        for (variant, split), values in synthetic_rank_errors(seeds=2).items():
            for seed in config.seeds:
                history = runs.setdefault(
                    (dataset, variant, seed),
                    History(steps=[0, 10], loss=[1.0, 0.1], metrics={}, status="budget"),
                )
                history.metrics[split] = [[1.0] * 15, (values[seed] * (1 + d)).tolist()]
                history.metrics["variance"] = [0.09 + 0.01 * d, 0.095]
    figure = natural_result_figure(NaturalResult(config, runs))
    assert [ax.get_title() for ax in figure.axes] == ["MNIST", "Fashion-MNIST"]
    assert len(figure.legends[0].get_texts()) == 7
    variance = [
        line.get_ydata()[0] for line in figure.axes[1].lines if "variance" in line.get_label()
    ]
    assert variance == pytest.approx([0.1])
    return figure


@COMPARE
def test_plot_final_errors_figure():
    rng = np.random.default_rng(1)
    errors = {
        "init 0.05": 0.08 * np.exp(rng.normal(0, 0.2, 30)),
        "init 0.01": np.r_[np.full(24, 0.014), [0.17, 0.34, 1.2, 1.9, 0.6, 0.09]],
    }
    ax = plot_final_errors(errors, threshold=0.05)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["init 0.05", "init 0.01"]
    assert len(ax.collections) == 2 and ax.get_yscale() == "log"
    medians = [line.get_ydata()[0] for line in ax.lines if line.get_linestyle() == "-"]
    np.testing.assert_allclose(medians, [np.median(v) for v in errors.values()])
    return ax.figure
