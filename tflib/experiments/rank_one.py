"""The rank-one experiment: from a small initialization, a CP factorization with R = 100
components of an order-3 completion problem follows a rank-one trajectory.

Each run (plain gradient descent) first leaves the origin (:func:`~tflib.theory.leave_origin`),
then runs for a window of steps beside the rank-one trajectory through its largest component
(:func:`~tflib.theory.rank_one_trajectory`). Explained in the rank-one convergence chapter.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from tflib.cp import CPFactorization
from tflib.devices import default_device
from tflib.experiments.dynamics import problem
from tflib.experiments.results import (
    Results,
    add_common_options,
    cli_overrides,
    config_at_scale,
    run_options,
)
from tflib.metrics import largest_component_norms, normalized_reconstruction_error
from tflib.metrics import rank_one_distance as distance_to_rank_one
from tflib.theory import leave_origin, rank_one_trajectory, trajectory_distances
from tflib.train import History, fit


@dataclass(frozen=True)
class RankOneConfig:
    """Settings of the rank-one experiment; ``departure`` is the fraction of the loss at the
    origin that must be gone for a run to have left it, ``window`` the steps compared after."""

    shape: tuple[int, ...] = (10, 10, 10)
    target_rank: int = 1
    n_observations: int = 200
    rank: int = 100
    init_stds: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4)
    lr: float = 100.0
    departure: float = 0.1
    max_steps: int = 100_000
    window: int = 1000
    track_every: int = 10
    seeds: tuple[int, ...] = (0,)


#: "book": one seed (about half a minute on 2 CPU cores); "paper": five seeds, half-decades.
SCALES = {
    "book": RankOneConfig(),
    "paper": RankOneConfig(
        init_stds=(1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5),
        max_steps=400_000,
        seeds=(0, 1, 2, 3, 4),
    ),
}


def rank_one_config(scale: str = "book", seed: int = 0, **overrides) -> RankOneConfig:
    """The configuration at a scale ("book" or "paper"), its seeds counted from ``seed``, with any
    other field overridden."""
    return config_at_scale(SCALES, scale, seed, **overrides)


@dataclass
class RankOneResult(Results):
    """By (seed, init_std): the window, tracking "rank_one_distance", "norm_ratio",
    "trajectory_distance" and "error"; by (seed, init_std, "plateau"): leaving the origin."""

    config_type: ClassVar[type] = RankOneConfig

    def window(self, init_std: float, seed: int | None = None) -> History:
        return self.runs[self._key(init_std, seed)]

    def plateau(self, init_std: float, seed: int | None = None) -> int:
        """The number of steps it took to leave the origin."""
        return self.runs[(*self._key(init_std, seed), "plateau")].steps[-1]

    def _key(self, init_std: float, seed: int | None) -> tuple:
        return (self.config.seeds[0] if seed is None else seed, init_std)

    def largest(self, metric: str, seed: int | None = None) -> dict[float, float]:
        """The largest value of ``metric`` over the window, per init scale."""
        return {s: float(self.window(s, seed)[metric].max()) for s in self.config.init_stds}


def run_rank_one(
    config: RankOneConfig,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> RankOneResult:
    """Run every (seed, init scale), resumable from ``out_dir`` as
    :func:`~tflib.experiments.dynamics.run_dynamics`. Explained in the rank-one convergence chapter.
    """
    device = torch.device(device) if device is not None else default_device()
    result = RankOneResult(config)
    window = dict(steps=config.window, lr=config.lr, track_every=config.track_every)

    def logged(run: str, part: str) -> dict:
        saved = Path(out_dir) / f"{run}_{part}.pt" if out_dir else None
        return dict(progress=progress, description=f"{run} {part}", checkpoint=saved)

    for seed in config.seeds:
        target, *data = problem(config, seed, device, dtype)
        track = {
            "tensor": lambda m: m.full().flatten(),
            "rank_one_distance": lambda m: distance_to_rank_one(m.full()),
            "norm_ratio": lambda m: float(
                torch.div(*largest_component_norms(m.factors, 2).flip(0))
            ),
            "error": lambda m, target=target: normalized_reconstruction_error(m.full(), target),
        }
        for std in config.init_stds:
            run = f"seed{seed}_init{std:g}"
            model = CPFactorization(
                config.shape, config.rank, std, seed=1000 * seed + 2, device=device, dtype=dtype
            )
            departure = dict(lr=config.lr, max_steps=config.max_steps, fraction=config.departure)
            plateau = leave_origin(model, *data, **departure, **logged(run, "plateau"))
            if plateau.status == "interrupted":
                return result
            reference = rank_one_trajectory(model, *data, **window)
            history = fit(model, *data, **window, track=track, **logged(run, "window"))
            if history.status == "interrupted":
                return result
            distances = trajectory_distances(history.metrics.pop("tensor"), reference["tensor"])
            history.metrics["trajectory_distance"] = distances.tolist()
            result.runs[(seed, std)], result.runs[(seed, std, "plateau")] = history, plateau
            if out_dir is not None:
                result.save(Path(out_dir) / "results.json")
    return result


def run_command(args: argparse.Namespace) -> None:
    """``python -m tflib.experiments rank-one``: run, write results.json and one figure a seed."""
    from tflib.plots import rank_one_figure

    config = rank_one_config(args.scale, **cli_overrides(args, "target_rank"))
    out = Path(args.out)
    print(f"rank-one experiment, scale {args.scale!r}, seeds {config.seeds}, writing to {out}")
    result = run_rank_one(config, **run_options(args))
    if len(result.runs) < 2 * len(config.seeds) * len(config.init_stds):
        return print("interrupted: run the same command again to resume")
    for seed in config.seeds:
        for std, value in result.largest("trajectory_distance", seed).items():
            print(f"seed {seed}, init {std:g}: largest trajectory distance {value:.3g}")
        rank_one_figure(result, seed).savefig(out / f"rank_one_seed{seed}.png", bbox_inches="tight")


def add_command(commands) -> None:
    """Add the ``rank-one`` subcommand to the command line's subparsers."""
    command = commands.add_parser("rank-one", help="rank-one trajectories (rank-one chapter)")
    add_common_options(command, SCALES, "results/rank_one", run_command)
    command.add_argument("--target-rank", type=int, default=1, help="2: no rank-one solution")
    command.set_defaults(dtype="float64")
