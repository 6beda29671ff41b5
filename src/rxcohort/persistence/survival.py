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

import numpy as np
import pandas as pd

from rxcohort.errors import ConfigError, ParameterError
from rxcohort.privacy import SMALL_COUNT_MAX

KM_CURVE_COLUMNS: tuple[str, ...] = (
    "stratum_variable",
    "stratum",
    "time",
    "at_risk",
    "events",
    "censored",
    "survival",
    "ci_low",
    "ci_high",
)
KM_MEDIAN_COLUMNS: tuple[str, ...] = (
    "stratum_variable",
    "stratum",
    "n_persons",
    "n_events",
    "median_time",
    "median_ci_low",
    "median_ci_high",
)
COX_COLUMNS: tuple[str, ...] = (
    "covariate",
    "level",
    "reference",
    "n_persons",
    "n_events",
    "coef",
    "se_coef",
    "hr",
    "ci_low",
    "ci_high",
    "p_value",
    "ph_test_stat",
    "ph_p_value",
    "status",
    "note",
)

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
    keep = pd.Series(True, index=data.index)
    columns: dict[str, pd.Series] = {}
    terms: list[_Term] = []
    dropped: list[dict[str, object]] = []
    notes: list[str] = []
    events = data[event_col].astype(int)

    for name in covariates:
        series = _as_numeric_if_boolean(data[name])
        if not _is_categorical(series):
            values = series.astype(float) / float(scale.get(name, 1.0))
            if values.nunique() < 2:
                dropped.append(
                    _row(
                        covariate=name, status=STATUS_DROPPED, note="no variation in this covariate"
                    )
                )
                continue
            level = f"per {scale[name]:g}" if name in scale else None
            columns[name] = values
            terms.append(_Term(name, name, level, None, len(values), int(events.sum())))
            continue

        labels = series.astype(str)
        level_events = events.groupby(labels).sum()
        rare = sorted(level_events[level_events < min_events_per_level].index)
        common = [lvl for lvl in level_events.index if lvl not in rare]
        if not common:
            dropped.append(
                _row(
                    covariate=name,
                    status=STATUS_DROPPED,
                    note=f"no level has {min_events_per_level} or more events",
                )
            )
            continue
        if rare:
            pooled_events = int(level_events[rare].sum())
            if pooled_events >= min_events_per_level:
                labels = labels.where(~labels.isin(rare), POOLED_LEVEL)
                notes.append(f"{name}: {len(rare)} rare level(s) pooled as {POOLED_LEVEL}")
            else:
                keep &= ~labels.isin(rare)
                notes.append(
                    f"{name}: {len(rare)} rare level(s) with {pooled_events} event(s) in all "
                    f"left out ({int((labels.isin(rare)).sum())} persons)"
                )
        sizes = labels[keep].value_counts()
        reference = references.get(name)
        if reference is None or reference not in sizes.index:
            candidates = sizes[sizes.index != POOLED_LEVEL]
            reference = str(candidates.sort_index().idxmax())
        levels = sorted(lvl for lvl in sizes.index if lvl != reference)
        if not levels:
            dropped.append(_row(covariate=name, status=STATUS_DROPPED, note="only one level left"))
            continue
        for lvl in levels:
            column = f"{name}={lvl}"
            columns[column] = (labels == lvl).astype(float)
            in_level = labels[keep] == lvl
            terms.append(
                _Term(
                    column,
                    name,
                    lvl,
                    reference,
                    int(in_level.sum()),
                    int(events[keep][in_level].sum()),
                )
            )

    design = pd.DataFrame(columns, index=data.index)[keep]
    renamed = {t.column: f"x{i}" for i, t in enumerate(terms)}
    design = design[[t.column for t in terms]].rename(columns=renamed)
    terms = [
        _Term(renamed[t.column], t.covariate, t.level, t.reference, t.n_persons, t.n_events)
        for t in terms
    ]
    # Continuous terms count the rows actually modelled.
    n_kept, e_kept = int(keep.sum()), int(events[keep].sum())
    terms = [
        t
        if t.reference is not None
        else _Term(t.column, t.covariate, t.level, None, n_kept, e_kept)
        for t in terms
    ]
    return design, terms, dropped, notes


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
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError
    from lifelines.statistics import proportional_hazard_test

    references = dict(references or {})
    scale = dict(scale or {})
    needed = [duration_col, event_col, *covariates]
    require_columns(persistence_pdf, needed, role="Cox model column(s)")
    data = persistence_pdf[needed]
    complete = data.notna().all(axis=1)
    n_missing = int((~complete).sum())
    data = data[complete]
    notes = [f"{n_missing} person(s) with a missing value left out"] if n_missing else []

    n_events_all = int(data[event_col].astype(int).sum()) if len(data) else 0
    if n_events_all < min_events:
        note = "; ".join([*notes, f"{n_events_all} event(s), fewer than {min_events} needed"])
        return _result(
            [
                _row(
                    covariate=MODEL_ROW,
                    n_persons=len(data),
                    n_events=n_events_all,
                    status=STATUS_INSUFFICIENT,
                    note=note,
                )
            ]
        )

    design, terms, dropped, design_notes = _design(
        data,
        covariates=covariates,
        event_col=event_col,
        references=references,
        scale=scale,
        min_events_per_level=min_events_per_level,
    )
    notes += design_notes
    model_df = design.assign(
        _duration=data.loc[design.index, duration_col].astype(float),
        _event=data.loc[design.index, event_col].astype(int),
    )
    n_persons, n_events = len(model_df), int(model_df["_event"].sum())
    if not terms:
        return _result(
            [
                _row(
                    covariate=MODEL_ROW,
                    n_persons=n_persons,
                    n_events=n_events,
                    status=STATUS_INSUFFICIENT,
                    note="; ".join([*notes, "no covariate left to model"]),
                ),
                *dropped,
            ]
        )

    status = STATUS_OK
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            cph = CoxPHFitter(alpha=alpha).fit(
                model_df, duration_col="_duration", event_col="_event"
            )
        except (ConvergenceError, ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            return _result(
                [
                    _row(
                        covariate=MODEL_ROW,
                        n_persons=n_persons,
                        n_events=n_events,
                        status=STATUS_NOT_CONVERGED,
                        note="; ".join(
                            [
                                *notes,
                                f"the model could not be fitted ({_readable(_one_line(exc), terms)})",
                            ]
                        ),
                    ),
                    *dropped,
                ]
            )
    fit_warnings = sorted(
        {
            _short(str(w.message)) or w.category.__name__
            for w in caught
            if issubclass(w.category, RuntimeWarning)
        }
    )
    if fit_warnings:
        status = STATUS_WARNING
        notes += [_readable(w, terms) for w in fit_warnings]

    ph_stats: dict[str, tuple[float, float]] = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ph = proportional_hazard_test(cph, model_df, time_transform="rank").summary
        ph_stats = {
            str(idx): (float(r["test_statistic"]), float(r["p"])) for idx, r in ph.iterrows()
        }
    except Exception as exc:  # the PH check is advisory; the model stands without it
        notes.append(f"proportional-hazards test failed ({_one_line(exc)})")

    notes.append(f"concordance {cph.concordance_index_:.3f}")
    summary = cph.summary
    ci = cph.confidence_intervals_
    rows = [
        _row(
            covariate=MODEL_ROW,
            n_persons=n_persons,
            n_events=n_events,
            status=status,
            note="; ".join(notes),
        )
    ]
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
    rows += dropped
    return _result(rows)
