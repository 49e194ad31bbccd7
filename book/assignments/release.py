"""Write the student versions of the course's assignments, with nbgrader's own preprocessors.

    python book/assignments/release.py                          # every assignment
    python book/assignments/release.py --out DIR A.ipynb B.ipynb

The notebooks in this folder are the instructor versions: solutions between ``### BEGIN SOLUTION``
and ``### END SOLUTION``, hidden tests between ``### BEGIN HIDDEN TESTS`` and
``### END HIDDEN TESTS``, nbgrader metadata on every graded cell. A student version is what
``nbgrader generate_assignment`` would write from them, made without a course directory or a
gradebook: the same preprocessors in the same order, less the ones that need a database.
Solutions become ``raise NotImplementedError()`` stubs, written answers "YOUR ANSWER HERE",
hidden tests and outputs disappear, graded cells are locked and checksummed. The instructor guide
(``book/instructor_guide.md``) explains the full nbgrader workflow.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat
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
#: Where the student versions go unless ``--out`` says otherwise (ignored by git and pytest).
DEFAULT_OUT = HERE / "release"
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "notebooks", nargs="*", type=Path, help="instructor notebooks (default: every assignment)"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    try:
        written = release(args.notebooks or instructor_notebooks(), args.out)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"release: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
