"""Run a suite on a Spark or pandas DataFrame with GX 1.x and keep only privacy-safe results.

GX's results carry sample values (``partial_unexpected_list``, ``details``, the observed min or
max of a column): for a registry those are person-level values. Validation asks for no samples,
and :func:`outcome_from_result` then keeps only counts and percentages, plus the observed value
of the few expectations whose observed value is an aggregate by construction.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from rxcohort.errors import QualityGateError
from rxcohort.quality.suites import INDEX_KEY, Suite

# Counts and shares only: these never name a row.
SAFE_RESULT_KEYS = (
    "element_count",
    "unexpected_count",
    "unexpected_percent",
    "missing_count",
    "missing_percent",
    "unexpected_percent_total",
    "unexpected_percent_nonmissing",
)
# Expectations whose observed_value is an aggregate over the whole column or table.
SAFE_OBSERVED_TYPES = frozenset(
    {
        "expect_table_row_count_to_be_between",
        "expect_table_row_count_to_equal",
        "expect_table_column_count_to_be_between",
        "expect_table_column_count_to_equal",
        "expect_table_columns_to_match_ordered_list",
        "expect_table_columns_to_match_set",
        "expect_column_mean_to_be_between",
        "expect_column_sum_to_be_between",
        "expect_column_proportion_of_unique_values_to_be_between",
        "expect_column_proportion_of_non_null_values_to_be_between",
        "expect_column_unique_value_count_to_be_between",
    }
)
_RESULT_FORMAT = {
    "result_format": "BASIC",
    "partial_unexpected_count": 0,
    "include_unexpected_rows": False,
}
_CONTEXT: dict[str, Any] = {}
_COUNTER = itertools.count()


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's result, stripped of row values."""

    suite: str
    index: int
    expectation: str
    column: str | None
    severity: str
    success: bool
    observed: dict[str, Any] = field(default_factory=dict)
    arguments: dict[str, Any] = field(default_factory=dict)
    why: str | None = None
    # Where it failed, when the rows are files (the raw_files suite): their names.
    files: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.expectation}({self.column})" if self.column else self.expectation

    @property
    def is_hard_failure(self) -> bool:
        return self.severity == "hard" and not self.success


def run_suite(suite: Suite, data: Any) -> list[ExpectationOutcome]:
    """Validate ``data`` (a Spark or pandas DataFrame) against ``suite``; outcomes in file order."""
    source, asset_name, batch = _batch_for(data)
    try:
        result = batch.validate(suite.gx_suite, result_format=_RESULT_FORMAT)
    finally:
        source.delete_asset(asset_name)
    outcomes = [outcome_from_result(suite.name, r) for r in result.results]
    return sorted(outcomes, key=lambda o: o.index)


def outcome_from_result(suite_name: str, result: Any) -> ExpectationOutcome:
    """Turn a GX ExpectationValidationResult into an ExpectationOutcome with safe values only."""
    config = result.expectation_config
    meta = dict(config.meta or {})
    kwargs = dict(config.kwargs or {})
    raw = dict(result.result or {})
    observed: dict[str, Any] = {}
    for key in SAFE_RESULT_KEYS:
        value = raw.get(key)
        if _is_number(value):
            observed[key] = value
    if config.type in SAFE_OBSERVED_TYPES and "observed_value" in raw:
        value = raw["observed_value"]
        if _is_number(value) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            observed["observed_value"] = value
    exception = result.exception_info or {}
    if isinstance(exception, dict) and exception.get("raised_exception"):
        message = str(exception.get("exception_message") or "").strip().splitlines()
        observed["error"] = (message[0] if message else "could not be evaluated")[:160]
    arguments = {
        k: v
        for k, v in kwargs.items()
        if k not in {"column", "batch_id", "result_format", "include_config", "catch_exceptions"}
    }
    return ExpectationOutcome(
        suite=suite_name,
        index=int(meta.get(INDEX_KEY, -1)),
        expectation=config.type,
        column=kwargs.get("column"),
        severity=str(meta.get("severity", "soft")),
        success=bool(result.success),
        observed=observed,
        arguments=arguments,
        why=str(meta["why"]) if meta.get("why") else None,
    )


def require_hard_expectations(
    outcomes: list[ExpectationOutcome], *, report: str | None = None
) -> None:
    """Raise QualityGateError when a hard expectation failed (names only, no values)."""
    failed = [o for o in outcomes if o.is_hard_failure]
    if not failed:
        return
    names = ", ".join(f"{o.suite}: {o.label}{_count_text(o)}" for o in failed[:5])
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    where = f"; report: {report}" if report else ""
    raise QualityGateError(
        f"{len(failed)} hard quality expectation(s) failed, nothing was committed: "
        f"{names}{more}{where}"
    )


def _count_text(outcome: ExpectationOutcome) -> str:
    count = outcome.observed.get("unexpected_count")
    if outcome.files:
        shown = ", ".join(outcome.files[:5])
        more = f" and {len(outcome.files) - 5} more" if len(outcome.files) > 5 else ""
        noun = "file" if len(outcome.files) == 1 else "files"
        return f" ({noun} {shown}{more})"
    if _is_number(count):
        return f" ({int(count)} rows)"
    value = outcome.observed.get("observed_value")
    if _is_number(value):
        return f" (observed {value})"
    return ""


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _context() -> Any:
    if "context" not in _CONTEXT:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        _CONTEXT["context"] = context
    return _CONTEXT["context"]


def _batch_for(data: Any) -> Any:
    context = _context()
    n = next(_COUNTER)
    if _is_spark_frame(data):
        source = _CONTEXT.get("spark")
        if source is None:
            source = _CONTEXT["spark"] = context.data_sources.add_spark(name="rxcohort_spark")
    else:
        source = _CONTEXT.get("pandas")
        if source is None:
            source = _CONTEXT["pandas"] = context.data_sources.add_pandas(name="rxcohort_pandas")
    asset = source.add_dataframe_asset(name=f"frame_{n}")
    definition = asset.add_batch_definition_whole_dataframe(f"whole_{n}")
    return source, asset.name, definition.get_batch(batch_parameters={"dataframe": data})


def _is_spark_frame(data: Any) -> bool:
    from pyspark.sql import DataFrame

    return isinstance(data, DataFrame)


def name_failing_files(
    outcomes: list[ExpectationOutcome], profile: Any
) -> list[ExpectationOutcome]:
    """``outcomes`` of a suite run on a per-file profile (pandas, one row per ``source_file``)
    with each failed column expectation naming the files that break it.

    File names are the delivery's, never person-level, so a gate message may carry them.
    """
    from dataclasses import replace

    out = []
    for outcome in outcomes:
        if not outcome.success and outcome.column in profile.columns:
            failing = _failing_rows(outcome, profile)
            if failing is not None and failing.any():
                names = tuple(sorted(str(n) for n in profile.loc[failing, "source_file"]))
                outcome = replace(outcome, files=names)
        out.append(outcome)
    return out


def _failing_rows(outcome: ExpectationOutcome, profile: Any) -> Any:
    """The rows of ``profile`` that break a column expectation (None for kinds not covered)."""
    values = profile[outcome.column]
    kwargs = outcome.arguments
    if outcome.expectation == "expect_column_values_to_be_in_set":
        return ~values.isin(list(kwargs.get("value_set") or []))
    if outcome.expectation == "expect_column_values_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        bad = values.isna()
        if low is not None:
            bad |= values < low
        if high is not None:
            bad |= values > high
        return bad
    if outcome.expectation == "expect_column_values_to_not_be_null":
        return values.isna()
    if outcome.expectation == "expect_column_values_to_be_unique":
        return values.duplicated(keep=False)
    return None
