"""Matrix completion by deep matrix factorizations, against the minimum nuclear norm.

A random low-rank matrix, observed at several numbers of entries, is completed by factorizations
of several depths from a small initialization and by the minimum-nuclear-norm completion
(Gunasekar et al. 2017; Arora et al. 2019); with ``incremental=True``, the singular values of the
end-to-end matrix are followed through training. :func:`norms_versus_rank` is the 2 x 2 problem
of Razin & Cohen (2020), on which gradient descent minimizes no norm.

Explained in the Matrix factorization chapter.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from tflib.data import observe, random_cp_tensor, sample_entries
from tflib.devices import default_device
from tflib.experiments.results import (
    Results,
    add_common_options,
    cli_overrides,
    config_at_scale,
    run_options,
)
from tflib.matrix import DeepMatrixFactorization, nuclear_norm_completion
from tflib.metrics import effective_rank, normalized_reconstruction_error
from tflib.train import History, fit

NUCLEAR = "nuclear norm"


@dataclass(frozen=True)
class MatrixConfig:
    """Settings of the matrix-completion experiment; the defaults are Arora et al.'s setting."""

    shape: tuple[int, int] = (100, 100)
    target_rank: int = 5
    n_observations: tuple[int, ...] = (1000, 2000, 3000, 4000, 5000)
    depths: tuple[int, ...] = (1, 2, 3)
    init_stds: tuple[float, ...] = (1e-3,)
    nuclear_norm: bool = True
    lr: float = 1e-2
    optimizer: str = "adaptive_gd"
    max_steps: int = 20_000
    loss_tol: float = 1e-5
    track_every: int = 25
    n_tracked: int = 10
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)


#: "book": a 40 x 40 matrix of rank 3 and three seeds, for 2 CPU cores; "paper": Arora et al.'s.
SCALES = {
    "book": MatrixConfig((40, 40), 3, (400, 500, 800), seeds=(0, 1, 2)),
    "paper": MatrixConfig(),
}


def matrix_config(scale="book", seed=0, *, incremental=False, **overrides) -> MatrixConfig:
    """The experiment at a scale ("book" or "paper"), its seeds counted from ``seed``, with any
    field overridden. ``incremental=True``: depths 2 and 3 from init scales 1e-2 and 1e-3 at the
    second number of observations, one seed, no baseline, recorded every 10 steps."""
    if incremental:
        second = config_at_scale(SCALES, scale).n_observations[1:2]
        overrides = {
            "n_observations": second,
            "depths": (2, 3),
            "init_stds": (1e-2, 1e-3),
            "nuclear_norm": False,
            "track_every": 10,
            "seeds": (seed,),
        } | overrides
    return config_at_scale(SCALES, scale, seed, **overrides)


@dataclass
class MatrixResult(Results):
    """Histories keyed by (seed, n_observations, depth, init_std), each tracking "error",
    "effective_rank" and "singular_values"; the nuclear-norm completion is a one-record history
    keyed (seed, n_observations, "nuclear norm", None)."""

    config_type: ClassVar[type] = MatrixConfig

    def history(self, n_observations, depth, init_std=None, seed=None) -> History:
        """One run (``depth`` may be "nuclear norm"); by default the first init scale and seed."""
        if depth != NUCLEAR and init_std is None:
            init_std = self.config.init_stds[0]
        seed = self.config.seeds[0] if seed is None else seed
        return self.runs[(seed, n_observations, depth, init_std)]

    def final(self, metric: str = "error", init_std=None) -> dict[str, np.ndarray]:
        """Per method ("depth 1", ..., "nuclear norm"), the final ``metric`` of each run, shape
        (number of n_observations, number of seeds)."""
        config, baseline = self.config, [NUCLEAR] if self.config.nuclear_norm else []
        return {
            m if m == NUCLEAR else f"depth {m}": np.array(
                [
                    [self.history(n, m, init_std, s)[metric][-1] for s in config.seeds]
                    for n in config.n_observations
                ]
            )
            for m in [*config.depths, *baseline]
        }


def run_matrix(
    config: MatrixConfig,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> MatrixResult:
    """Run every (seed, number of observations, depth, init scale), and the nuclear-norm baseline.

    The target's entries have mean square one; the observed sets of a seed are nested. With
    ``out_dir``, each run checkpoints and ``results.json`` is rewritten after each, so calling
    again with the same ``out_dir`` resumes.

    Explained in the Matrix factorization chapter.
    """
    device = torch.device(device) if device is not None else default_device()
    saved = Path(out_dir) / "results.json" if out_dir is not None else None
    previous = MatrixResult.load(saved) if saved and saved.exists() else None
    result = MatrixResult(config, previous.runs if previous and previous.config == config else {})
    options = {k: getattr(config, k) for k in ("optimizer", "lr", "loss_tol", "track_every")}
    for seed, n in ((s, n) for s in config.seeds for n in config.n_observations):
        size = math.prod(config.shape) ** 0.5
        target = random_cp_tensor(
            config.shape, config.target_rank, size, seed=1000 * seed, dtype=torch.float64
        )
        indices = sample_entries(config.shape, n, seed=1000 * seed + 1)
        measures = {
            "error": lambda w, t=target: normalized_reconstruction_error(w, t.to(w)),
            "effective_rank": effective_rank,
            "singular_values": lambda w: torch.linalg.svdvals(w)[: config.n_tracked],
        }
        if config.nuclear_norm and (seed, n, NUCLEAR, None) not in result.runs:
            w = nuclear_norm_completion(config.shape, indices, observe(target, indices))
            metrics = {k: [torch.as_tensor(f(w)).tolist()] for k, f in measures.items()}
            result.runs[(seed, n, NUCLEAR, None)] = History([0], [0.0], metrics, "converged")
        target, indices = target.to(device, dtype), indices.to(device)
        for depth, std in ((d, s) for d in config.depths for s in config.init_stds):
            name = f"seed{seed}_m{n}_depth{depth}_init{std:g}"
            model = DeepMatrixFactorization(
                config.shape, depth, std, seed=1000 * seed + 2, device=device, dtype=dtype
            )
            result.runs[(seed, n, depth, std)] = history = fit(
                model,
                indices,
                observe(target, indices),
                steps=config.max_steps,
                track={k: lambda m, f=f: f(m.full()) for k, f in measures.items()},
                progress=progress,
                description=name,
                checkpoint=Path(out_dir) / f"{name}.pt" if out_dir is not None else None,
                **options,
            )
            if history.status == "interrupted":
                return result
            if saved:
                result.save(saved)
    return result


def norms_versus_rank(
    depth: int, steps=6000, lr=5e-3, init_scale=0.1, seed=0, progress=True
) -> History:
    """Gradient descent (the adaptive step) on the 2 x 2 problem of Razin & Cohen (2020), w12 =
    w21 = 1 and w22 = 0 observed, from a balanced initialization with a positive determinant:
    each factor is ``init_scale`` times a random rotation. Float64, CPU; tracks the magnitude of
    the unobserved entry w11, the nuclear norm, the effective rank and the determinant.

    Explained in the Matrix factorization chapter.
    """
    model = DeepMatrixFactorization((2, 2), depth, 0.0, dtype=torch.float64)
    angles = np.random.default_rng(seed).uniform(0, 2 * np.pi, depth)
    with torch.no_grad():
        for factor, a in zip(model.factors, angles):
            factor.copy_(torch.linalg.matrix_exp(torch.tensor([[0, -a], [a, 0]])) * init_scale)
    measures = {
        "unobserved": lambda w: w[0, 0].abs(),
        "nuclear_norm": lambda w: torch.linalg.svdvals(w).sum(),
        "effective_rank": effective_rank,
        "determinant": torch.linalg.det,
    }
    track = {k: lambda m, f=f: f(m.full()) for k, f in measures.items()}
    indices, values = torch.tensor([[0, 1], [1, 0], [1, 1]]), torch.tensor([1.0, 1.0, 0.0])
    options = {"optimizer": "adaptive_gd", "lr": lr, "track": track, "progress": progress}
    return fit(model, indices, values, steps=steps, **options)


def run_command(args: argparse.Namespace) -> None:
    """``python -m tflib.experiments matrix``: run, write results.json and the figure."""
    from tflib.plots import completion_figure, singular_values_figure

    config = matrix_config(
        args.scale, incremental=args.incremental, **cli_overrides(args, "max_steps")
    )
    out = Path(args.out) / ("incremental" if args.incremental else "completion")
    print(f"matrix experiment, scale {args.scale!r}, seeds {config.seeds}, writing to {out}")
    result = run_matrix(config, **run_options(args) | {"out_dir": out})
    if result.interrupted:
        return print("interrupted: run the same command again to resume")
    for method, errors in result.final().items():
        print(f"{method}: median errors " + ", ".join(f"{e:.3g}" for e in np.median(errors, 1)))
    draw = singular_values_figure if args.incremental else completion_figure
    draw(result).savefig(out / "figure.png", bbox_inches="tight")
    print(f"results in {out / 'results.json'}, figure in {out / 'figure.png'}")


def add_command(commands) -> None:
    """Add the ``matrix`` subcommand to the command line's subparsers."""
    command = commands.add_parser("matrix", help="deep matrix completion (Matrix chapter)")
    add_common_options(command, SCALES, "results/matrix", run_command)
    command.add_argument("--incremental", action="store_true", help="singular values in training")
    command.add_argument("--max-steps", type=int, help="override the step budget of each run")
