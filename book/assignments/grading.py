"""What the assignments' hidden tests use to grade each part on its own terms.

Every test cell of an assignment starts with a hidden line that calls :func:`isolate`: for the rest
of that cell, the other parts are the instructor's versions (so a bug is charged once, to its own
part), a function the part must do without refuses to run while the student's code runs
(:func:`refusing`), and warnings stay out of the cell's output (nbgrader scores zero a test cell
that writes anything to stderr, a harmless warning included).

The hidden tests import this module from the notebook's folder: here, next to the instructor
versions, and in an nbgrader course directory, where ``release.py --course`` puts a copy in every
assignment's source folder and ``nbgrader autograde`` copies it next to each submission. Students
never need it: no visible test uses it.
"""

from __future__ import annotations

import functools
import types
import warnings
from collections.abc import Callable
from typing import Any

from IPython import get_ipython


def isolate(**bindings: Any) -> None:
    """Grade the running cell on its own.

    For the rest of the cell, each name in ``bindings`` is bound in the notebook to its value, and
    warnings are ignored. When the cell ends, passed or failed, the notebook's names and the warning
    filters are what they were before.
    """
    shell = get_ipython()
    if shell is None:
        raise RuntimeError("isolate() grades a notebook cell: call it from a running notebook")
    namespace, absent = shell.user_ns, object()
    saved = {name: namespace.get(name, absent) for name in bindings}
    filters = warnings.catch_warnings()
    filters.__enter__()
    warnings.simplefilter("ignore")
    namespace.update(bindings)

    def restore(result: Any = None) -> None:
        shell.events.unregister("post_run_cell", restore)
        filters.__exit__(None, None, None)
        for name, value in saved.items():
            if value is absent:
                namespace.pop(name, None)
            else:
                namespace[name] = value

    shell.events.register("post_run_cell", restore)


def refusing(function: Callable, *off_limits: Callable | types.ModuleType) -> Callable:
    """``function``, run with every function of ``off_limits`` made to raise instead of computing.

    ``off_limits`` holds functions, or modules, which stand for every function defined at their top
    level. While ``function`` runs, a call to any of them, direct or through other code, raises a
    ``RuntimeError`` that names it; afterwards they work again.
    """
    targets = [f for item in off_limits for f in _functions(item)]
    refusals = [_refusal(f) for f in targets]

    @functools.wraps(function)
    def watched(*args: Any, **kwargs: Any) -> Any:
        originals = [f.__code__ for f in targets]
        for f, refusal in zip(targets, refusals):
            f.__code__ = refusal
        try:
            return function(*args, **kwargs)
        finally:
            for f, code in zip(targets, originals):
                f.__code__ = code

    return watched


def _functions(item: Callable | types.ModuleType) -> list[types.FunctionType]:
    """The function, or the functions a module defines at its top level."""
    if isinstance(item, types.ModuleType):
        functions = [
            f
            for f in vars(item).values()
            if isinstance(f, types.FunctionType) and f.__module__ == item.__name__
        ]
    elif isinstance(item, types.FunctionType):
        functions = [item]
    else:
        raise TypeError(f"refusing() takes functions and modules, got {item!r}")
    for f in functions:
        if f.__closure__:  # its code could only be swapped for code with the same free variables
            raise TypeError(f"{f.__qualname__} has a closure: refusing() cannot replace it")
    return functions


def _refusal(function: types.FunctionType) -> types.CodeType:
    """The code of a function that raises, naming ``function``: it replaces ``function.__code__``
    and runs in its module, so it uses nothing but a constant and a builtin."""
    name = f"{function.__module__}.{function.__qualname__}"
    message = f"{name} is off limits in this part: solve it without calling it"
    namespace: dict = {}
    exec(f"def refusal(*args, **kwargs):\n    raise RuntimeError({message!r})\n", namespace)
    return namespace["refusal"].__code__
