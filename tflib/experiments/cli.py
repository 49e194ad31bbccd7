"""The command line of the experiments: ``python -m tflib.experiments <experiment> --help``.

Every experiment takes the same options (scale, seeds, device, dtype, results folder, progress,
shards, merge, force, store) and adds the config fields it lets you override. Bad input is one line
on stderr and exit status 2, before any work; an interrupted run exits with status 130 (run the
same command again to resume it).
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from tflib import __version__
from tflib.experiments.results import (
    InputError,
    Results,
    ResultsFolder,
    parse_shard,
    results_name,
    write_json,
)
from tflib.train import check_settings

#: Exit statuses: bad input, and an interrupted run (128 + SIGINT, as shells report Ctrl-C).
BAD_INPUT, INTERRUPTED = 2, 130


@dataclass(frozen=True)
class Command:
    """One experiment's subcommand: its config per scale (``config(scale, **overrides)``), its
    results type and run function, what it reports of complete results (``report(result, out)``:
    printed lines and figures), the final numbers of each run that ``--store`` keeps
    (``records(result)``), the config fields the command line may override and the further
    options of the run function, each as ``(flag, argparse options)``."""

    name: str
    help: str
    scales: dict[str, Any]
    config: Callable[..., Any]
    result: type[Results]
    run: Callable[..., Results]
    report: Callable[[Results, Path], None]
    records: Callable[[Results], list[dict]] | None = None
    options: tuple[tuple[str, dict], ...] = ()
    run_options: tuple[tuple[str, dict], ...] = ()
    dtype: str = "float32"


def _seed(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"a seed is a non-negative integer, got {text!r}")
    return int(text)


def _shard(text: str) -> tuple[int, int]:
    try:
        return parse_shard(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_command(commands, command: Command) -> None:
    """Add ``command``'s subcommand, with the common options and its own, to the subparsers."""
    parser = commands.add_parser(command.name, help=command.help)
    parser.add_argument("--scale", choices=sorted(command.scales), default="book")
    parser.add_argument("--seeds", type=_seed, nargs="+", help="override the scale's seeds")
    parser.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default=command.dtype)
    parser.add_argument(
        "--out", default=f"results/{command.name}", help="results folder (resumes from it)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--shard", type=_shard, help="run shard k/n only: every n-th run from k")
    parser.add_argument("--merge", action="store_true", help="join the shards' results in --out")
    parser.add_argument("--partial", action="store_true", help="--merge with shards missing")
    parser.add_argument("--force", action="store_true", help="discard the results in --out")
    parser.add_argument("--store", help="also keep each run's final numbers in this JSON file")
    parser.add_argument("--name", default=command.name, help="their key in the --store file")
    for flag, options in command.options + command.run_options:
        parser.add_argument(flag, **options)
    parser.set_defaults(command=command)


def _names(options) -> list[str]:
    return [flag.removeprefix("--").replace("-", "_") for flag, _ in options]


def _overrides(args: argparse.Namespace, options) -> dict[str, Any]:
    """The config fields given on the command line (lists become tuples)."""
    names = ["seeds", *_names(options)]
    given = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    return {n: tuple(v) if isinstance(v, list) else v for n, v in given.items()}


def _recorded_command(argv: list[str]) -> str:
    """The command that regenerates a stored result: ``argv`` without the options that only say
    how or where it runs (shards, merging, storing, device, progress)."""
    dropped_with_value, dropped = {"--shard", "--store", "--name", "--device"}, set()
    dropped |= {"--merge", "--partial", "--no-progress", "--force"}
    kept, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token in dropped_with_value:
            skip = True
        elif token not in dropped:
            kept.append(token)
    return " ".join(["python -m tflib.experiments", *kept])


def _merge(command: Command, config: Any, args: argparse.Namespace) -> Results:
    """The shards' results in ``--out`` joined and saved as results.json; every shard must be
    there unless ``--partial`` (which warns), and they must be the given command's."""
    out = Path(args.out)
    paths = sorted(out.glob("results-shard*of*.json"))
    counts = {int(p.stem.split("of")[1]) for p in paths}
    if len(counts) != 1:
        found = ", ".join(p.name for p in paths) or "none"
        raise InputError(
            f"--merge needs the shard files of one split of the runs; {out} has {found}"
        )
    n = counts.pop()
    missing = [f"{k}/{n}" for k in range(n) if not (out / results_name((k, n))).exists()]
    if missing and not args.partial:
        raise InputError(f"shards {', '.join(missing)} have no results in {out}: run them first")
    if missing:
        print(
            f"warning: merged without shards {', '.join(missing)}: results incomplete",
            file=sys.stderr,
        )
    try:
        merged = command.result.merge(command.result.load(p) for p in paths)
        stored, given = dataclasses.asdict(merged.config), dataclasses.asdict(config)
        check_settings(f"the shards in {out}", stored, given)
    except ValueError as error:
        raise InputError(str(error)) from None
    folder = ResultsFolder(out, merged)
    merged.save(folder.results)
    folder.release()
    return merged


def store(path: str | Path, name: str, entry: dict) -> None:
    """Add ``entry`` under ``name`` to the JSON file at ``path``, holding a lock on the file so
    that two commands storing at once both land."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stored = json.loads(path.read_text()) if path.exists() else {}
        write_json(path, stored | {name: entry})


#: Where a chapter launched outside the repository (Colab, Binder) finds the stored records: at
#: the tag of this version of the course, so the records match the code that reads them.
REPOSITORY = "https://raw.githubusercontent.com/implicit-regularization/tensor-factorization-course"
STORED_AT = f"{REPOSITORY}/v{__version__}/book"


def load_store(path: str | Path) -> dict:
    """The entries of a ``--store`` file, by its path relative to the book's folder (the chapters
    run from ``book/``, and keep their records in ``book/data``). Outside a clone of the course's
    repository, the file is fetched from it.

    Explained in the Matrix factorization chapter.
    """
    path = Path(path)
    if not path.exists():
        try:
            path = Path(urllib.request.urlretrieve(f"{STORED_AT}/{path.as_posix()}")[0])
        except OSError as error:
            raise FileNotFoundError(
                f"book/{path.as_posix()} holds stored records: run the notebook from book/ in a "
                "clone of the course's repository"
            ) from error
    return json.loads(path.read_text())


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (no usage), exit status 2."""

    def error(self, message: str) -> None:
        self.exit(BAD_INPUT, f"{self.prog}: error: {message}\n")


def _fail(args: argparse.Namespace, error: Exception) -> None:
    print(f"python -m tflib.experiments {args.command.name}: error: {error}", file=sys.stderr)
    sys.exit(BAD_INPUT)


def attached(argv: list[str]) -> list[str]:
    """``argv`` with each ``--shard`` joined to its value (``--shard=-1/2``), so that argparse
    reads a value that starts with a dash as a (bad) shard, not as another option."""
    joined, tokens = [], iter(argv)
    for token in tokens:
        joined.append(f"--shard={next(tokens, '')}" if token == "--shard" else token)
    return joined


def run(args: argparse.Namespace, argv: list[str]) -> None:
    """Run the parsed command: check everything, train, then report, store and draw."""
    command, out = args.command, Path(args.out)
    try:
        config = command.config(args.scale, **_overrides(args, command.options))
        if args.store and command.records is None:
            raise ValueError(f"--store keeps per-run records, which {command.name} has none of")
    except (ValueError, TypeError) as error:
        _fail(args, error)
    try:
        if args.merge:
            result = _merge(command, config, args)
        else:
            result = command.run(
                config,
                device=args.device,
                dtype=getattr(torch, args.dtype),
                out_dir=out,
                progress=not args.no_progress,
                shard=args.shard,
                force=args.force,
                log=print,
                **{name: getattr(args, name) for name in _names(command.run_options)},
            )
    except InputError as error:
        _fail(args, error)
    if result.interrupted:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        sys.exit(INTERRUPTED)
    if args.shard is not None:
        k, n = args.shard
        print(f"shard {k}/{n} done; once all {n} are, join them: the same command with --merge")
        return
    if args.partial:
        print("partial results in results.json; the report and --store wait for every shard")
        return
    command.report(result, out)
    if args.store and command.records is not None:
        entry = {"command": _recorded_command(argv), "config": result.fingerprint()}
        store(args.store, args.name, entry | {"runs": command.records(result)})
        print(f"stored as {args.name!r} in {args.store}")


def save_figure(figure, out: Path, seed: int | None = None) -> Path:
    """Write a report's figure into ``out`` (``figure.png``, or ``figure-seed<k>.png`` for one
    seed's), close it, and return its path."""
    path = out / ("figure.png" if seed is None else f"figure-seed{seed}.png")
    figure.savefig(path, bbox_inches="tight")
    plt.close(figure)
    return path


def finals(values: np.ndarray) -> str:
    """Numbers as a short comma-separated list, three significant digits each."""
    return ", ".join(f"{v:.3g}" for v in np.ravel(values))
