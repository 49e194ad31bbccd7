"""How often the dynamics experiment completes the tensor: its setting over many draws.

The paper shows one run. The study repeats the dynamics experiment (:mod:`.dynamics`) over many
seeds (a seed draws the target, the observed entries and the initialization) and init scales,
and keeps for each run its final numbers: the reconstruction error, the steps, the number of
large components and whether it *completed* (error below a threshold).

Explained in the CP dynamics chapter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tflib.cp import cp_to_tensor
from tflib.data import random_cp_factors
from tflib.experiments.cli import Command
from tflib.experiments.dynamics import COMMAND as DYNAMICS
from tflib.experiments.dynamics import DynamicsConfig, DynamicsResult, problem
from tflib.experiments.results import TARGET, config_at_scale, seed_for
from tflib.stats import PairedCounts, SignedRanks, mcnemar_exact, wilcoxon_exact, wilson_interval

#: A run completes the tensor when its final normalized reconstruction error is below this.
COMPLETED_BELOW = 0.05

#: "book": eight draws at init 1e-2 (minutes on a CPU); "paper": the study the chapter reports,
#: 30 draws at the paper's three init scales. Both stop by the research code's rule (loss below
#: 1e-8 at 50 evaluations in a row, one every 25 steps), 200,000 steps at most per run.
SCALES = {
    "book": DynamicsConfig(seeds=tuple(range(8)), init_stds=(1e-2,), n_tracked=20),
    "paper": DynamicsConfig(seeds=tuple(range(30)), max_steps=200_000, n_tracked=20, patience=50),
}


def study_config(scale: str = "book", seed: int = 0, **overrides) -> DynamicsConfig:
    """The study's configuration at a scale ("book" or "paper"), as
    :func:`~tflib.experiments.dynamics.dynamics_config` gives the experiment's."""
    return config_at_scale(SCALES, scale, seed, **overrides)


def run_records(result: DynamicsResult, complete_below: float = COMPLETED_BELOW) -> list[dict]:
    """The final numbers of every run of a study.

    Per run: ``seed``, ``init_std``, ``status`` (as in :class:`~tflib.train.History`), ``steps``,
    ``loss``, ``error`` (the normalized reconstruction error), the values of
    :class:`~tflib.experiments.dynamics.DynamicsResult` (``norm``, ``worst_entry``, ``n_large``)
    and ``completed`` (error below ``complete_below``); four significant digits.

    Explained in the CP dynamics chapter.
    """
    records = []
    for (seed, std), history in sorted(result.runs.items()):
        values, error = result.values[(seed, std)], history["error"][-1]
        records.append(
            {"seed": seed, "init_std": std, "status": history.status, "steps": history.steps[-1]}
            | {"loss": float(f"{history.loss[-1]:.4g}"), "error": float(f"{error:.4g}")}
            | {"norm": float(f"{values['norm']:.4g}")}
            | {"worst_entry": float(f"{values['worst_entry']:.4g}")}
            | {"n_large": values["n_large"], "completed": bool(error < complete_below)}
        )
    return records


def per_init_scale(records: list[dict]) -> dict[float, dict]:
    """Per init scale, largest first: the number of ``runs``, how many ``completed`` and their
    share (``rate``) with its 95% Wilson ``interval`` (:func:`~tflib.stats.wilson_interval`), the
    ``median_error`` and ``largest_error`` of all runs, the median error of the completed ones
    (``completed_error``, NaN if none) and how many ran out of steps (``budget``).

    Explained in the CP dynamics chapter.
    """
    table = {}
    for std in sorted({r["init_std"] for r in records}, reverse=True):
        runs = [r for r in records if r["init_std"] == std]
        errors = [r["error"] for r in runs]
        done = [r["error"] for r in runs if r["completed"]]
        table[std] = {
            "runs": len(runs),
            "completed": len(done),
            "rate": len(done) / len(runs),
            "interval": wilson_interval(len(done), len(runs)),
            "median_error": float(np.median(errors)),
            "largest_error": max(errors),
            "completed_error": float(np.median(done)) if done else math.nan,
            "budget": sum(r["status"] == "budget" for r in runs),
        }
    return table


@dataclass(frozen=True)
class Comparison:
    """Two settings of a study compared on the draws (seeds) both ran: ``seeds``; whether each
    completed (``completion``: McNemar's exact test, :func:`~tflib.stats.mcnemar_exact`); and on
    the draws that completed under both (``both``), their final errors (``errors``: Wilcoxon's
    signed-rank test, :func:`~tflib.stats.wilcoxon_exact`, first minus second) with the median
    of each (``medians``)."""

    seeds: tuple[int, ...]
    completion: PairedCounts
    both: tuple[int, ...]
    errors: SignedRanks
    medians: tuple[float, float]


def compare(first: Sequence[dict], second: Sequence[dict]) -> Comparison:
    """Compare two settings on the same draws, from their records (:func:`run_records`, one
    setting each: one init scale, say): completion by McNemar's exact test, and the final errors
    of the draws completed under both by Wilcoxon's signed-rank test.

    Explained in the CP dynamics chapter.
    """
    for records in (first, second):
        seeds = [r["seed"] for r in records]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"one record per seed is needed, got seeds {sorted(seeds)}")
    a, b = ({r["seed"]: r for r in records} for records in (first, second))
    seeds = tuple(sorted(a.keys() & b.keys()))
    if not seeds:
        raise ValueError("the two settings share no draw (seed) to compare on")
    completion = mcnemar_exact(
        [a[s]["completed"] for s in seeds], [b[s]["completed"] for s in seeds]
    )
    both = tuple(s for s in seeds if a[s]["completed"] and b[s]["completed"])
    errors = [[records[s]["error"] for s in both] for records in (a, b)]
    medians = tuple(float(np.median(e)) if both else math.nan for e in errors)
    return Comparison(seeds, completion, both, wilcoxon_exact(*errors), medians)


def draw_properties(config: DynamicsConfig, seed: int) -> dict[str, float]:
    """Numbers that describe the draw of one seed, to compare failing draws with the others.

    ``smallest``: the target's smallest component norm over its norm; ``worst_sampled``: over
    the target's components, the smallest share of a component's squared norm on the observed
    entries, divided by the observed share of all entries (1 on average); ``fewest_in_slice``:
    the fewest observed entries in any slice :math:`i_n = i`.

    Explained in the CP dynamics chapter.
    """
    factors = random_cp_factors(config.shape, config.target_rank, seed=seed_for(seed, TARGET))
    components = [cp_to_tensor([f[:, [r]] for f in factors]) for r in range(config.target_rank)]
    indices = problem(config, seed)[1]
    observed = [c[tuple(indices.T)].square().sum() / c.square().sum() for c in components]
    slices = [
        torch.bincount(column, minlength=d).min() for column, d in zip(indices.T, config.shape)
    ]
    return {
        "smallest": float(min(c.norm() for c in components) / cp_to_tensor(factors).norm()),
        "worst_sampled": float(min(observed)) * math.prod(config.shape) / len(indices),
        "fewest_in_slice": int(min(slices)),
    }


def report(result: DynamicsResult, out: Path) -> None:
    """Print, per init scale, how many runs completed, their median error and how many ran out
    of steps."""
    for std, row in per_init_scale(run_records(result)).items():
        low, high = row["interval"]
        print(
            f"init {std:g}: {row['completed']} of {row['runs']} runs completed "
            f"(95% interval {low:.0%} to {high:.0%}), median error {row['median_error']:.2g}, "
            f"{row['budget']} out of steps"
        )


COMMAND = Command(
    "dynamics-study",
    "the dynamics experiment over many draws (the CP dynamics chapter)",
    SCALES,
    study_config,
    DynamicsResult,
    DYNAMICS.run,
    report,
    run_records,
    options=(
        *DYNAMICS.options,
        ("--init-stds", {"type": float, "nargs": "+", "help": "override the init scales"}),
        ("--n-observations", {"type": int, "help": "override the observed entries"}),
        ("--optimizer", {"choices": ("gd", "adaptive_gd", "adam")}),
        ("--lr", {"type": float, "help": "override the learning rate"}),
        ("--patience", {"type": int, "help": "override the stopping rule's patience"}),
        ("--init-draw", {"type": int, "help": "k > 0: another init for the same draws"}),
    ),
)
