"""Figure regression tests: the book's figures drawn from fixed synthetic arrays (no training).

Baselines live in ``tests/baseline``; after an intended change of a figure, regenerate them with
``pytest tests/test_plots.py --mpl-generate-path=tests/baseline`` and look at them.
"""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from tflib.diagrams import factorization_networks_figure, hierarchical_network_figure
from tflib.experiments import (
    DynamicsConfig,
    DynamicsResult,
    MatrixConfig,
    MatrixResult,
    NaturalResult,
    natural_config,
)
from tflib.experiments.dynamics import clock_figure, dynamics_figure, dynamics_result_figure
from tflib.hierarchical import mode_tree
from tflib.plots import (
    completion_figure,
    metric_panels,
    natural_result_figure,
    norm_law_figure,
    norms_side_by_side,
    plot_component_norms,
    plot_errors,
    plot_final_errors,
    plot_images,
    plot_rank_errors,
    plot_scaling,
    plot_tensor_slices,
    rank_one_figure,
    singular_values_figure,
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
    norms = {
        "init 0.05": (STEPS, 2 * synthetic_norms(STEPS)),
        "init 0.005": (STEPS, synthetic_norms(STEPS)),
    }
    figure = dynamics_figure(norms, synthetic_errors(STEPS))
    assert [ax.get_title() for ax in figure.axes] == [
        "init 0.05",
        "init 0.005",
        "reconstruction error",
    ]
    assert figure.axes[0].get_ylim() == figure.axes[1].get_ylim(), "norms on one scale"
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
def test_dynamics_result_figure_draws_the_norms_of_every_init_and_every_error_curve():
    config = DynamicsConfig(init_stds=(5e-3, 5e-2), seeds=(0,))
    errors = synthetic_errors(STEPS)
    runs = {
        (0, std): History(
            steps=STEPS.tolist(),
            loss=[0.0] * len(STEPS),
            metrics={"norms": (scale * synthetic_norms(STEPS)).tolist(), "error": list(curve[1])},
            status="converged",
        )
        for scale, std, curve in zip(
            (1.0, 2.0), config.init_stds, [errors["init 0.005"], errors["init 0.05"]]
        )
    }
    figure = dynamics_result_figure(DynamicsResult(config, runs))
    large, small, right = figure.axes
    assert (large.get_title(), small.get_title()) == ("init 0.05", "init 0.005")  # largest first
    assert [line.get_label() for line in right.get_lines()] == ["init 0.05", "init 0.005"]
    np.testing.assert_allclose(large.get_lines()[0].get_ydata(), 2 * synthetic_norms(STEPS)[:, 0])
    np.testing.assert_allclose(small.get_lines()[0].get_ydata(), synthetic_norms(STEPS)[:, 0])
    return figure


def synthetic_timed_run(step: float, oscillating: bool) -> History:
    """A run whose components rise at the same gradient-flow times whatever the step: a constant
    step per iteration, or one that swings between two values."""
    steps = np.arange(0, 1001, 25)
    sizes = np.where(oscillating & (steps // 100 % 2 == 1), step / 3, step)
    time = np.r_[0, np.cumsum(sizes[1:] * 25)]
    norms = synthetic_norms(time)
    loss = 1e-4 * np.exp(-time / 100) + (1e-9 if oscillating else 0)
    metrics = {"norms": norms.tolist(), "error": (loss**0.5).tolist(), "time": time.tolist()}
    return History(steps.tolist(), loss.tolist(), metrics, "budget")


@COMPARE
def test_clock_figure_draws_norms_against_iterations_and_time_with_steps_and_losses():
    runs = {"adaptive": synthetic_timed_run(3.0, True), "plain": synthetic_timed_run(1.0, False)}
    figure = clock_figure(runs, k=4)
    norms, timed, steps, losses = figure.axes
    assert len(norms.get_lines()) == len(timed.get_lines()) == 8  # k components per run
    assert [t.get_text() for t in norms.get_legend().get_texts()] == ["adaptive", "plain"]
    np.testing.assert_allclose(timed.get_lines()[0].get_xdata(), runs["adaptive"]["time"])
    np.testing.assert_allclose(steps.get_lines()[1].get_ydata(), 1.0)  # plain: one step size
    assert steps.get_yscale() == losses.get_yscale() == "log"
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


# --- the rank-one chapter -------------------------------------------------------------------------


def synthetic_rank_one_result():
    """A rank-one result whose distances fall like init^3 after a take-off of 50 iterations."""
    from tflib.experiments import RankOneConfig, RankOneResult

    config = RankOneConfig(init_stds=(1e-1, 1e-2, 1e-3), window=300, track_every=10, seeds=(0,))
    steps = np.arange(0, 301, 10)
    runs, plateaus = {}, {}
    for std in config.init_stds:
        level = np.minimum(1.0, 300 * std**3) * (1 + 4 * np.exp(-steps / 20.0))
        metrics = {name: (level * k).tolist() for k, name in enumerate(RANK_ONE_METRICS, start=1)}
        runs[(0, std)] = History(steps.tolist(), [0.0] * len(steps), metrics, "budget")
        plateaus[(0, std)] = {"plateau": int(3 / std)}
    return RankOneResult(config, runs, plateaus)


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
    runs, variances = {}, {}
    for d, dataset in enumerate(config.datasets):
        for (variant, split), values in synthetic_rank_errors(seeds=2).items():
            for seed in config.seeds:
                history = runs.setdefault(
                    (dataset, variant, seed),
                    History(steps=[0, 10], loss=[1.0, 0.1], metrics={}, status="budget"),
                )
                history.metrics[split] = [[1.0] * 15, (values[seed] * (1 + d)).tolist()]
                variances[(dataset, variant, seed)] = {"variance": [0.09 + 0.01 * d, 0.095]}
    figure = natural_result_figure(NaturalResult(config, runs, variances))
    assert [ax.get_title() for ax in figure.axes] == ["MNIST", "Fashion-MNIST"]
    assert len(figure.legends[0].get_texts()) == 7
    variance = [
        line.get_ydata()[0] for line in figure.axes[1].lines if "variance" in line.get_label()
    ]
    assert variance == pytest.approx([0.1])
    return figure


# --- the Matrix factorization chapter -------------------------------------------------------------


def matrix_history(values: dict[str, np.ndarray], steps=STEPS) -> History:
    metrics = {name: np.asarray(v).tolist() for name, v in values.items()}
    return History(steps=list(steps), loss=[0.0] * len(steps), metrics=metrics, status="converged")


@COMPARE
def test_completion_figure_draws_the_median_of_every_method_and_a_dot_per_seed():
    config = MatrixConfig((10, 10), 2, (20, 40, 60), depths=(1, 3), seeds=(0, 1))
    errors = {
        1: [[0.9, 0.8], [0.85, 0.8], [0.7, 0.72]],
        3: [[0.5, 0.3], [0.05, 0.02], [0.01, 0.01]],
    }
    errors["nuclear norm"] = [[0.6, 0.5], [0.3, 0.2], [1e-3, 2e-3]]
    runs = {
        (seed, n, method, 1e-3): matrix_history({"error": [errors[method][i][k]]}, steps=[0])
        for method in config.depths
        for i, n in enumerate(config.n_observations)
        for k, seed in enumerate(config.seeds)
    }
    baselines = {
        (seed, n): {"error": errors["nuclear norm"][i][k]}
        for i, n in enumerate(config.n_observations)
        for k, seed in enumerate(config.seeds)
    }
    figure = completion_figure(MatrixResult(config, runs, baselines=baselines))
    (ax,) = figure.axes
    assert [line.get_label() for line in ax.get_lines()[:3]] == [
        "depth 1",
        "depth 3",
        "nuclear norm",
    ]
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), [0.4, 0.035, 0.01])
    assert ax.get_xlabel() == "observed entries" and ax.get_yscale() == "log"
    return figure


@COMPARE
def test_singular_values_figure_has_a_panel_per_depth_and_init_scale():
    config = MatrixConfig((10, 10), 2, (40,), depths=(2, 3), init_stds=(1e-2, 1e-3), seeds=(0,))
    runs = {
        (0, 40, depth, std): matrix_history({"singular_values": scale * synthetic_norms(STEPS, 3)})
        for depth, std, scale in [(2, 1e-2, 1.0), (2, 1e-3, 2.0), (3, 1e-2, 3.0), (3, 1e-3, 4.0)]
    }
    figure = singular_values_figure(MatrixResult(config, runs))
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == [
        "depth 2, init 0.01",
        "depth 2, init 0.001",
        "depth 3, init 0.01",
        "depth 3, init 0.001",
    ]
    assert all(ax.get_ylabel() == "singular value" and len(ax.lines) == 3 for ax in figure.axes)
    np.testing.assert_allclose(
        figure.axes[3].lines[0].get_ydata(), 4 * synthetic_norms(STEPS, 3)[:, 0]
    )
    return figure


@COMPARE
def test_metric_panels_draw_one_panel_per_metric_and_one_curve_per_run():
    histories = {
        f"depth {depth}": matrix_history(
            {"size": np.log1p(depth * STEPS), "rank": 1 + 1 / (1 + depth * STEPS / 100)}
        )
        for depth in (3, 4)
    }
    figure = metric_panels(histories, {"size": "|w11|", "rank": "effective rank"}, log=["size"])
    left, right = figure.axes
    assert (left.get_ylabel(), right.get_ylabel()) == ("|w11|", "effective rank")
    assert (left.get_yscale(), right.get_yscale()) == ("log", "linear")
    assert [line.get_label() for line in right.get_lines()] == ["depth 3", "depth 4"]
    return figure


# --- the "Tensor completion as prediction" chapter -----------------------------------------------

#: Six 3-pixel images at the 5 gray levels, as the chapter draws its training images.
LEVELS = np.array([[2, 3, 0], [1, 1, 3], [2, 4, 2], [3, 1, 2], [0, 1, 1], [4, 4, 4]])


def toy_tensors() -> tuple[np.ndarray, np.ndarray]:
    """A smooth 5 x 5 x 5 tensor and a fixed mask of 40 observed entries."""
    b = np.linspace(0, 1, 5)
    tensor = np.einsum("i,j,k->ijk", b, b, b) + 0.5 * np.einsum("i,j,k->ijk", 1 - b, 1 - b, 1 - b)
    mask = (np.arange(125).reshape(5, 5, 5) * 37 % 125) < 40
    return tensor, mask


@COMPARE
def test_plot_images_figure():
    titles = [str(tuple(x)) for x in LEVELS.tolist()]
    figure = plot_images(LEVELS[:, None, :] / 4, titles)
    assert [ax.get_title() for ax in figure.axes] == titles
    return figure


def test_plot_images_shows_each_image_at_its_intensities_with_pixel_borders():
    images = np.random.default_rng(0).random((2, 8, 8))
    figure = plot_images(images)
    try:
        for ax, image in zip(figure.axes, images):
            np.testing.assert_array_equal(ax.images[0].get_array(), image)
            assert ax.images[0].get_clim() == (0, 1), "0 is black and 1 white for every image"
            assert len(ax.lines) == 7 + 7, "a border between neighbouring pixels"
    finally:
        plt.close(figure)


@COMPARE
def test_plot_tensor_slices_figure():
    tensor, mask = toy_tensors()
    figure = plot_tensor_slices({"observed": np.where(mask, tensor, np.nan), "truth": tensor}, mask)
    assert [ax.get_title() for ax in figure.axes[:5]] == [f"pixel 1 = {i}" for i in range(5)]
    return figure


def test_plot_tensor_slices_marks_exactly_the_observed_entries_on_one_color_scale():
    tensor, mask = toy_tensors()
    figure = plot_tensor_slices({"a": tensor, "b": 2 * tensor}, mask)
    try:
        panels = figure.axes[:10]
        for k, ax in enumerate(panels):
            row, i = divmod(k, 5)
            dots = ax.collections[0].get_offsets()  # (column, row) of each dot
            assert sorted(map(tuple, np.asarray(dots)[:, ::-1].astype(int).tolist())) == sorted(
                map(tuple, np.argwhere(mask[i]).tolist())
            )
            np.testing.assert_allclose(ax.images[0].get_array(), (1 + row) * tensor[i])
            assert ax.images[0].get_clim() == (tensor.min(), 2 * tensor.max())
    finally:
        plt.close(figure)


@pytest.mark.parametrize(
    "tensors, observed",
    [
        ({"a": np.zeros((5, 5))}, None),
        ({"a": np.zeros((5, 5, 5)), "b": np.zeros((4, 5, 5))}, None),
        ({"a": np.zeros((5, 5, 5))}, np.zeros((5, 5), dtype=bool)),
        ({}, None),
    ],
)
def test_plot_tensor_slices_rejects_tensors_it_cannot_draw(tensors, observed):
    with pytest.raises(ValueError, match="order-3 tensors"):
        plot_tensor_slices(tensors, observed)


def test_plot_images_rejects_a_single_image_without_the_batch_axis():
    with pytest.raises(ValueError, match=r"\(K, h, w\)"):
        plot_images(np.zeros((8, 8)))


@COMPARE
def test_factorization_networks_figure():
    figure = factorization_networks_figure()
    left, right = figure.axes
    assert left.get_title() == "matrix factorization: a linear network"
    assert right.get_title() == "CP factorization: a non-linear network"
    return figure


@pytest.mark.parametrize("depth, order, dim, rank", [(3, 3, 5, 3), (2, 4, 2, 10), (1, 1, 3, 1)])
def test_factorization_networks_figure_draws_every_node_and_edge(depth, order, dim, rank):
    figure = factorization_networks_figure(depth=depth, order=order, dim=dim, rank=rank)
    try:
        left, right = figure.axes
        widths = [dim] + [rank] * (depth - 1) + [dim]
        assert sum(len(c.get_offsets()) for c in left.collections) == sum(widths)
        assert len(left.lines) == sum(a * b for a, b in zip(widths, widths[1:]))
        nodes = order * (dim + rank) + rank + 1  # inputs, channels, products, the sum
        assert sum(len(c.get_offsets()) for c in right.collections) == nodes
        assert len(right.lines) == order * (dim * rank + rank) + rank
    finally:
        plt.close(figure)


def test_factorization_networks_figure_rejects_empty_networks():
    with pytest.raises(ValueError, match="dim >= 2"):
        factorization_networks_figure(dim=1)


@COMPARE
def test_hierarchical_network_figure():
    figure = hierarchical_network_figure()
    assert figure.axes[0].get_title() == "order 4, mode tree [(0, 1), (2, 3)] → [(0, 1, 2, 3)]"
    return figure


@COMPARE
def test_norms_side_by_side():
    norms = synthetic_norms(STEPS)
    panels = {"matrix": (STEPS, norms, "singular value"), "CP": (STEPS, 2 * norms, "norm")}
    figure = norms_side_by_side(panels)
    assert [ax.get_title() for ax in figure.axes] == ["matrix", "CP"]
    assert [ax.get_ylabel() for ax in figure.axes] == ["singular value", "norm"]
    return figure


@pytest.mark.parametrize("order, dim, width, pool", [(4, 3, 3, 2), (3, 2, 2, 2), (5, 3, 4, 3)])
def test_hierarchical_network_figure_draws_every_node_and_edge(order, dim, width, pool):
    """Inputs and leaf channels; per pooling node its products and, below the root, the channels
    it maps them to; the sum. Edges: dense input maps, one per channel and child, dense maps."""
    figure = hierarchical_network_figure(order=order, dim=dim, width=width, pool=pool)
    try:
        ax = figure.axes[0]
        levels = [len(level) for level in mode_tree(order, pool)]
        children = [
            [min(pool, below - i) for i in range(0, below, pool)] for below in levels[:-1]
        ]  # per level, per node: its number of children
        nodes = order * (dim + width) + sum(levels[1:]) * width + sum(levels[1:-1]) * width + 1
        edges = order * dim * width + sum(map(sum, children)) * width + sum(levels[1:-1]) * width**2
        assert sum(len(c.get_offsets()) for c in ax.collections) == nodes
        assert len(ax.lines) == edges + width
    finally:
        plt.close(figure)
