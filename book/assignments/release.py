"""Write the student versions of the course's assignments, with nbgrader's own preprocessors.

    python book/assignments/release.py                          # every assignment
    python book/assignments/release.py --out DIR A.ipynb B.ipynb
    python book/assignments/release.py --course DIR             # an nbgrader course directory
    python book/assignments/release.py --pin                    # install cells at this version

The notebooks in this folder are the instructor versions: solutions between ``### BEGIN SOLUTION``
and ``### END SOLUTION``, hidden tests between ``### BEGIN HIDDEN TESTS`` and
``### END HIDDEN TESTS``, nbgrader metadata on every graded cell. A student version is what
``nbgrader generate_assignment`` would write from them, made without a course directory or a
gradebook: the same preprocessors in the same order, less the ones that need a database.
Solutions become ``raise NotImplementedError()`` stubs, written answers "YOUR ANSWER HERE",
hidden tests and outputs disappear, graded cells are locked and checksummed. The student versions
are committed in ``book/assignments/release/``, where the instructor guide's launch links open
them.

``--course DIR`` sets up an nbgrader course directory outside the repository instead: the
assignments and the hidden tests' helper ``grading.py`` in ``DIR/source/<assignment>/``, and the
course's ``nbgrader_config.py``. ``--pin`` writes the install cell (the first code cell of every
chapter and assignment) for the version in ``pyproject.toml``. The instructor guide
(``book/instructor_guide.md``) explains the full nbgrader workflow.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat
import yaml
from nbgrader import utils
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearHiddenTests,
    ClearMarkScheme,
    ClearOutput,
    ClearSolutions,
    ComputeChecksums,
    LockCells,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
#: Where the student versions go unless ``--out`` says otherwise (committed; ignored by pytest).
DEFAULT_OUT = HERE / "release"
#: What ``--course`` copies next to every assignment, and into the course directory's root.
GRADING, CONFIG = HERE / "grading.py", HERE / "nbgrader_config.py"
#: tflib's dependencies (``pyproject.toml``), which the install cell pins as requirements.txt does.
DEPENDENCIES = ("torch", "numpy", "matplotlib", "tqdm", "scikit-learn", "cvxpy")
#: The first code cell of every chapter and assignment (see :func:`install_source`).
INSTALL = """\
# Installs the course's library at the version of this notebook, unless it is there already (as in
# the course's repository). Any other module called tflib, such as PyPI's, is replaced.
import importlib.util
from pathlib import Path

tflib_spec = importlib.util.find_spec("tflib")
tflib_init = Path(tflib_spec.origin).read_text() if tflib_spec and tflib_spec.origin else ""
if '__version__ = "{version}"' not in tflib_init:
    %pip install --quiet {packages}"""
#: nbgrader's ``GenerateAssignment.preprocessors``, in order, without the gradebook's SaveCells,
#: the optional header/footer and the test templates we do not use.
PREPROCESSORS = (
    LockCells,
    ClearSolutions,
    ClearOutput,
    CheckCellMetadata,
    ClearHiddenTests,
    ClearMarkScheme,
    ComputeChecksums,
    CheckCellMetadata,
)


def instructor_notebooks() -> list[Path]:
    """The assignments of the course: every notebook in this folder."""
    return sorted(HERE.glob("*.ipynb"))


def student_version(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student version of an instructor notebook (a new notebook; the argument is kept)."""
    notebook = nbformat.from_dict(notebook)
    if not any(utils.is_grade(cell) or utils.is_solution(cell) for cell in notebook.cells):
        raise ValueError("the notebook has no nbgrader solution or graded cell: not an assignment")
    resources: dict = {}
    for preprocessor in PREPROCESSORS:
        notebook, resources = preprocessor().preprocess(notebook, resources)
    return notebook


def release(notebooks: Sequence[Path], out: Path) -> list[Path]:
    """Write the student version of each notebook into ``out``, under the same file name."""
    out = out.resolve()
    for path in notebooks:
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        if path.resolve().parent == out:
            raise ValueError(
                f"--out {out} is the folder of {path.name}: the student version would overwrite "
                "the instructor version; choose another folder"
            )
    written = []
    for path in notebooks:
        try:
            notebook = student_version(nbformat.read(path, as_version=4))
        except Exception as error:  # nbgrader raises bare RuntimeErrors: say which notebook
            raise RuntimeError(f"{path}: {error}") from error
        out.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, out / path.name)
        written.append(out / path.name)
    return written


def version() -> str:
    """The course's version: ``pyproject.toml``'s, which ``tflib.__version__`` repeats."""
    found = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    if found is None:
        raise ValueError("pyproject.toml has no version line")
    return found.group(1)


def pins() -> list[str]:
    """``requirements.txt``'s line for each of tflib's dependencies, in the order listed there."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    chosen = [line for line in lines if re.split(r"[<>=!~ ]", line)[0] in DEPENDENCIES]
    if len(chosen) != len(DEPENDENCIES):
        raise ValueError(f"requirements.txt should have one line for each of {DEPENDENCIES}")
    return chosen


def install_source() -> str:
    """The install cell: tflib at the tag of this version, with the pins of ``requirements.txt``,
    unless the ``tflib`` found already declares this version (in the repository, say). PyPI's
    unrelated ``tflib`` declares none, so it is replaced."""
    repository = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    packages = [*pins(), f"tflib @ git+{repository}@v{version()}"]
    return INSTALL.format(version=version(), packages=" ".join(f'"{p}"' for p in packages))


def pinned_notebooks() -> list[Path]:
    """The notebooks that start with the install cell: the chapters and the assignments."""
    return sorted((ROOT / "book").glob("*.ipynb")) + instructor_notebooks()


def pin(notebooks: Sequence[Path]) -> list[Path]:
    """Write :func:`install_source` into the first code cell of each notebook that differs. Only
    that cell's source changes: the file is rewritten as read, key order and formatting kept."""
    changed = []
    for path in notebooks:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        cell = next(c for c in notebook["cells"] if c["cell_type"] == "code")
        source = install_source().splitlines(keepends=True)
        if cell["source"] != source:
            cell["source"] = source
            text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


def course(directory: Path) -> list[Path]:
    """Set up an nbgrader course directory: every assignment, with ``grading.py``, in
    ``source/<assignment>/``, and the course's ``nbgrader_config.py`` unless one is there."""
    directory = directory.resolve()
    if directory == ROOT or ROOT in directory.parents:
        raise ValueError(
            f"{directory} is inside the repository: keep the course directory, which will hold "
            "the gradebook and the students' submissions, outside it"
        )
    written = []
    for path in instructor_notebooks():
        folder = directory / "source" / path.stem
        folder.mkdir(parents=True, exist_ok=True)
        for file in (path, GRADING):
            written.append(Path(shutil.copy(file, folder / file.name)))
    if not (directory / CONFIG.name).exists():
        written.append(Path(shutil.copy(CONFIG, directory / CONFIG.name)))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "notebooks", nargs="*", type=Path, help="instructor notebooks (default: every assignment)"
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})"
    )
    action.add_argument(
        "--course", type=Path, metavar="DIR", help="set up an nbgrader course directory there"
    )
    action.add_argument(
        "--pin", action="store_true", help="write the install cell of every chapter and assignment"
    )
    args = parser.parse_args(argv)
    try:
        if args.course is not None:
            written = course(args.course)
        elif args.pin:
            written = pin(args.notebooks or pinned_notebooks())
        else:
            written = release(args.notebooks or instructor_notebooks(), args.out)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"release: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
