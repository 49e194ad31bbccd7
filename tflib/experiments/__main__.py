"""Command line for the paper's experiments: ``python -m tflib.experiments --help``.

Each experiment module defines ``COMMAND`` (a :class:`~tflib.experiments.cli.Command`): its
subcommand, its options and what it reports.
"""

from __future__ import annotations

import sys

import matplotlib

from tflib.experiments import dynamics, dynamics_study, hierarchical, matrix, natural, rank_one
from tflib.experiments.cli import Parser, add_command, attached, run

#: The experiment modules, in the book's order.
EXPERIMENTS = (matrix, dynamics, dynamics_study, rank_one, natural, hierarchical)


def main(argv: list[str] | None = None) -> None:
    matplotlib.use("Agg")
    argv = sys.argv[1:] if argv is None else argv
    parser = Parser(prog="python -m tflib.experiments", description=__doc__)
    commands = parser.add_subparsers(dest="experiment", required=True)
    for experiment in EXPERIMENTS:
        add_command(commands, experiment.COMMAND)
    run(parser.parse_args(attached(argv)), argv)


if __name__ == "__main__":
    main()
