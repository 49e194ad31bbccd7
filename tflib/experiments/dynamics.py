"""The dynamics experiment: tensor completion by gradient descent from three init scales.

A random rank-5 tensor of order 4 is observed at 2,000 of its 10,000 entries and fit by a CP
factorization with R = 1,000 components, from three initialization scales. Tracked: the largest
component norms and the reconstruction error over the whole tensor (the paper's dynamics figure).
Recorded at the end of each run: how large the fit is and how many large components it has.

Explained in the CP dynamics chapter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from tflib.cp import CPFactorization, component_norms, cp_to_tensor
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
from tflib.train import History, fit

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
    max_steps: int = 40_000
    loss_tol: float = 1e-8
    patience: int | None = None  # 50: the research code's rule (see fit); None: first crossing
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
#: it over five seeds, to report the spread rather than one draw, with a budget long enough for
#: the draws whose smallest init sits on a plateau for tens of thousands of iterations.
SCALES = {
    "book": DynamicsConfig(),
    "paper": DynamicsConfig(seeds=(0, 1, 2, 3, 4), max_steps=100_000),
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
        target, indices, targets = problem(config, seed, device, dtype)
        model = CPFactorization(
            config.shape,
            config.rank,
            std,
            seed=seed_for(seed, INIT, config.init_draw),
            device=device,
            dtype=dtype,
        )
        history = fit(
            model,
            indices,
            targets,
            steps=config.max_steps,
            track={
                "norms": lambda m: largest_component_norms(list(m.factors), config.n_tracked),
                "error": lambda m: normalized_reconstruction_error(m.full(), target),
            },
            progress=progress,
            description=f"seed {seed}, init {std:g}",
            checkpoint=checkpoint(),
            **fit_options(config),
        )
        result.values[key] = final_values(model, problem(config, seed, dtype=torch.float64)[0])
        return history

    keys = [(seed, std) for seed in config.seeds for std in config.init_stds]
    return run_keys(result, keys, run, **loop)


def report(result: DynamicsResult, out: Path) -> None:
    """Print the final errors and draw the figure of every seed."""
    from tflib.plots import dynamics_result_figure

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
