"""The book as a whole: the README's commands, the chapter notebooks' shape, and the HTML build."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(
    p for p in (ROOT / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
)


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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_is_committed_executed_and_clean(path):
    code = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] is not None for c in code), "commit notebooks executed"
    for cell in code:
        assert not any(o["output_type"] == "error" for o in cell["outputs"])
        last_line = "".join(cell["source"]).rstrip().splitlines()[-1]
        assert not last_line.endswith(";"), "nbval ignores a trailing ';': use '_ =' or plt.show()"
        assert not re.search(r"/(work|tmp|root|home)/", json.dumps(cell["outputs"]))


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    executable = Path(sys.executable).with_name("jupyter-book")
    command = [str(executable), "build", str(ROOT), "-W", "-n", "--keep-going"]
    completed = subprocess.run(
        [*command, "--path-output", str(out)], capture_output=True, text=True, cwd=ROOT
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return out / "_build" / "html"


def test_book_builds_every_page(built_book):
    pages = ("book/intro.html", "book/cp_dynamics.html", "book/api.html", "book/references.html")
    pages += ("book/matrix_factorization.html",)
    for page in pages:
        assert (built_book / page).exists(), page
    assert not list(built_book.rglob("*pytest_cache*")), "caches must not become pages"


def test_math_is_served_offline(built_book):
    page = (built_book / "book" / "cp_dynamics.html").read_text()
    scripts = re.findall(r'<script[^>]*src="([^"]*mathjax[^"]*)"', page, flags=re.I)
    assert scripts, "the page loads MathJax"
    assert all(not s.startswith(("http:", "https:", "//")) for s in scripts), scripts


def test_chapter_renders_theorems_exercises_and_citations(built_book):
    page = (built_book / "book" / "cp_dynamics.html").read_text()
    assert 'class="proof theorem admonition"' in page
    exercises = page.count('class="exercise admonition"')
    assert exercises >= 3, f"only {exercises} exercises"
    assert page.count('class="solution dropdown admonition"') == exercises, (
        "every exercise has a solution, folded away in a dropdown"
    )
    assert "Razin" in page, "citations resolve to author names"
    assert "<img" in page, "figures are embedded"
    assert 'href="api.html#tflib.theory.component_norm_rates"' in page, (
        "tflib names link to the API"
    )


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (.ci/run installs it)")
def test_math_renders_in_a_browser_without_network(built_book, tmp_path):
    """Open the chapter from disk in headless Chromium, network off, and count typeset formulas."""
    page = (built_book / "book" / "cp_dynamics.html").as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    flags += ["--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path}"]
    completed = subprocess.run(
        [CHROMIUM, *flags, "--virtual-time-budget=15000", "--dump-dom", page],
        capture_output=True,
        text=True,
        timeout=120,
    )
    typeset = completed.stdout.count("<mjx-container")
    assert typeset > 50, f"MathJax typeset only {typeset} formulas offline"
