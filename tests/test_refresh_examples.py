"""The scheduling examples of docs/refresh.md parse, and the command lines they hold are valid
rxcohort commands (parsed by the command's own parser, not run)."""

from __future__ import annotations

import ast
import configparser
import importlib.util
import re
import shlex
from pathlib import Path

import click
import pytest
from typer.main import get_command

from rxcohort.cli import app

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "docs" / "examples" / "refresh"
CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")


def _rxcohort(argv: list[str]) -> str:
    """Parse ``argv`` (after the program name) as the CLI would; return the command's name."""
    group = get_command(app)
    ctx = group.make_context("rxcohort", list(argv))
    name, command, rest = group.resolve_command(ctx, [*ctx.protected_args, *ctx.args])
    command.make_context(name, rest, parent=ctx)
    return name


def _job_parser():
    spec = importlib.util.spec_from_file_location("refresh_job", REPO / "jobs" / "refresh.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_parser()


def _command_words(text: str) -> list[str]:
    """The rxcohort invocation inside a shell command: after `cd ... &&`, before redirections."""
    part = next(p for p in text.split("&&") if "rxcohort refresh" in p or "bin/rxcohort" in p)
    words = shlex.split(part)
    words = words[: next((i for i, w in enumerate(words) if w.startswith((">", "2>"))), None)]
    assert Path(words[0]).name == "rxcohort", words[0]
    return words[1:]


def test_the_cron_line_is_a_valid_schedule_and_command():
    lines = [
        line
        for line in (EXAMPLES / "rxcohort-refresh.cron").read_text().splitlines()
        if line.strip() and not line.startswith("#") and "=" not in line.split()[0]
    ]
    assert len(lines) == 1
    fields = lines[0].split(None, 6)
    assert all(CRON_FIELD.match(f) for f in fields[:5]), fields[:5]
    assert fields[5] == "rxcohort"  # /etc/cron.d lines name the user
    assert _rxcohort(_command_words(fields[6])) == "refresh"
    # The docs show the same line.
    assert lines[0] in (REPO / "docs" / "refresh.md").read_text()


def test_the_systemd_units_parse_and_start_a_valid_command():
    service = configparser.ConfigParser(interpolation=None, strict=False)
    service.read(EXAMPLES / "rxcohort-refresh.service")
    assert service["Service"]["Type"] == "oneshot"
    assert _rxcohort(shlex.split(service["Service"]["ExecStart"])[1:]) == "refresh"
    timer = configparser.ConfigParser(interpolation=None, strict=False)
    timer.read(EXAMPLES / "rxcohort-refresh.timer")
    assert re.fullmatch(r"\*-\*-\* \d\d:\d\d:\d\d", timer["Timer"]["OnCalendar"])
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_the_airflow_dag_parses_and_both_tasks_run_valid_commands():
    tree = ast.parse((EXAMPLES / "rxcohort_refresh_dag.py").read_text())
    calls = {
        node.func.id: {k.arg: k.value for k in node.keywords}
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    bash = ast.literal_eval(calls["BashOperator"]["bash_command"])
    assert _rxcohort(_command_words(bash)) == "refresh"
    submit = calls["SparkSubmitOperator"]
    assert ast.literal_eval(submit["application"]).endswith("jobs/refresh.py")
    args = _job_parser().parse_args(ast.literal_eval(submit["application_args"]))
    assert args.engine == "spark" and args.json
    schedule = ast.literal_eval(calls["DAG"]["schedule"])
    assert all(CRON_FIELD.match(f) for f in schedule.split()) and len(schedule.split()) == 5


def test_a_wrong_option_in_an_example_would_be_caught():
    with pytest.raises(click.UsageError):
        _rxcohort(["refresh", "/d", "--studys", "cohorts"])
    with pytest.raises(SystemExit):
        _job_parser().parse_args(["/d", "--engin", "spark"])
