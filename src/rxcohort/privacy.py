"""Small-count masking for results that leave the warehouse (CSV export, reports).

CONTRACT §5 rule 13: any count of persons from 1 to 4 is shown as ``<5``; 0 and counts of 5
or more are shown. The Delta tables keep exact values - masking is applied to a copy, at the
edge, by whatever writes a file for people to read.

Masking a count is not enough when another value in the same row gives it back: a share of
users with its denominator, a mean over one person (that person's DDD), a confidence interval
computed from the count. Each table therefore lists, for each person count, the values that
depend on it; when the count is masked those values are shown as ``masked``. The rules work
row by row, which is why the result tables carry the counts their statistics rest on (e.g.
did_results carries both groups' persons and users).

These rules see one row. Differences *between* rows or tables (in attrition, n_persons of
two consecutive steps give n_excluded back; n_eligible - n_responders is a count of
non-responders) are the work of :mod:`rxcohort.disclosure`, which hides further counts over
all the tables published together and calls :func:`mask_small_counts` with them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from rxcohort.contract import table_spec

SMALL_COUNT_MIN = 1
SMALL_COUNT_MAX = 4
MASKED_COUNT = "<5"
MASKED_VALUE = "masked"
# The label of the row for all exposure groups together in the report's summaries.
ALL_GROUPS = "all"
EVERYTHING = "*"


@dataclass(frozen=True)
class MaskingRule:
    """Which columns of a table are person counts and what each one's masking hides too.

    ``keys`` label a row and are never masked. ``dependants`` maps a count column to the
    columns hidden when that count is 1-4; ``EVERYTHING`` there means every column that is
    neither a key nor a person count.
    """

    person_counts: tuple[str, ...]
    keys: tuple[str, ...] = ()
    dependants: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


_PRE_STATS = ("mean_ddd_pre", "prop_users_pre")
_POST_STATS = ("mean_ddd_post", "prop_users_post")
_CHANGE_STATS = (
    "mean_diff",
    "ci_low",
    "ci_high",
    "rel_change",
    "sd_diff",
    "p_value",
    "rel_change_ci_low",
    "rel_change_ci_high",
    "prop_diff",
    "prop_diff_ci_low",
    "prop_diff_ci_high",
)


def _declared(table: str, dependants: Mapping[str, tuple[str, ...]] | None = None) -> MaskingRule:
    """The rule of a table whose person counts and keys are those rxcohort.contract declares;
    ``dependants`` says what each count's masking hides beside it."""
    spec = table_spec(table)
    return MaskingRule(person_counts=spec.counts(), keys=spec.keys(), dependants=dependants or {})


MASKING_RULES: dict[str, MaskingRule] = {
    "attrition": _declared(
        "attrition",
    ),
    # A mean over a group of 1-4 persons is theirs; DDD used by 1-4 persons in a window is
    # theirs too, so the mean of that window and every change built on it are hidden.
    "group_results": _declared(
        "group_results",
        dependants={
            "n_persons": (EVERYTHING,),
            "users_pre": _PRE_STATS + _CHANGE_STATS,
            "users_post": _POST_STATS + _CHANGE_STATS,
        },
    ),
    # A contrast rests on both groups: any small count hides the whole comparison.
    "did_results": _declared(
        "did_results",
        dependants={c: (EVERYTHING,) for c in table_spec("did_results").counts()},
    ),
    "responders": _declared(
        "responders",
        dependants={
            "n_persons": (EVERYTHING,),
            "n_eligible": (EVERYTHING,),
            "n_responders": ("prop_responders", "ci_low", "ci_high"),
        },
    ),
    "trajectories": _declared(
        "trajectories",
        dependants={
            "n_persons": (EVERYTHING,),
            "n_users": ("mean_ddd", "sd_ddd", "ci_low", "ci_high"),
        },
    ),
    "its_results": _declared(
        "its_results",
        dependants={"n_persons": (EVERYTHING,)},
    ),
    # Survival tables of the persistence step. Where 1-4 persons are at risk, a step of the
    # curve is one person's time on treatment; where 1-4 events happen, the size of the step
    # (1 - events / at_risk) gives the masked count back.
    "km_curves": _declared(
        "km_curves",
        dependants={"at_risk": (EVERYTHING,), "events": ("survival", "ci_low", "ci_high")},
    ),
    "km_medians": _declared(
        "km_medians",
        dependants={"n_persons": (EVERYTHING,), "n_events": (EVERYTHING,)},
    ),
    "cox_results": _declared(
        "cox_results",
        dependants={"n_persons": (EVERYTHING,), "n_events": (EVERYTHING,)},
    ),
    # rxcohort.transforms.utilisation. A rate over a population of 1-4 is theirs; users of
    # 1-4 give the rate and its interval away.
    "use_over_time": _declared(
        "use_over_time",
        dependants={
            "n_population": (EVERYTHING,),
            "n_users": ("per_1000", "ci_low", "ci_high"),
        },
    ),
    # Table 1 (rxcohort.transforms.characterisation): a group of 1-4 shows nothing; a share of
    # 1-4 persons is theirs, and so is the DDD of a window 1-4 persons used the drug in.
    "characteristics": _declared(
        "characteristics",
        dependants={
            "n_persons": (EVERYTHING,),
            "n": ("percent", "mean", "sd", "q1", "median", "q3"),
        },
    ),
    # A difference between two groups rests on both: any hidden count hides it.
    "characteristics_smd": _declared(
        "characteristics_smd",
        dependants={c: (EVERYTHING,) for c in table_spec("characteristics_smd").counts()},
    ),
    # Prescribers are persons too: 1-4 prescribers of a specialty are as protected as patients.
    "prescriber_summary": _declared(
        "prescriber_summary",
        dependants={"n_total": (EVERYTHING,), "n": ("share", "ci_low", "ci_high")},
    ),
}

# Result tables that may leave the warehouse, in the order an export writes them. Anything
# else under a study - cohort, consumption, episodes - is person-level and never exported.
EXPORTABLE_TABLES: tuple[str, ...] = tuple(MASKING_RULES)


# Free-text columns whose sentences may carry person counts ("3 person(s) left out").
TEXT_COLUMNS: tuple[str, ...] = ("note",)
_COUNT_IN_TEXT = re.compile(
    r"(?<![\w.])([1-4])(?=\s+(?:persons?|person\(s\)|events?|event\(s\)|users?)\b)"
)


def mask_counts_in_text(value: object) -> object:
    """Replace a count of 1-4 persons or events inside a sentence by ``<5``."""
    if not isinstance(value, str):
        return value
    return _COUNT_IN_TEXT.sub(MASKED_COUNT, value)


def count_value(value: object) -> float | None:
    """A cell as a number, or None when it holds none (null, NaN, text, a marker)."""
    if value is None or value is pd.NA or isinstance(value, str | bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def is_small_count(value: object) -> bool:
    """True for a person count that must not be shown: 1 to 4 (0 and >= 5 are shown)."""
    number = count_value(value)
    return number is not None and SMALL_COUNT_MIN <= number <= SMALL_COUNT_MAX


def mask_small_counts(
    frame: pd.DataFrame,
    *,
    table: str,
    rule: MaskingRule | None = None,
    suppressed: pd.DataFrame | None = None,
    hidden: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """A copy of ``frame`` fit to leave the warehouse: counts 1-4 as ``<5``, dependants hidden.

    ``rule`` defaults to the table's entry in :data:`MASKING_RULES`; a table without one gets
    a conservative rule: every integer column named ``n_*`` or ``users_*`` is a person count
    and hides every non-count column of its row. Masked columns become ``object`` columns
    holding the markers beside the original values.

    ``suppressed`` (same index, boolean columns of person counts) names counts of 0 or >= 5
    to hide as well - the complementary suppression of :mod:`rxcohort.disclosure` - shown as
    ``masked`` with their dependants; ``hidden`` (boolean, any columns) hides further cells.
    """
    rule = rule or MASKING_RULES.get(table) or _fallback_rule(frame)
    counts = [c for c in rule.person_counts if c in frame.columns]
    keys = set(rule.keys)
    others = [c for c in frame.columns if c not in keys and c not in counts]
    small = {c: frame[c].map(is_small_count).astype(bool) for c in counts}
    extra = {
        c: (
            suppressed[c].reindex(frame.index, fill_value=False).astype(bool) & ~small[c]
            if suppressed is not None and c in suppressed.columns
            else pd.Series(False, index=frame.index)
        )
        for c in counts
    }

    hide = pd.DataFrame(False, index=frame.index, columns=others)
    for count in counts:
        targets = rule.dependants.get(count, ())
        columns = others if EVERYTHING in targets else [c for c in targets if c in others]
        for column in columns:
            hide[column] |= small[count] | extra[count]
    if hidden is not None:
        for column in others:
            if column in hidden.columns:
                hide[column] |= hidden[column].reindex(frame.index, fill_value=False).astype(bool)

    out = frame.copy()
    for column in TEXT_COLUMNS:
        if column in out.columns:
            out[column] = out[column].map(mask_counts_in_text)
    for count in counts:
        if small[count].any():
            out[count] = out[count].astype(object).where(~small[count], MASKED_COUNT)
        if extra[count].any():
            out[count] = out[count].astype(object).where(~extra[count], MASKED_VALUE)
    for column in others:
        if hide[column].any():
            out[column] = out[column].astype(object).where(~hide[column], MASKED_VALUE)
    return out


def _fallback_rule(frame: pd.DataFrame) -> MaskingRule:
    counts = tuple(
        c
        for c in frame.columns
        if c.startswith(("n_", "users_")) and pd.api.types.is_integer_dtype(frame[c])
    )
    return MaskingRule(person_counts=counts, dependants={c: (EVERYTHING,) for c in counts})


def masked_counts(frame: pd.DataFrame, *, columns: Sequence[str]) -> int:
    """How many cells of ``columns`` hold the masked-count marker (for logs and summaries)."""
    return int(sum((frame[c] == MASKED_COUNT).sum() for c in columns if c in frame.columns))
