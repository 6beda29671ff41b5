"""Read a study file into a :class:`~rxcohort.study.models.Study`, or fail with one clear line.

Every problem becomes a :class:`~rxcohort.errors.ConfigError` of the form
``<file>: <field path>: <reason>``, e.g. ``cohorts/x.yaml: exposure_groups[1].min: overlaps ldn_1``.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from rxcohort.errors import ConfigError
from rxcohort.study import models
from rxcohort.study.models import RULE_KINDS, Study


@dataclass(frozen=True)
class StudySource:
    """A parsed study with the exact text it came from (stored with every run)."""

    study: Study
    text: str
    sha256: str
    source: str


def load_study(path: str | Path) -> Study:
    """Parse and validate a study file; the study id is the file name without ``.yaml``."""
    return load_study_source(path).study


def load_study_source(path: str | Path) -> StudySource:
    path = Path(path)
    source = str(path)
    if path.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"{source}: a study file must end in .yaml")
    if not path.is_file():
        raise ConfigError(f"{source}: no such study file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read the file ({type(exc).__name__})") from exc
    return parse_study(text, study_id=path.stem, source=source)


def parse_study(text: str, *, study_id: str, source: str) -> StudySource:
    """Validate study-file text; ``source`` names it in error messages."""
    data = _parse_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of study settings at the top level")
    declared = data.get("study_id")
    if declared is not None and declared != study_id:
        raise ConfigError(
            f"{source}: study_id: {declared!r} differs from the file name; the study id is the "
            f"file name without .yaml ({study_id!r})"
        )
    data = {**data, "study_id": study_id}
    try:
        study = Study.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from None
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return StudySource(study=study, text=text, sha256=sha, source=source)


# -- YAML ---------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice (PyYAML silently keeps the last one) and
    leaves dates as text: the study model parses them, so that an impossible date
    (``2013-13-31``) is reported with its field instead of failing inside the YAML parser."""


_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}" if mark is not None else "YAML"
        raise ConfigError(f"{source}: {where}: {exc.problem or 'not valid YAML'}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({type(exc).__name__})") from None


# -- pydantic errors as one line ----------------------------------------------------------------


def format_validation_error(exc: ValidationError) -> str:
    """Every problem as ``<field path>: <reason>``, unknown keys first, in one line."""
    errors = exc.errors(include_url=False)
    # A bad item also makes its container fail (e.g. an emptied list): report the item only.
    errors = [
        e
        for e in errors
        if not any(o is not e and o["loc"][: len(e["loc"])] == e["loc"] for o in errors)
    ] or errors
    # A misspelt key is usually why a required one is missing: name it first.
    errors = sorted(errors, key=lambda e: e["type"] != "extra_forbidden")
    problems = list(dict.fromkeys(_format_one(e) for e in errors))
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems: " + "; ".join(problems)


def _format_one(error: dict[str, Any]) -> str:
    loc = _clean_loc(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        message = str(ctx["error"])
    elif kind == "extra_forbidden":
        key = loc.rsplit(".", 1)[-1]
        # A top-level key is matched against the top-level keys only.
        top_level = "." not in loc and "[" not in loc
        message = "unknown key" + _suggestion(key, set(Study.model_fields) if top_level else None)
    elif kind == "missing":
        message = "is required"
    elif kind == "union_tag_invalid":
        loc = f"{loc}.kind" if loc else "kind"
        message = f"unknown kind {ctx.get('tag')!r} (one of {', '.join(RULE_KINDS)})"
    elif kind == "window_ref":
        message = "should be a window name or {start: <day>, end: <day>}"
    elif kind == "union_tag_not_found":
        message = f"needs a kind (one of {', '.join(RULE_KINDS)})"
    else:
        message = error["msg"]
        value = error.get("input")
        if isinstance(value, str | int | float | bool) and not isinstance(value, dict):
            message = f"{message}, got {value!r}"
    # Top-level cross-field checks carry their own field path in the message.
    return f"{loc}: {message}" if loc else message


def _clean_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    parts = list(loc)
    for i, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        if part == "[key]" or str(part).startswith("__"):
            continue
        # Discriminated unions put the tag in the location: inclusion[0].drug.window.
        if part in RULE_KINDS and i >= 2 and isinstance(parts[i - 1], int):
            continue
        out += f".{part}" if out else str(part)
    return out


def _known_keys() -> set[str]:
    keys: set[str] = set()
    for value in vars(models).values():
        if isinstance(value, type) and issubclass(value, BaseModel):
            keys.update(value.model_fields)
    return keys


def _suggestion(key: str, keys: set[str] | None = None) -> str:
    close = difflib.get_close_matches(key, sorted(keys or _known_keys()), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""
