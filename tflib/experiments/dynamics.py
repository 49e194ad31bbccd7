"""The dynamics experiment: tensor completion by gradient descent from three init scales.

A random rank-5 tensor of order 4 is observed at 2,000 of its 10,000 entries and fit by a CP
factorization with R = 1,000 components, from three initialization scales. Tracked: the largest
component norms and the reconstruction error over the whole tensor (the paper's dynamics figure).

Explained in the CP dynamics chapter.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from tflib.cp import CPFactorization
from tflib.data import observe, random_cp_tensor, sample_entries
from tflib.devices import default_device
from tflib.experiments.results import (
    Results,
    add_common_options,
    cli_overrides,
    config_at_scale,
    run_options,
)
from tflib.metrics import largest_component_norms, normalized_reconstruction_error
from tflib.train import History, fit


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
    """Histories of every run, keyed by (seed, init_std); each tracks "norms" and "error"."""

    config_type: ClassVar[type] = DynamicsConfig

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


def checkpoint_path(out_dir: Path, seed: int, init_std: float) -> Path:
    """Where :func:`run_dynamics` checkpoints the run of ``seed`` at ``init_std``."""
    return Path(out_dir) / f"seed{seed}_init{init_std:g}.pt"


def problem(config: DynamicsConfig, seed: int, device=None, dtype=torch.float32, target=None):
    """The target tensor (unless given: a random CP tensor of rank ``config.target_rank`` and
    norm one), observed indices and observed values of one seed."""
    if target is None:
        options = {"seed": 1000 * seed, "device": device, "dtype": dtype}
        target = random_cp_tensor(config.shape, config.target_rank, 1.0, **options)
    indices = sample_entries(
        config.shape, config.n_observations, seed=1000 * seed + 1, device=device
    )
    return target, indices, observe(target, indices)


def run_dynamics(
    config: DynamicsConfig,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> DynamicsResult:
    """Run every (seed, init scale) of the dynamics experiment.

    With ``out_dir``, each run checkpoints into it and the results so far are written to
    ``out_dir/results.json`` after every run, so an interrupted experiment resumes where it
    stopped when called again with the same ``out_dir``.

    Explained in the CP dynamics chapter.
    """
    device = torch.device(device) if device is not None else default_device()
    out_dir = Path(out_dir) if out_dir is not None else None
    result = DynamicsResult(config)
    for seed in config.seeds:
        target, indices, targets = problem(config, seed, device, dtype)
        track = {
            "norms": lambda m: largest_component_norms(list(m.factors), config.n_tracked),
            "error": lambda m, target=target: normalized_reconstruction_error(m.full(), target),
        }
        for std in config.init_stds:
            init_seed = 1000 * seed + 2 + 10**9 * config.init_draw
            model = CPFactorization(
                config.shape, config.rank, std, seed=init_seed, device=device, dtype=dtype
            )
            history = fit(
                model,
                indices,
                targets,
                steps=config.max_steps,
                optimizer=config.optimizer,
                lr=config.lr,
                loss_tol=config.loss_tol,
                patience=config.patience,
                track=track,
                track_every=config.track_every,
                progress=progress,
                description=f"seed {seed}, init {std:g}",
                checkpoint=checkpoint_path(out_dir, seed, std) if out_dir else None,
            )
            result.runs[(seed, std)] = history
            if history.status == "interrupted":
                return result
            if out_dir is not None:
                result.save(out_dir / "results.json")
    return result


def run_command(args: argparse.Namespace) -> None:
    """``python -m tflib.experiments dynamics``: run, write results.json and the figure."""
    from tflib.plots import dynamics_result_figure

    config = dynamics_config(args.scale, **cli_overrides(args, "max_steps"))
    out = Path(args.out)
    print(f"dynamics experiment, scale {args.scale!r}, seeds {config.seeds}, writing to {out}")
    result = run_dynamics(config, **run_options(args))
    if result.interrupted:
        return print("interrupted: run the same command again to resume")
    for std, errors in result.final_errors().items():
        print(f"init {std:g}: final reconstruction error " + ", ".join(f"{e:.3g}" for e in errors))
    figure = dynamics_result_figure(result)
    figure.savefig(out / "dynamics.png", bbox_inches="tight")
    print(f"results in {out / 'results.json'}, figure in {out / 'dynamics.png'}")


def add_command(commands) -> None:
    """Add the ``dynamics`` subcommand to the command line's subparsers."""
    command = commands.add_parser(
        "dynamics", help="component-norm dynamics (the CP dynamics chapter)"
    )
    add_common_options(command, SCALES, "results/dynamics", run_command)
    command.add_argument("--max-steps", type=int, help="override the step budget of each run")
