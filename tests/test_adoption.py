"""What an instructor adopting the course relies on: one version everywhere, install cells pinned to
it, the licences, the citation, and launch links to the student versions at that version."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

_spec = importlib.util.spec_from_file_location("release", ROOT / "book/assignments/release.py")
release = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(release)

VERSION = release.version()
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPOSITORY = CONFIG["repository"]["url"]
#: Every notebook that starts with the install cell: the chapters and the assignments.
NOTEBOOKS = release.pinned_notebooks()


def install_cell(path) -> str:
    first = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    return "".join(first["source"])


def test_the_version_is_the_same_everywhere():
    assert re.fullmatch(r"\d+\.\d+\.\d+", VERSION), f"pyproject.toml's version {VERSION!r}"
    init = (ROOT / "tflib" / "__init__.py").read_text()
    assert f'__version__ = "{VERSION}"' in init, "tflib.__version__ repeats pyproject.toml's"
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert str(citation["version"]) == VERSION, "CITATION.cff's version"
    changelog = re.findall(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), flags=re.M)
    assert changelog and changelog[0] == VERSION, "CHANGELOG.md starts with this version"
    assert f"Version {VERSION}." in CONFIG["html"]["extra_footer"], "the book's footer"
    assert f"version {VERSION} of the course" in (ROOT / "README.md").read_text(), "the README"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_install_cell_pins_this_version_with_the_requirements(path):
    """tflib from the version's tag; its dependencies as requirements.txt pins them; the install
    skipped only where the tflib found declares this version."""
    source = install_cell(path)
    assert source == release.install_source(), f"{path.name}: run release.py --pin"
    urls = re.findall(r"git\+(\S+?)\"", source)
    assert urls == [f"{REPOSITORY}@v{VERSION}"], f"tflib from the tag v{VERSION}: {urls}"
    requirements = {line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()}
    packages = re.findall(r'"([^"@]+)"', source.split("%pip install", 1)[1])
    assert packages and all(p in requirements for p in packages), "the pins of requirements.txt"
    assert "torch==2.13.0" in packages and "matplotlib==3.11.2" in packages


def repository_urls(source: str) -> list[str]:
    """Every URL into the course's repository in ``source``, up to a quote, space or bracket
    (so a URL that a cell completes from a variable is read without its completion)."""
    path = re.escape(REPOSITORY.removeprefix("https://github.com/"))
    return re.findall(rf"https?://[\w.-]+/{path}[^\s\"'\\)]*", source)


def unpinned(urls: list[str]) -> list[str]:
    """The URLs that do not name this version's tag (``.../v0.2.0/...`` or ``...@v0.2.0``)."""
    return [u for u in urls if not re.search(rf"[/@]v{re.escape(VERSION)}(/|$)", u)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_download_from_the_repository_names_this_version(path):
    """A notebook run outside the repository fetches what it needs (tflib, stored results) from
    the version's tag, never from a branch that moves on."""
    cells = json.loads(path.read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    urls = [url for source in sources for url in repository_urls(source)]
    assert urls, f"{path.name}: at least the install cell downloads from the repository"
    assert not unpinned(urls), f"{path.name}: pin these to v{VERSION}: {unpinned(urls)}"


def test_the_download_check_flags_a_branch_and_a_url_completed_from_a_variable():
    raw = REPOSITORY.replace("github.com", "raw.githubusercontent.com")
    good = [f"{raw}/v{VERSION}/book/data/dynamics_study.json", f"git+{REPOSITORY}@v{VERSION}"]
    bad = f'{raw}/main/book/data/x.json and BASE = "{raw}"; f"{{BASE}}/v{VERSION}/x"'
    assert not unpinned(repository_urls(" ".join(good)))
    assert unpinned(repository_urls(bad)) == [f"{raw}/main/book/data/x.json", raw]


def test_install_cell_pins_every_dependency_of_tflib():
    listed = re.search(r"^dependencies = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.M)
    names = {re.split(r"[<>=!~ ]", d.strip(' "'))[0] for d in listed.group(1).split(",")}
    assert names == set(release.DEPENDENCIES), "release.DEPENDENCIES are tflib's dependencies"


@pytest.mark.parametrize(
    "module, installs",
    [("", True), ('__version__ = "0.1.0"\n', True), (f'__version__ = "{VERSION}"\n', False)],
    ids=["another-tflib", "an-older-version", "this-version"],
)
def test_install_cell_replaces_any_other_tflib(tmp_path, module, installs):
    """The cell, its install replaced by a marker, run where a module called tflib is first on the
    path: PyPI's unrelated one or an older course, or this version."""
    (tmp_path / "tflib").mkdir()
    (tmp_path / "tflib" / "__init__.py").write_text(module)
    code = re.sub(r"%pip install .*", 'print("install")', install_cell(NOTEBOOKS[0]))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout.strip() == "install") == installs, done.stdout


def test_code_is_mit_and_text_and_figures_are_cc_by():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert 'license = { text = "MIT" }' in (ROOT / "pyproject.toml").read_text()
    content = (ROOT / "LICENSE-CONTENT").read_text()
    assert "Creative Commons Attribution 4.0 International Public License" in content
    assert "Section 8 -- Interpretation." in content, "the whole legal code"
    readme, footer = (ROOT / "README.md").read_text(), CONFIG["html"]["extra_footer"]
    for text in (readme, footer):
        assert "MIT licence" in text and "CC BY 4.0" in text, "the licences are stated"
    assert "LICENSE-CONTENT" in readme and "CITATION.cff" in readme


def test_citation_names_the_course_and_the_paper():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    for key in ("cff-version", "message", "title", "authors", "version", "license"):
        assert key in citation, f"CITATION.cff needs {key}"
    assert set(citation["license"]) == {"MIT", "CC-BY-4.0"}
    assert citation["repository-code"] == REPOSITORY
    paper = citation["references"][0]
    assert (
        paper["title"] == "Implicit Regularization in Tensor Factorization"
        and paper["year"] == 2021
    )


@pytest.mark.parametrize("path", release.instructor_notebooks(), ids=lambda p: p.stem)
def test_guide_links_launch_the_student_versions_at_this_version(path):
    """Colab and Binder links built as the chapters' launch buttons are (sphinx-book-theme), but
    opening the committed student version at the version's tag."""
    org, repo = REPOSITORY.removeprefix("https://github.com/").split("/")
    student = f"book/assignments/release/{path.name}"
    assert (ROOT / student).exists(), f"{student} is committed"
    buttons = CONFIG["launch_buttons"]
    assert buttons["notebook_interface"] == "jupyterlab"
    colab = f"{buttons['colab_url']}/github/{org}/{repo}/blob/v{VERSION}/{student}"
    binder = f"{buttons['binderhub_url']}/v2/gh/{org}/{repo}/v{VERSION}?urlpath=lab/tree/{student}"
    guide = (ROOT / "book" / "instructor_guide.md").read_text()
    assert f"({colab})" in guide and f"({binder})" in guide, f"launch links for {path.name}"
