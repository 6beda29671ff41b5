"""The sections of the study report, from small collected frames to HTML. No I/O, no Spark.

Each ``section_*`` function takes the :class:`ReportData` and returns a :class:`Section`; a
section whose data is missing says so in one line (most are made by :func:`_section` from a
function that returns the section's HTML parts). Every table goes through
:func:`rxcohort.privacy.mask_small_counts` before it is rendered, every figure through
:mod:`rxcohort.report.plotdata`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from html import escape
from typing import Any

import pandas as pd

from rxcohort.disclosure import protect_tables
from rxcohort.errors import ParameterError
from rxcohort.persistence.survival import km_curves_published
from rxcohort.privacy import (
    ALL_GROUPS,
    EVERYTHING,
    MASKED_VALUE,
    MASKING_RULES,
    MaskingRule,
    mask_small_counts,
)
from rxcohort.report import plotdata, plots
from rxcohort.report.html import (
    Column,
    Section,
    count_column,
    count_text,
    estimate_ci,
    figure,
    is_marker,
    is_missing,
    label,
    not_available,
    note,
    number,
    p_value,
    paragraph,
    render_pairs,
    render_table,
)
from rxcohort.study.models import Study

KM_STEP_DAYS = 30.0
KM_RISK_EVERY_DAYS = 90  # the number-at-risk table's columns
DOSE_UNIT = "Estimated daily dose of the index drug, mg/day"

# The before/after bars are computed for the report (Table 1 is a study table, with its rule
# in rxcohort.privacy); their rules follow
# group_results: a group of 1-4 persons shows nothing, and a mean over a window in which 1-4
# persons used the drug is theirs, so it is hidden with its share of users.
WINDOW_DDD_RULE = MaskingRule(
    person_counts=("n_persons", "n_users"),
    keys=("exposure_group", "drug_group", "window"),
    dependants={
        "n_persons": (EVERYTHING,),
        "n_users": ("pct_users", "mean_ddd", "sd_ddd", "median_ddd"),
    },
)
DOSE_RULE = MaskingRule(person_counts=("n_persons",), keys=("bin_order", "bin", "value"))
# Rows of a delivery file can be persons (persons.csv), so the quality section masks row
# counts of 1-4 too, with the share that would give them back.
QUALITY_RULE = MaskingRule(
    person_counts=("unexpected_count",),
    keys=("load_id", "suite", "expectation", "column", "severity"),
    dependants={"unexpected_count": ("unexpected_percent",)},
)
DELIVERIES_RULE = MaskingRule(
    person_counts=("rows_read",),
    keys=("load_id", "registry", "extract_date", "period_start", "period_end"),
)
# The rules of the tables computed for the report (the result tables have theirs in
# rxcohort.privacy.MASKING_RULES).
REPORT_RULES = {
    "window_ddd": WINDOW_DDD_RULE,
    "dose_bins": DOSE_RULE,
    "dose_bands": DOSE_RULE,
}


@dataclass(frozen=True)
class RunInfo:
    """The run the report describes: a row of the study's ``runs`` table."""

    run_id: str
    status: str | None = None
    definition_sha256: str | None = None
    definition_yaml: str | None = None
    rxcohort_version: str | None = None
    git_commit: str | None = None
    as_of_run_id: str | None = None
    input_versions: Mapping[str, int] = field(default_factory=dict)
    output_versions: Mapping[str, int] = field(default_factory=dict)
    n_persons: int | None = None
    started_at: Any = None
    finished_at: Any = None

    @classmethod
    def from_any(cls, run: Any) -> RunInfo:
        """From a runs-table row (dict or Row) or an object such as the study's RunRecord."""
        if hasattr(run, "asDict"):
            run = run.asDict()
        get = run.get if isinstance(run, Mapping) else lambda k, d=None: getattr(run, k, d)
        return cls(
            run_id=str(get("run_id")),
            status=get("status"),
            definition_sha256=get("definition_sha256"),
            definition_yaml=get("definition_yaml"),
            rxcohort_version=get("rxcohort_version"),
            git_commit=get("git_commit"),
            as_of_run_id=get("as_of_run_id"),
            input_versions={k: int(v) for k, v in dict(get("input_versions") or {}).items()},
            output_versions={k: int(v) for k, v in dict(get("output_versions") or {}).items()},
            n_persons=get("n_persons"),
            started_at=get("started_at"),
            finished_at=get("finished_at"),
        )


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, already aggregated (no frame holds a row per person)."""

    study_id: str
    generated_at: str
    study: Study | None = None
    study_text: str | None = None
    groups: tuple[str, ...] = ()
    drug_groups: tuple[str, ...] = ()
    windows: tuple[str, str] = ("pre", "post")
    ddd_unit: str = "DDD per person per window"
    attrition: pd.DataFrame | None = None
    characteristics: pd.DataFrame | None = None
    characteristics_smd: pd.DataFrame | None = None
    window_ddd: pd.DataFrame | None = None
    group_results: pd.DataFrame | None = None
    did_results: pd.DataFrame | None = None
    responders: pd.DataFrame | None = None
    trajectories: pd.DataFrame | None = None
    its_results: pd.DataFrame | None = None
    km_curves: pd.DataFrame | None = None
    km_medians: pd.DataFrame | None = None
    cox_results: pd.DataFrame | None = None
    use_over_time: pd.DataFrame | None = None
    prescriber_summary: pd.DataFrame | None = None
    dose_bins: pd.DataFrame | None = None
    dose_bands: pd.DataFrame | None = None
    dose_source: str | None = None
    deliveries: pd.DataFrame | None = None
    quality: pd.DataFrame | None = None
    quality_scope: str | None = None
    run: RunInfo | None = None
    table_versions: Mapping[str, int] = field(default_factory=dict)
    # Why a section's data is missing, by section id ("run" for the provenance), said instead of
    # the section's own reason.
    notes: Mapping[str, str] = field(default_factory=dict)
    # The result tables above, protected together (rxcohort.disclosure), by table name.
    protected: Mapping[str, pd.DataFrame] = field(default_factory=dict)


def _has(frame: pd.DataFrame | None) -> bool:
    return frame is not None and not frame.empty


def _missing(id_: str, title: str, reason: str) -> Section:
    return Section(id_, title, not_available(reason), available=False)


# Why a section is not shown when its tables have no rows, where it is not the default "the
# study has no <table> table". A note of the report's builder (``ReportData.notes``) comes first.
_NOT_AVAILABLE = {
    "table1": "the study has no cohort table",
    "ddd": "the study has no consumption or group_results table",
    "km": "the study has no km_curves table (persistence not run)",
    "cox": "the study has no cox_results table (persistence not run)",
    "dose": "no per-person dose column in the persistence tables",
    "use_over_time": "the study has no use_over_time section (see docs/study.md)",
    "prescribers": "the warehouse has no prescribers table",
    "quality": "no quality/runs table in the warehouse",
}


def _section(
    id_: str, title: str, *, needs: str | tuple[str, ...]
) -> Callable[[Callable[[ReportData], list[str]]], Callable[[ReportData], Section]]:
    """Make a function that returns a section's HTML parts into a ``section_*`` function.

    The section is shown when one of the ``needs`` tables of the data has rows; otherwise it is
    the not-available line, saying why: the builder's note for the section, else
    ``_NOT_AVAILABLE[id_]``, else that the study has no such table.
    """
    tables = (needs,) if isinstance(needs, str) else needs
    reason = _NOT_AVAILABLE.get(id_, f"the study has no {' or '.join(tables)} table")

    def decorate(parts: Callable[[ReportData], list[str]]) -> Callable[[ReportData], Section]:
        @functools.wraps(parts)
        def section(data: ReportData) -> Section:
            if not any(_has(getattr(data, table)) for table in tables):
                return _missing(id_, title, data.notes.get(id_, reason))
            return Section(id_, title, "".join(parts(data)))

        return section

    return decorate


def _masked(data: ReportData, frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """The rows of ``frame`` (rows of ``data``'s ``table``, by label) as the report may show
    them: with the primary and complementary suppression of all the report's result tables
    together (:func:`rxcohort.disclosure.protect_tables`)."""
    protected = data.protected.get(table)
    if protected is None:  # a ReportData built without it (tests of single sections)
        single = protect_report(replace(data, **{table: frame}), only=table)
        protected = single[table]
    if not frame.index.isin(protected.index).all():
        # Rows the report-wide suppression never saw would be shown with per-row masking only.
        raise ParameterError(f"{table}: the rows to show are not rows of the report's {table}")
    shown = protected.loc[frame.index]
    extra = [c for c in frame.columns if c not in shown.columns]
    if extra:
        shown = pd.concat([shown, frame[extra]], axis=1)
    columns = list(frame.columns) + [c for c in shown.columns if c not in frame.columns]
    return shown[columns].reset_index(drop=True)


def protect_report(data: ReportData, *, only: str | None = None) -> dict[str, pd.DataFrame]:
    """Every table the report takes counts from, protected together
    (:func:`rxcohort.disclosure.protect_tables`), with the shares it shows beside them
    (``pct_users``) so that they go with their counts. ``only``: that table
    alone (a section rendered without the rest)."""
    tables: dict[str, pd.DataFrame] = {}
    for name in (*MASKING_RULES, *REPORT_RULES):
        frame = getattr(data, name, None)
        if _has(frame) and (only is None or name == only):
            tables[name] = frame
    if "window_ddd" in tables:
        ddd = tables["window_ddd"].copy()
        ddd["pct_users"] = ddd["n_users"] / ddd["n_persons"].where(ddd["n_persons"] > 0)
        tables["window_ddd"] = ddd
    if "dose_bins" in tables:
        tables["dose_bins"] = tables["dose_bins"].drop(columns=["hidden"], errors="ignore")
    if "km_curves" in tables:
        tables["km_curves"] = km_curves_published(tables["km_curves"])
    return protect_tables(tables, rules=REPORT_RULES, windows=data.windows)


def _order(frame: pd.DataFrame, column: str, values: Sequence[str]) -> pd.DataFrame:
    rank = {v: i for i, v in enumerate(values)}
    key = frame[column].map(lambda v: rank.get(v, len(rank)))
    return (
        frame.assign(_rank=key).sort_values(["_rank", column], kind="stable").drop(columns="_rank")
    )


def _sort(frame: pd.DataFrame, data: ReportData) -> pd.DataFrame:
    out = frame
    if "drug_group" in out.columns:
        out = _order(out, "drug_group", data.drug_groups)
    if "exposure_group" in out.columns:
        out = _order(out, "exposure_group", (*data.groups, ALL_GROUPS))
    return out.reset_index(drop=True)


# -- 1. the study -------------------------------------------------------------------------------


def section_study(data: ReportData) -> Section:
    title = "The study"
    if data.study is None or not data.study_text:
        return _missing(
            "study", title, data.notes.get("study", "the study definition could not be loaded")
        )
    study = data.study
    body = [f"<p>{escape(p)}</p>" for p in data.study_text.split("\n\n")]
    if study.description:
        body.insert(1, paragraph(study.description))
    pairs = [
        ("Study id", f"<code>{escape(study.study_id)}</code>"),
        ("Index drug", escape(f"{study.index_drug.name} (ATC {', '.join(study.index_drug.atc)})")),
        ("Index period", escape(f"{study.index_period.start} to {study.index_period.end}")),
        (
            "Windows (days from index)",
            escape("; ".join(f"{n}: {w.start} to {w.end}" for n, w in study.windows.items())),
        ),
        (
            "Drug groups",
            escape("; ".join(f"{n} (ATC {', '.join(p)})" for n, p in study.drug_groups.items())),
        ),
        (
            "Exposure groups",
            escape("; ".join(f"{g.label}: {g.describe()}" for g in study.exposure_groups)),
        ),
    ]
    body.append(render_pairs(pairs))
    return Section("study", title, "".join(body))


# -- 2. attrition ---------------------------------------------------------------------------------


@_section("attrition", "Cohort selection (attrition)", needs="attrition")
def section_attrition(data: ReportData) -> list[str]:
    rows = _masked(data, data.attrition.sort_values("step"), "attrition").to_dict("records")
    parts = ['<div class="flow">']
    for i, row in enumerate(rows):
        if i > 0:
            parts.append('<div class="arrow"></div>')
            parts.append(
                '<div class="excl"><span class="line"></span><span class="xbox">Excluded: '
                f"{count_text(row['n_excluded'])}</span></div>"
            )
            parts.append('<div class="arrow"></div>')
        parts.append(
            f'<div class="step"><div class="box"><div>{escape(str(row["criterion"]))}</div>'
            f'<div class="n">n = {count_text(row["n_persons"])}</div></div></div>'
        )
    sizes = _group_sizes(data)
    if sizes:
        parts.append('<div class="arrow"></div><div class="groups">')
        for group, n in sizes:
            parts.append(
                f'<div class="box"><div>{escape(group)}</div><div class="n">n = {count_text(n)}'
                "</div></div>"
            )
        parts.append("</div>")
    parts.append("</div>")
    parts.append(
        note(
            "Persons left after each criterion, applied in order; the boxes at the bottom are "
            "the exposure groups. Counts of 1-4 persons are shown as <5."
        )
    )
    return parts


def _group_sizes(data: ReportData) -> list[tuple[str, Any]]:
    if not _has(data.characteristics):
        return []
    chars = _masked(data, data.characteristics, "characteristics")
    first = chars.drop_duplicates("exposure_group")
    sizes = first.set_index("exposure_group")["n_persons"].to_dict()
    return [(g, sizes.get(g, 0)) for g in data.groups]


# -- 3. Table 1 -------------------------------------------------------------------------------------

_TABLE1_LABELS = {
    "condition": "{level}: reimbursed in the {window} window, n (%)",
    "code_chapter": "Reimbursement code {level}..: in the {window} window, n (%)",
    "comedication": "ATC {level}: dispensed in the {window} window, n (%)",
}


@_section(
    "table1",
    "Table 1. Characteristics at the index date by exposure group",
    needs="characteristics",
)
def section_table1(data: ReportData) -> list[str]:
    chars = _masked(data, data.characteristics, "characteristics")
    columns = [g for g in data.groups if g in set(chars["exposure_group"])] + [ALL_GROUPS]
    rows = {(r["exposure_group"], r["variable"], r["level"]): r for r in chars.to_dict("records")}
    smd = _table1_smd(data)
    contrasts = list(dict.fromkeys((h, low) for h, low, _, _ in smd))

    def line(name: str, variable: str, level: str, render: Callable[[dict], str]) -> str:
        cells = "".join(
            f'<td class="num">{render(r) if (r := rows.get((g, variable, level))) else "–"}</td>'
            for g in columns
        )
        cells += "".join(
            f'<td class="num">{_smd_text(smd.get((h, low, variable, level)))}</td>'
            for h, low in contrasts
        )
        return f"<tr><th>{escape(name)}</th>{cells}</tr>"

    def share(r: dict) -> str:
        return f"{count_text(r['n'])} ({_percent_text(r['percent'])})"

    def mean_sd(r: dict) -> str:
        return f"{number(r['mean'])} ({number(r['sd'])})"

    def median_iqr(r: dict) -> str:
        return f"{compact(r['median'])} ({compact(r['q1'])}–{compact(r['q3'])})"

    body = [
        line("Persons, n", "sex", "female", lambda r: count_text(r["n_persons"])),
        line("Female, n (%)", "sex", "female", share),
        line("Age at index, years, mean (SD)", "age", "", mean_sd),
        line("Age at index, years, median (IQR)", "age", "", median_iqr),
    ]
    seen = chars.drop_duplicates(["variable", "level"])
    window = next((w for w in seen["window"] if isinstance(w, str)), data.windows[0])
    for drug in data.drug_groups:
        if (ALL_GROUPS, "drug_use", drug) not in rows:
            continue
        body += [
            line(f"{drug}: users in the {window} window, n (%)", "drug_use", drug, share),
            line(f"{drug}: DDD in the {window} window, mean (SD)", "drug_ddd", drug, mean_sd),
            line(f"{drug}: DDD in the {window} window, median (IQR)", "drug_ddd", drug,
                 median_iqr),
        ]  # fmt: skip
    for variable, text in _TABLE1_LABELS.items():
        for level in seen.loc[seen["variable"] == variable, "level"]:
            body.append(line(text.format(level=level, window=window), variable, level, share))
    head = "".join(f"<th>{escape(c)}</th>" for c in ["", *columns])
    head += "".join(f"<th>SMD {escape(h)} vs {escape(low)}</th>" for h, low in contrasts)
    parts = [f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"]
    parts.append(
        note(
            f"DDD: defined daily doses per person in the {window} window, non-users counted as "
            "0. Age is the index year minus the birth year. Conditions: a dispensing with a "
            "reimbursement code starting with the condition's codes; a code letter stands for "
            "its ICPC-2 chapter and the ICD-10 codes that begin with it (the registry does not "
            "say which system a code is in). Co-medication: the ATC level-3 groups with the "
            "most users in the cohort. SMD: standardised mean difference (a share's variance "
            "p(1-p)); |SMD| above 0.1 is a notable imbalance. 'masked': not shown because it "
            "describes 1-4 persons."
        )
    )
    return parts


def _table1_smd(data: ReportData) -> dict[tuple[str, str, str, str], Any]:
    if not _has(data.characteristics_smd):
        return {}
    smd = _masked(data, data.characteristics_smd, "characteristics_smd")
    return {
        (r["exposure_group_high"], r["exposure_group_low"], r["variable"], r["level"]): r["smd"]
        for r in smd.to_dict("records")
    }


def _smd_text(value: Any) -> str:
    return number(value, 2)


def _percent_text(value: Any) -> str:
    """A percentage (0-100) with one decimal."""
    if is_missing(value) or is_marker(value):
        return number(value)
    return f"{float(value):.1f}%"


# -- 4. before / after ----------------------------------------------------------------------------


@_section("ddd", "Drug use before and after the index date", needs=("window_ddd", "group_results"))
def section_ddd(data: ReportData) -> list[str]:
    pre, post = data.windows
    parts = []
    means = _window_means(data)
    if means is not None and not means.empty:
        png = plots.before_after_bars(
            means,
            groups=data.groups,
            drug_groups=data.drug_groups,
            windows=data.windows,
            unit=data.ddd_unit,
        )
        parts.append(
            figure(
                png,
                alt=f"Bar chart of mean {data.ddd_unit} in the {pre} and {post} windows",
                caption=(
                    f"Mean {data.ddd_unit} in the {pre} and {post} windows by exposure group, "
                    "with 95% confidence intervals (t distribution). A bar marked <5 is not "
                    "drawn: it rests on 1-4 persons or users."
                ),
            )
        )
    if _has(data.group_results):
        frame = _sort(_masked(data, data.group_results, "group_results"), data)
        columns = [
            label("exposure_group"),
            label("drug_group"),
            count_column("Persons", "n_persons"),
            Column(f"Mean DDD {pre}", lambda r: number(r.get("mean_ddd_pre"))),
            Column(f"Mean DDD {post}", lambda r: number(r.get("mean_ddd_post"))),
            Column(
                "Mean change (95% CI)",
                lambda r: estimate_ci(r.get("mean_diff"), r.get("ci_low"), r.get("ci_high")),
            ),
            Column(
                "Relative change, % (95% CI)",
                lambda r: estimate_ci(
                    r.get("rel_change"),
                    r.get("rel_change_ci_low"),
                    r.get("rel_change_ci_high"),
                    0,
                    scale=100,
                ),
            ),
            Column("p", lambda r: p_value(r.get("p_value"))),
            count_column(f"Users {pre}", "users_pre"),
            count_column(f"Users {post}", "users_post"),
        ]
        parts.append(
            render_table(
                frame,
                columns,
                caption=f"Paired change per exposure group and drug group ({data.ddd_unit}).",
            )
        )
    else:
        parts.append(not_available("the table of paired changes (no group_results table)"))
    return parts


def _window_means(data: ReportData) -> pd.DataFrame | None:
    if _has(data.window_ddd):
        frame = data.window_ddd[data.window_ddd["exposure_group"] != ALL_GROUPS]
        return plotdata.plottable_window_means(_masked(data, frame, "window_ddd"))
    if _has(data.group_results):
        # No consumption table: bars of the group means without intervals.
        pre, post = data.windows
        rows = []
        for r in _masked(data, data.group_results, "group_results").to_dict("records"):
            for window, mean, users in (
                (pre, r["mean_ddd_pre"], r["users_pre"]),
                (post, r["mean_ddd_post"], r["users_post"]),
            ):
                rows.append(
                    {
                        "exposure_group": r["exposure_group"],
                        "drug_group": r["drug_group"],
                        "window": window,
                        "n_persons": r["n_persons"],
                        "n_users": users,
                        "mean_ddd": mean,
                        "sd_ddd": float("nan"),
                    }
                )
        return plotdata.plottable_window_means(pd.DataFrame(rows))
    return None


# -- 5. difference in differences ------------------------------------------------------------------


@_section("did", "Difference in differences between exposure groups", needs="did_results")
def section_did(data: ReportData) -> list[str]:
    parts = []
    shown = plotdata.plottable_did(_sort(data.did_results, data))
    hidden = len(data.did_results) - len(shown)
    if not shown.empty:
        parts.append(
            figure(
                plots.did_forest(shown, unit=data.ddd_unit),
                alt="Forest plot of the difference in differences with 95% confidence intervals",
                caption=(
                    "Change in the higher exposure group minus change in the lower one, with "
                    "95% confidence intervals (Welch's t). Left of the dashed line: use fell "
                    "more in the higher exposure group."
                ),
            )
        )
    if hidden:
        parts.append(note("Contrasts resting on 1-4 persons or users are not plotted."))
    frame = _masked(data, _sort(data.did_results, data), "did_results")
    columns = [
        label("drug_group"),
        label("contrast"),
        Column(
            f"DiD, {data.ddd_unit} (95% CI)",
            lambda r: estimate_ci(r.get("did"), r.get("ci_low"), r.get("ci_high")),
        ),
        Column("p", lambda r: p_value(r.get("p_value"))),
        Column(
            "DiD in users, percentage points (95% CI)",
            lambda r: estimate_ci(
                r.get("did_users_pp"), r.get("did_users_pp_ci_low"), r.get("did_users_pp_ci_high")
            ),
        ),
        count_column("Persons (higher group)", "n_persons_high"),
        count_column("Persons (lower group)", "n_persons_low"),
    ]
    parts.append(render_table(frame, columns))
    return parts


# -- 6. trajectories ---------------------------------------------------------------------------------


@_section("trajectories", "Monthly drug use around the index date", needs="trajectories")
def section_trajectories(data: ReportData) -> list[str]:
    parts = []
    shown = plotdata.plottable_trajectories(data.trajectories)
    parts.append(
        figure(
            plots.trajectory_lines(shown, groups=data.groups, drug_groups=data.drug_groups),
            alt="Line chart of mean DDD per person per month by exposure group",
            caption=(
                "Mean DDD per person in each month before and after the index date (months of "
                "30-31 days; month 0 starts on the index date), with 95% confidence bands (cut "
                "at 0). A line is drawn whole or not at all: one whose group has 1-4 persons, "
                "or any month of which rests on 1-4 users, is left out, because leaving out "
                "single months would bend the line towards zero."
            ),
        )
    )
    hidden = plotdata.hidden_series(shown)
    if hidden:
        parts.append(
            note(
                "Not drawn (a month with 1-4 users, or a group of 1-4 persons): "
                + "; ".join(escape(f"{g}, {d}") for g, d in hidden)
                + "."
            )
        )
    if _has(data.its_results):
        its = _masked(data, data.its_results, "its_results")
        its = its[its["parameter"].isin(["level_change", "slope_change"])]
        its = _sort(its.sort_values(["lag_months", "parameter"], kind="stable"), data)
        columns = [
            label("exposure_group"),
            label("drug_group"),
            Column("Lag, months", lambda r: escape(str(r.get("lag_months")))),
            label("parameter"),
            Column(
                "Estimate, DDD per person per month (95% CI)",
                lambda r: estimate_ci(r.get("estimate"), r.get("ci_low"), r.get("ci_high"), 2),
            ),
            Column("p", lambda r: p_value(r.get("p_value"))),
            count_column("Persons", "n_persons"),
        ]
        parts.append(
            "<details><summary>Interrupted time series: level and slope change at the index "
            "month (segmented regression)</summary>"
            + render_table(its, columns)
            + note(
                "Months 0 to lag-1 are left out of the fit as the time the drug takes to act. "
                "Classical OLS intervals; monthly means of one cohort can be autocorrelated, so "
                "read them as descriptive."
            )
            + "</details>"
        )
    return parts


# -- 7. responders ---------------------------------------------------------------------------------


@_section("responders", "Responders", needs="responders")
def section_responders(data: ReportData) -> list[str]:
    threshold = data.responders["threshold"].dropna()
    share = f"{float(threshold.iloc[0]):.0%}" if not threshold.empty else "the threshold"
    parts = [
        figure(
            plots.responder_bars(
                plotdata.plottable_responders(data.responders),
                groups=data.groups,
                drug_groups=data.drug_groups,
            ),
            alt="Bar chart of the share of responders by exposure group",
            caption=(
                f"Share of persons whose DDD fell by at least {share} from before to after the "
                "index date, among those who used the drug group before, with Wilson 95% "
                "confidence intervals. Bars marked <5 rest on 1-4 persons and are not drawn."
            ),
        )
    ]
    frame = _sort(_masked(data, data.responders, "responders"), data)
    columns = [
        label("exposure_group"),
        label("drug_group"),
        count_column("Persons", "n_persons"),
        count_column("Users before (eligible)", "n_eligible"),
        count_column("Responders", "n_responders"),
        Column(
            "Responders, % (95% CI)",
            lambda r: estimate_ci(
                r.get("prop_responders"), r.get("ci_low"), r.get("ci_high"), 1, scale=100
            ),
        ),
    ]
    parts.append(render_table(frame, columns))
    return parts


# -- 8. Kaplan-Meier -------------------------------------------------------------------------------


@_section("km", "Time on treatment (Kaplan-Meier)", needs="km_curves")
def section_km(data: ReportData) -> list[str]:
    variables = sorted(
        dict.fromkeys(data.km_curves["stratum_variable"]), key=lambda v: v != "overall"
    )
    parts = [
        figure(
            plots.km_panels(data.km_curves, variables=variables, step_days=KM_STEP_DAYS),
            alt="Kaplan-Meier curves of the share still on treatment",
            caption=(
                "Share of persons still on the index drug by days since the index date "
                "(Kaplan-Meier; 95% band for the overall curve). For privacy the curves are read "
                f"every {KM_STEP_DAYS:.0f} days, steps are merged until each holds at least 5 "
                "discontinuations, and a curve stops before fewer than 5 persons remain at risk."
            ),
        )
    ]
    parts.append(_km_risk_table(data, variables))
    if _has(data.km_medians):
        rank = {v: i for i, v in enumerate(variables)}
        medians = data.km_medians.assign(
            _v=data.km_medians["stratum_variable"].map(lambda v: rank.get(v, len(rank))),
            _s=data.km_medians["stratum"].map(plots.stratum_key),
        ).sort_values(["_v", "_s"], kind="stable")
        frame = _masked(data, medians.drop(columns=["_v", "_s"]), "km_medians")
        columns = [
            label("stratum_variable"),
            label("stratum"),
            count_column("Persons", "n_persons"),
            count_column("Discontinued", "n_events"),
            Column(
                "Median days on treatment (95% CI)",
                lambda r: estimate_ci(
                    r.get("median_time"), r.get("median_ci_low"), r.get("median_ci_high"), 0
                ),
            ),
        ]
        parts.append(render_table(frame, columns))
        parts.append(note("–: not reached (more than half still on treatment at the end)."))
    return parts


def _km_risk_table(data: ReportData, variables: Sequence[str]) -> str:
    """Persons at risk every KM_RISK_EVERY_DAYS days, per curve, as the protected km_curves
    shows them."""
    protected = data.protected.get("km_curves")
    if protected is None:
        protected = protect_report(data, only="km_curves")["km_curves"]
    last = float(pd.to_numeric(data.km_curves["time"], errors="coerce").max())
    times = [float(t) for t in range(0, int(last) + 1, KM_RISK_EVERY_DAYS)]
    table = plotdata.km_number_at_risk(protected, times=times)
    rank = {v: i for i, v in enumerate(variables)}
    table = table.assign(
        _v=table["stratum_variable"].map(lambda v: rank.get(v, len(rank))),
        _s=table["stratum"].map(plots.stratum_key),
    ).sort_values(["_v", "_s"], kind="stable")
    columns = [
        label("stratum_variable"),
        label("stratum"),
        *(count_column(f"Day {t:g}", f"at_{t:g}") for t in times),
    ]
    return render_table(
        table.drop(columns=["_v", "_s"]).reset_index(drop=True),
        columns,
        caption="Number at risk: persons still on treatment and followed at the day",
    ) + note(
        "–: after the curve's last time, or where fewer than 5 persons are at risk (the curve "
        "is not shown there)."
    )


# -- 9. Cox ---------------------------------------------------------------------------------------


@_section("cox", "Predictors of discontinuation (Cox model)", needs="cox_results")
def section_cox(data: ReportData) -> list[str]:
    frame = _masked(data, data.cox_results, "cox_results")
    columns = [
        label("covariate"),
        label("level"),
        label("reference"),
        count_column("Persons", "n_persons"),
        count_column("Discontinued", "n_events"),
        Column(
            "Hazard ratio (95% CI)",
            lambda r: estimate_ci(r.get("hr"), r.get("ci_low"), r.get("ci_high"), 2),
        ),
        Column("p", lambda r: p_value(r.get("p_value"))),
        Column("PH test p", lambda r: p_value(r.get("ph_p_value"))),
        label("status"),
        label("note", "Note"),
    ]
    parts = [
        render_table(frame, columns),
        note(
            "Hazard ratio > 1: faster discontinuation. PH test p: test of proportional hazards "
            "(scaled Schoenfeld residuals against rank of time); a small value means the hazard "
            "ratio changes over follow-up."
        ),
    ]
    return parts


def compact(value: Any) -> str:
    """A whole number without decimals (a median age of 45), otherwise one decimal (42.5)."""
    if is_missing(value) or is_marker(value):
        return number(value)
    return number(value, 0 if float(value).is_integer() else 1)


def _text(value: Any) -> str:
    return "" if is_missing(value) else str(value)


# -- 10. dose ---------------------------------------------------------------------------------------


@_section("dose", "Daily dose of the index drug", needs="dose_bins")
def section_dose(data: ReportData) -> list[str]:
    table = _masked(data, data.dose_bins.sort_values("bin_order"), "dose_bins")
    table["hidden"] = table["n_persons"].map(is_marker).astype(bool)
    parts = [
        figure(
            plots.dose_histogram(table, unit=DOSE_UNIT),
            alt="Histogram of the estimated daily dose",
            caption=(
                f"Persons by {DOSE_UNIT[0].lower() + DOSE_UNIT[1:]} (from the {data.dose_source} "
                "table). A bin holding 1-4 persons is marked <5 and not drawn, and so is one "
                "hidden so that such a bin cannot be worked out from the others (masked)."
            ),
        )
    ]
    empty = table["n_persons"].map(lambda v: not is_marker(v) and v == 0)
    masked = table[(table["bin_order"] >= 0) | ~empty]
    parts.append(
        render_table(
            masked,
            [
                Column("Dose, mg/day", lambda r: escape(r["bin"]), numeric=False),
                count_column("Persons", "n_persons"),
            ],
        )
    )
    if _has(data.dose_bands):
        bands = _masked(data, data.dose_bands, "dose_bands")
        parts.append(
            render_table(
                bands,
                [
                    Column(
                        "Dose band", lambda r: escape(_text(r["value"]) or "missing"), numeric=False
                    ),
                    count_column("Persons", "n_persons"),
                ],
                caption="Dose bands: ultra_low < 1 mg/day, low 1-5 mg/day, other > 5 mg/day.",
            )
        )
    return parts


# -- 11. data quality --------------------------------------------------------------------------------


# -- use over calendar time and prescribers -------------------------------------------------------


@_section("use_over_time", "Use over calendar time", needs="use_over_time")
def section_use_over_time(data: ReportData) -> list[str]:
    protected = data.protected.get("use_over_time")
    if protected is None:
        protected = protect_report(data, only="use_over_time")["use_over_time"]
    drugs = list(dict.fromkeys(str(d) for d in data.use_over_time["drug"]))
    period = (data.study.index_period.start, data.study.index_period.end) if data.study else None
    parts = [
        figure(
            plots.use_over_time_lines(
                plotdata.plottable_use_over_time(protected), drugs=drugs, index_period=period
            ),
            alt="Line chart of users per 1,000 inhabitants per month by sex, one panel per drug",
            caption=(
                "Persons with at least one dispensing in the month per 1,000 inhabitants alive "
                "and resident on the 15th, by sex, with Wilson 95% confidence bands; the index "
                "period is shaded. A month whose users or population are hidden (1-4 persons, "
                "or hidden so that 1-4 cannot be worked out) is a gap in the line."
            ),
        )
    ]
    years = data.use_over_time[
        (data.use_over_time["period_type"] == "year") & (data.use_over_time["age_band"] == "all")
    ]
    frame = _masked(data, years, "use_over_time")
    frame = _order(frame, "sex", ("all", "female", "male"))
    frame = _order(frame.sort_values("period_start", kind="stable"), "drug", drugs)
    columns = [
        Column("Year", lambda r: escape(str(r.get("period_start"))[:4]), numeric=False),
        label("drug", "Drug"),
        label("sex", "Sex"),
        count_column("Users", "n_users"),
        count_column("New users", "n_new_users"),
        count_column("Population (1 July)", "n_population"),
        Column(
            "Users per 1,000 (95% CI)",
            lambda r: estimate_ci(r.get("per_1000"), r.get("ci_low"), r.get("ci_high"), 2),
        ),
    ]
    parts.append(render_table(frame.reset_index(drop=True), columns))
    parts.append(
        note(
            "Users: persons with a dispensing in the year (also those who died or emigrated "
            "before 1 July). New users: the year holds their first dispensing of the drug in "
            "the data, after the study's look-back (– where the data do not reach that far "
            "back). Ages by band and months are in the use_over_time table and its export."
        )
    )
    return parts


@_section("prescribers", "Prescribers of the index drug", needs="prescriber_summary")
def section_prescribers(data: ReportData) -> list[str]:
    frame = _masked(data, data.prescriber_summary, "prescriber_summary")
    labels = {
        "profession": "Prescribers by profession (of those registered)",
        "specialty": "Physicians by specialty (of those registered)",
        "first_prescriber": "Users by the specialty of their first prescriber (of all users)",
    }
    columns = [
        label("level", "Group"),
        count_column("Prescribing or users", "n"),
        count_column("Of", "n_total"),
        Column(
            "Share, % (95% CI)",
            lambda r: estimate_ci(r.get("share"), r.get("ci_low"), r.get("ci_high"), 1, scale=100),
        ),
    ]
    parts = []
    for category, caption in labels.items():
        rows = frame[frame["category"] == category].reset_index(drop=True)
        if not rows.empty:
            parts.append(render_table(rows, columns, caption=caption))
    parts.append(
        note(
            "Prescribers with a dispensing of the index drug in the index period, of every "
            "registered prescriber in silver/prescribers (general_practice: GPs). A user's first "
            "prescriber is that of their first dispensing in the index period; a GP among "
            "several that day counts."
        )
    )
    return parts


def summarise_quality(quality: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per load × suite: expectations, passed, failed (hard), failed (soft); and the failures
    with their unexpected row count and share (from the privacy-safe ``observed`` JSON)."""
    frame = quality.copy()
    frame["success"] = frame["success"].astype(bool)
    frame["hard_fail"] = ~frame["success"] & (frame["severity"] == "hard")
    frame["soft_fail"] = ~frame["success"] & (frame["severity"] != "hard")
    summary = (
        frame.groupby(["load_id", "suite"], sort=True)
        .agg(
            expectations=("success", "size"),
            passed=("success", "sum"),
            failed_hard=("hard_fail", "sum"),
            failed_soft=("soft_fail", "sum"),
        )
        .reset_index()
    )
    failed = frame[~frame["success"]].copy()
    observed = (
        failed["observed"].map(_observed) if "observed" in failed else pd.Series(dtype=object)
    )
    failed["unexpected_count"] = [o.get("unexpected_count") for o in observed]
    failed["unexpected_percent"] = [o.get("unexpected_percent") for o in observed]
    keep = [
        "load_id",
        "suite",
        "expectation",
        "column",
        "severity",
        "unexpected_count",
        "unexpected_percent",
    ]
    for column in keep:
        if column not in failed:
            failed[column] = None
    return summary, failed[keep].sort_values(["load_id", "suite", "expectation"]).reset_index(
        drop=True
    )


def _observed(text: Any) -> dict[str, Any]:
    if not isinstance(text, str):
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@_section("quality", "Data quality of the inputs", needs="quality")
def section_quality(data: ReportData) -> list[str]:
    parts = []
    if data.quality_scope:
        parts.append(paragraph(data.quality_scope))
    if _has(data.deliveries):
        deliveries = mask_small_counts(
            data.deliveries.reset_index(drop=True), table="deliveries", rule=DELIVERIES_RULE
        )
        parts.append(
            render_table(
                deliveries,
                [
                    label("load_id"),
                    label("registry"),
                    label("extract_date"),
                    Column(
                        "Period",
                        lambda r: escape(
                            f"{_text(r.get('period_start'))} to {_text(r.get('period_end'))}"
                        ),
                        numeric=False,
                    ),
                    count_column("Rows read", "rows_read"),
                ],
                caption="Deliveries loaded.",
            )
        )
    summary, failed = summarise_quality(data.quality)
    any_hard = bool(summary["failed_hard"].sum())
    n_failed = int(summary["failed_hard"].sum() + summary["failed_soft"].sum())
    verdict = (
        '<p class="bad">Hard expectations failed.</p>'
        if any_hard
        else (
            f'<p class="warn">All hard expectations passed; {n_failed} soft expectation(s) '
            "failed (see below).</p>"
            if n_failed
            else '<p class="ok">All expectations passed.</p>'
        )
    )
    parts.append(verdict)
    parts.append(
        render_table(
            summary,
            [
                label("load_id"),
                label("suite"),
                Column("Expectations", lambda r: str(int(r["expectations"]))),
                Column("Passed", lambda r: str(int(r["passed"]))),
                Column("Failed (hard)", lambda r: str(int(r["failed_hard"]))),
                Column("Failed (soft)", lambda r: str(int(r["failed_soft"]))),
            ],
            caption="Expectations per suite (numbers of checks, not of rows).",
        )
    )
    if not failed.empty:
        masked = mask_small_counts(failed, table="quality", rule=QUALITY_RULE)
        parts.append(
            render_table(
                masked,
                [
                    label("suite"),
                    label("expectation"),
                    label("column"),
                    label("severity"),
                    count_column("Unexpected rows", "unexpected_count"),
                    Column("Unexpected, %", lambda r: _plain_percent(r.get("unexpected_percent"))),
                ],
                caption="Failed expectations (rows counted, never shown).",
            )
        )
    return parts


def _plain_percent(value: Any) -> str:
    # GX reports unexpected_percent already in percent.
    if is_missing(value):
        return "–"
    if value == MASKED_VALUE:
        return MASKED_VALUE
    return f"{float(value):.3g}%"


# -- 12. provenance ----------------------------------------------------------------------------------


def section_provenance(data: ReportData) -> Section:
    title = "Provenance"
    parts = []
    run = data.run
    if run is None:
        parts.append(
            not_available(data.notes.get("run", "the study has no runs table (run information)"))
        )
    else:
        pairs = [
            ("Run id", f"<code>{escape(run.run_id)}</code>"),
            ("Status", escape(_text(run.status))),
            ("Started (UTC)", escape(_text(run.started_at))),
            ("Finished (UTC)", escape(_text(run.finished_at))),
            ("Study definition SHA-256", f"<code>{escape(_text(run.definition_sha256))}</code>"),
            ("rxcohort version", escape(_text(run.rxcohort_version))),
            (
                "Code version (git commit)",
                f"<code>{escape(_text(run.git_commit) or 'unknown')}</code>",
            ),
            ("Persons in the cohort", count_text(_cohort_size(data, run.n_persons))),
        ]
        if run.as_of_run_id:
            pairs.insert(2, ("Rebuilt as of run", f"<code>{escape(run.as_of_run_id)}</code>"))
        parts.append(render_pairs(pairs))
        if run.input_versions:
            parts.append(
                render_table(
                    [{"table": k, "version": v} for k, v in sorted(run.input_versions.items())],
                    [label("table"), Column("Delta version", lambda r: str(r["version"]))],
                    caption="Input tables read by the run.",
                )
            )
    outputs = sorted(set(data.table_versions) | set(run.output_versions if run else {}))
    if outputs:
        written = dict(run.output_versions) if run else {}
        rows = [
            {"table": t, "written": written.get(t), "read": data.table_versions.get(t)}
            for t in outputs
        ]
        parts.append(
            render_table(
                rows,
                [
                    label("table"),
                    Column("Version written by the run", lambda r: _version(r["written"])),
                    Column("Version read by this report", lambda r: _version(r["read"])),
                ],
                caption="Study tables.",
            )
        )
        changed = [
            r["table"]
            for r in rows
            if r["written"] is not None and r["read"] is not None and r["written"] != r["read"]
        ]
        if changed:
            parts.append(
                note(
                    "These tables have changed since the run: "
                    + ", ".join(changed)
                    + ". The report shows their current versions."
                )
            )
    parts.append(paragraph(f"Report generated {data.generated_at} UTC."))
    return Section("provenance", title, "".join(parts), available=run is not None)


def _cohort_size(data: ReportData, recorded: Any) -> Any:
    """The cohort's size as the attrition table shows it (it may be hidden there, beside a
    small count elsewhere in the report), else the run's record."""
    if not _has(data.attrition):
        return recorded
    shown = _masked(data, data.attrition.sort_values("step"), "attrition")
    return shown["n_persons"].iloc[-1]


def _version(value: Any) -> str:
    return "–" if value is None else str(int(value))


SECTIONS: tuple[Callable[[ReportData], Section], ...] = (
    section_study,
    section_attrition,
    section_table1,
    section_ddd,
    section_did,
    section_trajectories,
    section_responders,
    section_km,
    section_cox,
    section_dose,
    section_use_over_time,
    section_prescribers,
    section_quality,
    section_provenance,
)
SECTION_IDS: tuple[str, ...] = (
    "study",
    "attrition",
    "table1",
    "ddd",
    "did",
    "trajectories",
    "responders",
    "km",
    "cox",
    "dose",
    "use_over_time",
    "prescribers",
    "quality",
    "provenance",
)


def build_sections(data: ReportData) -> list[Section]:
    return [make(data) for make in SECTIONS]
