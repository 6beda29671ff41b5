"""A self-contained HTML page for one quality run: summary, expectations per suite, quarantine.

No scripts, no external styles or fonts: the page opens on an air-gapped analysis server. It
shows counts, shares and the suites' own parameters, never a row value.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import replace
from html import escape
from typing import Any

from rxcohort.disclosure import protect_counts
from rxcohort.privacy import MASKED_VALUE
from rxcohort.quality.runner import ExpectationOutcome

# Row counts in an expectation's result, and the shares that would give them back.
_OBSERVED_COUNTS = {
    "element_count": ("unexpected_percent", "unexpected_percent_total", "missing_percent"),
    "unexpected_count": (
        "unexpected_percent",
        "unexpected_percent_total",
        "unexpected_percent_nonmissing",
    ),
    "missing_count": ("missing_percent", "unexpected_percent_nonmissing"),
}


def protect_page(
    counts: Mapping[Hashable, Any],
    totals: Iterable[tuple[Hashable, Sequence[Hashable]]],
    outcomes: Sequence[ExpectationOutcome],
) -> tuple[dict[Hashable, Any], list[ExpectationOutcome]]:
    """The page's row counts as they may be shown (rxcohort.disclosure.protect_counts): the
    table counts (``counts``, tied by ``totals``) together with the expectations' own counts
    (rows checked = rows failing + the rest). Rows of persons.csv are persons, so every row
    count of 1-4 is treated as a person count. Returns the shown table counts and the
    outcomes with their counts, and the shares resting on hidden ones, replaced."""
    cells: dict[Hashable, Any] = {("table", k): v for k, v in counts.items()}
    ties = [(("table", t), [("table", p) for p in parts]) for t, parts in totals]
    for o in outcomes:
        for key in _OBSERVED_COUNTS:
            if key in o.observed:
                cells[("outcome", o.suite, o.index, key)] = o.observed[key]
        if "row_count" in o.expectation and "observed_value" in o.observed:
            cells[("outcome", o.suite, o.index, "observed_value")] = o.observed["observed_value"]
        checked = ("outcome", o.suite, o.index, "element_count")
        for part in ("unexpected_count", "missing_count"):
            if checked in cells and ("outcome", o.suite, o.index, part) in cells:
                ties.append((checked, [("outcome", o.suite, o.index, part)]))
    shown = protect_counts(cells, ties)
    protected = []
    for o in outcomes:
        observed = dict(o.observed)
        for key, value in o.observed.items():
            cell = ("outcome", o.suite, o.index, key)
            if cell in shown and shown[cell] is not value:
                observed[key] = shown[cell]
                for share in _OBSERVED_COUNTS.get(key, ()):
                    if share in observed:
                        observed[share] = MASKED_VALUE
        protected.append(replace(o, observed=observed))
    return {k: shown[("table", k)] for k in counts}, protected


def count_text(value: Any) -> str:
    """A row count as the page shows it: 12,345, or the marker that replaced it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,}"


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem;
color:#1f2328;max-width:72rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem}
.sub{color:#57606a;margin-top:0}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}
th,td{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top;
font-size:.9rem;overflow-wrap:anywhere}
.scroll{overflow-x:auto}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}
.warn{color:#9a6700;font-weight:600}
.banner{padding:.6rem .9rem;border-radius:6px;margin:1rem 0;font-weight:600}
.banner.ok{background:#dafbe1}.banner.bad{background:#ffebe9}.banner.soft{background:#fff8c5}
code{font-size:.85rem;background:#f6f8fa;padding:0 .2rem;border-radius:3px}
"""


def render_quality_report(
    *,
    title: str,
    load_id: str,
    generated_at: str,
    summary: Sequence[tuple[str, str]],
    outcomes: Sequence[ExpectationOutcome],
    quarantine: Sequence[tuple[str, str, Any]] = (),
    notes: Sequence[str] = (),
) -> str:
    """The page as a string. ``quarantine`` rows are (table, reason, rows). Counts are shown
    as given: pass them through :func:`protect_page` first."""
    banner = _banner(outcomes)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">load <code>{escape(load_id)}</code> &middot; {escape(generated_at)}</p>',
        f'<div class="banner {banner[0]}">{escape(banner[1])}</div>',
    ]
    for note in notes:
        parts.append(f"<p>{escape(note)}</p>")
    parts.append("<h2>Summary</h2><table>")
    for key, value in summary:
        parts.append(f'<tr><th scope="row">{escape(key)}</th><td>{escape(value)}</td></tr>')
    parts.append("</table>")
    parts += _quarantine_section(quarantine)
    suites: dict[str, list[ExpectationOutcome]] = {}
    for outcome in outcomes:
        suites.setdefault(outcome.suite, []).append(outcome)
    for suite, items in suites.items():
        parts += _suite_section(suite, items)
    parts.append(
        '<p class="sub">hard: a failure stops the ingest before anything is committed; '
        "soft: reported, the data is committed. Observed values are counts and percentages "
        "only.</p></body></html>"
    )
    return "\n".join(parts)


def _banner(outcomes: Sequence[ExpectationOutcome]) -> tuple[str, str]:
    """(css class, text) of the page's verdict."""
    hard_failed = [o for o in outcomes if o.is_hard_failure]
    soft_failed = [o for o in outcomes if o.severity == "soft" and not o.success]
    if hard_failed:
        n = len(hard_failed)
        return ("bad", f"Gate closed: {n} hard expectation(s) failed; nothing was committed.")
    if soft_failed:
        return ("soft", f"Committed with {len(soft_failed)} soft warning(s).")
    return ("ok", "All expectations passed.")


def _quarantine_section(quarantine: Sequence[tuple[str, str, Any]]) -> list[str]:
    if not quarantine:
        return []
    parts = [
        "<h2>Quarantined rows by reason</h2>",
        "<table><tr><th>table</th><th>reason</th><th>rows</th></tr>",
    ]
    for table, reason, rows in quarantine:
        parts.append(
            f"<tr><td>{escape(table)}</td><td><code>{escape(reason)}</code></td>"
            f'<td class="num">{escape(count_text(rows))}</td></tr>'
        )
    parts.append("</table>")
    return parts


def _suite_section(suite: str, items: Sequence[ExpectationOutcome]) -> list[str]:
    """One suite's heading and its table, an expectation a row."""
    passed = sum(o.success for o in items)
    parts = [
        f"<h2>Suite <code>{escape(suite)}</code>: {passed} of {len(items)} passed</h2>",
        '<div class="scroll"><table><tr><th>#</th><th>result</th><th>severity</th>'
        "<th>expectation</th>"
        "<th>column</th><th>parameters</th><th>observed</th><th>why</th></tr>",
    ]
    for o in items:
        if o.success:
            result = '<span class="pass">pass</span>'
        elif o.severity == "hard":
            result = '<span class="fail">FAIL</span>'
        else:
            result = '<span class="warn">warn</span>'
        parts.append(
            f'<tr><td class="num">{o.index + 1}</td><td>{result}</td>'
            f"<td>{escape(o.severity)}</td><td><code>{escape(o.expectation)}</code></td>"
            f"<td>{escape(o.column or '')}</td><td>{_format_mapping(o.arguments)}</td>"
            f"<td>{_format_mapping(o.observed, labels=OBSERVED_LABELS)}</td>"
            f"<td>{escape(o.why or '')}</td></tr>"
        )
    parts.append("</table></div>")
    return parts


# Great Expectations' result keys in the words of the report.
OBSERVED_LABELS = {
    "observed_value": "observed",
    "element_count": "rows checked",
    "unexpected_count": "rows failing",
    "unexpected_percent": "% of rows failing",
    "unexpected_percent_total": "% of all rows failing",
    "unexpected_percent_nonmissing": "% of non-empty rows failing",
    "missing_count": "empty",
    "missing_percent": "% empty",
    "error": "could not be evaluated",
}


def _format_mapping(values: dict[str, Any], *, labels: dict[str, str] | None = None) -> str:
    if not values:
        return ""
    items = []
    for key, value in values.items():
        key = (labels or {}).get(key, key.replace("_", " "))
        if isinstance(value, float):
            text = f"{value:.4g}"
        elif isinstance(value, str):
            text = value
        else:
            text = json.dumps(value, default=str)
        items.append(f"{escape(key)}={escape(text)}")
    return "<br>".join(items)
