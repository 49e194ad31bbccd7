"""The coursework in book/assignments: instructor versions, student versions, and solved ones.

Each assignment notebook is an instructor version in nbgrader's markup. Its student version is
written by the course's release command (book/assignments/release.py, nbgrader's own
preprocessors) into a temporary folder. The checks: the instructor version passes all its tests;
the student version holds no solution and no hidden test, executes cleanly up to the first
exercise and fails every graded test with ``NotImplementedError``; with the instructor's solutions
pasted into its stubs and the test cells restored (as ``nbgrader autograde`` restores them), it
passes the visible and the hidden tests.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT
from nbclient import NotebookClient
from nbgrader import utils
from nbgrader.converters import GenerateAssignment
from nbgrader.coursedir import CourseDirectory
from nbgrader.nbgraderformat import MetadataValidator
from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions
from traitlets.config import Config

FOLDER = ROOT / "book" / "assignments"
ASSIGNMENTS = sorted(FOLDER.glob("*.ipynb"))
CODE_STUB = ClearSolutions().code_stub["python"]
TEXT_STUB = ClearSolutions().text_stub
SOLUTION = (ClearSolutions().begin_solution_delimeter, ClearSolutions().end_solution_delimeter)
HIDDEN = (ClearHiddenTests().begin_test_delimeter, ClearHiddenTests().end_test_delimeter)

# the release command, loaded from its file (it lives with the assignments, outside tflib)
_spec = importlib.util.spec_from_file_location("release", FOLDER / "release.py")
release = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(release)


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def split_regions(source: str, markers: tuple[str, str]) -> tuple[list[str], list[list[str]]]:
    """The lines outside the marked regions, and the lines inside each region (markers dropped)."""
    outside, regions, inside = [], [], None
    for line in source.split("\n"):
        if markers[0] in line:
            inside = []
        elif markers[1] in line:
            regions.append(inside)
            inside = None
        elif inside is not None:
            inside.append(line)
        else:
            outside.append(line)
    assert inside is None, f"a region opened by {markers[0]!r} is never closed"
    return outside, regions


def is_test(cell: nbformat.NotebookNode) -> bool:
    """An autograder test cell: graded, not a solution."""
    return utils.is_grade(cell) and not utils.is_solution(cell)


def execute(notebook: nbformat.NotebookNode, allow_errors: bool = False) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel (in the assignments' folder) and return the notebook."""
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        allow_errors=allow_errors,
        record_timing=False,
        resources={"metadata": {"path": str(FOLDER)}},
    )
    return client.execute()


def errors(cell: nbformat.NotebookNode) -> list[str]:
    """The names of the exceptions a code cell raised."""
    return [o["ename"] for o in cell.get("outputs", []) if o["output_type"] == "error"]


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> dict[str, nbformat.NotebookNode]:
    """The student versions, written by the release command's entry point, as an instructor
    runs it: ``python book/assignments/release.py --out DIR``."""
    out = tmp_path_factory.mktemp("release")
    assert release.main(["--out", str(out)]) == 0
    return {path.name: read(path) for path in sorted(out.glob("*.ipynb"))}


def solved(student: nbformat.NotebookNode, instructor: nbformat.NotebookNode):
    """The student version with the instructor's solutions pasted into its stubs, and its test
    cells replaced by the instructor's (hidden tests included), as the autograder restores them."""
    notebook = nbformat.from_dict(student)
    assert len(notebook.cells) == len(instructor.cells)
    for cell, original in zip(notebook.cells, instructor.cells):
        assert cell.id == original.id and cell.cell_type == original.cell_type
        if is_test(cell):
            visible, _ = split_regions(original.source, HIDDEN)
            assert cell.source == "\n".join(visible), "the student sees the visible tests"
            cell.source = original.source
        elif utils.is_solution(cell):
            cell.source = fill_stubs(cell, original)
    return notebook


def fill_stubs(cell: nbformat.NotebookNode, original: nbformat.NotebookNode) -> str:
    """Replace each stub of a solution cell, in order, by the matching solution region."""
    _, regions = split_regions(original.source, SOLUTION)
    if cell.cell_type == "markdown":
        assert cell.source == TEXT_STUB and len(regions) == 1
        return "\n".join(regions[0])
    stub = CODE_STUB.split("\n")
    lines, filled, k = cell.source.split("\n"), [], 0
    while k < len(lines):
        if [line.strip() for line in lines[k : k + len(stub)]] == stub:
            filled += regions.pop(0)
            k += len(stub)
        else:
            filled.append(lines[k])
            k += 1
    assert not regions, "every solution region has its stub"
    return "\n".join(filled)


@pytest.mark.parametrize("path", ASSIGNMENTS, ids=lambda p: p.stem)
def test_instructor_version_is_valid_nbgrader_markup(path):
    notebook = read(path)
    MetadataValidator().validate_nb(notebook)  # nbgrader's own check: schema, unique grade ids
    cells = notebook.cells
    tests = [c for c in cells if is_test(c)]
    assert tests and all(utils.is_locked(c) for c in tests), "test cells are locked"
    assert all(split_regions(c.source, HIDDEN)[1] for c in tests), "every test cell hides tests"
    for cell in cells:
        if split_regions(cell.source, SOLUTION)[1]:
            assert utils.is_solution(cell), f"cell {cell.id} has a solution region: mark it"
        if "nbgrader" in cell.metadata:
            assert cell.metadata.nbgrader["schema_version"] == 3
            assert cell.metadata.nbgrader["task"] is False
    points = [c.metadata.nbgrader["points"] for c in cells if utils.is_grade(c)]
    assert all(p > 0 for p in points)
    advertised = re.search(r"\*\*total\*\* \| \*\*(\d+)\*\*", cells[0].source)
    assert advertised and int(advertised.group(1)) == sum(points), "the points table is right"


def test_release_writes_a_student_version_of_every_assignment(released):
    assert sorted(released) == [p.name for p in ASSIGNMENTS]


def test_release_writes_what_nbgrader_generate_assignment_writes(released, tmp_path):
    """The course's command and nbgrader's course-directory workflow hand out the same notebooks,
    so submissions of either kind can be autograded by ``nbgrader autograde``."""
    config = Config()
    config.CourseDirectory.root = str(tmp_path)
    config.CourseDirectory.course_id = "course"
    for path in ASSIGNMENTS:
        (tmp_path / "source" / path.stem).mkdir(parents=True)
        (tmp_path / "source" / path.stem / path.name).write_bytes(path.read_bytes())
        coursedir = CourseDirectory(config=config, assignment_id=path.stem)
        GenerateAssignment(coursedir=coursedir, config=config).start()
        generated = read(tmp_path / "release" / path.stem / path.name)
        assert generated == released[path.name], path.name


def test_release_refuses_to_overwrite_the_instructor_versions(capsys):
    assert release.main(["--out", str(FOLDER)]) == 1
    assert "would overwrite the instructor version" in capsys.readouterr().err


def test_release_refuses_a_notebook_that_is_not_an_assignment(tmp_path):
    chapter = ROOT / "book" / "cp_dynamics.ipynb"
    with pytest.raises(RuntimeError, match="cp_dynamics.ipynb: .* not an assignment"):
        release.release([chapter], tmp_path)


@pytest.mark.parametrize("path", ASSIGNMENTS, ids=lambda p: p.stem)
def test_student_version_gives_nothing_away(path, released):
    instructor, student = read(path), released[path.name]
    public, secret = [], []  # lines outside and inside solution and hidden-test regions
    for cell in instructor.cells:
        outside, solutions = split_regions(cell.source, SOLUTION)
        outside, hidden = split_regions("\n".join(outside), HIDDEN)
        public += outside
        secret += [line for region in solutions + hidden for line in region]
    giveaways = {line.strip() for line in secret} - {line.strip() for line in public} - {""}
    assert giveaways, "the instructor version has solutions and hidden tests"
    for cell in student.cells:
        lines = {line.strip() for line in cell.source.split("\n")}
        assert not lines & giveaways, f"cell {cell.id} shows {sorted(lines & giveaways)}"
        assert not any(m in cell.source for m in SOLUTION + HIDDEN)
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "outputs are cleared"
        if utils.is_grade(cell) or utils.is_solution(cell):
            assert "checksum" in cell.metadata.nbgrader, "nbgrader checksummed the graded cells"
    answers = [c for c in student.cells if c.cell_type == "markdown" and utils.is_solution(c)]
    assert all(c.source == TEXT_STUB for c in answers)


@pytest.mark.parametrize("path", ASSIGNMENTS, ids=lambda p: p.stem)
def test_student_version_fails_until_solved(path, released):
    cells = execute(released[path.name], allow_errors=True).cells
    first_exercise = next(k for k, c in enumerate(cells) if utils.is_solution(c))
    assert not any(errors(c) for c in cells[:first_exercise]), "the setup runs cleanly"
    for cell in cells:
        if is_test(cell):
            assert errors(cell) == ["NotImplementedError"], f"test cell {cell.id}"
        else:
            assert set(errors(cell)) <= {"NotImplementedError"}, f"cell {cell.id}"


@pytest.mark.parametrize("path", ASSIGNMENTS, ids=lambda p: p.stem)
def test_solved_student_version_is_the_instructor_version_and_passes_all_tests(path, released):
    """One run checks both versions: pasted back, the solutions and hidden tests give exactly the
    instructor version's code (less the marker lines), which must pass all its tests, visible and
    hidden. (nbval also runs the instructor version itself, as committed.)"""
    instructor = read(path)
    notebook = solved(released[path.name], instructor)
    for cell, original in zip(notebook.cells, instructor.cells):
        lines = original.source.split("\n")
        unmarked = [line for line in lines if not any(m in line for m in SOLUTION)]
        assert cell.source == "\n".join(unmarked), f"cell {cell.id} differs once solved"
    execute(notebook)  # raises CellExecutionError, naming the cell, if any test fails
