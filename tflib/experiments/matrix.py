"""Matrix completion by deep matrix factorizations, against the minimum nuclear norm.

A random low-rank matrix, observed at several numbers of entries, is completed by factorizations
of several depths from a small initialization and by the minimum-nuclear-norm completion
(Gunasekar et al. 2017; Arora et al. 2019); with ``incremental=True``, the singular values of the
end-to-end matrix are followed through training. :func:`norms_versus_rank` is the 2 x 2 problem
of Razin & Cohen (2020), on which gradient descent minimizes no norm.

Explained in the Matrix factorization chapter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

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
    significant,
)
from tflib.matrix import DeepMatrixFactorization, nuclear_norm_completion
from tflib.metrics import count_jumps, effective_rank, normalized_reconstruction_error, rise_steps
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

    def __post_init__(self) -> None:
        check_config(self, positive=("shape", "target_rank", "n_observations", "depths", "lr"))
        if max(self.n_observations) > math.prod(self.shape):
            raise ValueError(f"n_observations exceed the {math.prod(self.shape)} entries")


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
    "effective_rank" and "singular_values"; the nuclear-norm completion's values of the same
    metrics are baselines keyed (seed, n_observations)."""

    config_type: ClassVar[type] = MatrixConfig
    key_names: ClassVar[tuple[str, ...]] = ("seed", "m", "depth", "init")

    def history(self, n_observations, depth, init_std=None, seed=None) -> History:
        """One run; by default the first init scale and seed."""
        init_std = self.config.init_stds[0] if init_std is None else init_std
        seed = self.config.seeds[0] if seed is None else seed
        return self.runs[(seed, n_observations, depth, init_std)]

    def final(self, metric: str = "error", init_std=None) -> dict[str, np.ndarray]:
        """Per method ("depth 1", ..., "nuclear norm"), the final ``metric`` of each run, shape
        (number of n_observations, number of seeds)."""
        config = self.config
        table = {
            f"depth {d}": [
                [self.history(n, d, init_std, s)[metric][-1] for s in config.seeds]
                for n in config.n_observations
            ]
            for d in config.depths
        }
        if config.nuclear_norm:
            table[NUCLEAR] = [
                [self.baselines[(s, n)][metric] for s in config.seeds]
                for n in config.n_observations
            ]
        return {method: np.array(rows) for method, rows in table.items()}


def run_matrix(
    config: MatrixConfig,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    **loop,
) -> MatrixResult:
    """Run every (seed, number of observations, depth, init scale), and the nuclear-norm baseline
    of every (seed, number of observations), through
    :func:`~tflib.experiments.results.run_keys` (``loop``: its ``out_dir``, ``shard``,
    ``force``).

    The target's entries have mean square one; the observed sets of a seed are nested.

    Explained in the Matrix factorization chapter.
    """
    device = resolve_device(device)
    result = MatrixResult(config, settings={"dtype": str(dtype)})
    size = math.prod(config.shape) ** 0.5

    def run(key: tuple, checkpoint) -> History:
        seed, n, depth, std = key
        target = random_cp_tensor(
            config.shape, config.target_rank, size, seed=seed_for(seed, TARGET), dtype=torch.float64
        )
        indices = sample_entries(config.shape, n, seed=seed_for(seed, OBSERVATIONS))
        measures = {
            "error": lambda w: normalized_reconstruction_error(w, target.to(w)),
            "effective_rank": effective_rank,
            "singular_values": lambda w: torch.linalg.svdvals(w)[: config.n_tracked],
        }
        if config.nuclear_norm and (seed, n) not in result.baselines:
            w = nuclear_norm_completion(config.shape, indices, observe(target, indices))
            result.baselines[(seed, n)] = {
                k: torch.as_tensor(f(w)).tolist() for k, f in measures.items()
            }
        target, indices = target.to(device, dtype), indices.to(device)
        model = DeepMatrixFactorization(
            config.shape, depth, std, seed=seed_for(seed, INIT), device=device, dtype=dtype
        )
        return fit(
            model,
            indices,
            observe(target, indices),
            steps=config.max_steps,
            track={k: lambda m, f=f: f(m.full()) for k, f in measures.items()},
            progress=progress,
            description=f"seed {seed}, {n} observed, depth {depth}, init {std:g}",
            checkpoint=checkpoint(),
            **fit_options(config),
        )

    keys = [
        (seed, n, depth, std)
        for seed in config.seeds
        for n in config.n_observations
        for depth in config.depths
        for std in config.init_stds
    ]
    return run_keys(result, keys, run, **loop)


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


def report(result: MatrixResult, out: Path) -> None:
    """Print the median final errors; draw the completion figure (or, with one number of
    observations, as in the incremental setting, the singular values)."""
    from tflib.plots import completion_figure, singular_values_figure

    for method, errors in result.final().items():
        print(f"{method}: median errors {finals(np.median(errors, 1))}")
    one_size = len(result.config.n_observations) == 1  # the incremental setting
    draw = singular_values_figure if one_size else completion_figure
    print(f"results in {out / 'results.json'}, figure in {save_figure(draw(result), out)}")


def run_records(result: MatrixResult) -> list[dict]:
    """The final numbers of every run, four significant digits.

    Per factorization: ``seed``, ``observed`` (the number of observed entries), ``method``
    ("depth L"), ``init_std``, ``status`` (as in :class:`~tflib.train.History`), ``steps``,
    ``loss``, ``error`` and ``effective_rank`` at the end, and from the trajectory
    ``lowest_effective_rank``, ``jumps`` (:func:`~tflib.metrics.count_jumps` of the singular
    values, at 5% of the final ``target_rank``-th) and ``in_turn`` (whether the ``target_rank``
    largest were learned in turn, :func:`~tflib.metrics.rise_steps`). Per nuclear-norm
    completion: ``seed``, ``observed``, ``method`` "nuclear norm", ``error`` and
    ``effective_rank``.

    Explained in the Matrix factorization chapter.
    """
    rank, records = result.config.target_rank, []
    for (seed, n, depth, std), history in sorted(result.runs.items()):
        values = history["singular_values"]
        starts, ends = rise_steps(history["steps"], values, rank)
        records.append(
            {"seed": seed, "observed": n, "method": f"depth {depth}", "init_std": std}
            | {"status": history.status, "steps": history.steps[-1]}
            | {k: significant(history[k][-1]) for k in ("loss", "error", "effective_rank")}
            | {"lowest_effective_rank": significant(history["effective_rank"].min())}
            | {"jumps": count_jumps(values, 0.05 * values[-1, rank - 1])}
            | {"in_turn": all(e < s for e, s in zip(ends, starts[1:]))}
        )
    for (seed, n), baseline in sorted(result.baselines.items()):
        records.append(
            {"seed": seed, "observed": n, "method": NUCLEAR}
            | {k: significant(baseline[k]) for k in ("error", "effective_rank")}
        )
    return records


def _config(scale: str, incremental: bool = False, **overrides) -> MatrixConfig:
    return matrix_config(scale, incremental=bool(incremental), **overrides)


COMMAND = Command(
    "matrix",
    "deep matrix completion (Matrix chapter)",
    SCALES,
    _config,
    MatrixResult,
    run_matrix,
    report,
    run_records,
    options=(
        ("--incremental", {"action": "store_const", "const": True, "help": "singular values"}),
        ("--n-observations", {"type": int, "nargs": "+", "help": "override the observed entries"}),
        ("--depths", {"type": int, "nargs": "+", "help": "override the depths"}),
        ("--max-steps", {"type": int, "help": "override the step budget of each run"}),
    ),
)
