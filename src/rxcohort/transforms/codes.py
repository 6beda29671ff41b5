"""Column expressions for code lists: ATC prefixes and reimbursement codes."""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce

from pyspark.sql import Column
from pyspark.sql import functions as F

from rxcohort.errors import ParameterError


def starts_with_any(column: str | Column, prefixes: Sequence[str]) -> Column:
    """True when the code starts with one of ``prefixes`` (null code: false).

    ATC is a hierarchy, so a prefix such as ``N02A`` selects every opioid substance below it.
    Null-safe, so it may be negated or used as a value; to filter rows read from Parquet, use
    :func:`starts_with_any_filter`.
    """
    return F.coalesce(starts_with_any_filter(column, prefixes), F.lit(False))


def starts_with_any_filter(column: str | Column, prefixes: Sequence[str]) -> Column:
    """The plain OR of ``startswith`` over ``prefixes``: null for a null code.

    For ``DataFrame.where`` only, where a null drops the row just as false does. Unlike the
    null-safe :func:`starts_with_any` (whose ``coalesce`` Spark cannot translate), Spark pushes
    this predicate into the Parquet reader, which then skips the row groups and pages whose ATC
    code range holds none of the prefixes. Never negate it: ``~`` of null keeps nothing.
    """
    if not prefixes:
        raise ParameterError("starts_with_any needs at least one prefix")
    col = F.col(column) if isinstance(column, str) else column
    return reduce(lambda a, b: a | b, (col.startswith(p) for p in prefixes))


def describe_codes(prefixes: Sequence[str]) -> str:
    """``N02A`` or ``N02A, N02B`` for criterion texts and methods paragraphs."""
    return ", ".join(prefixes)
