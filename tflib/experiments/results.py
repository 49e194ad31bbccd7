"""What every experiment shares: a config per scale, and results that survive interruption.

An experiment is a frozen dataclass of settings with one instance per scale ("book", "paper"),
and a :class:`Results`: the config and one :class:`~tflib.train.History` per run, keyed by a
tuple (a seed and an init scale, say). Results are written as JSON, atomically, after every run;
each run also checkpoints itself (see :func:`~tflib.train.fit`), so an interrupted experiment
called again with the same folder resumes where it stopped. Large sweeps split into shards
(``shard=(k, n)`` runs every n-th run from the k-th), each writing its own file, and
:meth:`Results.merge` joins them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from tflib.train import History


def config_at_scale(scales: dict[str, Any], scale: str, seed: int = 0, **overrides) -> Any:
    """The config of ``scale`` (a key of ``scales``), its ``seeds`` counted from ``seed``, with
    the given fields overridden."""
    if scale not in scales:
        raise ValueError(f"scale must be one of {sorted(scales)}, got {scale!r}")
    config = scales[scale]
    overrides.setdefault("seeds", tuple(seed + s for s in config.seeds))
    return dataclasses.replace(config, **overrides)


def add_common_options(command: argparse.ArgumentParser, scales: dict, out: str, run) -> None:
    """The options every experiment takes (scale, seeds, device, dtype, results folder,
    progress); the parsed options are passed to ``run``."""
    command.add_argument("--scale", choices=sorted(scales), default="book")
    command.add_argument("--seeds", type=int, nargs="+", help="override the scale's seeds")
    command.add_argument(
        "--device", default=None, help="cpu, cuda, mps (default: the best available)"
    )
    command.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    command.add_argument("--out", default=out, help="results folder (resumes from it)")
    command.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    command.set_defaults(run=run)


def cli_overrides(args: argparse.Namespace, *fields: str) -> dict[str, Any]:
    """The config fields set on the command line: the seeds and the named ``fields``."""
    given = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    return given | ({"seeds": tuple(args.seeds)} if args.seeds else {})


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of an experiment's run function, from the common options."""
    return {
        "device": args.device,
        "dtype": getattr(torch, args.dtype),
        "out_dir": Path(args.out),
        "progress": not args.no_progress,
    }


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically: an interruption leaves the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data))
    os.replace(partial, path)


def in_shard(position: int, shard: tuple[int, int] | None) -> bool:
    """Whether the run at ``position`` of an experiment's run list belongs to shard ``(k, n)``."""
    if shard is None:
        return True
    k, n = shard
    if not 0 <= k < n:
        raise ValueError(f"shard must be (k, n) with 0 <= k < n, got {shard}")
    return position % n == k


def _tuples(value: Any) -> Any:
    """JSON turns tuples into lists; turn them back (configs and keys hold tuples)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


@dataclass
class Results:
    """An experiment's config and the history of each of its runs, keyed by tuples.

    Subclasses set ``config_type`` (to read the config back) and add what their chapter asks of
    the runs.
    """

    config: Any
    runs: dict[tuple, History] = field(default_factory=dict)
    config_type: ClassVar[type]

    def to_dict(self) -> dict:
        return {
            "config": dataclasses.asdict(self.config),
            "runs": [{"key": list(k), "history": h.to_dict()} for k, h in self.runs.items()],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Results:
        config = cls.config_type(**{k: _tuples(v) for k, v in data["config"].items()})
        runs = {_tuples(run["key"]): History.from_dict(run["history"]) for run in data["runs"]}
        return cls(config, runs)

    @property
    def interrupted(self) -> bool:
        """Whether a run was stopped (Ctrl-C); calling the experiment again resumes it."""
        return any(history.status == "interrupted" for history in self.runs.values())

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Results:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise RuntimeError(
                f"cannot read {cls.__name__} from {path} ({error}); rerun the experiment"
            ) from error

    @classmethod
    def merge(cls, parts: Iterable[Results]) -> Results:
        """Join the results of shards of one experiment (the same config, disjoint runs)."""
        parts = list(parts)
        if not parts:
            raise ValueError("nothing to merge: no results were given")
        merged = cls(parts[0].config)
        for part in parts:
            if part.config != merged.config:
                raise ValueError("cannot merge results of experiments with different configs")
            if clash := merged.runs.keys() & part.runs.keys():
                raise ValueError(f"runs {sorted(clash)} appear in more than one part")
            merged.runs.update(part.runs)
        return merged
