"""nbgrader's configuration for the course's assignments.

``python book/assignments/release.py --course DIR`` copies this file into the course directory
DIR, where nbgrader reads it whenever it runs there. Besides the course's name, it makes three
changes to nbgrader's defaults, each explained in the instructor guide:

- a graded cell that a student deleted is put back before grading (``add_missing_cells``), instead
  of scoring zero without a word;
- a solution cell that changes what the tests rely on (``torch.allclose = ...``, a rebound
  ``np``) is flagged for review: a warning in ``nbgrader autograde``'s log, a comment on the cell,
  and "needs manual grading" on the test cells after it (:class:`FlagTampering`);
- feedback shows the visible tests, and for a failed test only the name and message of its error,
  never the hidden tests or a traceback that quotes them (:class:`HideTracebacks`).
"""

import ast
import builtins

from IPython.core.inputtransformer2 import TransformerManager
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader import utils
from nbgrader.api import Gradebook
from nbgrader.converters import Autograde
from nbgrader.preprocessors import ClearHiddenTests, GetGrades, NbGraderPreprocessor, SaveAutoGrades

c = get_config()  # noqa: F821 (nbgrader reads this file with get_config defined)

c.CourseDirectory.course_id = "tensor-factorization"
# Where release_assignment, fetch_assignment, submit and collect exchange files (a shared disk):
# c.Exchange.root = "/srv/nbgrader/exchange"

# Every cell may take 2 minutes (nbgrader's default is 30 s); the slowest takes a few seconds.
c.Execute.timeout = 120
c.OverwriteCells.add_missing_cells = True


class HideTracebacks(NbGraderPreprocessor):
    """Reduce the error of every test cell to its name and message.

    A traceback quotes the lines around the failing one, which in a test cell are hidden tests.
    The messages are written for students: the name of the check and what went wrong."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and utils.is_grade(cell):
            for output in cell.outputs:
                if output.output_type == "error":
                    output.traceback = [f"{output.ename}: {output.evalue}"]
        return cell, resources


#: Names a solution cell has no business touching: they reach into other code's workings.
SUSPECT_NAMES = {"setattr", "delattr", "globals", "vars", "exec", "eval", "compile", "__import__"}
SUSPECT_NAMES |= {"__builtins__", "builtins"}
SUSPECT_ATTRIBUTES = {"__code__", "__globals__", "__dict__", "__builtins__"}


def given_names(cells):
    """What the notebook's read-only and plain code cells bind at the top level: for an import,
    the module's name; for anything else, None."""
    names = {}
    for cell in cells:
        for node in _parse(cell.source).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    names[bound] = alias.name if isinstance(node, ast.Import) else None
            else:
                names.update((name, None) for name in _bound(node))
    return names


def tampering(source, given):
    """(line, what) for everything in a solution cell's ``source`` that changes what other cells
    see: rebinding a given or builtin name, assigning into a given name (``torch.allclose = ...``,
    ``images[0] = ...``), or reaching for the interpreter's workings (``setattr``, ``__code__``)."""
    tree = _parse(source)
    writes = _Writes(given)
    writes.visit(tree)
    found = writes.found
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                same = isinstance(node, ast.Import) and given.get(bound) == alias.name
                if bound in given and not same:
                    found.append((node.lineno, f"rebinds {bound}"))
        else:
            for name in _bound(node):
                if name in given or hasattr(builtins, name):
                    found.append((node.lineno, f"rebinds {name}"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in SUSPECT_NAMES:
            found.append((node.lineno, f"uses {node.id}"))
        elif isinstance(node, ast.Attribute) and node.attr in SUSPECT_ATTRIBUTES:
            found.append((node.lineno, f"uses {ast.unparse(node)}"))
        elif isinstance(node, ast.Attribute) and ast.unparse(node) == "sys.modules":
            found.append((node.lineno, "uses sys.modules"))
    if "get_ipython" in source:  # magics become get_ipython() calls only once parsed
        found.append((1, "uses get_ipython"))
    return sorted(set(found))


class _Writes(ast.NodeVisitor):
    """Assignments into given names (their attributes or items), and ``global`` declarations of
    them; a function's own variables and arguments may share a given name."""

    def __init__(self, given):
        self.given, self.local, self.found = given, set(), []

    def visit_FunctionDef(self, node):
        outer, declared = self.local, set()
        for inner in ast.walk(node):
            if isinstance(inner, ast.Global):
                declared.update(inner.names)
        arguments = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
        stored = {
            n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        }
        self.local = outer | ((arguments | stored) - declared)
        self.generic_visit(node)
        self.local = outer

    visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef

    def visit_Global(self, node):
        for name in node.names:
            if name in self.given:
                self.found.append((node.lineno, f"rebinds {name} (global)"))

    def visit_Assign(self, node):
        self._into(node, node.targets)

    def visit_Delete(self, node):
        self._into(node, node.targets)

    def visit_AugAssign(self, node):
        self._into(node, [node.target])

    visit_AnnAssign = visit_AugAssign

    def _into(self, node, targets):
        for target in targets:
            root = target
            while isinstance(root, (ast.Attribute, ast.Subscript)):
                root = root.value
            name = root.id if isinstance(root, ast.Name) else None
            if target is not root and name in self.given and name not in self.local:
                self.found.append((node.lineno, f"assigns to {ast.unparse(target)}"))
        self.generic_visit(node)


def _parse(source):
    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:  # the cell fails when it runs, which costs what it costs
        return ast.Module(body=[], type_ignores=[])


def _bound(node):
    """The names a top-level statement binds (other than by import)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For)):
        targets = [node.target]
    elif isinstance(node, ast.With):
        targets = [item.optional_vars for item in node.items if item.optional_vars]
    else:
        return []
    stored = [n for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return [n.id for n in stored if isinstance(n.ctx, ast.Store)]


class FlagTampering(NbGraderPreprocessor):
    """Flag the solution cells that change what the test cells rely on, for a person to review.

    Nothing that runs in the student's kernel can stop code in the same kernel from redefining
    ``torch.allclose``; reading the solution cells, before or after they ran, can notice it. A
    flagged cell gets a warning in the log and a comment, and every test cell after it needs
    manual grading, so that the submission shows up in the Formgrader until someone has looked."""

    def preprocess(self, nb, resources):
        plain = [c for c in nb.cells if c.cell_type == "code" and not _graded(c)]
        given = given_names(plain)
        ids = {key: resources["nbgrader"][key] for key in ("notebook", "assignment", "student")}
        flagged_at = None
        with Gradebook(resources["nbgrader"]["db_url"]) as gradebook:
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code" or not utils.is_solution(cell):
                    continue
                findings = tampering(cell.source, given)
                if not findings:
                    continue
                flagged_at = index if flagged_at is None else flagged_at
                grade_id = cell.metadata.nbgrader["grade_id"]
                note = "; ".join(f"line {line} {what}" for line, what in findings)
                self.log.warning("%s, cell %s: review by hand: %s", ids["student"], grade_id, note)
                comment = gradebook.find_comment(grade_id, *ids.values())
                comment.auto_comment = f"Flagged for review: {note}."
            for cell in nb.cells[flagged_at:] if flagged_at is not None else []:
                if utils.is_grade(cell) and not utils.is_solution(cell):
                    grade_id = cell.metadata.nbgrader["grade_id"]
                    gradebook.find_grade(grade_id, *ids.values()).needs_manual_grade = True
            gradebook.db.commit()
        return nb, resources


def _graded(cell):
    return utils.is_grade(cell) or utils.is_solution(cell)


# nbgrader's own steps, with the tampering check right after the autograder's scores are saved
steps = Autograde.class_traits()["autograde_preprocessors"].default()
c.Autograde.autograde_preprocessors = [*steps[: steps.index(SaveAutoGrades) + 1], FlagTampering]
c.Autograde.autograde_preprocessors += steps[steps.index(SaveAutoGrades) + 1 :]
c.GenerateFeedback.preprocessors = [
    GetGrades,
    ClearHiddenTests,
    HideTracebacks,
    CSSHTMLHeaderPreprocessor,
]
