"""How often the dynamics experiment completes the tensor: its setting over many draws.

The paper shows one run. The study repeats the dynamics experiment (:mod:`.dynamics`) over many
seeds (a seed draws the target, the observed entries and the initialization) and init scales,
and keeps for each run its final numbers: the reconstruction error, the steps, the number of
large components and whether it *completed* (error below a threshold).

Explained in the CP dynamics chapter.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from tflib.cp import component_norms, cp_to_tensor
from tflib.data import random_cp_factors
from tflib.experiments.dynamics import (
    DynamicsConfig,
    DynamicsResult,
    checkpoint_path,
    problem,
    run_dynamics,
)
from tflib.experiments.results import (
    add_common_options,
    cli_overrides,
    config_at_scale,
    in_shard,
    write_json,
)
from tflib.train import load_checkpoint

#: A component counts as large once its norm exceeds this fraction of the target's norm.
LARGE = 0.02
#: A run completes the tensor when its final normalized reconstruction error is below this.
COMPLETED_BELOW = 0.05

#: "book": eight draws at init 1e-2 (minutes on a CPU); "paper": the study the chapter reports,
#: 30 draws at the paper's three init scales with 100,000 steps per run. Norms are recorded every
#: 250 steps (and at the last step); the final numbers come from the checkpoints.
SCALES = {
    "book": DynamicsConfig(seeds=tuple(range(8)), init_stds=(1e-2,), track_every=250, n_tracked=20),
    "paper": DynamicsConfig(seeds=tuple(range(30)), max_steps=200_000, n_tracked=20, patience=50),
}


def run_study(
    config: DynamicsConfig,
    out_dir: str | Path,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    shard: tuple[int, int] | None = None,
    log: Callable[[str], None] = print,
) -> DynamicsResult:
    """Run the dynamics experiment for every seed of ``config``, one seed at a time.

    Each seed's runs checkpoint into ``out_dir/seed<k>``, so an interrupted study resumes where it
    stopped; ``shard=(k, n)`` runs every n-th seed from the k-th. ``log`` receives one line per
    seed with its final errors.

    Explained in the CP dynamics chapter.
    """
    runs = {}
    for position, seed in enumerate(config.seeds):
        if not in_shard(position, shard):
            continue
        part = run_dynamics(
            dataclasses.replace(config, seeds=(seed,)),
            device=device,
            dtype=dtype,
            out_dir=Path(out_dir) / f"seed{seed}",
            progress=False,
        )
        runs.update(part.runs)
        if part.interrupted:
            break
        done = [
            f"init {std:g} error {h['error'][-1]:.2g} in {h.steps[-1]:,} steps ({h.status})"
            for (_, std), h in part.runs.items()
        ]
        log(f"seed {seed}: " + ", ".join(done))
    return DynamicsResult(config, runs)


def run_records(
    result: DynamicsResult, out_dir: str | Path, complete_below: float = COMPLETED_BELOW
) -> list[dict]:
    """The final numbers of every run of a study, read from its histories and checkpoints.

    Per run: ``seed``, ``init_std``, ``status`` (as in :class:`~tflib.train.History`), ``steps``,
    ``loss``, ``error`` (the normalized reconstruction error), ``norm`` (the fit's Frobenius norm
    over the target's), ``n_large`` (components of norm above :data:`LARGE` times the target's),
    ``worst_entry`` (the share of the squared error in
    the single worst entry: near 1 when one entry holds all of it) and ``completed`` (error below
    ``complete_below``).

    Explained in the CP dynamics chapter.
    """
    records, config = [], result.config
    for (seed, std), history in sorted(result.runs.items()):
        target = problem(config, seed, dtype=torch.float64)[0]
        state = load_checkpoint(checkpoint_path(Path(out_dir) / f"seed{seed}", seed, std))
        factors = [state["model"][f"factors.{n}"].double() for n in range(len(config.shape))]
        tensor, error = cp_to_tensor(factors), history["error"][-1]
        squares = (tensor - target).square()
        records.append(
            {"seed": seed, "init_std": std, "status": history.status, "steps": history.steps[-1]}
            | {"loss": float(f"{history.loss[-1]:.4g}"), "error": float(f"{error:.4g}")}
            | {"norm": float(f"{tensor.norm() / target.norm():.4g}")}
            | {"worst_entry": float(f"{squares.max() / squares.sum():.4g}")}
            | {"n_large": int((component_norms(factors) > LARGE * target.norm()).sum())}
            | {"completed": bool(error < complete_below)}
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
    factors = random_cp_factors(config.shape, config.target_rank, seed=1000 * seed)
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


def run_command(args: argparse.Namespace) -> None:
    """``python -m tflib.experiments dynamics-study``: run, then write the runs' final numbers."""
    names = ("init_stds", "max_steps", "n_observations", "optimizer", "lr", "init_draw")
    overrides = cli_overrides(args, *names)
    if "init_stds" in overrides:
        overrides["init_stds"] = tuple(overrides["init_stds"])
    config = config_at_scale(SCALES, args.scale, **overrides)
    dtype = getattr(torch, args.dtype)
    result = run_study(config, args.out, device=args.device, dtype=dtype, shard=args.shard)
    if result.interrupted:
        return print("interrupted: run the same command again to resume")
    records = run_records(result, args.out)
    for std, row in per_init_scale(records).items():
        print(
            f"init {std:g}: {row['completed']:.0%} of {row['runs']} runs completed, "
            f"median error {row['median_error']:.2g}, {row['budget']} out of steps"
        )
    flags = "".join(
        f" --{k.replace('_', '-')} {' '.join(map(str, np.atleast_1d(v)))}"
        for k, v in overrides.items()
    )
    flags += f" --dtype {args.dtype} --out {args.out}"
    summary = {
        "command": f"python -m tflib.experiments dynamics-study --scale {args.scale}{flags}",
        "config": dataclasses.asdict(config) | {"dtype": args.dtype},
        "runs": records,
    }
    write_json(Path(args.out) / "summary.json", summary)
    if args.store:
        stored = json.loads(Path(args.store).read_text()) if Path(args.store).exists() else {}
        write_json(args.store, stored | {args.name: summary})
        print(f"stored as {args.name!r} in {args.store}")


def add_command(commands) -> None:
    """Add the ``dynamics-study`` subcommand to the command line's subparsers."""
    command = commands.add_parser(
        "dynamics-study", help="the dynamics experiment over many draws (the CP dynamics chapter)"
    )
    add_common_options(command, SCALES, "results/dynamics_study", run_command)
    command.add_argument("--init-stds", type=float, nargs="+", help="override the init scales")
    command.add_argument("--max-steps", type=int, help="override the step budget of each run")
    command.add_argument("--n-observations", type=int, help="override the observed entries")
    command.add_argument("--optimizer", choices=("gd", "adaptive_gd", "adam"))
    command.add_argument("--lr", type=float, help="override the learning rate")
    command.add_argument("--init-draw", type=int, help="k > 0: another init for the same draws")
    command.add_argument("--shard", type=int, nargs=2, metavar=("K", "N"), help="every N-th seed")
    command.add_argument("--store", help="also store the summary in this JSON file, under --name")
    command.add_argument("--name", default="study", help="the summary's key in --store")
