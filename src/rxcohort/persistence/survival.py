"""Kaplan-Meier and Cox wrappers around lifelines, on one small per-person pandas frame.

These take the ``persistence`` table as pandas (one row per person; a few thousand rows) and
return tidy pandas frames with fixed columns. Small data is guarded rather than fatal: rare
categorical levels are pooled or dropped, a model that cannot be fitted returns a row saying
why. Nothing here logs or returns a person-level value.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rxcohort.contract import table_spec
from rxcohort.errors import ConfigError, ParameterError
from rxcohort.privacy import SMALL_COUNT_MAX

KM_CURVE_COLUMNS: tuple[str, ...] = table_spec("km_curves").names()
KM_MEDIAN_COLUMNS: tuple[str, ...] = table_spec("km_medians").names()
COX_COLUMNS: tuple[str, ...] = table_spec("cox_results").names()

OVERALL = "overall"
OVERALL_STRATUM = "all"
MISSING_STRATUM = "missing"
POOLED_LEVEL = "pooled_rare_levels"
MODEL_ROW = "(model)"

STATUS_OK = "ok"
STATUS_WARNING = "converged_with_warnings"
STATUS_NOT_CONVERGED = "not_converged"
STATUS_INSUFFICIENT = "insufficient_data"
STATUS_DROPPED = "dropped"


def _stratum_label(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return MISSING_STRATUM
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value)


def _km_fits(
    pdf: pd.DataFrame, *, strata: Sequence[str], duration_col: str, event_col: str, alpha: float
) -> Iterator[tuple[str, str, object]]:
    from lifelines import KaplanMeierFitter

    require_columns(pdf, [duration_col, event_col, *strata], role="Kaplan-Meier column(s)")
    data = pdf[pdf[duration_col].notna() & pdf[event_col].notna()]
    groups: list[tuple[str, str, pd.DataFrame]] = [(OVERALL, OVERALL_STRATUM, data)]
    for variable in strata:
        labels = data[variable].map(_stratum_label)
        for level in sorted(labels.unique()):
            groups.append((variable, level, data[labels == level]))
    for variable, level, rows in groups:
        if rows.empty:
            continue
        kmf = KaplanMeierFitter(alpha=alpha).fit(
            rows[duration_col].astype(float), rows[event_col].astype(int)
        )
        yield variable, level, kmf


def require_columns(pdf: pd.DataFrame, columns: Sequence[str], *, role: str) -> None:
    missing = [c for c in columns if c not in pdf.columns]
    if missing:
        raise ConfigError(f"{role} not in the persistence table: {', '.join(missing)}")


def _finite(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def fit_km_curves(
    persistence_pdf: pd.DataFrame,
    *,
    strata: Sequence[str],
    duration_col: str = "time_days",
    event_col: str = "event",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Kaplan-Meier curves overall and per level of each ``strata`` column (``KM_CURVE_COLUMNS``).

    One row per stratum and distinct time (time 0 included, with everyone at risk): persons at
    risk just before ``time``, events and censorings at ``time``, the survival estimate after
    it and its pointwise confidence interval (lifelines' exponential Greenwood, i.e.
    log(-log) scale). Null stratum values form the level ``missing``; booleans read
    ``true``/``false``. Rows with a null duration or event are left out.
    """
    frames = []
    for variable, level, kmf in _km_fits(
        persistence_pdf, strata=strata, duration_col=duration_col, event_col=event_col, alpha=alpha
    ):
        table = kmf.event_table
        ci = kmf.confidence_interval_survival_function_
        frames.append(
            pd.DataFrame(
                {
                    "stratum_variable": variable,
                    "stratum": level,
                    "time": table.index.astype(float),
                    "at_risk": table["at_risk"].to_numpy(dtype="int64"),
                    "events": table["observed"].to_numpy(dtype="int64"),
                    "censored": table["censored"].to_numpy(dtype="int64"),
                    "survival": kmf.survival_function_.iloc[:, 0].reindex(table.index).to_numpy(),
                    "ci_low": ci.iloc[:, 0].reindex(table.index).to_numpy(),
                    "ci_high": ci.iloc[:, 1].reindex(table.index).to_numpy(),
                }
            )
        )
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=_KM_DTYPES[c]) for c in KM_CURVE_COLUMNS})
    return pd.concat(frames, ignore_index=True)[list(KM_CURVE_COLUMNS)]


KM_PUBLISHED_EVERY_DAYS = 30.0  # the intervals of km_curves as it leaves the warehouse
KM_PUBLISHED_MIN_AT_RISK = SMALL_COUNT_MAX + 1  # ... and the fewest at risk it shows


def km_curves_published(
    curves: pd.DataFrame,
    *,
    every_days: float = KM_PUBLISHED_EVERY_DAYS,
    min_at_risk: int = KM_PUBLISHED_MIN_AT_RISK,
) -> pd.DataFrame:
    """``km_curves`` as it leaves the warehouse (export, report): the life table of
    :func:`km_curves_by_interval`, each stratum ending before the first interval with fewer
    than ``min_at_risk`` persons at risk (a curve is not shown where it rests on 1-4 persons;
    a stratum that starts below it is left out).

    Without the cut, a stratum's tail - risk sets of 1-4 persons tied by the intervals'
    events and censorings, most of them published zeros - fixes those risk sets within less
    than one person once the strata's sum is known; disclosure control could then only hide
    the chain up to the cohort's size, and so nearly every count of the artifact.
    """
    grid = km_curves_by_interval(curves, every_days=every_days)
    if grid.empty:
        return grid
    below = grid["at_risk"] < min_at_risk
    cut = below.groupby([grid["stratum_variable"], grid["stratum"]], sort=False).cummax()
    return grid[~cut].reset_index(drop=True)


def km_curves_by_interval(
    curves: pd.DataFrame, *, every_days: float = KM_PUBLISHED_EVERY_DAYS
) -> pd.DataFrame:
    """``km_curves`` (one row per distinct time) as a life table on a grid of ``every_days``.

    One row per stratum and interval [time, time + every_days), from time 0 to the interval
    holding the stratum's last time: ``at_risk`` the persons whose time reaches the interval's
    start, ``events`` and ``censored`` those that end in it, ``survival`` and its interval the
    Kaplan-Meier estimate at the interval's end (the last distinct time inside it; at the
    start's when none is). So ``at_risk`` of one interval minus its events and censorings is
    the next one's, as with distinct times, and the curve keeps its estimate - but a published
    count is a month's, not a day's: where persons end on different days a day's counts are
    mostly 1-4 and suppression would hide nearly the whole curve (and take very long).
    """
    if every_days <= 0:
        raise ParameterError(f"every_days must be positive, got {every_days}")
    columns = list(KM_CURVE_COLUMNS)
    out = []
    for (variable, stratum), part in curves.groupby(["stratum_variable", "stratum"], sort=False):
        rows = part.sort_values("time")
        times = rows["time"].to_numpy(dtype=float)
        at_risk = rows["at_risk"].to_numpy(dtype="int64")
        events = rows["events"].to_numpy(dtype="int64")
        censored = rows["censored"].to_numpy(dtype="int64")
        slot = np.floor(times / every_days).astype("int64")
        survival = rows[["survival", "ci_low", "ci_high"]].to_numpy(dtype=float)
        estimate = np.array([1.0, 1.0, 1.0])
        for k in range(int(slot.max()) + 1 if len(slot) else 0):
            first, stop = np.searchsorted(slot, [k, k + 1])  # rows are in time order
            inside = np.arange(first, stop)
            if inside.size:
                estimate = survival[inside[-1]]
            out.append(
                {
                    "stratum_variable": variable,
                    "stratum": stratum,
                    "time": k * float(every_days),
                    "at_risk": int(at_risk[first]),
                    "events": int(events[inside].sum()),
                    "censored": int(censored[inside].sum()),
                    "survival": float(estimate[0]),
                    "ci_low": float(estimate[1]),
                    "ci_high": float(estimate[2]),
                }
            )
    if not out:
        return pd.DataFrame({c: pd.Series(dtype=_KM_DTYPES[c]) for c in columns})
    return pd.DataFrame(out, columns=columns).astype({c: _KM_DTYPES[c] for c in columns})


_KM_DTYPES = {
    "stratum_variable": "object",
    "stratum": "object",
    "time": "float64",
    "at_risk": "int64",
    "events": "int64",
    "censored": "int64",
    "survival": "float64",
    "ci_low": "float64",
    "ci_high": "float64",
}


def fit_km_medians(
    persistence_pdf: pd.DataFrame,
    *,
    strata: Sequence[str],
    duration_col: str = "time_days",
    event_col: str = "event",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Median time on treatment with its confidence interval per stratum (``KM_MEDIAN_COLUMNS``).

    The median is the first time the Kaplan-Meier estimate is at or below 0.5; its interval
    runs from the first time the lower confidence limit is at or below 0.5 to the first time
    the upper one is (lifelines ``median_survival_times``, the same idea as R's survfit). A
    median or limit that is never reached is null.
    """
    from lifelines.utils import median_survival_times

    rows = []
    for variable, level, kmf in _km_fits(
        persistence_pdf, strata=strata, duration_col=duration_col, event_col=event_col, alpha=alpha
    ):
        ci = median_survival_times(kmf.confidence_interval_survival_function_)
        rows.append(
            {
                "stratum_variable": variable,
                "stratum": level,
                "n_persons": int(kmf.event_table["entrance"].sum()),
                "n_events": int(kmf.event_observed.sum()),
                "median_time": _finite(kmf.median_survival_time_),
                "median_ci_low": _finite(ci.iloc[0, 0]),
                "median_ci_high": _finite(ci.iloc[0, 1]),
            }
        )
    return pd.DataFrame(rows, columns=list(KM_MEDIAN_COLUMNS))


@dataclass(frozen=True)
class _Term:
    column: str
    covariate: str
    level: str | None
    reference: str | None
    n_persons: int
    n_events: int


def _row(**values: object) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(COX_COLUMNS)
    row.update(values)
    return row


def _result(rows: list[dict[str, object]]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=list(COX_COLUMNS))
    for col in ("n_persons", "n_events"):
        out[col] = out[col].astype("Int64")
    for col in (
        "coef",
        "se_coef",
        "hr",
        "ci_low",
        "ci_high",
        "p_value",
        "ph_test_stat",
        "ph_p_value",
    ):
        out[col] = out[col].astype("float64")
    return out


def _is_categorical(series: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series))


def _as_numeric_if_boolean(series: pd.Series) -> pd.Series:
    # Spark booleans with nulls arrive as object columns of True/False; model them as 0/1.
    if series.dtype == object and series.map(lambda v: isinstance(v, bool | np.bool_)).all():
        return series.astype(float)
    return series


def _design(
    data: pd.DataFrame,
    *,
    covariates: Sequence[str],
    event_col: str,
    references: Mapping[str, str],
    scale: Mapping[str, float],
    min_events_per_level: int,
) -> tuple[pd.DataFrame, list[_Term], list[dict[str, object]], list[str]]:
    """Numeric design matrix with one column per term, the terms, dropped-covariate rows, notes.

    Rows may be dropped (a pooled level still too rare), so the matrix comes back with the
    rows it keeps; columns are named x0, x1, ... and mapped back through the terms.
    """
    builder = _DesignBuilder(data.index, data[event_col].astype(int))
    for name in covariates:
        series = _as_numeric_if_boolean(data[name])
        if _is_categorical(series):
            builder.add_categorical(
                name,
                series.astype(str),
                reference=references.get(name),
                min_events_per_level=min_events_per_level,
            )
        else:
            builder.add_numeric(name, series, scale=scale.get(name))
    return builder.finish()


class _DesignBuilder:
    """The design matrix's columns, terms, dropped covariates and notes, one covariate at a
    time; a categorical covariate may leave rows out (``keep``), which later ones respect."""

    def __init__(self, index: pd.Index, events: pd.Series) -> None:
        self.index, self.events = index, events
        self.keep = pd.Series(True, index=index)
        self.columns: dict[str, pd.Series] = {}
        self.terms: list[_Term] = []
        self.dropped: list[dict[str, object]] = []
        self.notes: list[str] = []

    def drop(self, name: str, note: str) -> None:
        self.dropped.append(_row(covariate=name, status=STATUS_DROPPED, note=note))

    def add_numeric(self, name: str, series: pd.Series, *, scale: float | None) -> None:
        """One term, divided by ``scale`` when given; dropped when it does not vary."""
        values = series.astype(float) / float(scale if scale is not None else 1.0)
        if values.nunique() < 2:
            self.drop(name, "no variation in this covariate")
            return
        level = f"per {scale:g}" if scale is not None else None
        self.columns[name] = values
        self.terms.append(_Term(name, name, level, None, len(values), int(self.events.sum())))

    def add_categorical(
        self, name: str, labels: pd.Series, *, reference: str | None, min_events_per_level: int
    ) -> None:
        """One term per level against the reference; rare levels pooled or left out."""
        level_events = self.events.groupby(labels).sum()
        rare = sorted(level_events[level_events < min_events_per_level].index)
        if not [lvl for lvl in level_events.index if lvl not in rare]:
            self.drop(name, f"no level has {min_events_per_level} or more events")
            return
        if rare:
            pooled_events = int(level_events[rare].sum())
            if pooled_events >= min_events_per_level:
                labels = labels.where(~labels.isin(rare), POOLED_LEVEL)
                self.notes.append(f"{name}: {len(rare)} rare level(s) pooled as {POOLED_LEVEL}")
            else:
                self.keep &= ~labels.isin(rare)
                self.notes.append(
                    f"{name}: {len(rare)} rare level(s) with {pooled_events} event(s) in all "
                    f"left out ({int((labels.isin(rare)).sum())} persons)"
                )
        sizes = labels[self.keep].value_counts()
        if reference is None or reference not in sizes.index:
            candidates = sizes[sizes.index != POOLED_LEVEL]
            reference = str(candidates.sort_index().idxmax())
        levels = sorted(lvl for lvl in sizes.index if lvl != reference)
        if not levels:
            self.drop(name, "only one level left")
            return
        for lvl in levels:
            column = f"{name}={lvl}"
            self.columns[column] = (labels == lvl).astype(float)
            in_level = labels[self.keep] == lvl
            n_events = int(self.events[self.keep][in_level].sum())
            self.terms.append(_Term(column, name, lvl, reference, int(in_level.sum()), n_events))

    def finish(self) -> tuple[pd.DataFrame, list[_Term], list[dict[str, object]], list[str]]:
        """The matrix of the kept rows, columns renamed x0, x1, ... as its terms say."""
        keep, events = self.keep, self.events
        design = pd.DataFrame(self.columns, index=self.index)[keep]
        renamed = {t.column: f"x{i}" for i, t in enumerate(self.terms)}
        design = design[[t.column for t in self.terms]].rename(columns=renamed)
        # Continuous terms count the rows actually modelled.
        n_kept, e_kept = int(keep.sum()), int(events[keep].sum())
        terms = [
            _Term(
                renamed[t.column],
                t.covariate,
                t.level,
                t.reference,
                t.n_persons if t.reference is not None else n_kept,
                t.n_events if t.reference is not None else e_kept,
            )
            for t in self.terms
        ]
        return design, terms, self.dropped, self.notes


def _exp(value: float) -> float:
    # A separated level drives its coefficient far out; report an infinite ratio, not a crash.
    try:
        return math.exp(value)
    except OverflowError:
        return math.inf


def _readable(text: str, terms: Sequence[_Term]) -> str:
    """Put the covariate names back into a lifelines message about the internal x0, x1, ..."""
    names = {
        t.column: t.covariate if t.level is None else f"{t.covariate}={t.level}" for t in terms
    }
    return re.sub(r"\bx\d+\b", lambda m: names.get(m.group(0), m.group(0)), text)


def _short(text: str) -> str:
    """First line of a lifelines message, without its links and code tips."""
    lines = text.strip().splitlines()
    first = lines[0] if lines else ""
    first = re.split(r"\s+(?:Please see|See http|For example)", first)[0]
    return " ".join(first.split())[:200]


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_short(str(exc))}"


def fit_cox(
    persistence_pdf: pd.DataFrame,
    *,
    covariates: Sequence[str],
    duration_col: str = "time_days",
    event_col: str = "event",
    references: Mapping[str, str] | None = None,
    scale: Mapping[str, float] | None = None,
    min_events: int = 10,
    min_events_per_level: int = 5,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Cox proportional-hazards model of the event, with a PH check per term (``COX_COLUMNS``).

    Numeric and boolean covariates enter as they are (divided by ``scale[name]`` when given,
    e.g. ``{"age_at_index": 10}`` for a hazard ratio per 10 years); other columns are
    categorical, one term per level against ``references[name]`` (default: the level with the
    most persons). Levels with fewer than ``min_events_per_level`` events are pooled into
    ``pooled_rare_levels``; if the pool is still that rare, its persons are left out. Rows with
    a missing value in the duration, the event or any covariate are left out (complete cases).

    The first row (``covariate = '(model)'``) describes the fit: persons and events modelled,
    ``status`` (ok, converged_with_warnings, not_converged, insufficient_data) and a ``note``.
    Then one row per term, or per covariate that was dropped (``status = 'dropped'``). Ties use
    Efron's method (lifelines and R's default). ``ph_test_stat``/``ph_p_value``: lifelines'
    ``proportional_hazard_test`` with rank-transformed time (the scaled Schoenfeld residual
    test; a small p suggests the hazard ratio changes over time).
    """
    needed = [duration_col, event_col, *covariates]
    require_columns(persistence_pdf, needed, role="Cox model column(s)")
    data, notes = _complete_cases(persistence_pdf[needed])

    n_events_all = int(data[event_col].astype(int).sum()) if len(data) else 0
    if n_events_all < min_events:
        note = f"{n_events_all} event(s), fewer than {min_events} needed"
        return _model_only(len(data), n_events_all, STATUS_INSUFFICIENT, [*notes, note], [])

    design, terms, dropped, design_notes = _design(
        data,
        covariates=covariates,
        event_col=event_col,
        references=dict(references or {}),
        scale=dict(scale or {}),
        min_events_per_level=min_events_per_level,
    )
    notes += design_notes
    model_df = design.assign(
        _duration=data.loc[design.index, duration_col].astype(float),
        _event=data.loc[design.index, event_col].astype(int),
    )
    n_persons, n_events = len(model_df), int(model_df["_event"].sum())
    if not terms:
        note = "no covariate left to model"
        return _model_only(n_persons, n_events, STATUS_INSUFFICIENT, [*notes, note], dropped)

    cph, status, fit_notes = _fit_cox_model(model_df, terms, alpha=alpha)
    if cph is None:
        return _model_only(n_persons, n_events, STATUS_NOT_CONVERGED, [*notes, *fit_notes], dropped)
    notes += fit_notes
    ph_stats = _ph_test(cph, model_df, notes)
    notes.append(f"concordance {cph.concordance_index_:.3f}")
    model = _model_row(n_persons, n_events, status, notes)
    return _result([model, *_term_rows(cph, terms, ph_stats, status), *dropped])


def _complete_cases(data: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The rows with no missing value, and a note saying how many were left out."""
    complete = data.notna().all(axis=1)
    n_missing = int((~complete).sum())
    notes = [f"{n_missing} person(s) with a missing value left out"] if n_missing else []
    return data[complete], notes


def _model_only(
    n_persons: int, n_events: int, status: str, notes: list[str], dropped: list[dict[str, object]]
) -> pd.DataFrame:
    """The result of a model that was not fitted: its row, and the covariates dropped."""
    return _result([_model_row(n_persons, n_events, status, notes), *dropped])


def _model_row(n_persons: int, n_events: int, status: str, notes: list[str]) -> dict[str, object]:
    """The first row of the Cox table: what was modelled, the fit's status and its notes."""
    return _row(
        covariate=MODEL_ROW,
        n_persons=n_persons,
        n_events=n_events,
        status=status,
        note="; ".join(notes),
    )


def _fit_cox_model(
    model_df: pd.DataFrame, terms: list[_Term], *, alpha: float
) -> tuple[Any, str, list[str]]:
    """lifelines' Cox fit (Efron ties): the fitter (None when it failed), the status, and
    notes - the failure, or the runtime warnings of the fit in the terms' own words."""
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            cph = CoxPHFitter(alpha=alpha).fit(
                model_df, duration_col="_duration", event_col="_event"
            )
        except (ConvergenceError, ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            reason = _readable(_one_line(exc), terms)
            return None, STATUS_NOT_CONVERGED, [f"the model could not be fitted ({reason})"]
    fit_warnings = sorted(
        {
            _short(str(w.message)) or w.category.__name__
            for w in caught
            if issubclass(w.category, RuntimeWarning)
        }
    )
    if fit_warnings:
        return cph, STATUS_WARNING, [_readable(w, terms) for w in fit_warnings]
    return cph, STATUS_OK, []


def _ph_test(cph: Any, model_df: pd.DataFrame, notes: list[str]) -> dict[str, tuple[float, float]]:
    """Per term (test statistic, p) of the scaled Schoenfeld residual test with rank time.
    Advisory: when it fails, the model stands without it and ``notes`` says so."""
    from lifelines.statistics import proportional_hazard_test

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ph = proportional_hazard_test(cph, model_df, time_transform="rank").summary
    except Exception as exc:  # the PH check is advisory; the model stands without it
        notes.append(f"proportional-hazards test failed ({_one_line(exc)})")
        return {}
    return {str(idx): (float(r["test_statistic"]), float(r["p"])) for idx, r in ph.iterrows()}


def _term_rows(
    cph: Any, terms: list[_Term], ph_stats: dict[str, tuple[float, float]], status: str
) -> list[dict[str, object]]:
    """One result row per modelled term: coefficient, hazard ratio and its interval, PH test."""
    summary, ci = cph.summary, cph.confidence_intervals_
    rows = []
    for term in terms:
        coef = float(summary.loc[term.column, "coef"])
        ph_stat, ph_p = ph_stats.get(term.column, (None, None))
        rows.append(
            _row(
                covariate=term.covariate,
                level=term.level,
                reference=term.reference,
                n_persons=term.n_persons,
                n_events=term.n_events,
                coef=coef,
                se_coef=float(summary.loc[term.column, "se(coef)"]),
                hr=_exp(coef),
                ci_low=_exp(float(ci.loc[term.column].iloc[0])),
                ci_high=_exp(float(ci.loc[term.column].iloc[1])),
                p_value=float(summary.loc[term.column, "p"]),
                ph_test_stat=ph_stat,
                ph_p_value=ph_p,
                status=status,
            )
        )
    return rows
