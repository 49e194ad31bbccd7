"""The coursework in book/assignments, tested the way an instructor uses it.

Each assignment notebook is an instructor version in nbgrader's markup; the release command
(book/assignments/release.py, nbgrader's own preprocessors) writes its student version. The static
checks: the markup is valid, every check explains itself, every test cell is graded on its own,
the hidden copies of the solutions are the solutions, and the student versions (committed, up to
date) give nothing away and fail every test cell with ``NotImplementedError`` until solved.

Then the students of tests/students.py hand in their work to an nbgrader course directory set up
as the instructor guide says (``release.py --course``, with the course's nbgrader_config.py), and
nbgrader's own commands grade it: ``generate_assignment``, ``autograde``, ``generate_feedback``.
The points per part, the flags and the feedback pages are what an instructor and the students see.
"""

from __future__ import annotations

import ast
import copy
import html
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT
from nbgrader import utils
from nbgrader.api import Gradebook
from nbgrader.nbgraderformat import MetadataValidator
from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions
from students import COMMON, PARTS, SCORES, STUDENTS

FOLDER = ROOT / "book" / "assignments"
ASSIGNMENTS = sorted(FOLDER.glob("*.ipynb"))
CODE_STUB = ClearSolutions().code_stub["python"]
TEXT_STUB = ClearSolutions().text_stub
SOLUTION = (ClearSolutions().begin_solution_delimeter, ClearSolutions().end_solution_delimeter)
HIDDEN = (ClearHiddenTests().begin_test_delimeter, ClearHiddenTests().end_test_delimeter)
#: The test cell that the "autograd" student of the first assignment deletes from the notebook.
DELETED = "test-norm-rates-zero"
#: For each assignment, a student whose feedback must name a failed test, and the message.
FAILURES = {
    "cp_norm_law": ("forbidden", "tflib.cp.cp_entries is off limits in this part"),
    "incremental_learning": ("bug", "N = 2: expected log(100) = 4.605"),
    "randomization": ("madeup", "natural: the errors differ from those of a run at the same"),
}


def load(name: str, path: Path):
    """A module of the coursework, loaded from its file (it lives with the assignments)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


release = load("release", FOLDER / "release.py")
grading = load("grading", FOLDER / "grading.py")


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


def unmarked(source: str) -> str:
    """The source with every marker line taken out (what runs, in the instructor version)."""
    return "\n".join(
        line for line in source.split("\n") if not any(m in line for m in SOLUTION + HIDDEN)
    )


def is_test(cell: nbformat.NotebookNode) -> bool:
    """An autograder test cell: graded, not a solution."""
    return utils.is_grade(cell) and not utils.is_solution(cell)


def errors(cell: nbformat.NotebookNode) -> list[str]:
    """The names of the exceptions a code cell raised."""
    return [o["ename"] for o in cell.get("outputs", []) if o["output_type"] == "error"]


def lines_in(instructor: nbformat.NotebookNode) -> dict[str, set[str]]:
    """The stripped lines of the instructor version: "public" (outside every region), "solution"
    (inside solution regions) and "hidden" (inside hidden-test regions)."""
    found = {"public": set(), "solution": set(), "hidden": set()}
    for cell in instructor.cells:
        outside, solutions = split_regions(cell.source, SOLUTION)
        outside, hidden = split_regions("\n".join(outside), HIDDEN)
        for kind, lines in [
            ("public", outside),
            ("solution", sum(solutions, [])),
            ("hidden", sum(hidden, [])),
        ]:
            found[kind] |= {line.strip() for line in lines} - {""}
    return found


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> dict[str, nbformat.NotebookNode]:
    """The student versions, written by the release command's entry point, as an instructor
    runs it: ``python book/assignments/release.py --out DIR``."""
    out = tmp_path_factory.mktemp("release")
    assert release.main(["--out", str(out)]) == 0
    return {path.name: read(path) for path in sorted(out.glob("*.ipynb"))}


def answered(student: nbformat.NotebookNode, instructor: nbformat.NotebookNode, cells: dict):
    """The student version with the instructor's solutions pasted into its stubs, except the
    solution cells in ``cells`` (grade id: source), which get that source."""
    notebook = nbformat.from_dict(student)
    assert len(notebook.cells) == len(instructor.cells)
    for cell, original in zip(notebook.cells, instructor.cells):
        assert cell.id == original.id and cell.cell_type == original.cell_type
        if utils.is_solution(cell):
            grade_id = cell.metadata.nbgrader["grade_id"]
            cell.source = (
                cells[grade_id].strip("\n") if grade_id in cells else fill_stubs(cell, original)
            )
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


def submissions(path: Path, student: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """What each student of tests/students.py hands in for the assignment at ``path``."""
    instructor = read(path)
    common = COMMON.get(path.stem, {})
    handed_in = {
        "untouched": copy.deepcopy(student),
        "correct": answered(student, instructor, common),
    }
    for name, cells in STUDENTS[path.stem].items():
        handed_in[name] = answered(student, instructor, {**common, **cells})
    if path.stem == "cp_norm_law":
        autograd = handed_in["autograd"]
        autograd.cells = [
            c for c in autograd.cells if c.metadata.get("nbgrader", {}).get("grade_id") != DELETED
        ]
    assert sorted(handed_in) == sorted(SCORES[path.stem]), "every student has expected scores"
    return handed_in


def nbgrader(root: Path, *args: str) -> None:
    """Run an nbgrader command in the course directory, as an instructor types it."""
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def course(tmp_path_factory, released) -> Path:
    """A course directory set up by ``release.py --course``, every student's work handed in,
    autograded and given feedback by nbgrader's commands."""
    root = tmp_path_factory.mktemp("course")
    assert release.main(["--course", str(root)]) == 0
    nbgrader(root, "generate_assignment", "*")
    for path in ASSIGNMENTS:
        for name, notebook in submissions(path, released[path.name]).items():
            (root / "submitted" / name / path.stem).mkdir(parents=True)
            nbformat.write(notebook, root / "submitted" / name / path.stem / path.name)
    nbgrader(root, "autograde", "*")
    nbgrader(root, "generate_feedback", "*")
    return root


def gradebook(root: Path, assignment: str, student: str) -> tuple[dict, dict]:
    """The graded cells of a submission (grade id: score, max_score, needs_manual_grade) and its
    comments (grade id of a solution cell: comment)."""
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as book:
        notebook = book.find_submission_notebook(assignment, assignment, student)
        grades = {
            g.name: {"score": g.score, "max_score": g.max_score, "needs": g.needs_manual_grade}
            for g in notebook.grades
        }
        comments = {c.name: c.comment or "" for c in notebook.comments}
    return grades, comments


def part_points(instructor: nbformat.NotebookNode, grades: dict) -> tuple:
    """The points of each code part: a test cell counts for the solution cell before it."""
    points, part = {}, None
    for cell in instructor.cells:
        if utils.is_solution(cell):
            part = cell.metadata.nbgrader["grade_id"]
        if is_test(cell):
            points[part] = points.get(part, 0) + grades[cell.metadata.nbgrader["grade_id"]]["score"]
    return points


# --- the instructor versions -------------------------------------------------------------------


@pytest.mark.parametrize("path", ASSIGNMENTS, ids=lambda p: p.stem)
def test_instructor_version_is_valid_nbgrader_markup(path):
    notebook = read(path)
    MetadataValidator().validate_nb(notebook)  # nbgrader's own check: schema, unique grade ids
    cells = notebook.cells
    tests = [c for c in cells if is_test(c)]
    assert tests and all(utils.is_locked(c) for c in tests), "test cells are locked"
    for cell in cells:
        if split_regions(cell.source, SOLUTION)[1]:
            assert utils.is_solution(cell), f"cell {cell.id} has a solution region: mark it"
        if "nbgrader" in cell.metadata:
            assert cell.metadata.nbgrader["schema_version"] == 3
            assert cell.metadata.nbgrader["task"] is False
    points = [c.metadata.nbgrader["points"] for c in cells if utils.is_grade(c)]
    assert all(p > 0 for p in points), "every graded cell is worth points"
    advertised = re.search(r"\*\*total\*\* \| \*\*(\d+)\*\*", cells[0].source)
    assert advertised and int(advertised.group(1)) == sum(points), "the points table is right"
    first_code = next(c for c in cells if c.cell_type == "code")
    assert first_code.source == release.install_source(), "the first code cell installs tflib"


@pytest.mark.parametrize("path", ASSIGNMENTS, ids=lambda p: p.stem)
def test_every_test_cell_is_graded_on_its_own(path):
    """A test cell opens with hidden code that ends in ``grading.isolate(...)``: the other parts
    are the instructor's, refused functions refuse, warnings stay out of its output."""
    for cell in filter(is_test, read(path).cells):
        lines = cell.source.split("\n")
        assert HIDDEN[0] in lines[0], f"{cell.id} opens with hidden code"
        end = next(k for k, line in enumerate(lines) if HIDDEN[1] in line)
        preamble = unmarked("\n".join(lines[:end]))
        last = ast.parse(preamble).body[-1]
        assert ast.unparse(last).startswith("grading.isolate("), f"{cell.id} calls grading.isolate"


@pytest.mark.parametrize("path", ASSIGNMENTS, ids=lambda p: p.stem)
def test_every_check_explains_itself(path):
    """Every assert in a test cell, visible or hidden, has a message for the student."""
    for cell in filter(is_test, read(path).cells):
        for node in ast.walk(ast.parse(unmarked(cell.source))):
            if isinstance(node, ast.Assert):
                assert node.msg is not None, (
                    f"{cell.id}, line {node.lineno}: an assert needs a message"
                )
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                assert node.exc.args, f"{cell.id}, line {node.lineno}: say what went wrong"


@pytest.mark.parametrize("path", ASSIGNMENTS, ids=lambda p: p.stem)
def test_hidden_copies_of_the_solutions_are_the_solutions(path):
    """The ``reference`` class of a hidden region holds the instructor's solutions, unchanged."""
    notebook = read(path)
    solutions = {}
    for cell in notebook.cells:
        if cell.cell_type == "code" and utils.is_solution(cell):
            for node in ast.parse(unmarked(cell.source)).body:
                if isinstance(node, ast.FunctionDef):
                    solutions[node.name] = ast.dump(node)
    copies = []
    for cell in filter(is_test, notebook.cells):
        for node in ast.walk(ast.parse(unmarked(cell.source))):
            if isinstance(node, ast.ClassDef) and node.name == "reference":
                copies += [n for n in node.body if isinstance(n, ast.FunctionDef)]
    for function in copies:
        assert ast.dump(function) == solutions[function.name], (
            f"reference.{function.name} differs from the solution"
        )
    expected = {"cp_norm_law": 0, "incremental_learning": 3, "randomization": 3}[path.stem]
    assert len(copies) == expected, f"{len(copies)} hidden copies of solutions"


# --- the student versions ----------------------------------------------------------------------


def test_release_writes_a_student_version_of_every_assignment(released):
    assert sorted(released) == [p.name for p in ASSIGNMENTS]


def test_committed_student_versions_are_up_to_date(released):
    """The launch links open book/assignments/release/: after changing an assignment, run
    ``python book/assignments/release.py`` and commit what it writes."""
    for name, notebook in released.items():
        committed = release.DEFAULT_OUT / name
        assert committed.exists() and read(committed) == notebook, f"{name}: run release.py"


def test_release_refuses_to_overwrite_the_instructor_versions(capsys):
    assert release.main(["--out", str(FOLDER)]) == 1
    assert "would overwrite the instructor version" in capsys.readouterr().err


def test_release_refuses_a_notebook_that_is_not_an_assignment(tmp_path):
    chapter = ROOT / "book" / "cp_dynamics.ipynb"
    with pytest.raises(RuntimeError, match="cp_dynamics.ipynb: .* not an assignment"):
        release.release([chapter], tmp_path)


def test_course_directory_stays_outside_the_repository(capsys):
    assert release.main(["--course", str(ROOT / "course")]) == 1
    assert "is inside the repository" in capsys.readouterr().err
    assert not (ROOT / "course").exists()


@pytest.mark.parametrize("path", ASSIGNMENTS, ids=lambda p: p.stem)
def test_student_version_gives_nothing_away(path, released):
    found, student = lines_in(read(path)), released[path.name]
    giveaways = (found["solution"] | found["hidden"]) - found["public"]
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
def test_solved_student_version_is_the_instructor_version(path, released):
    """Pasted back, the solutions give exactly the instructor version's code (less the marker
    lines); with the hidden tests restored, the "correct" student below scores full marks."""
    instructor = read(path)
    notebook = answered(released[path.name], instructor, {})
    for cell, original in zip(notebook.cells, instructor.cells):
        if is_test(cell):
            visible, _ = split_regions(original.source, HIDDEN)
            assert cell.source == "\n".join(visible), (
                f"{cell.id}: the student sees the visible tests"
            )
        else:
            lines = [
                line for line in original.source.split("\n") if not any(m in line for m in SOLUTION)
            ]
            assert cell.source == "\n".join(lines), f"cell {cell.id} differs once solved"


def test_refusing_names_the_refused_function_and_restores_it():
    watched = grading.refusing(lambda: grading_target(1), grading_target)
    with pytest.raises(RuntimeError, match=r"\.grading_target is off limits in this part"):
        watched()
    assert grading_target(1) == 2, "the refused function works again once the call is over"

    def own_error():
        raise ValueError("the student's own error")

    with pytest.raises(ValueError, match="own error"):
        grading.refusing(own_error, grading_target)()
    assert grading_target(1) == 2, "the refused function works again after an error"


def grading_target(x):
    return 2 * x


# --- nbgrader's course directory, with the played students --------------------------------------


@pytest.mark.parametrize("path", ASSIGNMENTS, ids=lambda p: p.stem)
def test_release_writes_what_nbgrader_generate_assignment_writes(path, course, released):
    """The course's command and ``nbgrader generate_assignment`` hand out the same notebook, so
    the committed student versions can be collected and autograded in the course directory."""
    assert read(course / "release" / path.stem / path.name) == released[path.name]


@pytest.mark.parametrize("path", ASSIGNMENTS, ids=lambda p: p.stem)
def test_each_student_scores_the_points_of_their_work(path, course):
    """Untouched 0, correct full, correct in another way full, a bug or a shortcut costs the
    points of its own part only (tests/students.py says who is who)."""
    instructor = read(path)
    scores = {}
    for student in SCORES[path.stem]:
        points = part_points(instructor, gradebook(course, path.stem, student)[0])
        scores[student] = tuple(points[part] for part in PARTS[path.stem])
    assert scores == SCORES[path.stem]


@pytest.mark.parametrize("path", ASSIGNMENTS, ids=lambda p: p.stem)
def test_untouched_student_version_fails_every_test_cell_until_solved(path, course):
    """Handed in untouched, the setup runs and every test cell fails with ``NotImplementedError``
    (never a confusing ``NameError``). (ruff, which checks the committed student versions for
    undefined names, covers the visible tests alone.)"""
    cells = read(course / "autograded" / "untouched" / path.stem / path.name).cells
    first_exercise = next(k for k, c in enumerate(cells) if utils.is_solution(c))
    assert not any(errors(c) for c in cells[:first_exercise]), "the setup runs cleanly"
    for cell in cells:
        if is_test(cell):
            assert errors(cell) == ["NotImplementedError"], f"test cell {cell.id}"
        else:
            assert set(errors(cell)) <= {"NotImplementedError"}, f"cell {cell.id}"


def test_a_deleted_test_cell_is_put_back_and_graded(course):
    grades, _ = gradebook(course, "cp_norm_law", "autograd")
    assert grades[DELETED]["score"] == grades[DELETED]["max_score"] == 1
    autograded = read(course / "autograded" / "autograd" / "cp_norm_law" / "cp_norm_law.ipynb")
    restored = [
        c for c in autograded.cells if c.metadata.get("nbgrader", {}).get("grade_id") == DELETED
    ]
    assert len(restored) == 1 and not errors(restored[0]), "nbgrader added the cell back and ran it"


def test_tampering_is_flagged_for_review(course):
    """Replacing torch.allclose passes wrong code, but flags the submission: a comment on the cell
    and "needs manual grading" on every test cell after it; no other student is flagged."""
    grades, comments = gradebook(course, "cp_norm_law", "tampering")
    assert "Flagged for review: line 1 assigns to torch.allclose" in comments["loss-gradient"]
    page = course / "feedback" / "tampering" / "cp_norm_law" / "cp_norm_law.html"
    assert any("Flagged for review" in line for line in page_lines(page)), "the student sees it"
    cells = read(FOLDER / "cp_norm_law.ipynb").cells
    start = next(k for k, c in enumerate(cells) if c.id == "loss-gradient")
    after = [c.metadata.nbgrader["grade_id"] for c in cells[start:] if is_test(c)]
    assert after and all(grades[g]["needs"] for g in after), "the tests after it"
    for path in ASSIGNMENTS:
        for student in SCORES[path.stem]:
            if student != "tampering":
                grades, comments = gradebook(course, path.stem, student)
                flagged = [g for g, comment in comments.items() if "Flagged" in comment]
                assert not flagged, f"{path.stem}, {student}: {flagged} flagged"
                assert not any(grades[g]["needs"] for g in grades if g.startswith("test-"))


def code_lines(text: str) -> set[str]:
    """The lines of a text, stripped, and without the arrows and line numbers of a traceback."""
    return {re.sub(r"^\s*(-*>)?\s*\d+\s", "", line).strip() for line in text.split("\n")}


def page_lines(path: Path) -> set[str]:
    """The lines of an HTML page (tags dropped, entities decoded)."""
    return code_lines(html.unescape(re.sub(r"<[^>]+>", "", path.read_text())))


def traceback_lines(notebook: nbformat.NotebookNode) -> set[str]:
    """The lines of the tracebacks of a notebook's test cells (colours dropped)."""
    text = "\n".join(
        "\n".join(output.traceback)
        for cell in filter(is_test, notebook.cells)
        for output in cell.outputs
        if output.output_type == "error"
    )
    return code_lines(re.sub(r"\x1b\[[0-9;]*m", "", text))


@pytest.mark.parametrize("path", ASSIGNMENTS, ids=lambda p: p.stem)
def test_feedback_names_failed_tests_and_shows_no_hidden_line(path, course):
    found = lines_in(read(path))
    hidden = {
        line for line in found["hidden"] - found["public"] - found["solution"] if len(line) > 9
    }
    pages = sorted((course / "feedback").glob(f"*/{path.stem}/{path.stem}.html"))
    assert len(pages) == len(SCORES[path.stem]), "feedback for every student"
    for page in pages:
        leaked = sorted(page_lines(page) & hidden)
        assert not leaked, f"{page.parent.parent.name}'s feedback shows hidden lines: {leaked[:3]}"
    student, message = FAILURES[path.stem]
    page = course / "feedback" / student / path.stem / f"{path.stem}.html"
    assert any(message in line for line in page_lines(page)), f"{student}'s feedback names it"
    # the check can see a leak: without the course's feedback settings, tracebacks would quote them
    autograded = (course / "autograded").glob(f"*/{path.stem}/{path.name}")
    quoted = set().union(*(traceback_lines(read(notebook)) for notebook in autograded))
    assert quoted & hidden, "the autograded notebooks' tracebacks quote hidden lines"
