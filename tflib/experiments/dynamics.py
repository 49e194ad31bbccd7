"""The dynamics experiment: tensor completion by gradient descent from three init scales.

A random rank-5 tensor of order 4 is observed at 2,000 of its 10,000 entries and fit by a CP
factorization with R = 1,000 components, from three initialization scales. Tracked: the largest
component norms and the reconstruction error over the whole tensor (the paper's dynamics figure).
Recorded at the end of each run: how large the fit is and how many large components it has.

Explained in the CP dynamics chapter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from tflib.checks import check_number
from tflib.cp import CPFactorization, component_norms, cp_entries, cp_to_tensor
from tflib.data import observe, random_cp_tensor, sample_entries
from tflib.experiments.cli import Command, finals, save_figure
from tflib.experiments.results import (
    INIT,
    OBSERVATIONS,
    TARGET,
    Results,
    check_config,
    config_at_scale,
    fit_options,
    resolve_device,
    run_keys,
    seed_for,
)
from tflib.metrics import largest_component_norms, normalized_reconstruction_error
from tflib.plots import COLORS, plot_component_norms, plot_errors, styled
from tflib.train import AdaptiveStepGD, History, fit

#: A component counts as large once its norm exceeds this fraction of the target's norm.
LARGE = 0.02


@dataclass(frozen=True)
class DynamicsConfig:
    """Settings of the dynamics experiment; the defaults are the paper's (paper-settings.md)."""

    shape: tuple[int, ...] = (10, 10, 10, 10)
    target_rank: int = 5
    n_observations: int = 2000
    rank: int = 1000
    init_stds: tuple[float, ...] = (5e-2, 1e-2, 5e-3)
    lr: float = 1e-2
    optimizer: str = "adaptive_gd"
    max_steps: int = 200_000
    loss_tol: float = 1e-8
    patience: int | None = 50  # the research code's rule (see fit); None: the first crossing
    track_every: int = 25
    n_tracked: int = 10
    seeds: tuple[int, ...] = (0,)
    init_draw: int = 0  # k > 0 draws another initialization for the same target and observations

    def __post_init__(self) -> None:
        check_config(self, positive=("shape", "target_rank", "n_observations", "rank", "lr"))
        if self.n_observations > math.prod(self.shape):
            raise ValueError(
                f"n_observations is {self.n_observations}, but a tensor of shape {self.shape} "
                f"has only {math.prod(self.shape)} entries"
            )


#: "book" runs the paper's setting for one seed (about a minute on 2 CPU cores); "paper" repeats
#: it over five seeds, to report the spread rather than one draw. Both stop as the research code
#: does (loss below 1e-8 at 50 evaluations in a row, one every 25 steps) within 200,000 steps,
#: the study's budget (the paper's is 1,000,000), which every run of the study at the paper's
#: init scales stayed within.
SCALES = {
    "book": DynamicsConfig(),
    "paper": DynamicsConfig(seeds=(0, 1, 2, 3, 4)),
}


def dynamics_config(scale: str = "book", seed: int = 0, **overrides) -> DynamicsConfig:
    """The configuration at a scale ("book" or "paper"), its seeds counted from ``seed``, with any
    other field overridden."""
    return config_at_scale(SCALES, scale, seed, **overrides)


@dataclass
class DynamicsResult(Results):
    """Histories of every run, keyed by (seed, init_std); each tracks "norms" and "error". Its
    values: "norm" (the fit's Frobenius norm over the target's), "n_large" (components of norm
    above :data:`LARGE` times the target's) and "worst_entry" (the share of the squared error in
    the single worst entry: near 1 when one entry holds all of it), all of the final fit."""

    config_type: ClassVar[type] = DynamicsConfig
    key_names: ClassVar[tuple[str, ...]] = ("seed", "init")

    def history(self, init_std: float, seed: int | None = None) -> History:
        """The run at ``init_std`` for ``seed`` (the first seed if not given)."""
        return self.runs[(self.config.seeds[0] if seed is None else seed, init_std)]

    def final_errors(self) -> dict[float, list[float]]:
        """Final reconstruction error per init scale, one value per seed."""
        return {
            std: [
                self.runs[(seed, std)]["error"][-1]
                for seed in self.config.seeds
                if (seed, std) in self.runs
            ]
            for std in self.config.init_stds
        }


def problem(config, seed: int, device=None, dtype=torch.float32, target=None):
    """The target tensor (unless given: a random CP tensor of rank ``config.target_rank`` and
    norm one), observed indices and observed values of one seed."""
    if target is None:
        options = {"seed": seed_for(seed, TARGET), "device": device, "dtype": dtype}
        target = random_cp_tensor(config.shape, config.target_rank, 1.0, **options)
    draw = seed_for(seed, OBSERVATIONS)
    indices = sample_entries(config.shape, config.n_observations, seed=draw, device=device)
    return target, indices, observe(target, indices)


def start(config, seed: int, init_std: float, device, dtype):
    """The run ``(seed, init_std)``'s :func:`problem` and its untrained model: ``(target, indices,
    targets, model)``, the model a :class:`~tflib.cp.CPFactorization` drawn with the init seed."""
    target, indices, targets = problem(config, seed, device, dtype)
    model = CPFactorization(
        config.shape,
        config.rank,
        init_std,
        seed=seed_for(seed, INIT, config.init_draw),
        device=device,
        dtype=dtype,
    )
    return target, indices, targets, model


def tracked(config, target: torch.Tensor) -> dict:
    """What a run of the dynamics experiment records: the ``n_tracked`` largest component norms
    ("norms") and the reconstruction error over all entries ("error")."""
    return {
        "norms": lambda m: largest_component_norms(list(m.factors), config.n_tracked),
        "error": lambda m: normalized_reconstruction_error(m.full(), target),
    }


def final_values(model: CPFactorization, target: torch.Tensor) -> dict[str, float]:
    """The final fit's "norm", "n_large" and "worst_entry" (see :class:`DynamicsResult`), from
    its factors in float64 and the float64 ``target``."""
    factors = [f.detach().cpu().double() for f in model.factors]
    tensor = cp_to_tensor(factors)
    squares = (tensor - target).square()
    return {
        "norm": float(tensor.norm() / target.norm()),
        "n_large": int((component_norms(factors) > LARGE * target.norm()).sum()),
        "worst_entry": float(squares.max() / squares.sum()),
    }


def run_dynamics(
    config: DynamicsConfig,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    **loop,
) -> DynamicsResult:
    """Run every (seed, init scale) of the dynamics experiment, through
    :func:`~tflib.experiments.results.run_keys` (``loop``: its ``out_dir``, ``shard``,
    ``force``).

    Explained in the CP dynamics chapter.
    """
    device = resolve_device(device)
    result = DynamicsResult(config, settings={"dtype": str(dtype)})

    def run(key: tuple, checkpoint) -> History:
        seed, std = key
        target, indices, targets, model = start(config, seed, std, device, dtype)
        history = fit(
            model,
            indices,
            targets,
            steps=config.max_steps,
            track=tracked(config, target),
            progress=progress,
            description=f"seed {seed}, init {std:g}",
            checkpoint=checkpoint(),
            **fit_options(config),
        )
        result.values[key] = final_values(model, problem(config, seed, dtype=torch.float64)[0])
        return history

    keys = [(seed, std) for seed in config.seeds for std in config.init_stds]
    return run_keys(result, keys, run, **loop)


def step_size(optimizer: torch.optim.Optimizer) -> float:
    r"""The step size of the optimizer's last step of gradient descent: ``lr`` for plain gradient
    descent, :math:`\eta / (\sqrt{\hat v_t} + \epsilon)` for :class:`~tflib.train.AdaptiveStepGD`.
    It is the gradient-flow time that step covers, since the step moves the parameters by
    the step size times the gradient.

    Explained in the CP dynamics chapter.
    """
    group = optimizer.param_groups[0]
    if isinstance(optimizer, AdaptiveStepGD):
        state = optimizer.state[group["params"][0]]
        v_hat = state["v"] / (1 - group["beta"] ** state["t"])
        return group["lr"] / (math.sqrt(v_hat) + group["eps"])
    if type(optimizer) is torch.optim.SGD and not group["momentum"]:
        return group["lr"]
    raise ValueError(
        f"gradient-flow time is defined for gradient descent (gd, adaptive_gd), not for "
        f"{type(optimizer).__name__}"
    )


def timed_run(
    config: DynamicsConfig,
    seed: int,
    init_std: float,
    *,
    optimizer: str | None = None,
    lr: float | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[History, CPFactorization]:
    """The run ``(seed, init_std)`` of the dynamics experiment, with ``optimizer`` and ``lr`` in
    place of the config's if given, that also records the *gradient-flow time* its iterations
    have covered: the sum of their step sizes (:func:`step_size`).

    It is trained by :func:`~tflib.train.fit` with the config's options, as in
    :func:`run_dynamics`, so it follows the same trajectory and stops by the same rule.
    Returns its history, which tracks "norms", "error" and "time" every ``config.track_every``
    iterations and at the last, and the trained model.

    Explained in the CP dynamics chapter.
    """
    device = resolve_device(device)
    target, indices, targets, model = start(config, seed, init_std, device, dtype)
    time = [0.0]  # the gradient-flow time covered so far

    def tick(opt: torch.optim.Optimizer) -> None:
        time[0] += step_size(opt)

    options = {"optimizer": optimizer or config.optimizer, "lr": lr or config.lr}
    history = fit(
        model,
        indices,
        targets,
        steps=config.max_steps,
        track=tracked(config, target) | {"time": lambda m: time[0]},
        progress=False,
        after_step=tick,
        **fit_options(config) | options,
    )
    return history, model


def sharpness(
    model: CPFactorization,
    indices: torch.Tensor,
    targets: torch.Tensor,
    iterations: int = 100,
    seed: int = 0,
) -> float:
    r"""The largest eigenvalue :math:`\lambda_{\max}` of the Hessian of the loss in the factors,
    at the model's factors: power iteration on Hessian-vector products, in float64.

    Near a minimum, gradient descent with a fixed step :math:`\eta` settles only if
    :math:`\eta < 2 / \lambda_{\max}`; a larger step makes the iterates swing along the
    eigenvector. (Power iteration finds the eigenvalue of largest magnitude; near a minimum the
    Hessian has no large negative one.)

    Explained in the CP dynamics chapter.
    """
    check_number("iterations", iterations, low=1, integer=True)
    factors = [f.detach().double().requires_grad_() for f in model.factors]
    loss = torch.nn.functional.mse_loss(
        cp_entries(factors, indices, method="gather"), targets.double()
    )
    gradients = torch.autograd.grad(loss, factors, create_graph=True)
    generator = torch.Generator().manual_seed(seed)
    vector = [torch.randn(f.shape, generator=generator, dtype=torch.float64) for f in factors]
    vector = [v.to(factors[0].device) for v in vector]
    value = 0.0
    for _ in range(iterations):
        norm = torch.sqrt(sum(v.square().sum() for v in vector))
        vector = [v / norm for v in vector]
        product = torch.autograd.grad(gradients, factors, grad_outputs=vector, retain_graph=True)
        value = float(sum((p * v).sum() for p, v in zip(product, vector)))
        vector = [p.detach() for p in product]
    return value


Curves = Mapping[str, tuple[Sequence[float], np.ndarray]]


@styled
def dynamics_figure(norms: Curves, error_curves: Curves) -> Figure:
    """The paper's dynamics figure: a panel of component norms per run (title -> (iterations,
    (T, K) norms)), side by side on one scale, and the reconstruction errors (label ->
    (iterations, errors)) in the last panel.

    Explained in the CP dynamics chapter.
    """
    fig, axes = plt.subplots(
        1, len(norms) + 1, figsize=(3.3 * len(norms) + 3.6, 3.3), layout="constrained"
    )
    for ax, (title, (steps, values)) in zip(axes, norms.items()):
        plot_component_norms(steps, values, ax=ax, title=title)
        ax.sharey(axes[0])
        ax.set_ylabel("component norm" if ax is axes[0] else "")
    plot_errors(error_curves, ax=axes[-1])
    axes[-1].set_title("reconstruction error")
    return fig


def dynamics_result_figure(result: DynamicsResult, seed: int | None = None) -> Figure:
    """:func:`dynamics_figure` of one seed of a :class:`DynamicsResult` (the first if not given):
    the component norms of every init scale, largest first, and their reconstruction errors.

    Explained in the CP dynamics chapter.
    """
    runs = {std: result.history(std, seed) for std in sorted(result.config.init_stds, reverse=True)}
    return dynamics_figure(
        {f"init {std:g}": (h["steps"], h["norms"]) for std, h in runs.items()},
        {f"init {std:g}": (h["steps"], h["error"]) for std, h in runs.items()},
    )


@styled
def clock_figure(runs: Mapping[str, History], k: int = 5) -> Figure:
    """Runs of one draw and init that differ in their step (label -> a :func:`timed_run` history):
    the ``k`` largest component norms against iterations and against gradient-flow time (top),
    the step size and the loss against iterations (bottom).

    Explained in the CP dynamics chapter.
    """
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.2), layout="constrained")
    for (label, history), color, style in zip(runs.items(), COLORS, ("-", "--", ":", "-.")):
        steps, time, norms = history["steps"], history["time"], history["norms"][:, :k]
        options = {"color": color, "linestyle": style}
        axes[0, 0].plot(steps, norms[:, 0], label=label, **options)
        axes[0, 0].plot(steps, norms[:, 1:], **options)
        axes[0, 1].plot(time, norms, **options)
        axes[1, 0].plot(steps[1:], np.diff(time) / np.diff(steps), **options)
        axes[1, 1].plot(steps, history["loss"], **options)
    axes[0, 0].set(title=f"the {k} largest components", xlabel="iteration", ylabel="component norm")
    axes[0, 0].legend()
    axes[0, 1].set(title="the same against gradient-flow time", xlabel="sum of the step sizes")
    axes[1, 0].set(title="step size", xlabel="iteration", yscale="log")
    axes[1, 1].set(title="loss", xlabel="iteration", yscale="log")
    return fig


def report(result: DynamicsResult, out: Path) -> None:
    """Print the final errors and draw the figure of every seed."""
    for std, errors in result.final_errors().items():
        print(f"init {std:g}: final reconstruction error {finals(errors)}")
    for seed in result.config.seeds:
        save_figure(dynamics_result_figure(result, seed), out, seed)
    print(f"results in {out / 'results.json'}, figures in {out}/figure-seed*.png")


COMMAND = Command(
    "dynamics",
    "component-norm dynamics (the CP dynamics chapter)",
    SCALES,
    dynamics_config,
    DynamicsResult,
    run_dynamics,
    report,
    options=(("--max-steps", {"type": int, "help": "override the step budget of each run"}),),
)
