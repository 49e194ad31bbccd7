"""The rank-one convergence experiment: small initializations follow a rank-one trajectory.

A random order-3 tensor of rank one (rank two for the counter-example) is observed at some of its
entries and fit by a CP factorization with R = 100 components, by plain gradient descent from
several init scales. Each run first leaves the origin (:func:`~tflib.theory.leave_origin`), then
runs for a window of steps beside the rank-one trajectory through its largest component at that
moment (:func:`~tflib.theory.rank_one_trajectory`).

Explained in the rank-one convergence chapter.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from tflib.cp import CPFactorization
from tflib.devices import default_device
from tflib.experiments.dynamics import problem
from tflib.experiments.results import Results, add_common_options, config_at_scale
from tflib.metrics import largest_component_norms, normalized_reconstruction_error
from tflib.metrics import rank_one_distance as distance_to_rank_one
from tflib.theory import leave_origin, rank_one_trajectory, trajectory_distances
from tflib.train import History, fit


@dataclass(frozen=True)
class RankOneConfig:
    """Settings of the rank-one experiment. ``departure``: the fraction of the loss at the origin
    that must be gone for a run to have left it; ``window``: steps compared after that."""

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


#: "book": one seed, four decades of init scale (about a minute on 2 CPU cores); "paper": five
#: seeds and half-decades down to 3e-5, to report the spread and the slope over more points.
SCALES = {
    "book": RankOneConfig(),
    "paper": RankOneConfig(
        seeds=(0, 1, 2, 3, 4),
        init_stds=(1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5),
        max_steps=400_000,
    ),
}


def rank_one_config(scale: str = "book", seed: int = 0, **overrides) -> RankOneConfig:
    """The configuration at a scale, its seeds counted from ``seed``, other fields overridden."""
    config = config_at_scale(SCALES, scale)
    overrides.setdefault("seeds", tuple(seed + s for s in config.seeds))
    return dataclasses.replace(config, **overrides)


@dataclass
class RankOneResult(Results):
    """Keyed by (seed, init_std): the window's History, tracking "rank_one_distance",
    "norm_ratio", "trajectory_distance" and "error"; by (seed, init_std, "plateau"): the History
    of leaving the origin, whose last step is the length of the plateau."""

    config_type: ClassVar[type] = RankOneConfig

    def window(self, init_std: float, seed: int | None = None) -> History:
        return self.runs[(self.config.seeds[0] if seed is None else seed, init_std)]

    def plateau(self, init_std: float, seed: int | None = None) -> int:
        key = (self.config.seeds[0] if seed is None else seed, init_std, "plateau")
        return self.runs[key].steps[-1]

    def largest(self, metric: str, seed: int | None = None) -> dict[float, float]:
        """The largest value of ``metric`` over the window, per init scale."""
        return {s: float(self.window(s, seed)[metric].max()) for s in self.config.init_stds}


def norm_ratio(model: CPFactorization) -> float:
    """Second-largest over largest component norm."""
    second, first = largest_component_norms(list(model.factors), 2).flip(0)
    return float(second / first)


def run_rank_one(
    config: RankOneConfig,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> RankOneResult:
    """Run every (seed, init scale); resumable through checkpoints in ``out_dir``, like
    :func:`~tflib.experiments.dynamics.run_dynamics`.

    Explained in the rank-one convergence chapter.
    """
    device = torch.device(device) if device is not None else default_device()
    out_dir = Path(out_dir) if out_dir is not None else None
    result = RankOneResult(config)
    steps = dict(steps=config.window, lr=config.lr, track_every=config.track_every)
    for seed in config.seeds:
        target, indices, targets = problem(config, seed, device, dtype)
        track = {
            "tensor": lambda m: m.full().flatten(),
            "rank_one_distance": lambda m: distance_to_rank_one(m.full()),
            "norm_ratio": norm_ratio,
            "error": lambda m, target=target: normalized_reconstruction_error(m.full(), target),
        }
        for std in config.init_stds:
            model = CPFactorization(
                config.shape, config.rank, std, seed=1000 * seed + 2, device=device, dtype=dtype
            )
            run = f"seed {seed}, init {std:g}"
            saved = out_dir / f"seed{seed}_init{std:g}" if out_dir else None
            plateau = leave_origin(
                model, indices, targets, lr=config.lr, max_steps=config.max_steps,
                fraction=config.departure, track_every=config.max_steps, progress=progress,
                description=f"{run}, plateau", checkpoint=saved and f"{saved}_plateau.pt",
            )
            if plateau.status == "interrupted":
                return result
            reference = rank_one_trajectory(model, indices, targets, **steps)
            window = fit(
                model, indices, targets, **steps, track=track, progress=progress,
                description=f"{run}, window", checkpoint=saved and f"{saved}_window.pt",
            )
            if window.status == "interrupted":
                return result
            distances = trajectory_distances(window.metrics.pop("tensor"), reference["tensor"])
            window.metrics["trajectory_distance"] = distances.tolist()
            result.runs[(seed, std)], result.runs[(seed, std, "plateau")] = window, plateau
            if out_dir is not None:
                result.save(out_dir / "results.json")
    return result


def run_command(args: argparse.Namespace) -> None:
    """``python -m tflib.experiments rank-one``: run, write results.json and the figures."""
    from tflib.plots import rank_one_figure

    overrides = {"seeds": tuple(args.seeds)} if args.seeds else {}
    config = rank_one_config(args.scale, target_rank=args.target_rank, **overrides)
    out = Path(args.out)
    print(f"rank-one experiment, scale {args.scale!r}, seeds {config.seeds}, writing to {out}")
    result = run_rank_one(
        config, device=args.device, dtype=getattr(torch, args.dtype), out_dir=out,
        progress=not args.no_progress,
    )
    if len(result.runs) < 2 * len(config.seeds) * len(config.init_stds):
        print("interrupted: run the same command again to resume")
        return
    for seed in config.seeds:
        for std, value in result.largest("trajectory_distance", seed).items():
            print(f"seed {seed}, init {std:g}: largest trajectory distance {value:.3g}")
        rank_one_figure(result, seed).savefig(out / f"rank_one_seed{seed}.png", bbox_inches="tight")
    print(f"results in {out / 'results.json'}, figures in {out}")


def add_command(commands) -> None:
    """Add the ``rank-one`` subcommand to the command line's subparsers."""
    command = commands.add_parser("rank-one", help="rank-one trajectories (rank-one chapter)")
    add_common_options(command, SCALES, out="results/rank_one")
    command.set_defaults(dtype="float64")
    command.add_argument("--seeds", type=int, nargs="+", help="override the scale's seeds")
    command.add_argument("--target-rank", type=int, default=1, help="2: the counter-example")
    command.set_defaults(run=run_command)
