"""What every experiment shares: configs per scale, results, and the one loop that runs them.

An experiment is a frozen dataclass of settings with one instance per scale ("book", "paper"), a
function that draws and trains *one run* from its key (a seed and an init scale, say), and a
:class:`Results` subclass that holds, per key, the run's :class:`~tflib.train.History` and any
numbers recorded beside it. :func:`run_keys` is the loop every experiment goes through:

1. the results folder is claimed (:class:`ResultsFolder`): a lock file keeps out a second process,
   and the results already there must carry the same *fingerprint* (the config, the dtype, and
   for natural data a digest of the data), or the call is refused before any work;
2. each key of the shard (``shard=(k, n)``: every n-th key from the k-th) that has no finished run
   is trained, checkpointing into the folder, and the results file is rewritten after each run;
3. Ctrl-C stops the run between two steps; the results say ``interrupted``, and the same call
   resumes where it stopped.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from tflib.checks import check_number
from tflib.devices import default_device
from tflib.train import History, check_settings

#: The parts of a draw, each seeded apart: ``seed_for(seed, INIT)`` seeds the initialization.
TARGET, OBSERVATIONS, INIT = 0, 1, 2


class InputError(ValueError):
    """Bad input found before any work (a results folder made by other settings, a missing data
    file). The command line prints it as one line and exits with status 2."""


def seed_for(seed: int, part: int, draw: int = 0) -> int:
    """The seed of one part of a run's draw (:data:`TARGET`, :data:`OBSERVATIONS`, :data:`INIT`);
    ``draw > 0`` gives another draw of that part for the same seed."""
    return 1000 * seed + part + 10**9 * draw


def significant(value: float, digits: int = 4) -> float:
    """``value`` rounded to ``digits`` significant digits, as the stored records keep numbers."""
    return float(f"{value:.{digits}g}")


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``device``, or the best one available (:func:`~tflib.devices.default_device`) if None; an
    :class:`InputError` if this machine has no such device."""
    if device is None:
        return default_device()
    try:
        device = torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}: use cpu, cuda or mps") from None
    available = {"cpu"} | ({"cuda"} if torch.cuda.is_available() else set())
    available |= {"mps"} if torch.backends.mps.is_available() else set()
    if device.type not in available:
        raise InputError(f"there is no {device.type} device on this machine; use --device cpu")
    return device


#: The settings :func:`~tflib.train.fit` takes from a config when the config has them.
FIT_FIELDS = ("optimizer", "lr", "loss_tol", "patience", "track_every")


def fit_options(config: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`~tflib.train.fit` that ``config`` sets."""
    return {name: getattr(config, name) for name in FIT_FIELDS if hasattr(config, name)}


def config_at_scale(scales: dict[str, Any], scale: str, seed: int = 0, **overrides) -> Any:
    """The config of ``scale`` (a key of ``scales``), its ``seeds`` counted from ``seed``, with
    the given fields overridden."""
    if scale not in scales:
        raise ValueError(f"scale must be one of {sorted(scales)}, got {scale!r}")
    config = scales[scale]
    overrides.setdefault("seeds", tuple(seed + s for s in config.seeds))
    return dataclasses.replace(config, **overrides)


def check_config(config: Any, positive: Iterable[str] = (), signed: Iterable[str] = ()) -> None:
    """Every number of ``config`` finite and at least 0 (above 0 if named in ``positive``; any
    sign if in ``signed``), integers where the field is declared ``int``, no empty tuple, and
    distinct seeds. Raises ``ValueError`` or ``TypeError`` naming the field."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, tuple) and not value:
            raise ValueError(f"{f.name} must not be empty")
        integer = str(f.type).startswith(("int", "tuple[int"))
        for v in value if isinstance(value, tuple) else (value,):
            if v is not None and not isinstance(v, (str, bool, tuple)):
                low = -float("inf") if f.name in signed else 0
                check_number(f.name, v, low=low, strict=f.name in positive, integer=integer)
    if len(set(config.seeds)) != len(config.seeds):
        raise ValueError(f"seeds must be distinct, got {config.seeds}")


def _tuples(value: Any) -> Any:
    """JSON turns tuples into lists; turn them back (configs and keys hold tuples)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


@dataclass
class Results:
    """An experiment's config, and per run key: its history (``runs``) and the numbers recorded
    beside it (``values``); ``baselines`` holds reference solutions under keys of their own.
    ``settings`` is what else the fingerprint covers (the dtype, a digest of the data).

    Subclasses set ``config_type`` (to read the config back) and ``key_names`` (what each part of
    a key means, which names the checkpoints), and add what their chapter asks of the runs.
    """

    config: Any
    runs: dict[tuple, History] = field(default_factory=dict)
    values: dict[tuple, dict] = field(default_factory=dict)
    baselines: dict[tuple, dict] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    config_type: ClassVar[type]
    key_names: ClassVar[tuple[str, ...]]

    def fingerprint(self) -> dict[str, Any]:
        """What made the runs: every config field and the settings, as JSON would store them."""
        return json.loads(json.dumps(dataclasses.asdict(self.config) | self.settings))

    @property
    def interrupted(self) -> bool:
        """Whether a run was stopped (Ctrl-C); calling the experiment again resumes it."""
        return any(history.status == "interrupted" for history in self.runs.values())

    def to_dict(self, finished_only: bool = False) -> dict:
        runs = {
            k: h for k, h in self.runs.items() if h.status != "interrupted" or not finished_only
        }
        return {
            "config": dataclasses.asdict(self.config),
            "settings": self.settings,
            "runs": [{"key": list(k), "history": h.to_dict()} for k, h in runs.items()],
            "values": [{"key": list(k), "value": v} for k, v in self.values.items()],
            "baselines": [{"key": list(k), "value": v} for k, v in self.baselines.items()],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Results:
        config = cls.config_type(**{k: _tuples(v) for k, v in data["config"].items()})
        runs = {_tuples(run["key"]): History.from_dict(run["history"]) for run in data["runs"]}
        keyed = [{_tuples(e["key"]): e["value"] for e in data[name]} for name in KEYED_VALUES]
        return cls(config, runs, *keyed, settings=data["settings"])

    def save(self, path: str | Path) -> None:
        """Write the finished runs to ``path`` as JSON, atomically."""
        write_json(path, self.to_dict(finished_only=True))

    @classmethod
    def load(cls, path: str | Path) -> Results:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InputError(
                f"cannot read {cls.__name__} from {path} ({error}); it is damaged or not a "
                "results file: delete it (or use --force) to run the experiment afresh"
            ) from error

    @classmethod
    def merge(cls, parts: Iterable[Results]) -> Results:
        """Join the results of shards of one experiment (the same fingerprint, disjoint runs)."""
        parts = list(parts)
        if not parts:
            raise ValueError("nothing to merge: no results were given")
        merged = cls(parts[0].config, settings=parts[0].settings)
        for part in parts:
            check_settings("a shard", part.fingerprint(), merged.fingerprint())
            if clash := merged.runs.keys() & part.runs.keys():
                raise ValueError(f"runs {sorted(clash)} appear in more than one part")
            merged.runs.update(part.runs)
            merged.values.update(part.values)
            merged.baselines.update(part.baselines)
        return merged


KEYED_VALUES = ("values", "baselines")


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically: an interruption leaves the old file or the new one, never half; the
    partial file is named for this process, so two writers never share one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(data))
    os.replace(partial, path)


def parse_shard(text: str) -> tuple[int, int]:
    """``"k/n"`` as ``(k, n)``, checked: ``0 <= k < n``."""
    parts = text.split("/")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or not int(parts[0]) < int(parts[1]):
        raise ValueError(
            f"a shard is k/n with 0 <= k < n (0/2 and 1/2 split a run in two), got {text!r}"
        )
    return int(parts[0]), int(parts[1])


def in_shard(position: int, shard: tuple[int, int] | None) -> bool:
    """Whether the run at ``position`` of an experiment's key list belongs to shard ``(k, n)``."""
    if shard is None:
        return True
    k, n = shard
    if not 0 <= k < n:
        raise ValueError(f"shard must be (k, n) with 0 <= k < n, got {shard}")
    return position % n == k


def results_name(shard: tuple[int, int] | None) -> str:
    """The results file of a shard (``results-shard0of2.json``) or of a whole run."""
    return "results.json" if shard is None else f"results-shard{shard[0]}of{shard[1]}.json"


def _shard_of(name: str) -> tuple[int, int] | None:
    stem = name.split(".")[0].removeprefix("results")
    return None if not stem else tuple(map(int, stem.removeprefix("-shard").split("of")))


def _overlap(a: tuple[int, int] | None, b: tuple[int, int] | None) -> bool:
    return a is None or b is None or a[1] != b[1] or a == b


def _alive(pid: int) -> bool:
    if pid <= 0:  # an empty or damaged lock file
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ResultsFolder:
    """A results folder claimed for one shard of one experiment (see :func:`run_keys`).

    Claiming it refuses, with an :class:`InputError` and before any work: a path that is a file;
    a folder another live process is writing the same runs into (lock files, named for the results
    file, hold the pid); results there with another fingerprint (naming the fields that differ).
    ``force=True`` deletes the results and checkpoints there first.
    """

    def __init__(self, path, result: Results, shard=None, force: bool = False) -> None:
        self.path, self.shard = Path(path), shard
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"results folder {self.path} is a file; give a folder for --out")
        self.path.mkdir(parents=True, exist_ok=True)
        self.results = self.path / results_name(shard)
        self._lock()
        if force:
            for old in [*self.path.glob("results*.json"), *self.path.glob("*.pt")]:
                old.unlink()
        for existing in sorted(self.path.glob("results*.json")):
            stored = type(result).load(existing)
            try:
                check_settings(
                    f"results folder {self.path}", stored.fingerprint(), result.fingerprint()
                )
            except ValueError as error:
                raise InputError(str(error)) from None
            if existing == self.results:
                result.runs.update(stored.runs)
                result.values.update(stored.values)
                result.baselines.update(stored.baselines)
        result.save(self.results)  # the fingerprint is on disk before the first checkpoint

    def _lock(self) -> None:
        self.lock = self.results.with_name(self.results.name + ".lock")
        for _ in range(2):  # a second look catches a process that claimed at the same moment
            for other in self.path.glob("results*.json.lock"):
                text = other.read_text().strip()
                pid = int(text) if text.isdigit() else 0
                if pid != os.getpid() and _overlap(_shard_of(other.name), self.shard):
                    if _alive(pid):
                        raise InputError(
                            f"results folder {self.path} is in use by process {pid}, which runs "
                            "the same runs; wait for it to finish, or use another --out"
                        )
                    other.unlink(missing_ok=True)  # left by a process that died
            self.lock.write_text(str(os.getpid()))
        atexit.register(self.release)

    def release(self) -> None:
        """Give the folder back (done at exit too)."""
        if self.lock.exists() and self.lock.read_text() == str(os.getpid()):
            self.lock.unlink()


def _named(names: Sequence[str], key: tuple, gap: str = "") -> list[str]:
    """Each part of ``key`` after its name (``seed0``, or ``seed 0`` with a ``gap``)."""
    return [
        f"{n}{gap if n else ''}{v:g}" if isinstance(v, float) else f"{n}{gap if n else ''}{v}"
        for n, v in zip(names, key)
    ]


def checkpoint_path(folder: str | Path, names: Sequence[str], key: tuple, part: str = "") -> Path:
    """Where the run ``key`` checkpoints in ``folder``: its key, named (``seed0_init0.01.pt``),
    and the ``part`` of the run, if any (``seed0_init0.01_plateau.pt``)."""
    named = _named(names, key)
    return Path(folder) / f"{'_'.join([*named, part] if part else named)}.pt"


#: A run: given its key and where to checkpoint a part of it (None: nowhere), train and return
#: its history (it may record more numbers in the results' ``values`` itself).
Run = Callable[[tuple, Callable[[str], Path | None]], History]


def run_keys(
    result: Results,
    keys: Sequence[tuple],
    run: Run,
    *,
    out_dir: str | Path | None = None,
    shard: tuple[int, int] | None = None,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> Results:
    """Train every key of ``keys`` in ``shard`` that has no finished run, in order, into
    ``result``; with ``out_dir``, claimed as a :class:`ResultsFolder`, each run checkpoints there
    and the results file is rewritten after each. Stops at the first interrupted run. ``log``
    receives a line per finished run (its key, how it ended, its steps).

    Explained in the API page: this is the loop of every experiment.
    """
    mine = [key for position, key in enumerate(keys) if in_shard(position, shard)]
    folder = ResultsFolder(out_dir, result, shard, force) if out_dir is not None else None

    def checkpoints(key: tuple) -> Callable[[str], Path | None]:
        if folder is None:
            return lambda part="": None
        return lambda part="": checkpoint_path(folder.path, result.key_names, key, part)

    try:
        for key in mine:
            if key in result.runs:
                continue
            result.runs[key] = history = run(key, checkpoints(key))
            if history.status == "interrupted":
                break
            if log is not None:
                named = ", ".join(_named(result.key_names, key, " "))
                log(f"{named}: {history.status} at step {history.steps[-1]:,}")
            if folder is not None:
                result.save(folder.results)
    finally:
        if folder is not None:
            folder.release()
    return result
