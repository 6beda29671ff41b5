"""Expectation suites as data: ``expectations/<suite>.json`` loaded into Great Expectations 1.x.

A suite file is GX 1.x's own JSON form of an ExpectationSuite::

    {"name": "silver_dispensings",
     "expectations": [
        {"type": "expect_column_values_to_not_be_null",
         "kwargs": {"column": "dispensing_id"},
         "meta": {"severity": "hard"}},
        ...]}

Every expectation must say ``meta.severity``: ``hard`` expectations gate the commit of the data
they check, ``soft`` ones are reported and warn. GX's own ``ExpectationSuite`` constructor logs
and silently drops an expectation it cannot build (an unknown type, a misspelt keyword), which
would quietly weaken a gate; :func:`load_suite` builds each expectation itself and refuses the
file instead, then checks that the suite holds exactly as many expectations as the file lists.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rxcohort.errors import ConfigError

SEVERITIES = ("hard", "soft")
INDEX_KEY = "rxcohort_index"


@dataclass(frozen=True)
class Suite:
    """A loaded suite: its name, the file it came from and the GX ExpectationSuite."""

    name: str
    path: Path
    gx_suite: Any  # great_expectations.core.ExpectationSuite (imported lazily: GX is slow)
    definitions: tuple[dict[str, Any], ...]

    @property
    def n_expectations(self) -> int:
        return len(self.definitions)

    @property
    def sha256(self) -> str:
        """A digest of the expectations as loaded (type, arguments, meta, in file order)."""
        text = json.dumps([self.name, *self.definitions], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def load_suite(path: str | Path) -> Suite:
    """Load one suite file; raise ConfigError naming the file and expectation on any problem."""
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"expectation suite {path} does not exist") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"expectation suite {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        raise ConfigError(f"expectation suite {path}: needs a non-empty 'name'")
    entries = data.get("expectations")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"expectation suite {path}: needs a non-empty 'expectations' list")

    built = []
    definitions = []
    for index, entry in enumerate(entries):
        where = f"expectation suite {path.name}, expectation {index + 1}"
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
            raise ConfigError(f"{where}: needs a 'type'")
        meta = dict(entry.get("meta") or {})
        severity = meta.get("severity")
        if severity not in SEVERITIES:
            raise ConfigError(f"{where} ({entry['type']}): meta.severity must be hard or soft")
        meta[INDEX_KEY] = index
        config = {k: v for k, v in entry.items() if k != "meta"}
        config.setdefault("kwargs", {})
        try:
            expectation = ExpectationConfiguration(**config, meta=meta).to_domain_obj()
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{where} ({entry['type']}) cannot be loaded: {first}") from exc
        built.append(expectation)
        definitions.append({**config, "meta": meta})

    suite = ExpectationSuite(name=data["name"], expectations=built)
    if len(suite.expectations) != len(entries):
        raise ConfigError(
            f"expectation suite {path}: {len(entries)} expectations in the file but "
            f"{len(suite.expectations)} loaded"
        )
    return Suite(name=data["name"], path=path, gx_suite=suite, definitions=tuple(definitions))


def load_suites(directory: str | Path, names: Iterable[str]) -> dict[str, Suite]:
    """Load ``<directory>/<name>.json`` for every name; the suite's own name must match."""
    directory = Path(directory)
    suites = {}
    for name in names:
        suite = load_suite(directory / f"{name}.json")
        if suite.name != name:
            raise ConfigError(
                f"expectation suite {suite.path} is named {suite.name!r}, not {name!r}"
            )
        suites[name] = suite
    return suites
