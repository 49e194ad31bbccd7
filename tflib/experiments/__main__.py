"""Command line for the paper's experiments: ``python -m tflib.experiments dynamics --help``."""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

from tflib.experiments.dynamics import SCALES, dynamics_config, run_dynamics

DTYPES = ("float32", "float64")


def dynamics_main(args: argparse.Namespace) -> None:
    import torch

    from tflib.plots import dynamics_result_figure

    overrides = {"seeds": tuple(args.seeds)} if args.seeds else {}
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
    config = dynamics_config(args.scale, **overrides)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"dynamics experiment, scale {args.scale!r}, seeds {config.seeds}, writing to {out}")
    result = run_dynamics(
        config,
        device=args.device,
        dtype=getattr(torch, args.dtype),
        out_dir=out,
        progress=not args.no_progress,
    )
    if any(history.status == "interrupted" for history in result.runs.values()):
        print("interrupted: run the same command again to resume")
        return
    for std, errors in result.final_errors().items():
        print(f"init {std:g}: final reconstruction error " + ", ".join(f"{e:.3g}" for e in errors))
    figure = dynamics_result_figure(result)
    figure.savefig(out / "dynamics.png", bbox_inches="tight")
    print(f"results in {out / 'results.json'}, figure in {out / 'dynamics.png'}")


def main(argv: list[str] | None = None) -> None:
    matplotlib.use("Agg")
    parser = argparse.ArgumentParser(prog="python -m tflib.experiments", description=__doc__)
    commands = parser.add_subparsers(dest="experiment", required=True)
    dynamics = commands.add_parser(
        "dynamics", help="component-norm dynamics (the CP dynamics chapter)"
    )
    dynamics.add_argument("--scale", choices=sorted(SCALES), default="book")
    dynamics.add_argument(
        "--device", default=None, help="cpu, cuda, mps (default: the best available)"
    )
    dynamics.add_argument("--dtype", choices=DTYPES, default="float32")
    dynamics.add_argument("--seeds", type=int, nargs="+", help="override the scale's seeds")
    dynamics.add_argument("--max-steps", type=int, help="override the step budget of each run")
    dynamics.add_argument(
        "--out", default="results/dynamics", help="results folder (resumes from it)"
    )
    dynamics.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    dynamics.set_defaults(run=dynamics_main)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
