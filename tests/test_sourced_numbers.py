"""Counts over seeds, draws or runs in the chapters' prose come from code.

A sentence such as "depth 3 won on four of five seeds" is a measurement. Typed by hand, it goes
stale without a sound when the code changes; glued from a cell (myst-nb's ``glue`` and the
``{glue:text}`` role), it is recomputed with the notebook and compared by nbval. The check is a
pattern match over the markdown cells of every chapter: a count over seeds, draws or runs must
have each of its numbers glued, and phrases with no number to glue ("on every seed", "in our
runs") must be rewritten with one. Descriptions that are not measurements (what a command runs)
are listed in ``EXCEPTIONS``.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import ROOT

CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))

GLUE = r"\{glue(?::\w+)?\}`[^`]+`"
WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty hundred"
).split()
NUMBER = rf"(?:{GLUE}|\b\d[\d,]*\b|\b(?:{'|'.join(WORDS)})\b)"
UNIT = r"(?:random\s+)?(?:seeds?|draws?|runs?|trials?|repetitions?)\b"
WORD = r"(?:(?:other|more|further|different|fresh|new|such|independent)\s+)"
#: A count over seeds, draws or runs, in the forms the chapters use.
COUNTS = [
    rf"{NUMBER}\s+(?:out\s+)?of\s+(?:the\s+|our\s+)?(?:{NUMBER}\s+)?{WORD}?{UNIT}",  # 4 of 5 seeds
    rf"\b{UNIT}\s*{NUMBER}(?:\s*(?:,|to|and|through|-|–)\s*{NUMBER})+",  # seeds 0 to 5
    rf"\b(?:every|all|both|none|neither)\s+(?:of\s+(?:the\s+|our\s+)?)?(?:{NUMBER}\s+)?{WORD}?{UNIT}",
    rf"\b(?:in|on|over|across|for)\s+(?:our\s+|the\s+)?{NUMBER}\s+{WORD}?{UNIT}",  # over 10 draws
    r"\bin\s+our\s+(?:\w+\s+)?runs?\b",  # in our runs
]
PATTERN = re.compile("|".join(f"(?:{c})" for c in COUNTS), flags=re.IGNORECASE)

#: Per chapter, phrases that match a count but are not measurements, each with why.
EXCEPTIONS = {
    "prediction_as_completion.ipynb": {
        # the parameters cell's description of the two scales: what the sweep runs
        "repeated over 10 random draws",
        "repeated over 100 draws",
    },
}


def prose(notebook: dict) -> list[tuple[int, str]]:
    """The markdown cells of a notebook, without code blocks (a fence with a language)."""
    cells = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "markdown":
            text = re.sub(r"(`{3,})[a-z]+\n.*?\n\1", "", "".join(cell["source"]), flags=re.S)
            cells.append((index, text))
    return cells


def unsourced_counts(text: str, allowed=frozenset()) -> list[str]:
    """The counts over seeds, draws or runs in ``text`` that are not glued: a count is sourced
    when it has numbers and every one of them is a glue role."""
    found = []
    for match in PATTERN.finditer(text):
        phrase = " ".join(match.group().split())
        numbers = re.findall(NUMBER, phrase, flags=re.IGNORECASE)
        glued = numbers and all(re.fullmatch(GLUE, n) for n in numbers)
        if not glued and not any(phrase in " ".join(a.split()) for a in allowed):
            found.append(phrase)
    return found


def unsourced_in(notebook: dict, allowed=frozenset()) -> list[str]:
    return [
        f"cell {index}: {phrase!r}"
        for index, text in prose(notebook)
        for phrase in unsourced_counts(text, allowed)
    ]


def glued_keys(notebook: dict) -> set[str]:
    return {
        output["metadata"]["scrapbook"]["name"]
        for cell in notebook["cells"]
        if cell["cell_type"] == "code"
        for output in cell.get("outputs", [])
        if "scrapbook" in output.get("metadata", {})
    }


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_counts_over_seeds_draws_and_runs_are_glued(path):
    notebook = json.loads(path.read_text())
    found = unsourced_in(notebook, EXCEPTIONS.get(path.name, set()))
    assert not found, "counts typed by hand, glue them from a cell:\n" + "\n".join(found)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_glue_role_names_a_value_the_notebook_glues(path):
    notebook = json.loads(path.read_text())
    text = "\n".join(t for _, t in prose(notebook))
    used = set(re.findall(r"\{glue(?::\w+)?\}`([^`:]+)", text))
    missing = used - glued_keys(notebook)
    assert not missing, f"glued nowhere in the committed outputs: {sorted(missing)}"


def test_every_exception_still_occurs_in_its_chapter():
    for name, phrases in EXCEPTIONS.items():
        text = " ".join(
            " ".join(t.split()) for _, t in prose(json.loads((ROOT / "book" / name).read_text()))
        )
        for phrase in phrases:
            assert phrase in text, f"{name} no longer says {phrase!r}: drop the exception"


# --- the checker itself ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Depth 3 won on four of five seeds.",
        "It held on 5 of 6 draws.",
        "We repeated the experiment for seeds 0 to 5.",
        "The same holds for seeds 10 and 17.",
        "in all 30 draws the error fell",
        "five of six runs completed",
        "the checks hold on every draw of the chapter's scale",
        "In our runs the deviation halves.",
        "over 10 draws, all below 5%",
        "on {glue:text}`ok` of 6 seeds",  # one number glued, the other typed
    ],
)
def test_the_checker_finds_a_count_typed_by_hand(text):
    assert unsourced_counts(text), text


@pytest.mark.parametrize(
    "text",
    [
        "Depth 3 won on {glue:text}`won` of {glue:text}`seeds` seeds.",
        "in all {glue:text}`n_draws` draws the error fell",
        "for seeds {glue:text}`first` to {glue:text}`last`",
        "Each line is the median over the draws, each dot one draw.",
        "A seed draws the target, the observed entries and the initialization.",
        "the four runs of experiment 2",
        "stops after 20,000 steps",
    ],
)
def test_the_checker_passes_glued_counts_and_prose_without_counts(text):
    assert not unsourced_counts(text), text


def test_a_planted_count_fails_a_chapter_that_passes():
    notebook = json.loads((ROOT / "book" / "matrix_factorization.ipynb").read_text())
    assert not unsourced_in(notebook), "the chapter itself should pass"
    planted = {"cell_type": "markdown", "metadata": {}, "source": ["It won on four of five seeds."]}
    notebook["cells"].append(planted)
    assert unsourced_in(notebook) == [f"cell {len(notebook['cells']) - 1}: 'four of five seeds'"]


def test_an_exception_lets_its_phrase_through_and_nothing_else():
    text = "The sweep is repeated over 10 random draws; it completed on 9 of 10 draws."
    allowed = {"repeated over 10 random draws"}
    assert unsourced_counts(text, allowed) == ["9 of 10 draws"]


def test_code_blocks_in_the_prose_are_not_prose():
    cell = {
        "cell_type": "markdown",
        "source": ["Run:\n\n```python\nfor seed in seeds 0 to 5: pass\n```\n"],
    }
    assert prose({"cells": [cell]}) == [(0, "Run:\n\n\n")]
