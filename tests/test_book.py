"""The book as a whole: the README's commands, the chapter notebooks' shape, and the HTML build."""

from __future__ import annotations

import json
import re

import pytest
from conftest import ROOT, toc_pages

NOTEBOOKS = sorted(
    p
    for p in (ROOT / "book").rglob("*.ipynb")
    if ".ipynb_checkpoints" not in p.parts and (ROOT / "book/assignments/release") not in p.parents
)
#: The chapters' notebooks; the assignments in book/assignments are checked by test_assignments.py.
CHAPTER_NOTEBOOKS = [p for p in NOTEBOOKS if (ROOT / "book/assignments") not in p.parents]


def readme_commands() -> list[str]:
    """The shell commands in the README's bash blocks."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command():
    test_commands = [c for c in readme_commands() if c.endswith("pytest")]
    assert len(test_commands) == 1, "the README should give exactly one test command"
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_commands[0] in ci_lines


def test_readme_installs_torch_before_the_requirements():
    for command in readme_commands():
        if "requirements.txt" in command:
            assert command.startswith(
                "pip install torch==2.13.0 && pip install -r requirements.txt"
            )


@pytest.mark.parametrize("path", CHAPTER_NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_follows_the_template(path):
    cells = json.loads(path.read_text())["cells"]
    parameters = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    assert len(parameters) == 1, "a chapter has one cell tagged 'parameters'"
    assert 'SCALE = "book"' in "".join(parameters[0]["source"])
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
    text = "\n".join("".join(c["source"]) for c in cells)
    for part in ("Learning goals", "{prf:theorem}", "{exercise}", "{solution}", "## Summary"):
        assert part in text, f"{path.name} lacks {part}"
    assert "assert " in text, "a chapter has check cells that assert its claims"


def test_running_page_times_every_chapter_and_lists_every_experiment():
    """ "Running the course" has a row for each chapter and a command for each experiment."""
    from tflib.experiments.__main__ import EXPERIMENTS

    text = (ROOT / "book" / "running.md").read_text()
    for path in CHAPTER_NOTEBOOKS:
        rows = [line for line in text.splitlines() if line.startswith(f"| {{doc}}`{path.stem}`")]
        assert len(rows) == 1, f"running.md needs one row timing {path.stem}"
        assert all(cell.strip() for cell in rows[0].strip("|").split("|")), rows[0]
    for experiment in EXPERIMENTS:
        name = experiment.COMMAND.name
        assert f"python -m tflib.experiments {name} --scale paper" in text, name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_is_committed_executed_and_clean(path):
    code = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] is not None for c in code), "commit notebooks executed"
    for cell in code:
        assert not any(o["output_type"] == "error" for o in cell["outputs"])
        last_line = "".join(cell["source"]).rstrip().splitlines()[-1]
        assert not last_line.endswith(";"), "nbval ignores a trailing ';': use '_ =' or plt.show()"
        assert not re.search(r"/(work|tmp|root|home)/", json.dumps(cell["outputs"]))


def test_book_builds_every_page(built_book):
    for page in toc_pages():
        assert (built_book / page).exists(), page
    assert not list(built_book.rglob("*pytest_cache*")), "caches must not become pages"


CHAPTERS = [p for p in toc_pages() if (ROOT / p.replace(".html", ".ipynb")).exists()]


@pytest.mark.parametrize("page", CHAPTERS)
def test_math_is_served_offline(built_book, page):
    html = (built_book / page).read_text()
    scripts = re.findall(r'<script[^>]*src="([^"]*mathjax[^"]*)"', html, flags=re.I)
    assert scripts, "the page loads MathJax"
    assert all(not s.startswith(("http:", "https:", "//")) for s in scripts), scripts


@pytest.mark.parametrize("page", CHAPTERS)
def test_chapter_renders_theorems_exercises_and_citations(built_book, page):
    html = (built_book / page).read_text()
    assert 'class="proof theorem admonition"' in html
    exercises = html.count('class="exercise admonition"')
    assert exercises >= 3, f"only {exercises} exercises"
    assert html.count('class="solution dropdown admonition"') == exercises, (
        "every exercise has a solution, folded away in a dropdown"
    )
    assert "Razin" in html, "citations resolve to author names"
    assert "<img" in html, "figures are embedded"
    assert 'href="api.html#tflib.' in html, "tflib names link to the API"
