"""Shared helpers of the unit tests: brute-force references and the ``gpu`` marker's skip logic.

The references here never call ``tflib``: they loop over every entry in float64, so that a test
comparing ``tflib`` against them checks ``tflib`` against an independent computation.
"""

from __future__ import annotations

import itertools
import math
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

# The tensors here are tiny: threads only add overhead, and on a busy 2-core machine every OpenMP
# barrier of a multi-threaded matmul can wait a scheduler slice (~20 ms). One thread keeps the
# suite fast; results do not depend on it (the stored numbers agree across thread counts).
torch.set_num_threads(1)

#: Tensor shapes of orders 1 to 5, with odd and unit dimensions.
SHAPES = [(4,), (3, 4), (2, 3, 4), (5, 1, 3), (2, 3, 2, 3), (2, 2, 2, 2, 2)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests marked ``gpu`` where there is no CUDA device, saying why."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; torch.cuda.is_available() is False")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


def all_indices(shape: Sequence[int]) -> torch.Tensor:
    """Every multi-index of a tensor of ``shape``, in row-major order, as an int64 (P, N) tensor."""
    return torch.tensor(list(itertools.product(*(range(d) for d in shape))), dtype=torch.int64)


def brute_force_entry(factors: Sequence[np.ndarray], index: Sequence[int]) -> float:
    """One entry sum_r prod_n factors[n][index[n], r], by explicit loops in float64."""
    rank = factors[0].shape[1]
    total = 0.0
    for r in range(rank):
        product = 1.0
        for n, i in enumerate(index):
            product *= float(factors[n][i, r])
        total += product
    return total


def brute_force_cp(factors: Sequence[torch.Tensor | np.ndarray]) -> np.ndarray:
    """The full CP tensor, one float64 entry at a time over every multi-index."""
    arrays = [np.asarray(torch.as_tensor(f).detach().cpu().double()) for f in factors]
    shape = tuple(a.shape[0] for a in arrays)
    out = np.zeros(shape, dtype=np.float64)
    for index in itertools.product(*(range(d) for d in shape)):
        out[index] = brute_force_entry(arrays, index)
    return out


def brute_force_entries(
    factors: Sequence[torch.Tensor | np.ndarray], indices: torch.Tensor
) -> np.ndarray:
    """The CP entries at the rows of ``indices``, each by explicit loops in float64."""
    arrays = [np.asarray(torch.as_tensor(f).detach().cpu().double()) for f in factors]
    return np.array([brute_force_entry(arrays, row) for row in indices.cpu().tolist()])


def random_factors(
    shape: Sequence[int],
    rank: int,
    *,
    seed: int = 0,
    std: float = 1.0,
    dtype: torch.dtype = torch.float64,
    requires_grad: bool = False,
) -> list[torch.Tensor]:
    """Independent standard-normal factors (times ``std``), one (d_n, rank) matrix per mode."""
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(d, rank, generator=generator, dtype=torch.float64) * std)
        .to(dtype)
        .requires_grad_(requires_grad)
        for d in shape
    ]


def random_indices(shape: Sequence[int], n: int, *, seed: int = 0) -> torch.Tensor:
    """``n`` multi-indices drawn uniformly with replacement (so duplicates can occur)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(d, (n,), generator=generator) for d in shape], dim=1)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Frobenius norm of the difference over that of ``expected``, in float64."""
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    return float((actual - expected).norm() / expected.norm())


def n_entries(shape: Sequence[int]) -> int:
    return math.prod(shape)


# --- the built book -------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def toc_pages() -> list[str]:
    """The HTML page of every file in ``_toc.yml``, root first (e.g. "book/intro.html")."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return [f"{file}.html" for file in files]


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> Path:
    """The book built once per session, warnings as errors, into a temporary folder: its html/."""
    out = tmp_path_factory.mktemp("book")
    executable = Path(sys.executable).with_name("jupyter-book")
    command = [str(executable), "build", str(ROOT), "-W", "-n", "--keep-going"]
    completed = subprocess.run(
        [*command, "--path-output", str(out)], capture_output=True, text=True, cwd=ROOT
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return out / "_build" / "html"


class InterruptRaised(Exception):
    """Raised by the SIGINT handler of :func:`sigint_guard`: fit failed to install its own."""


def raising_handler(signum, frame):
    raise InterruptRaised


@pytest.fixture
def sigint_guard():
    """Route SIGINT to a handler that raises, so a fit that ignores Ctrl-C fails the test cleanly
    instead of stopping the whole session; yields the handler, restores the previous one after."""
    previous = signal.signal(signal.SIGINT, raising_handler)
    try:
        yield raising_handler
    finally:
        signal.signal(signal.SIGINT, previous)


# --- stored commands ------------------------------------------------------------------------------


def stored_command(command: str):
    """What a stored ``python -m tflib.experiments ...`` command runs, read by the course's
    command line: its :class:`~tflib.experiments.cli.Command`, config and dtype."""
    from tflib.experiments.__main__ import EXPERIMENTS
    from tflib.experiments.cli import Parser, _overrides, add_command, attached

    parser = Parser(prog="python -m tflib.experiments")
    subparsers = parser.add_subparsers(dest="experiment")
    for experiment in EXPERIMENTS:
        add_command(subparsers, experiment.COMMAND)
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "tflib.experiments"], command
    args = parser.parse_args(attached(words[3:]))
    config = args.command.config(args.scale, **_overrides(args, args.command.options))
    return args.command, config, args.dtype
