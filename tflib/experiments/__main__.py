"""Command line for the paper's experiments: ``python -m tflib.experiments --help``.

Each experiment module defines ``add_command(commands)``, which adds its subcommand (with the
function that runs it) to the parser.
"""

from __future__ import annotations

import argparse

import matplotlib

from tflib.experiments import dynamics, dynamics_study, hierarchical, matrix, natural, rank_one

#: The experiment modules, in the book's order.
EXPERIMENTS = (matrix, dynamics, dynamics_study, rank_one, natural, hierarchical)


def main(argv: list[str] | None = None) -> None:
    matplotlib.use("Agg")
    parser = argparse.ArgumentParser(prog="python -m tflib.experiments", description=__doc__)
    commands = parser.add_subparsers(dest="experiment", required=True)
    for experiment in EXPERIMENTS:
        experiment.add_command(commands)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
