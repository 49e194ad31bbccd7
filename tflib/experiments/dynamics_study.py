"""How often the dynamics experiment completes the tensor: its setting over many draws.

The paper shows one run. The study repeats the dynamics experiment (:mod:`.dynamics`) over many
seeds (a seed draws the target, the observed entries and the initialization) and init scales,
and keeps for each run its final numbers: the reconstruction error, the steps, the number of
large components and whether it *completed* (error below a threshold).

Explained in the CP dynamics chapter.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from tflib.cp import cp_to_tensor
from tflib.data import random_cp_factors
from tflib.experiments.cli import Command
from tflib.experiments.dynamics import COMMAND as DYNAMICS
from tflib.experiments.dynamics import DynamicsConfig, DynamicsResult, problem
from tflib.experiments.results import TARGET, config_at_scale, seed_for

#: A run completes the tensor when its final normalized reconstruction error is below this.
COMPLETED_BELOW = 0.05

#: "book": eight draws at init 1e-2 (minutes on a CPU); "paper": the study the chapter reports,
#: 30 draws at the paper's three init scales, stopped by the research code's rule (loss below
#: 1e-8 at 50 evaluations in a row, one every 25 steps), 200,000 steps at most per run.
SCALES = {
    "book": DynamicsConfig(seeds=tuple(range(8)), init_stds=(1e-2,), track_every=250, n_tracked=20),
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
    """Per init scale: the number of runs, the share that completed, the median and largest
    error, and how many ran out of steps ("budget")."""
    table = {}
    for std in sorted({r["init_std"] for r in records}, reverse=True):
        runs = [r for r in records if r["init_std"] == std]
        errors = [r["error"] for r in runs]
        table[std] = {
            "runs": len(runs),
            "completed": sum(r["completed"] for r in runs) / len(runs),
            "median_error": float(np.median(errors)),
            "largest_error": max(errors),
            "budget": sum(r["status"] == "budget" for r in runs),
        }
    return table


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
        print(
            f"init {std:g}: {row['completed']:.0%} of {row['runs']} runs completed, "
            f"median error {row['median_error']:.2g}, {row['budget']} out of steps"
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
