"""Disclosure control for everything that leaves the warehouse: primary and complementary
suppression over the tables published together.

The rule (CONTRACT §5 rule 13; NorPD's and DARWIN EU's minimum cell count of 5): no count of
1-4 persons may be read, or recomputed from other values of the same artifact. An artifact is
what is published at once - the files of one ``rxcohort export``, one report - so this module
looks at all of its tables together:

1. **Primary suppression**: every person count of 1-4 is shown as ``<5``.
2. **Complementary suppression**: published counts are tied by sums - the attrition steps
   and their exclusions, the exposure groups and the cohort, users and non-users of a group,
   eligible persons and responders, the strata of a Kaplan-Meier table and its overall row,
   a risk set and the next one, the persons of a Cox model and those of its levels. Each such
   tie is a linear relation between *cells*; a cell that is published nowhere (the non-users
   of a group, the persons of a Cox model's reference level, those a stratum left out) is a
   *virtual* cell, hidden by nature but as sensitive as any other when it holds 1-4. Another
   count is hidden (shown as ``masked``) until no hidden cell that holds 1-4 persons, or that
   was hidden to protect one, can be solved from the published values: first wherever a
   relation has a single hidden cell, then by an exact test on the whole system of relations
   (a cell is recoverable when its unit vector lies in the row space of the relations on the
   hidden cells). The cell chosen is the smallest count of 5 or more in the relation (then
   the smallest other): the least information given up for the most protection.
3. **Values resting on hidden counts** go with them (means, shares, intervals of the same
   row: :data:`rxcohort.privacy.MASKING_RULES`), and a Kaplan-Meier curve's survival from the
   first hidden count of its stratum on (the product of the steps carries every count).

Cells that stand for the same persons in several tables - a group's size in group_results,
did_results, responders and trajectories - are one cell, so they are shown or hidden together.
The Delta tables keep exact values; this runs on pandas copies at the edge.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import pandas as pd

from rxcohort.privacy import (
    ALL_GROUPS,
    MASKED_COUNT,
    MASKED_VALUE,
    MASKING_RULES,
    SMALL_COUNT_MAX,
    SMALL_COUNT_MIN,
    MaskingRule,
    count_value,
    mask_small_counts,
)

CellId = tuple[Hashable, ...]


@dataclass
class _System:
    """Count cells (published or virtual), where the published ones sit, and the relations."""

    values: dict[CellId, float] = field(default_factory=dict)
    virtual: set[CellId] = field(default_factory=set)
    places: dict[CellId, list[tuple[str, Hashable, str]]] = field(default_factory=dict)
    relations: list[dict[CellId, int]] = field(default_factory=list)
    # Cells of 1-4 shown as "masked", not "<5", where the markers themselves would pin them.
    unmarked: set[CellId] = field(default_factory=set)
    _by_cell: dict[CellId, list[dict[CellId, int]]] = field(default_factory=dict, repr=False)
    _index_size: int = field(default=-1, repr=False)

    def cell(self, cell: CellId, value: object, table: str, row: Hashable, column: str) -> None:
        number = count_value(value)
        if number is None:
            return
        known = self.values.get(cell)
        if known is not None and known != number:
            # Two tables disagree on what should be one count: keep them as two cells.
            cell = (*cell, table)
        self.values[cell] = number
        self.places.setdefault(cell, []).append((table, row, column))

    def relations_of(self, cell: CellId) -> list[dict[CellId, int]]:
        """The relations that hold ``cell`` (indexed once all relations are in)."""
        if self._index_size != len(self.relations):
            self._by_cell = {}
            for relation in self.relations:
                for c in relation:
                    self._by_cell.setdefault(c, []).append(relation)
            self._index_size = len(self.relations)
        return self._by_cell.get(cell, [])

    def has(self, cell: CellId) -> bool:
        return cell in self.values

    def total_of(self, total: CellId, parts: Sequence[CellId], name: CellId) -> None:
        """total = sum(parts) + remainder: the remainder is a virtual cell (when it is >= 0)."""
        if not self.has(total) or not parts or not all(self.has(p) for p in parts):
            return
        remainder = self.values[total] - sum(self.values[p] for p in parts)
        relation = {total: 1, **{p: -1 for p in parts}}
        if remainder < 0:
            return  # not a whole and its parts: no relation to protect
        if remainder > 0:
            # With nothing left over the parts add up exactly, as a reader who knows the
            # design may assume anyway: then no virtual cell stands between them.
            self.values[name] = remainder
            self.virtual.add(name)
            relation[name] = -1
        self.relations.append(relation)

    def equal(self, a: CellId, b: CellId) -> None:
        if self.has(a) and self.has(b) and a != b and self.values[a] == self.values[b]:
            self.relations.append({a: 1, b: -1})

    def chain(self, before: CellId, leaving: Sequence[CellId], after: CellId) -> None:
        """before - sum(leaving) = after, kept when the numbers say so."""
        cells = [before, *leaving, after]
        if not all(self.has(c) for c in cells):
            return
        if self.values[before] - sum(self.values[c] for c in leaving) == self.values[after]:
            self.relations.append({before: 1, **{c: -1 for c in leaving}, after: -1})


def _sensitive(value: float) -> bool:
    return SMALL_COUNT_MIN <= value <= SMALL_COUNT_MAX


# -- the cells and relations of each table ------------------------------------------------------


def _build(tables: Mapping[str, pd.DataFrame], windows: Mapping[str, str]) -> _System:
    system = _System()
    attrition = tables.get("attrition")
    last_step: CellId | None = None
    if attrition is not None and not attrition.empty:
        steps = attrition.sort_values("step")
        for row, r in steps.iterrows():
            system.cell(("attr_n", int(r["step"])), r["n_persons"], "attrition", row, "n_persons")
            system.cell(("attr_x", int(r["step"])), r["n_excluded"], "attrition", row, "n_excluded")
        ordered = [int(s) for s in steps["step"]]
        for previous, step in itertools.pairwise(ordered):
            system.chain(("attr_n", previous), [("attr_x", step)], ("attr_n", step))
        last_step = ("attr_n", ordered[-1])

    groups: set[str] = set()
    group_rows = tables.get("group_results")
    if group_rows is not None:
        for row, r in group_rows.iterrows():
            g = str(r["exposure_group"])
            groups.add(g)
            _group_cells(system, "group_results", row, r, g)
    did = tables.get("did_results")
    if did is not None:
        for row, r in did.iterrows():
            for side in ("high", "low"):
                g = str(r[f"exposure_group_{side}"])
                groups.add(g)
                _group_cells(system, "did_results", row, r, g, suffix=f"_{side}")
    responders = tables.get("responders")
    if responders is not None:
        for row, r in responders.iterrows():
            g, d, t = str(r["exposure_group"]), str(r["drug_group"]), r["threshold"]
            groups.add(g)
            system.cell(("group_n", g), r["n_persons"], "responders", row, "n_persons")
            system.cell(("eligible", g, d, t), r["n_eligible"], "responders", row, "n_eligible")
            system.cell(
                ("responders", g, d, t), r["n_responders"], "responders", row, "n_responders"
            )
            system.total_of(
                ("eligible", g, d, t), [("responders", g, d, t)], ("non_responders", g, d, t)
            )
            system.total_of(("group_n", g), [("eligible", g, d, t)], ("not_eligible", g, d, t))
            system.equal(("eligible", g, d, t), ("users", g, d, "pre"))
    trajectories = tables.get("trajectories")
    if trajectories is not None:
        for row, r in trajectories.iterrows():
            g, d, m = str(r["exposure_group"]), str(r["drug_group"]), int(r["month"])
            groups.add(g)
            system.cell(("group_n", g), r["n_persons"], "trajectories", row, "n_persons")
            system.cell(("month_users", g, d, m), r["n_users"], "trajectories", row, "n_users")
            system.total_of(("group_n", g), [("month_users", g, d, m)], ("month_nonusers", g, d, m))
    its = tables.get("its_results")
    if its is not None:
        for row, r in its.iterrows():
            g = str(r["exposure_group"])
            groups.add(g)
            system.cell(("group_n", g), r["n_persons"], "its_results", row, "n_persons")
    cohort = last_step or ("cohort",)
    _characterisation(system, tables, cohort, windows, groups)
    for key in [k for k in system.values if k[0] == "users"]:
        system.total_of(("group_n", key[1]), [key], ("nonusers", *key[1:]))
    if groups:
        system.total_of(cohort, [("group_n", g) for g in sorted(groups)], ("no_group",))

    _km(system, tables, last_step)
    _cox(system, tables)
    _dose(system, tables, cohort)
    _use_over_time(system, tables)
    _prescribers(system, tables, cohort)
    return system


def _group_cells(
    system: _System, table: str, row: Hashable, r: pd.Series, group: str, *, suffix: str = ""
) -> None:
    """An exposure group's size and its users of the row's drug group before and after index
    (``n_persons``, ``users_pre``, ``users_post``, each column name ending in ``suffix``)."""
    n_column = f"n_persons{suffix}"
    system.cell(("group_n", group), r[n_column], table, row, n_column)
    for window in ("pre", "post"):
        column = f"users_{window}{suffix}"
        cell = ("users", group, str(r["drug_group"]), window)
        system.cell(cell, r[column], table, row, column)


def _use_over_time(system: _System, tables: Mapping[str, pd.DataFrame]) -> None:
    """Use over calendar time: in each period and drug, a sex's users (new users, population)
    are the sum of its age bands' and an age band's the sum of its sexes' (persons of unknown
    sex or birth year are the rest); users less new users are the returning ones; a year's
    new users are the sum of its months' (a first dispensing falls in one month). The
    population is one cell for every drug."""
    frame = tables.get("use_over_time")
    if frame is None or frame.empty:
        return
    grids: dict[tuple[str, ...], set[tuple[str, str]]] = {}
    for row, r in zip(frame.index, frame.itertuples(index=False), strict=True):
        period = (str(r.period_type), str(pd.Timestamp(r.period_start).date()))
        where = (*period, str(r.drug))
        key = (str(r.sex), str(r.age_band))
        system.cell(
            ("uot_pop", *period, *key), r.n_population, "use_over_time", row, "n_population"
        )
        system.cell(("uot_u", *where, *key), r.n_users, "use_over_time", row, "n_users")
        system.cell(("uot_new", *where, *key), r.n_new_users, "use_over_time", row, "n_new_users")
        system.total_of(
            ("uot_u", *where, *key), [("uot_new", *where, *key)], ("uot_old", *where, *key)
        )
        grids.setdefault(where, set()).add(key)
    populations: set[tuple[str, str]] = set()
    for where, keys in sorted(grids.items()):
        kinds = ["uot_u", "uot_new"]
        if where[:2] not in populations:
            populations.add(where[:2])
            kinds.append("uot_pop")
        sexes = sorted({s for s, _ in keys} - {ALL_GROUPS})
        bands = sorted({b for _, b in keys} - {ALL_GROUPS})
        for kind in kinds:
            at = where[:2] if kind == "uot_pop" else where
            for sex in (ALL_GROUPS, *sexes):
                system.total_of(
                    (kind, *at, sex, ALL_GROUPS),
                    [(kind, *at, sex, b) for b in bands],
                    (f"{kind}_no_age", *at, sex),
                )
            for band in bands:
                system.total_of(
                    (kind, *at, ALL_GROUPS, band),
                    [(kind, *at, s, band) for s in sexes],
                    (f"{kind}_no_sex", *at, band),
                )
    months: dict[tuple[str, str, str, str], list[CellId]] = {}
    for cell in system.values:
        if cell[0] == "uot_new" and cell[1] == "month" and len(cell) == 6:
            _, _, start, drug, sex, band = cell
            months.setdefault((str(start)[:4], str(drug), str(sex), str(band)), []).append(cell)
    for (year, drug, sex, band), parts in sorted(months.items()):
        total = ("uot_new", "year", f"{year}-01-01", drug, sex, band)
        if len(parts) == 12:
            system.total_of(total, sorted(parts), ("uot_new_rest", year, drug, sex, band))


def _prescribers(system: _System, tables: Mapping[str, pd.DataFrame], cohort: CellId) -> None:
    """Prescriber summary: the levels of a category add up to its ``all`` row (the unknown
    ones are the rest), a specialty's prescribers are physicians, and the users by first
    prescriber are users of the index drug."""
    frame = tables.get("prescriber_summary")
    if frame is None or frame.empty:
        return
    levels: dict[tuple[str, str], list[str]] = {}
    for row, r in zip(frame.index, frame.itertuples(index=False), strict=True):
        key = (str(r.unit), str(r.category), str(r.level))
        # Every users row is a share of the same users: one cell.
        whole = (*key[:2], ALL_GROUPS) if key[0] == "users" else key
        system.cell(("ps_n", *key), r.n, "prescriber_summary", row, "n")
        system.cell(("ps_total", *whole), r.n_total, "prescriber_summary", row, "n_total")
        system.total_of(("ps_total", *whole), [("ps_n", *key)], ("ps_not", *key))
        if key[2] != ALL_GROUPS:
            levels.setdefault(key[:2], []).append(key[2])
    for (unit, category), names in sorted(levels.items()):
        for kind in ("ps_n", "ps_total") if unit == "prescribers" else ("ps_n",):
            system.total_of(
                (kind, unit, category, ALL_GROUPS),
                [(kind, unit, category, n) for n in sorted(names)],
                (f"{kind}_rest", unit, category),
            )
    for kind in ("ps_n", "ps_total"):
        system.equal(
            (kind, "prescribers", "profession", "physician"),
            (kind, "prescribers", "specialty", ALL_GROUPS),
        )
    users = ("users", "first_prescriber", ALL_GROUPS)
    system.equal(("ps_n", *users), ("ps_total", *users))
    system.equal(("ps_n", *users), cohort)  # the utilisation study's cohort is its users


def _characterisation(
    system: _System,
    tables: Mapping[str, pd.DataFrame],
    cohort: CellId,
    windows: Mapping[str, str],
    groups: set[str],
) -> None:
    """The report's Table 1 (``characteristics``) and its baseline drug use (``window_ddd``):
    per exposure group and for all of them (``exposure_group = 'all'``, the cohort).

    The persons of a group are the same cell as in the result tables, and so are its users
    of a drug group in a window that ``windows`` maps to the study's pre or post window.
    """

    def size(group: str) -> CellId:
        return cohort if group == ALL_GROUPS else ("group_n", group)

    chars = tables.get("characteristics")
    if chars is not None:
        _table1(system, chars, size, windows, groups)
    smd = tables.get("characteristics_smd")
    if smd is not None:
        for row, r in smd.iterrows():
            variable, level = str(r["variable"]), str(r["level"])
            for side in ("high", "low"):
                g = str(r[f"exposure_group_{side}"])
                groups.add(g)
                system.cell(size(g), r[f"n_persons_{side}"], "characteristics_smd", row,
                            f"n_persons_{side}")  # fmt: skip
                cell = _table1_cell(variable, level, r["window"], g, windows)
                system.cell(cell, r[f"n_{side}"], "characteristics_smd", row, f"n_{side}")
    ddd = tables.get("window_ddd")
    if ddd is None:
        return
    for row, r in ddd.iterrows():
        g, d, w = str(r["exposure_group"]), str(r["drug_group"]), str(r["window"])
        if g != ALL_GROUPS:
            groups.add(g)
        system.cell(size(g), r["n_persons"], "window_ddd", row, "n_persons")
        users = ("users", g, d, windows.get(w, w))
        system.cell(users, r["n_users"], "window_ddd", row, "n_users")
        if g == ALL_GROUPS:
            system.total_of(cohort, [users], ("nonusers", g, d, windows.get(w, w)))
    for (d, w), part in ddd.groupby(["drug_group", "window"], sort=True):
        named = sorted(str(g) for g in part["exposure_group"] if str(g) != ALL_GROUPS)
        window = windows.get(str(w), str(w))
        system.total_of(
            ("users", ALL_GROUPS, str(d), window),
            [("users", g, str(d), window) for g in named],
            ("users_no_group", str(d), window),
        )


def _table1_cell(
    variable: str, level: str, window: object, group: str, windows: Mapping[str, str]
) -> CellId:
    """A count of Table 1: the users of a drug group in a window are the users of the result
    tables (``users``), the women of a group one cell wherever they are counted."""
    if variable in ("drug_use", "drug_ddd"):
        return ("users", group, level, windows.get(str(window), str(window)))
    if variable == "sex":
        return (level, group)
    return ("char", variable, level, group)


def _table1(
    system: _System,
    chars: pd.DataFrame,
    size: Callable[[str], CellId],
    windows: Mapping[str, str],
    groups: set[str],
) -> None:
    """``characteristics``: each count is a part of its group's persons (women and men
    together of all of them, but for unknown sex), and the persons of a row in ``all`` are
    those of the named groups and the persons of none."""
    rows: dict[tuple[str, str, object], list[str]] = {}
    for row, r in chars.iterrows():
        g, variable, level = str(r["exposure_group"]), str(r["variable"]), str(r["level"])
        if g != ALL_GROUPS:
            groups.add(g)
        system.cell(size(g), r["n_persons"], "characteristics", row, "n_persons")
        cell = _table1_cell(variable, level, r["window"], g, windows)
        system.cell(cell, r["n"], "characteristics", row, "n")
        if not system.has(cell) or variable in ("drug_ddd", "sex"):
            continue
        rows.setdefault((variable, level, r["window"]), []).append(g)
        if variable != "drug_use":
            system.total_of(size(g), [cell], ("not", *cell))
        elif g == ALL_GROUPS:  # a named group's non-users: _build, for every users cell
            system.total_of(size(g), [cell], ("nonusers", *cell[1:]))
    for (variable, level, window), named in sorted(rows.items(), key=repr):
        total = _table1_cell(variable, level, window, ALL_GROUPS, windows)
        parts = [
            _table1_cell(variable, level, window, g, windows)
            for g in sorted(named)
            if g != ALL_GROUPS
        ]
        rest = ("users_no_group", *total[2:]) if variable == "drug_use" else ("no_group", *total)
        system.total_of(total, parts, rest)
    named = sorted(g for g in {*groups, ALL_GROUPS} if system.has(("female", g)))
    for g in named:
        system.total_of(size(g), [("female", g), ("male", g)], ("sex_unknown", g))
    parts = [g for g in named if g != ALL_GROUPS]
    for sex in ("female", "male"):
        system.total_of((sex, ALL_GROUPS), [(sex, g) for g in parts], (f"{sex}_no_group",))


def _dose(system: _System, tables: Mapping[str, pd.DataFrame], cohort: CellId) -> None:
    """The report's dose histogram (``dose_bins``: bin_order, band, n_persons) and dose bands
    (``dose_bands``: value, n_persons): each band is the sum of its bins, the bins together
    are the persons of the persistence analysis (the Kaplan-Meier population, or the cohort)."""
    bins = tables.get("dose_bins")
    bands = tables.get("dose_bands")
    analysed: CellId = ("km_n", "overall", "all")
    total = analysed if system.has(analysed) else cohort
    if bins is not None:
        for row, r in bins.iterrows():
            cell = ("dose_bin", int(r["bin_order"]))
            system.cell(cell, r["n_persons"], "dose_bins", row, "n_persons")
        cells = [("dose_bin", int(o)) for o in sorted(bins["bin_order"])]
        system.total_of(total, cells, ("dose_left_out",))
    if bands is None:
        return
    for row, r in bands.iterrows():
        value = _band(r["value"]) or _NO_DOSE
        system.cell(("dose_band", value), r["n_persons"], "dose_bands", row, "n_persons")
    values = sorted({_band(v) or _NO_DOSE for v in bands["value"]})
    system.total_of(total, [("dose_band", v) for v in values], ("dose_band_left_out",))
    if bins is None or "band" not in bins.columns:
        return
    # A bin of doses of one band lies in that band; bin -1 (no dose) is the band of no dose;
    # a bin across two bands ties nothing.
    band = [
        _band(b) if o >= 0 else _NO_DOSE
        for o, b in zip(bins["bin_order"], bins["band"], strict=True)
    ]
    for value, part in bins.assign(_band=band).dropna(subset="_band").groupby("_band", sort=True):
        system.total_of(
            ("dose_band", value),
            [("dose_bin", int(o)) for o in sorted(part["bin_order"])],
            ("dose_band_rest", value),
        )


_NO_DOSE = "(no dose)"


def _band(value: object) -> str | None:
    """A dose band as a cell key; a missing one is the band of persons without a dose."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


def _km(system: _System, tables: Mapping[str, pd.DataFrame], cohort: CellId | None) -> None:
    medians = tables.get("km_medians")
    if medians is not None:
        for row, r in medians.iterrows():
            key = (str(r["stratum_variable"]), str(r["stratum"]))
            system.cell(("km_n", *key), r["n_persons"], "km_medians", row, "n_persons")
            system.cell(("km_e", *key), r["n_events"], "km_medians", row, "n_events")
            system.total_of(("km_n", *key), [("km_e", *key)], ("km_censored", *key))
        _strata_sums(system, medians, ("km_n", "km_e"))
        if cohort is not None:
            system.total_of(cohort, [("km_n", "overall", "all")], ("km_left_out",))
    curves = tables.get("km_curves")
    if curves is None or curves.empty:
        return
    for row, r in curves.iterrows():
        key = (str(r["stratum_variable"]), str(r["stratum"]), float(r["time"]))
        system.cell(("ar", *key), r["at_risk"], "km_curves", row, "at_risk")
        system.cell(("ev", *key), r["events"], "km_curves", row, "events")
        system.cell(("ce", *key), r["censored"], "km_curves", row, "censored")
    for (variable, stratum), part in curves.groupby(["stratum_variable", "stratum"], sort=True):
        times = sorted(float(t) for t in part["time"])
        v, s = str(variable), str(stratum)
        for t, nxt in itertools.pairwise(times):
            system.chain(("ar", v, s, t), [("ev", v, s, t), ("ce", v, s, t)], ("ar", v, s, nxt))
        if times:
            system.equal(("ar", v, s, times[0]), ("km_n", v, s))
    timed = curves.assign(time=curves["time"].astype(float))
    for time, at in timed.groupby("time", sort=True):
        _strata_sums(system, at, ("ar", "ev", "ce"), float(time))


def _strata_sums(system: _System, frame: pd.DataFrame, kinds: Iterable[str], *at: Hashable) -> None:
    """Each stratum variable's strata within the overall row (``at``: a time, for curves)."""
    for variable in sorted(set(frame["stratum_variable"]) - {"overall"}):
        strata = sorted(str(s) for s in frame.loc[frame["stratum_variable"] == variable, "stratum"])
        for kind in kinds:
            system.total_of(
                (kind, "overall", "all", *at),
                [(kind, str(variable), s, *at) for s in strata],
                (f"{kind}_outside", str(variable), *at),
            )


def _cox(system: _System, tables: Mapping[str, pd.DataFrame]) -> None:
    cox = tables.get("cox_results")
    if cox is None or cox.empty:
        return
    levels: dict[str, list[CellId]] = {}
    for row, r in cox.iterrows():
        covariate, level = str(r["covariate"]), r.get("level")
        categorical = r.get("reference") is not None and not pd.isna(r.get("reference"))
        key = (covariate, str(level)) if categorical else ("(model)",)
        system.cell(("cox_n", *key), r["n_persons"], "cox_results", row, "n_persons")
        system.cell(("cox_e", *key), r["n_events"], "cox_results", row, "n_events")
        if categorical:
            levels.setdefault(covariate, []).append(key)
    for covariate, keys in levels.items():
        for kind in ("cox_n", "cox_e"):
            system.total_of(
                (kind, "(model)"), [(kind, *k) for k in keys], (f"{kind}_reference", covariate)
            )
    system.total_of(("km_n", "overall", "all"), [("cox_n", "(model)")], ("cox_left_out",))
    system.total_of(("km_e", "overall", "all"), [("cox_e", "(model)")], ("cox_left_out_e",))


# -- suppression -------------------------------------------------------------------------------


def suppress(system: _System) -> set[CellId]:
    """The published cells to hide: primary (1-4) and complementary, until none is solvable."""
    hidden = {c for c, v in system.values.items() if _sensitive(v)} | set(system.virtual)
    protect = {c for c in hidden if c not in system.virtual or _sensitive(system.values[c])}
    rounds: dict[CellId, int] = {}  # how often each cell was found solvable
    times_pinned: dict[CellId, int] = {}  # how often each cell was found pinned by bounds
    cleared: set[CellId] = set()  # pinned only by the programme's narrower reading
    while True:
        _close_single_hidden(system, hidden, protect)
        before = len(hidden)
        solvable = _solvable_cells(system, hidden, protect)
        for cell, published in solvable.items():
            # The published cells its value is computed from: hiding one of them breaks
            # that computation; the next round looks for another. A cell found again gets
            # twice as many hidden beside it each time, so long chains of relations (a
            # Kaplan-Meier stratum's risk sets) take a few rounds, not one per cell.
            # Without any published cell the relations alone fix it - to 0, no secret.
            rounds[cell] = rounds.get(cell, 0) + 1
            for _ in range(2 ** min(rounds[cell] - 1, 10)):
                choice = _choose(system, dict.fromkeys(published, 1), hidden)
                if choice is None:
                    break
                hidden.add(choice)
                protect.add(choice)
        if len(hidden) > before:
            continue
        pinned = [c for c in _pinned_by_bounds(system, hidden) if c not in cleared]
        unmarked = len(system.unmarked)
        for cell in pinned:
            times_pinned[cell] = times_pinned.get(cell, 0) + 1
            if times_pinned[cell] > PINNED_ROUNDS and not _pinned_exactly(system, hidden, cell):
                # The programme reads a hidden 0 as exactly 0, so hiding zeros beside a cell
                # never frees it there; a reader's own check (0 or at least 5) finds it open.
                cleared.add(cell)
            elif cell not in system.unmarked and all(
                c in hidden for relation in system.relations_of(cell) for c in relation
            ):
                # Every count beside it is hidden already: the "<5" markers alone pin it
                # (four strata of "<5" under a total of "<5": each is 1). No count hidden
                # further away helps; shown as "masked" instead, it reads as any count.
                system.unmarked.add(cell)
            elif not _hide_beside(system, hidden, protect, cell):
                # Nothing left to hide near it: hide every cell of its relations.
                for relation in system.relations_of(cell):
                    hidden.update(relation)
                    protect.update(c for c in relation if c not in system.virtual)
        if len(hidden) == before and len(system.unmarked) == unmarked:
            return hidden - system.virtual


# After this many rounds a cell the bounds still pin is checked exactly (_pinned_exactly).
PINNED_ROUNDS = 2


def _pinned_exactly(system: _System, hidden: set[CellId], cell: CellId) -> bool:
    """Whether a reader pins ``cell`` within less than 1, reading each hidden count as the
    marker says: ``<5`` 1-4, ``masked`` 0 or at least 5 (an integer programme with a binary
    per masked count: ``5 z <= x <= M z``), unpublished counts any, ``masked`` counts of 1-4
    (:attr:`_System.unmarked`) any. Exact where :func:`_pinned_in` is conservative; one
    minimum and one maximum, over the cell's group of hidden counts."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix, csr_matrix, hstack, vstack

    group = next((g for g in _components(system, hidden) if cell in g[0]), None)
    if group is None or not group[1]:
        return False
    columns = sorted(group[0], key=repr)
    relations = group[1]
    index = {c: i for i, c in enumerate(columns)}
    n = len(columns)
    entries = [
        (i, index[c], k) for i, r in enumerate(relations) for c, k in r.items() if c in index
    ]
    rows, cols, data = zip(*entries, strict=True)
    matrix = csr_matrix((data, (rows, cols)), shape=(len(relations), n), dtype=float)
    constants = np.array(
        [-sum(k * system.values[c] for c, k in r.items() if c not in hidden) for r in relations]
    )
    free = [c in system.virtual or c in system.unmarked for c in columns]
    small = [not f and _sensitive(system.values[c]) for c, f in zip(columns, free, strict=True)]
    either = [i for i in range(n) if not free[i] and not small[i]]
    k = len(either)
    # M: above any count of the group (twice the largest true value, at least 5).
    ceiling = 2 * max(system.values[c] for r in relations for c in r) + SMALL_COUNT_MAX + 1
    lower = np.array([1.0 if small[i] else 0.0 for i in range(n)] + [0.0] * k)
    upper = np.array([4.0 if small[i] else ceiling for i in range(n)] + [1.0] * k)
    constraints = [
        LinearConstraint(hstack([matrix, csr_matrix((len(relations), k))]), constants, constants)
    ]
    if k:
        r = np.arange(k)
        x_part = coo_matrix((np.ones(k), (r, either)), shape=(k, n + k))
        at_least = coo_matrix(
            (np.full(k, -float(SMALL_COUNT_MAX + 1)), (r, n + r)), shape=(k, n + k)
        )
        at_most = coo_matrix((np.full(k, -ceiling), (r, n + r)), shape=(k, n + k))
        constraints.append(LinearConstraint(vstack([x_part + at_least]), 0.0, np.inf))
        constraints.append(LinearConstraint(vstack([x_part + at_most]), -np.inf, 0.0))
    integrality = np.ones(n + k)  # counts are whole numbers too
    found = []
    for sign in (1.0, -1.0):
        objective = np.zeros(n + k)
        objective[index[cell]] = sign
        result = milp(objective, integrality=integrality, bounds=Bounds(lower, upper),
                      constraints=constraints)  # fmt: skip
        if result.status != 0 or result.x is None:
            return True  # nothing shown open: keep treating it as pinned
        found.append(result.x[index[cell]])
    return bool(found[1] - found[0] < 1 - 1e-6)


def _close_single_hidden(system: _System, hidden: set[CellId], protect: set[CellId]) -> None:
    """Wherever a relation has one hidden cell to protect, hide a second one beside it."""
    changed = True
    while changed:
        changed = False
        for relation in system.relations:
            inside = [c for c in relation if c in hidden]
            if len(inside) == 1 and inside[0] in protect:
                choice = _choose(system, relation, hidden)
                if choice is not None:
                    hidden.add(choice)
                    protect.add(choice)
                    changed = True


def _choose(system: _System, relation: Mapping[CellId, int], hidden: set[CellId]) -> CellId | None:
    candidates = [c for c in relation if c not in hidden]
    if not candidates:
        return None

    def cost(cell: CellId) -> tuple[int, float, str]:
        value = system.values[cell]
        return (0 if value >= 5 else 1 if value > 0 else 2, value, repr(cell))

    return min(candidates, key=cost)


def _hide_beside(system: _System, hidden: set[CellId], protect: set[CellId], cell: CellId) -> bool:
    """Hide one more cell to unfix ``cell``: in the relation holding it with the fewest hidden
    cells; when every cell of those is hidden already (the value comes through a longer
    path of relations), in the nearest relation along hidden cells that still has a
    published one. False when there is none."""
    relations = sorted(system.relations_of(cell), key=lambda r: sum(1 for c in r if c in hidden))
    seen_relations: set[int] = set()
    seen_cells = {cell}
    while relations:
        further: list[dict[CellId, int]] = []
        for relation in relations:
            if id(relation) in seen_relations:
                continue
            seen_relations.add(id(relation))
            choice = _choose(system, relation, hidden)
            if choice is not None:
                hidden.add(choice)
                protect.add(choice)
                return True
            for other in relation:
                if other not in seen_cells:
                    seen_cells.add(other)
                    further.extend(system.relations_of(other))
        relations = further
    return False


def _solvable_cells(
    system: _System, hidden: set[CellId], protect: set[CellId]
) -> dict[CellId, list[CellId]]:
    """The cells of ``protect`` whose value the relations and the published values fix, each
    with the published cells it is computed from.

    Per group of hidden cells linked by relations: a cell is fixed exactly when its unit
    vector lies in the row space of the relations' coefficients on those cells - in the
    reduced row echelon form, when it is a pivot whose row holds no other hidden cell
    (:func:`_fixed_columns`); the published cells left in that row are what gives it away.
    """
    out: dict[CellId, list[CellId]] = {}
    for component, relations in _components(system, hidden):
        wanted = [c for c in component if c in protect]
        if not wanted or not relations:
            continue
        fixed = _fixed_columns(component, relations)
        for cell in sorted((c for c in wanted if c in fixed), key=repr):
            out[cell] = fixed[cell]
    return out


Coefficient = int | Fraction


def _fixed_columns(
    columns: set[CellId], relations: Sequence[Mapping[CellId, int]]
) -> dict[CellId, list[CellId]]:
    """The ``columns`` (unknowns) a system of linear equations fixes, each with the other cells
    (knowns) of the equation that gives it.

    Exact, sparse Gauss-Jordan elimination over the rationals on the unknowns, the knowns
    carried along: the relations are sums with coefficients of +-1 that touch a few cells
    each, so rows stay short and the arithmetic integral in practice (Fractions where a
    pivot is not +-1). Each new relation is reduced by the pivots so far; if an unknown is
    left, it becomes a pivot (the one fewest earlier rows hold, to keep fill-in low) and is
    eliminated from those rows. In the reduced form a pivot's row reads
    ``x_pivot + sum(c_f * x_f) + sum(c_k * known_k) = 0`` over free unknowns ``f``: the pivot
    is fixed exactly when the first sum is empty, and then the knowns of the second give it.
    A free unknown is never fixed.
    """
    basis: dict[CellId, dict[CellId, Coefficient]] = {}
    holders: dict[CellId, set[CellId]] = {}  # unknown -> the pivots whose rows hold it
    for relation in relations:
        row: dict[CellId, Coefficient] = {c: k for c, k in relation.items() if k}
        for pivot in [c for c in row if c in basis]:
            factor = row.get(pivot)
            if factor:
                _subtract(row, factor, basis[pivot])
        unknowns = [c for c in row if c in columns]
        if not unknowns:
            continue  # follows from the relations before it
        pivot = min(unknowns, key=lambda c: (len(holders.get(c, ())), repr(c)))
        scale = row[pivot]
        if scale != 1:
            row = {c: (-v if scale == -1 else Fraction(v) / scale) for c, v in row.items()}
        for other in sorted(holders.pop(pivot, set()), key=repr):
            target = basis[other]
            for c in _subtract(target, target[pivot], row):
                if c not in columns:
                    continue
                if c in target:
                    holders.setdefault(c, set()).add(other)
                else:
                    holders.get(c, set()).discard(other)
        basis[pivot] = row
        for c in row:
            if c != pivot and c in columns:
                holders.setdefault(c, set()).add(pivot)
    fixed = {}
    for pivot, row in basis.items():
        if not any(c in columns for c in row if c != pivot):
            fixed[pivot] = sorted((c for c in row if c != pivot), key=repr)
    return fixed


def _subtract(
    target: dict[CellId, Coefficient], factor: Coefficient, row: Mapping[CellId, Coefficient]
) -> list[CellId]:
    """target -= factor * row, dropping zeros; returns the columns it touched."""
    touched = list(row)
    for c in touched:
        value = target.get(c, 0) - factor * row[c]
        if value:
            target[c] = value
        else:
            target.pop(c, None)
    return touched


def _pinned_by_bounds(system: _System, hidden: set[CellId]) -> list[CellId]:
    """Cells holding 1-4 whose value the relations fix once a reader adds what the markers
    say: ``<5`` is 1 to 4, a count hidden beside one is 0 or at least 5, nothing is negative.

    A cell is pinned when its smallest and largest value under the relations and those
    bounds (two linear programmes) are less than 1 apart: one whole number is left. The
    programme's ranges are never wider than a reader's (it assumes a hidden count of 0 or
    >= 5 is exactly its kind), so a cell it leaves open is open to the reader too. Any two
    solutions that differ by 1 or more in a cell prove it open, so a few programmes over
    all the cells (their sum up and down, random mixtures) settle most of them, and the
    remaining ones get their own two, whose solutions settle others again.

    The groups of hidden cells linked by relations share no cell, so one programme over all
    of them is as many independent ones: an objective over one cell of each group finds
    each group's bounds at once, which keeps the number of programmes small however many
    groups there are.
    """
    groups = [
        (component, relations)
        for component, relations in _components(system, hidden)
        if relations and any(_sensitive(system.values[c]) for c in component)
    ]
    if not groups:
        return []
    columns = sorted({c for component, _ in groups for c in component}, key=repr)
    relations = [r for _, group_relations in groups for r in group_relations]
    queues = [
        sorted((c for c in component if _sensitive(system.values[c])), key=repr)
        for component, _ in groups
    ]
    return _pinned_in(system, hidden, columns, relations, queues, np.random.default_rng(13))


def _pinned_in(
    system: _System,
    hidden: set[CellId],
    columns: Sequence[CellId],
    relations: Sequence[Mapping[CellId, int]],
    queues: Sequence[Sequence[CellId]],
    rng: np.random.Generator,
) -> list[CellId]:
    """The pinned cells of ``queues`` (the sensitive cells of each group of ``columns``)."""
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix

    index = {c: i for i, c in enumerate(columns)}
    entries = [
        (i, index[c], k) for i, r in enumerate(relations) for c, k in r.items() if c in index
    ]
    rows, cols, data = zip(*entries, strict=True)
    matrix = csr_matrix((data, (rows, cols)), shape=(len(relations), len(columns)), dtype=float)
    constants = np.array(
        [-sum(k * system.values[c] for c, k in r.items() if c not in hidden) for r in relations]
    )
    bounds = [_reader_bounds(system, c) for c in columns]
    targets = np.array([index[c] for queue in queues for c in queue])
    low_seen = np.full(len(columns), np.inf)
    high_seen = np.full(len(columns), -np.inf)

    def solve(objective: np.ndarray) -> None:
        result = linprog(objective, A_eq=matrix, b_eq=constants, bounds=bounds, method="highs")
        if result.status == 0:  # else (never, for true values) infeasible: nothing learnt
            np.minimum(low_seen, result.x, out=low_seen)
            np.maximum(high_seen, result.x, out=high_seen)

    def is_open(cell: CellId) -> bool:
        i = index[cell]
        return bool(high_seen[i] - low_seen[i] >= 1 - 1e-9)

    for sign in (1.0, -1.0, *rng.choice([-1.0, 1.0], size=(4, len(targets)))):
        objective = np.zeros(len(columns))
        objective[targets] = sign
        solve(objective)
    # Bounds carried through the relations hold every solution: a cell they leave less
    # than 1 wide is pinned without a programme of its own.
    low, high = _propagated_bounds(matrix, constants, bounds)
    out = [c for queue in queues for c in queue if high[index[c]] - low[index[c]] < 1 - 1e-9]
    settled = set(out)
    pending = [[c for c in queue if not is_open(c) and c not in settled] for queue in queues]
    while any(pending):
        # One undecided cell of each group: its own minimum and maximum, all groups at once.
        chosen = [queue.pop(0) for queue in pending if queue]
        objective = np.zeros(len(columns))
        objective[[index[c] for c in chosen]] = 1.0
        solve(objective)
        solve(-objective)
        out.extend(c for c in chosen if not is_open(c))
        pending = [[c for c in queue if not is_open(c)] for queue in pending]
    return sorted(out, key=repr)


def _propagated_bounds(
    matrix: object, constants: np.ndarray, bounds: Sequence[tuple[float, float | None]]
) -> tuple[np.ndarray, np.ndarray]:
    """Outer bounds of every column: each relation ``sum(a_k x_k) = c`` narrows each of its
    cells to what the others' bounds leave, repeated until nothing narrows (or 50 passes).
    Never narrower than the true range, so a range below 1 here is below 1 there."""
    low = np.array([b[0] for b in bounds], dtype=float)
    high = np.array([np.inf if b[1] is None else b[1] for b in bounds], dtype=float)
    rows = matrix.tocsr()  # type: ignore[attr-defined]
    for _ in range(50):
        changed = False
        for i in range(rows.shape[0]):
            cols = rows.indices[rows.indptr[i] : rows.indptr[i + 1]]
            coef = rows.data[rows.indptr[i] : rows.indptr[i + 1]]
            # The range of each term a_k x_k.
            lo_terms = np.where(coef > 0, coef * low[cols], coef * high[cols])
            hi_terms = np.where(coef > 0, coef * high[cols], coef * low[cols])
            lo_sum, hi_sum = lo_terms.sum(), hi_terms.sum()
            for j, (col, a) in enumerate(zip(cols, coef, strict=True)):
                # a x = c - (the others): between c - (hi_sum - hi_j) and c - (lo_sum - lo_j).
                rest_hi = (
                    hi_sum - hi_terms[j] if np.isfinite(hi_terms[j]) else _sum_without(hi_terms, j)
                )
                rest_lo = (
                    lo_sum - lo_terms[j] if np.isfinite(lo_terms[j]) else _sum_without(lo_terms, j)
                )
                ends = ((constants[i] - rest_hi) / a, (constants[i] - rest_lo) / a)
                new_low, new_high = min(ends), max(ends)
                if new_low > low[col] + 1e-9:
                    low[col], changed = new_low, True
                if new_high < high[col] - 1e-9:
                    high[col], changed = new_high, True
        if not changed:
            break
    return low, high


def _sum_without(terms: np.ndarray, j: int) -> float:
    return float(np.delete(terms, j).sum())


def _reader_bounds(system: _System, cell: CellId) -> tuple[float, float | None]:
    value = system.values[cell]
    if cell in system.virtual or cell in system.unmarked:
        return (0.0, None)
    if _sensitive(value):
        return (float(SMALL_COUNT_MIN), float(SMALL_COUNT_MAX))
    return (0.0, 0.0) if value == 0 else (float(SMALL_COUNT_MAX + 1), None)


def _components(
    system: _System, hidden: set[CellId]
) -> list[tuple[set[CellId], list[dict[CellId, int]]]]:
    """Hidden cells grouped by the relations that link them, with those relations."""
    parent: dict[CellId, CellId] = {c: c for c in hidden}

    def find(c: CellId) -> CellId:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    touching = []
    for relation in system.relations:
        inside = [c for c in relation if c in hidden]
        if not inside:
            continue
        touching.append((relation, inside))
        for c in inside[1:]:
            parent[find(c)] = find(inside[0])
    groups: dict[CellId, tuple[set[CellId], list[dict[CellId, int]]]] = {}
    for c in hidden:
        groups.setdefault(find(c), (set(), []))[0].add(c)
    for relation, inside in touching:
        groups[find(inside[0])][1].append(relation)
    return list(groups.values())


# -- the artifact ------------------------------------------------------------------------------


def protect_counts(
    counts: Mapping[CellId, object], totals: Iterable[tuple[CellId, Sequence[CellId]]] = ()
) -> dict[CellId, object]:
    """Counts published together as they may be shown: each one itself, ``<5`` (1-4) or
    ``masked`` (hidden so that none of 1-4 can be worked out), given the ``totals`` a reader
    knows (a total and its parts; what the parts leave of the total is an unpublished cell).
    Counts that are not numbers are returned as they are."""
    system = _System()
    for cell, value in counts.items():
        system.cell(cell, value, "counts", cell, "value")
    for i, (total, parts) in enumerate(totals):
        system.total_of(total, list(parts), ("_rest", i))
    hidden = suppress(system)
    out: dict[CellId, object] = {}
    for cell, value in counts.items():
        number = count_value(value)
        if number is not None and _sensitive(number) and cell not in system.unmarked:
            out[cell] = MASKED_COUNT
        elif cell in hidden:
            out[cell] = MASKED_VALUE
        else:
            out[cell] = value
    return out


def protect_tables(
    tables: Mapping[str, pd.DataFrame],
    *,
    rules: Mapping[str, MaskingRule] | None = None,
    windows: Sequence[str] = (),
) -> dict[str, pd.DataFrame]:
    """Copies of ``tables`` (published together) with primary and complementary suppression
    and every value resting on a hidden count masked.

    A table's rule is ``rules[name]``, else its entry in :data:`rxcohort.privacy.MASKING_RULES`,
    else the conservative per-row rule. ``windows``: the study's pre and post window names, which
    tie the report's ``window_ddd`` rows to the users of ``group_results``."""
    # Row labels are kept (a caller may look rows up by them) unless they repeat.
    frames = {
        name: frame if frame.index.is_unique else frame.reset_index(drop=True)
        for name, frame in tables.items()
    }
    system = _build(frames, dict(zip(windows, ("pre", "post"), strict=False)))
    hidden = suppress(system)
    out = {}
    for name, frame in frames.items():
        suppressed = pd.DataFrame(False, index=frame.index, columns=list(frame.columns))
        for cell in hidden:
            for table, row, column in system.places.get(cell, []):
                if table == name:
                    suppressed.loc[row, column] = True
        extra = _km_survival_after_hidden(frame, suppressed) if name == "km_curves" else None
        rule = (rules or {}).get(name) or MASKING_RULES.get(name)
        masked = mask_small_counts(
            frame, table=name, rule=rule, suppressed=suppressed, hidden=extra
        )
        for cell in system.unmarked:
            for table, row, column in system.places.get(cell, []):
                if table == name:
                    masked.loc[row, column] = MASKED_VALUE
        out[name] = masked
    return out


def _km_survival_after_hidden(frame: pd.DataFrame, suppressed: pd.DataFrame) -> pd.DataFrame:
    """Survival and its interval hidden from a stratum's first hidden or small count on."""
    columns = [c for c in ("survival", "ci_low", "ci_high") if c in frame.columns]
    hide = pd.DataFrame(False, index=frame.index, columns=columns)
    small = frame[["at_risk", "events"]].map(
        lambda v: (n := count_value(v)) is not None and _sensitive(n)
    )
    flagged = (suppressed[["at_risk", "events"]] | small).any(axis=1)
    for _, part in frame.groupby(["stratum_variable", "stratum"], sort=False):
        ordered = part.sort_values("time").index
        seen = flagged.loc[ordered].cummax()
        hide.loc[ordered, columns] = np.repeat(seen.to_numpy()[:, None], len(columns), axis=1)
    return hide
