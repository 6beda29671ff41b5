"""HTML building blocks of the study report: one page, inline CSS, no scripts, no links.

Every count of persons (or of rows that can be persons) is written by :func:`count_cell` or
:func:`count_text`, inside an element of class ``count``; a value of 1-4 never reaches them
unmasked because the frames are masked first, and they refuse one as a last line of defence.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import pandas as pd

from rxcohort.errors import RxCohortError
from rxcohort.privacy import MASKED_COUNT, MASKED_VALUE, is_small_count

MISSING = "–"

STYLE = """
:root{--ink:#1f2328;--muted:#57606a;--line:#d0d7de;--soft:#f6f8fa;--accent:#0b5394}
body{font-family:"DejaVu Sans",system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;
margin:0;color:var(--ink);background:#fff;line-height:1.45}
main{max-width:70rem;margin:0 auto;padding:1.5rem 2rem 4rem}
header.top{border-bottom:3px solid var(--accent);margin-bottom:1rem}
h1{font-size:1.6rem;margin:.2rem 0}h2{font-size:1.2rem;margin:2.2rem 0 .4rem;
border-bottom:1px solid var(--line);padding-bottom:.2rem}h3{font-size:1rem;margin:1.2rem 0 .3rem}
.sub{color:var(--muted);margin:.1rem 0 .8rem}
nav.toc{background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:.5rem 1rem;
font-size:.9rem}nav.toc ol{margin:.2rem 0;padding-left:1.4rem;columns:2}
nav.toc a{color:var(--accent);text-decoration:none}
table{border-collapse:collapse;margin:.4rem 0 1rem;font-size:.88rem}
th,td{border-bottom:1px solid var(--line);padding:.3rem .55rem;text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600}td.num{text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}
caption{caption-side:top;text-align:left;color:var(--muted);font-size:.85rem;padding:.2rem 0}
figure{margin:.6rem 0 1.2rem}figure img{max-width:100%;height:auto;border:1px solid var(--line)}
figcaption{color:var(--muted);font-size:.85rem;margin-top:.3rem}
p.na{color:var(--muted);font-style:italic;background:var(--soft);padding:.5rem .8rem;
border-left:4px solid var(--line)}
p.note{color:var(--muted);font-size:.85rem}
.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}.warn{color:#9a6700;
font-weight:600}
details{margin:.4rem 0 1rem}summary{cursor:pointer;color:var(--accent)}
code{font-size:.85rem;background:var(--soft);padding:0 .2rem;border-radius:3px;
word-break:break-all}
.flow{display:flex;flex-direction:column;align-items:flex-start;gap:0;margin:.6rem 0 1rem}
.flow .step{display:flex;align-items:center;gap:1rem}
.flow .box{border:2px solid var(--accent);border-radius:6px;padding:.45rem .8rem;min-width:22rem;
max-width:30rem;background:#fff}
.flow .box .n{font-weight:700;font-size:1.05rem}
.flow .arrow{margin-left:11rem;height:1.6rem;border-left:2px solid var(--accent);position:relative}
.flow .arrow:after{content:"";position:absolute;left:-7px;bottom:-2px;border:6px solid transparent;
border-top:8px solid var(--accent)}
.flow .excl{display:flex;align-items:center;gap:.5rem;margin-left:11rem;color:var(--muted);
font-size:.88rem}
.flow .excl .line{width:2.5rem;border-top:2px dashed var(--muted)}
.flow .excl .xbox{border:1px dashed var(--muted);border-radius:6px;padding:.25rem .6rem}
.flow .groups{display:flex;gap:.8rem;flex-wrap:wrap;margin-top:.2rem}
.flow .groups .box{min-width:9rem;max-width:14rem;border-color:#3c78d8;background:#f3f8ff}
footer{margin-top:3rem;color:var(--muted);font-size:.8rem;border-top:1px solid var(--line);
padding-top:.6rem}
"""


@dataclass(frozen=True)
class Section:
    """One ``<section id=...>`` of the report; ``available`` is False for the not-available note."""

    id: str
    title: str
    body: str
    available: bool = True


def paragraph(text: str, *, css_class: str | None = None) -> str:
    attribute = f' class="{css_class}"' if css_class else ""
    return f"<p{attribute}>{escape(text)}</p>"


def not_available(reason: str) -> str:
    return paragraph(f"Not available in this run: {reason}.", css_class="na")


def note(text: str) -> str:
    return paragraph(text, css_class="note")


def figure(png_base64: str, *, alt: str, caption: str) -> str:
    return (
        f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{png_base64}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


# -- values -------------------------------------------------------------------------------------


def is_missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def is_marker(value: Any) -> bool:
    return isinstance(value, str) and value in (MASKED_COUNT, MASKED_VALUE)


def count_text(value: Any) -> str:
    """A person count as HTML: ``<5`` for a masked (or, defensively, unmasked 1-4) count."""
    if is_missing(value):
        body = MISSING
    elif value == MASKED_COUNT or is_small_count(value):
        body = escape(MASKED_COUNT)
    elif value == MASKED_VALUE:
        body = MASKED_VALUE
    else:
        try:
            body = f"{int(value):,}"
        except (TypeError, ValueError) as exc:
            raise RxCohortError(
                f"a count in the report is not a number: {type(value).__name__}"
            ) from exc
    return f'<span class="count">{body}</span>'


def _shown(value: Any, text: Callable[[float], str]) -> str:
    """A value as HTML: the missing mark, a mask marker as it is, else ``text`` of the number."""
    if is_missing(value):
        return MISSING
    if is_marker(value):
        return escape(str(value))
    return text(float(value))


def number(value: Any, digits: int = 1) -> str:
    return _shown(value, lambda v: f"{v:,.{digits}f}")


def percent(value: Any, digits: int = 1) -> str:
    """A proportion (0-1) as a percentage."""
    return _shown(value, lambda v: f"{100 * v:.{digits}f}%")


def interval(low: Any, high: Any, digits: int = 1, *, scale: float = 1.0, unit: str = "") -> str:
    if is_marker(low) or is_marker(high):
        return MASKED_VALUE
    if is_missing(low) or is_missing(high):
        return MISSING
    return f"{float(low) * scale:,.{digits}f}{unit} to {float(high) * scale:,.{digits}f}{unit}"


def p_value(value: Any) -> str:
    if is_missing(value):
        return MISSING
    if is_marker(value):
        return escape(str(value))
    value = float(value)
    return "&lt;0.001" if value < 0.001 else f"{value:.3f}"


def estimate_ci(est: Any, low: Any, high: Any, digits: int = 1, *, scale: float = 1.0) -> str:
    """``est (low to high)``; ``masked`` when any part is masked."""
    if any(is_marker(v) for v in (est, low, high)):
        return MASKED_VALUE
    if is_missing(est):
        return MISSING
    text = f"{float(est) * scale:,.{digits}f}"
    if not (is_missing(low) or is_missing(high)):
        text += f" ({interval(low, high, digits, scale=scale)})"
    return text


# -- tables -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A table column: header text, how to render a row's cell, and whether it is numeric."""

    header: str
    render: Callable[[Any], str]
    numeric: bool = True


HEADERS = {
    "exposure_group": "Exposure group",
    "drug_group": "Drug group",
    "contrast": "Contrast",
    "parameter": "Parameter",
    "stratum_variable": "Stratified by",
    "stratum": "Stratum",
    "covariate": "Covariate",
    "level": "Level",
    "reference": "Reference",
    "status": "Status",
    "load_id": "Load id",
    "registry": "Registry",
    "extract_date": "Extract date",
    "suite": "Suite",
    "expectation": "Expectation",
    "column": "Column",
    "severity": "Severity",
    "table": "Table",
}


def label(name: str, header: str | None = None) -> Column:
    """A text column; numbers of 1-4 persons or events inside the text are masked too."""
    return Column(
        header or HEADERS.get(name, name.replace("_", " ").capitalize()),
        lambda row, _n=name: escape(_label_text(row, _n)),
        numeric=False,
    )


def _label_text(row: Any, name: str) -> str:
    value = row.get(name)
    return MISSING if is_missing(value) else mask_counts_in_text(str(value))


# A count written into free text, e.g. a model note "left out (3 persons)".
_COUNT_IN_TEXT = re.compile(
    r"(?<![\w.,])([1-4])(\s+(?:[a-z]+\s+)?(?:persons?|patients?|individuals?|users?|events?|"
    r"discontinuations?|responders?|cases?|deaths?)(?:\(s\))?)(?![\w(])",
    flags=re.IGNORECASE,
)


def mask_counts_in_text(text: str) -> str:
    """Replace a number 1-4 followed by a word for persons or events with ``<5``."""
    return _COUNT_IN_TEXT.sub(lambda m: MASKED_COUNT + m.group(2), text)


def count_column(header: str, name: str) -> Column:
    return Column(header, lambda row, _n=name: count_text(row.get(_n)))


def number_column(header: str, name: str, digits: int = 1) -> Column:
    return Column(header, lambda row, _n=name, _d=digits: number(row.get(_n), _d))


def render_table(
    rows: pd.DataFrame | Sequence[dict[str, Any]],
    columns: Sequence[Column],
    *,
    caption: str | None = None,
) -> str:
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
    head = "".join(f"<th>{escape(c.header)}</th>" for c in columns)
    body = []
    for record in records:
        cells = "".join(
            f'<td class="num">{c.render(record)}</td>'
            if c.numeric
            else f"<td>{c.render(record)}</td>"
            for c in columns
        )
        body.append(f"<tr>{cells}</tr>")
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_pairs(pairs: Sequence[tuple[str, str]]) -> str:
    """A two-column key/value table; values are HTML (escape them first)."""
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in pairs)
    return f"<table><tbody>{rows}</tbody></table>"


# -- the page -----------------------------------------------------------------------------------


def render_page(*, title: str, subtitle: str, sections: Sequence[Section], footer: str) -> str:
    toc = "".join(f'<li><a href="#{s.id}">{escape(s.title)}</a></li>' for s in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body><main>",
        f'<header class="top"><h1>{escape(title)}</h1><p class="sub">{escape(subtitle)}</p></header>',
        f'<nav class="toc"><strong>Contents</strong><ol>{toc}</ol></nav>',
    ]
    for section in sections:
        state = "available" if section.available else "not-available"
        parts.append(
            f'<section id="{section.id}" data-state="{state}"><h2>{escape(section.title)}</h2>'
            f"{section.body}</section>"
        )
    parts.append(f"<footer>{escape(footer)}</footer></main></body></html>")
    return "\n".join(parts)
