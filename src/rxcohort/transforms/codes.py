"""Column expressions for code lists: ATC prefixes and reimbursement codes."""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce

from pyspark.sql import Column
from pyspark.sql import functions as F


def starts_with_any(column: str | Column, prefixes: Sequence[str]) -> Column:
    """True when the code starts with one of ``prefixes`` (null code: false).

    ATC is a hierarchy, so a prefix such as ``N02A`` selects every opioid substance below it.
    """
    if not prefixes:
        raise ValueError("starts_with_any needs at least one prefix")
    col = F.col(column) if isinstance(column, str) else column
    condition = reduce(lambda a, b: a | b, (col.startswith(p) for p in prefixes))
    return F.coalesce(condition, F.lit(False))


def describe_codes(prefixes: Sequence[str]) -> str:
    """``N02A`` or ``N02A, N02B`` for criterion texts and methods paragraphs."""
    return ", ".join(prefixes)
