"""The rank-one experiment: from a small initialization, a CP factorization with R = 100
components of an order-3 completion problem follows a rank-one trajectory.

Each run (plain gradient descent) first leaves the origin (:func:`leave_origin`), then runs for a
window of steps beside the rank-one trajectory through its largest component
(:func:`rank_one_trajectory`). Explained in the rank-one convergence chapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from tflib.cp import CPFactorization
from tflib.experiments.cli import Command, save_figure
from tflib.experiments.dynamics import problem
from tflib.experiments.results import (
    INIT,
    Results,
    check_config,
    config_at_scale,
    resolve_device,
    run_keys,
    seed_for,
    significant,
)
from tflib.metrics import largest_component_norms, normalized_reconstruction_error
from tflib.metrics import rank_one_distance as distance_to_rank_one
from tflib.theory import trajectory_distances
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

    def __post_init__(self) -> None:
        positive = ("shape", "target_rank", "n_observations", "rank", "init_stds", "lr")
        check_config(self, positive=(*positive, "departure", "window", "track_every"))


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
    "trajectory_distance" and "error"; its value "plateau" is the steps it took to leave the
    origin."""

    config_type: ClassVar[type] = RankOneConfig
    key_names: ClassVar[tuple[str, ...]] = ("seed", "init")

    def window(self, init_std: float, seed: int | None = None) -> History:
        return self.runs[self._key(init_std, seed)]

    def plateau(self, init_std: float, seed: int | None = None) -> int:
        """The number of steps it took to leave the origin."""
        return self.values[self._key(init_std, seed)]["plateau"]

    def _key(self, init_std: float, seed: int | None) -> tuple:
        return (self.config.seeds[0] if seed is None else seed, init_std)

    def largest(self, metric: str, seed: int | None = None) -> dict[float, float]:
        """The largest value of ``metric`` over the window, per init scale."""
        return {s: float(self.window(s, seed)[metric].max()) for s in self.config.init_stds}


def leave_origin(
    model: CPFactorization,
    indices: torch.Tensor,
    targets: torch.Tensor,
    *,
    fraction: float = 0.1,
    max_steps: int,
    **fit_options,
) -> History:
    r"""Gradient descent (by :func:`~tflib.train.fit`) until the loss first falls below
    :math:`(1 - \text{fraction})\, \mathcal{L}(0)`: the moment the end tensor leaves the origin.

    Stopping two trajectories there aligns them in time, step by step, from then on.

    Explained in the rank-one convergence chapter.
    """
    threshold = (1 - fraction) * float(targets.square().mean())
    history = fit(model, indices, targets, steps=max_steps, loss_tol=threshold, **fit_options)
    if history.status not in ("converged", "interrupted"):
        raise RuntimeError(
            f"the loss stayed above {threshold:.3g} for {max_steps} steps: raise max_steps or the "
            "step size, or start from a larger initialization"
        )
    return history


def rank_one_trajectory(
    model: CPFactorization, indices: torch.Tensor, targets: torch.Tensor, **fit_options
) -> History:
    r"""The rank-one trajectory :math:`\overline{\mathcal{W}}(t)` through the largest component of
    ``model``: gradient descent (:func:`~tflib.train.fit`, ``fit_options`` passed on) over a
    one-component factorization started from it, tracking the end tensor as "tensor".

    Explained in the rank-one convergence chapter.
    """
    largest = int(model.component_norms().argmax())
    single = CPFactorization(model.shape, 1, 0.0, device=model.device, dtype=model.factors[0].dtype)
    single.set_factors([f.detach()[:, largest : largest + 1] for f in model.factors])
    track = {"tensor": lambda m: m.full().flatten()}
    return fit(single, indices, targets, track=track, progress=False, **fit_options)


def run_rank_one(
    config: RankOneConfig,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
    progress: bool = True,
    **loop,
) -> RankOneResult:
    """Run every (seed, init scale) through :func:`~tflib.experiments.results.run_keys`
    (``loop``: its ``out_dir``, ``shard``, ``force``). Explained in the rank-one convergence
    chapter.
    """
    device = resolve_device(device)
    result = RankOneResult(config, settings={"dtype": str(dtype)})
    window = {"steps": config.window, "lr": config.lr, "track_every": config.track_every}

    def run(key: tuple, checkpoint) -> History:
        seed, std = key
        target, *data = problem(config, seed, device, dtype)
        model = CPFactorization(
            config.shape, config.rank, std, seed=seed_for(seed, INIT), device=device, dtype=dtype
        )
        run = f"seed {seed}, init {std:g}"
        plateau = leave_origin(
            model,
            *data,
            lr=config.lr,
            max_steps=config.max_steps,
            fraction=config.departure,
            progress=progress,
            description=f"{run}, plateau",
            checkpoint=checkpoint("plateau"),
        )
        if plateau.status == "interrupted":
            return plateau
        reference = rank_one_trajectory(model, *data, **window)
        track = {
            "tensor": lambda m: m.full().flatten(),
            "rank_one_distance": lambda m: distance_to_rank_one(m.full()),
            "norm_ratio": lambda m: float(
                torch.div(*largest_component_norms(m.factors, 2).flip(0))
            ),
            "error": lambda m: normalized_reconstruction_error(m.full(), target),
        }
        options = {"progress": progress, "description": f"{run}, window"}
        history = fit(
            model, *data, **window, track=track, checkpoint=checkpoint("window"), **options
        )
        if history.status != "interrupted":
            distances = trajectory_distances(history.metrics.pop("tensor"), reference["tensor"])
            history.metrics["trajectory_distance"] = distances.tolist()
            result.values[key] = {"plateau": plateau.steps[-1]}
        return history

    keys = [(seed, std) for seed in config.seeds for std in config.init_stds]
    return run_keys(result, keys, run, **loop)


#: A run has left the rank-one tensors once its distance to them exceeds this.
LEFT_RANK_ONE = 0.1


def run_records(result: RankOneResult) -> list[dict]:
    """The numbers of every run, three significant digits: ``seed``, ``init_std``, ``plateau``
    (the steps it took to leave the origin); over the window, the ``largest`` value of each
    distance ("rank_one_distance", "norm_ratio", "trajectory_distance"), the ``closest`` it came
    to rank one, the step at which it ``left`` rank one (distance above :data:`LEFT_RANK_ONE`
    after the window's start; None if it stayed) and its final ``loss``, ``error`` and
    ``rank_one_distance``.

    Explained in the rank-one convergence chapter.
    """
    metrics, records = ("rank_one_distance", "norm_ratio", "trajectory_distance"), []
    for (seed, std), history in sorted(result.runs.items()):
        distance = history["rank_one_distance"]
        left = distance > LEFT_RANK_ONE
        records.append(
            {"seed": seed, "init_std": std, "plateau": result.plateau(std, seed)}
            | {"largest": {m: significant(history[m].max(), 3) for m in metrics}}
            | {"closest": significant(distance.min(), 3)}
            | {"left": int(history["steps"][left.argmax()]) if left.any() else None}
            | {k: significant(history[k][-1], 3) for k in ("loss", "error", "rank_one_distance")}
        )
    return records


def report(result: RankOneResult, out: Path) -> None:
    """Print the largest trajectory distance of every run and draw one figure a seed."""
    from tflib.plots import rank_one_figure

    for seed in result.config.seeds:
        for std, value in result.largest("trajectory_distance", seed).items():
            print(f"seed {seed}, init {std:g}: largest trajectory distance {value:.3g}")
        save_figure(rank_one_figure(result, seed), out, seed)
    print(f"results in {out / 'results.json'}, figures in {out}/figure-seed*.png")


COMMAND = Command(
    "rank-one",
    "rank-one trajectories (rank-one chapter)",
    SCALES,
    rank_one_config,
    RankOneResult,
    run_rank_one,
    report,
    run_records,
    options=(
        ("--target-rank", {"type": int, "help": "2: no rank-one solution"}),
        ("--init-stds", {"type": float, "nargs": "+", "help": "override the init scales"}),
        ("--n-observations", {"type": int, "help": "override the observed entries"}),
        ("--window", {"type": int, "help": "override the steps compared after leaving the origin"}),
        ("--track-every", {"type": int, "help": "override the steps between records"}),
    ),
    dtype="float64",
)
