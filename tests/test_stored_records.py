"""Live re-runs of the stored records that the matrix, rank-one and hierarchical chapters read.

The chapters assert on ``book/data/*.json``, which is a regression check of stored numbers. Here
the first seed of every stored entry is run again from scratch, from its stored command, by the
course's code, and must land on its stored records. (The dynamics study's records are re-run in
``test_dynamics_study.py``; the natural chapter re-runs the start of its own.)
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from conftest import ROOT, stored_command

STORES = ("matrix", "rank_one", "hierarchical")


def entries():
    chosen = []
    for store in STORES:
        stored = json.loads((ROOT / "book" / "data" / f"{store}.json").read_text())
        for name, entry in stored.items():
            chosen.append(pytest.param(entry, id=f"{store}-{name}"))
    return chosen


def rerun(command: str, seed: int) -> list[dict]:
    """The records of ``seed`` made again by the stored ``command``."""
    experiment, config, _ = stored_command(command)
    config = dataclasses.replace(config, seeds=(seed,))
    return experiment.records(experiment.run(config, device="cpu", progress=False))


def same(a, b) -> bool:
    """Equal, floats to 1% (and within 1e-9 of 0): a re-run on the same code and data."""
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-2, abs_tol=1e-9)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("entry", entries())
def test_first_seed_of_every_stored_entry_is_reproduced(entry):
    seed = min(record["seed"] for record in entry["runs"])
    stored = [record for record in entry["runs"] if record["seed"] == seed]
    again = rerun(entry["command"], seed)
    assert len(again) == len(stored)
    for new, old in zip(again, stored):
        differ = {k: (new[k], old[k]) for k in old if not same(new[k], old[k])}
        assert not differ, f"re-run (new, stored) differs: {differ}"
