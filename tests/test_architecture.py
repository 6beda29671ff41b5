"""The house rules that hold for the whole package: short functions, the environment read in
one module (the import layers are checked by lint-imports in make lint and CI)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "rxcohort"
MAX_FUNCTION_LINES = 80


def _functions():
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield path.relative_to(SRC), node


def test_no_function_is_longer_than_80_lines():
    long = [
        f"{path}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path, node in _functions()
        if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, long


def test_only_config_reads_the_environment():
    readers = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "config.py" and path.parent == SRC:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("environ", "getenv")
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            ):
                readers.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not readers, readers


def test_parameter_errors_are_the_projects_and_pythons():
    from rxcohort.errors import ConfigError, ParameterError, RxCohortError

    assert issubclass(ParameterError, RxCohortError) and issubclass(ParameterError, ValueError)
    assert ParameterError.exit_code == ConfigError.exit_code == 2
    # No bare ValueError is raised in the package outside the study models' validators,
    # which pydantic turns into the loader's ConfigError.
    raising = []
    for path in sorted(SRC.rglob("*.py")):
        if path.relative_to(SRC).as_posix() == "study/models.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Raise)
                and isinstance(node.exc, ast.Call)
                and isinstance(node.exc.func, ast.Name)
                and node.exc.func.id == "ValueError"
            ):
                raising.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not raising, raising
