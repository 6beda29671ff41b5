"""A study definition (``cohorts/*.yaml``) as frozen, validated pydantic models.

Every check that can be made without data is made here, so a wrong study file fails before
Spark starts. Cross-field checks raise ``ValueError("<field path>: <reason>")`` from the
top-level model; :mod:`rxcohort.study.loader` turns any validation error into one
:class:`~rxcohort.errors.ConfigError` line naming the file and the field.

Day numbers are calendar days relative to the index date (day 0); a window ``{start: -365,
end: -1}`` is the 365 days before the index date, both ends included.
"""

from __future__ import annotations

import re
from datetime import date
from itertools import pairwise
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

SCHEMA_VERSION = 1

# Names become values in output tables (drug_group, window, exposure_group) and SQL
# identifiers (``<study_id>.cohort``), so they are kept to lower-case identifiers.
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# WHO ATC levels: anatomical (N), therapeutic (N02), pharmacological (N02A), chemical (N02AA),
# substance (N02AA01). A prefix is any one of these levels.
_ATC_RE = re.compile(r"^[A-Z](\d{2}([A-Z]([A-Z](\d{2})?)?)?)?$")
# ICPC-2 (L88) and ICD-10 (M05, M05.3, K50) codes as NorPD records them on reimbursed items.
_REIMBURSEMENT_RE = re.compile(r"^[A-Z][0-9A-Z.]{0,7}$")

REQUIRED_WINDOWS = ("pre", "post")


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name (lower-case letters, digits and _, starting with a letter)"
        )
    return value


def _check_atc(value: str) -> str:
    if not _ATC_RE.match(value):
        raise ValueError(
            f"{value!r} is not an ATC code or prefix (one of the levels N, N02, N02A, N02AA, N02AA01)"
        )
    return value


def _check_reimbursement_code(value: str) -> str:
    if not _REIMBURSEMENT_RE.match(value):
        raise ValueError(f"{value!r} is not an ICPC-2 or ICD-10 code or prefix (e.g. L88, M05)")
    return value


Name = Annotated[str, AfterValidator(_check_name)]
AtcPrefix = Annotated[str, AfterValidator(_check_atc)]
ReimbursementCode = Annotated[str, AfterValidator(_check_reimbursement_code)]
AtcPrefixes = Annotated[tuple[AtcPrefix, ...], Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


_Day = TypeVar("_Day", int, date)


def _end_not_before_start(value: _Day, info: ValidationInfo) -> _Day:
    start = info.data.get("start")
    if start is not None and value < start:
        raise ValueError(f"ends before its start ({value} < {start})")
    return value


# The ``end`` of a window or a period: on or after its ``start``.
EndDay = Annotated[int, AfterValidator(_end_not_before_start)]
EndDate = Annotated[date, AfterValidator(_end_not_before_start)]

_Bound = TypeVar("_Bound", int, float)


def _max_not_below_min(value: _Bound | None, info: ValidationInfo) -> _Bound | None:
    low = info.data.get("min")
    if value is not None and low is not None and value < low:
        raise ValueError(f"is below min ({value} < {low})")
    return value


# The ``max`` of a range (null: no upper bound): not below its ``min``.
MaxInt = Annotated[int | None, AfterValidator(_max_not_below_min)]
MaxFloat = Annotated[float | None, AfterValidator(_max_not_below_min)]


class Window(_Model):
    """Days ``start`` to ``end`` relative to the index date, both included."""

    start: int
    end: EndDay

    @property
    def days(self) -> tuple[int, int]:
        return (self.start, self.end)


def _window_ref_tag(value: object) -> str | None:
    if isinstance(value, str):
        return "__named"
    return "__inline" if isinstance(value, dict | Window) else None


# A window is named (a key of ``windows``) or written inline as {start, end}. The tags keep
# error locations readable (the loader drops them).
WindowRef = Annotated[
    Annotated[Name, Tag("__named")] | Annotated[Window, Tag("__inline")],
    Discriminator(
        _window_ref_tag,
        custom_error_type="window_ref",
        custom_error_message="should be a window name or {start: <day>, end: <day>}",
    ),
]


class StrengthBounds(_Model):
    """Strength per unit in mg, both bounds included; a dispensing without strength never matches."""

    min: float | None = Field(default=None, ge=0)
    max: MaxFloat = Field(default=None, gt=0)


class IndexDrug(_Model):
    """The drug whose first dispensing in the index period defines the index date."""

    name: str = Field(min_length=1)
    atc: AtcPrefixes
    strength_mg: StrengthBounds | None = None


class Period(_Model):
    start: date
    end: EndDate


class NewUsers(_Model):
    """No index-drug dispensing before the index date, within ``look_back_days`` (null: all data)."""

    look_back_days: int | None = Field(default=None, ge=1)


class FollowUp(_Model):
    """Exclude persons with one of ``events`` before index + ``days``."""

    days: int = Field(default=364, ge=0)
    events: tuple[Literal["death", "emigration"], ...] = Field(
        default=("death", "emigration"), min_length=1
    )

    @field_validator("events")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("lists an event twice")
        return value


class _DrugSet(_Model):
    """A drug set given either by a named drug group or by ATC prefixes."""

    drug_group: Name | None = None
    atc: AtcPrefixes | None = None


class DrugRule(_DrugSet):
    """At least ``min_count`` dispensings (packs > 0) of a drug set in a window."""

    kind: Literal["drug"]
    name: Name
    window: WindowRef
    min_count: int = Field(default=1, ge=1)


class ReimbursementRule(_DrugSet):
    """At least ``min_count`` dispensings (packs > 0) with a reimbursement code in a window.

    Codes are prefixes (``M05`` matches ``M05.3``); an optional drug set narrows the dispensings.
    """

    kind: Literal["reimbursement"]
    name: Name
    codes: Annotated[tuple[ReimbursementCode, ...], Field(min_length=1)]
    window: WindowRef
    min_count: int = Field(default=1, ge=1)


class AgeRule(_Model):
    """Age at index (index year minus birth year) from ``min`` to ``max`` years, both included."""

    kind: Literal["age"]
    name: Name
    min: int | None = Field(default=None, ge=0)
    max: MaxInt = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _some_bound(self) -> AgeRule:
        if self.min is None and self.max is None:
            raise ValueError("an age rule needs min, max or both")
        return self


class SexRule(_Model):
    """Sex as recorded in the person table (1 = male, 2 = female)."""

    kind: Literal["sex"]
    name: Name
    sex: Literal["male", "female"]


Rule = Annotated[DrugRule | ReimbursementRule | AgeRule | SexRule, Field(discriminator="kind")]
RULE_KINDS = ("drug", "reimbursement", "age", "sex")


class ExposureGroup(_Model):
    """Persons with ``min`` to ``max`` (null: no upper bound) index-drug dispensings."""

    label: Name
    min: int = Field(ge=0)
    max: MaxInt = Field(default=None, ge=0)

    def describe(self) -> str:
        if self.max is None:
            return f"{self.min} or more"
        if self.max == self.min:
            return str(self.min)
        return f"{self.min} to {self.max}"


class Trajectory(_Model):
    """Monthly DDD from ``months_before`` the index month to ``months_after``; lags to test."""

    months_before: int = Field(default=12, ge=1)
    months_after: int = Field(default=12, ge=1)
    lag_months: tuple[Annotated[int, Field(ge=0)], ...] = (0, 1, 2, 3)


class Statistics(_Model):
    """Read by the statistics step (group results, difference in differences, responders)."""

    # Each contrast is [high, low]; null means [highest exposure group, lowest exposure group].
    contrasts: tuple[tuple[Name, Name], ...] | None = None
    responder_threshold: float = Field(default=0.30, gt=0, lt=1)
    trajectory: Trajectory = Field(default_factory=Trajectory)

    @property
    def contrast_names(self) -> tuple[str, ...]:
        return tuple(f"{high}_vs_{low}" for high, low in self.contrasts or ())


class Persistence(_Model):
    """Read by the persistence step (time on the index drug)."""

    enabled: bool = True
    grace_days: int = Field(default=30, ge=0)


class UseOverTime(_Model):
    """Use of the index drug and the drug groups per calendar year and month, per 1,000 of the
    population alive and resident at mid-period (the ``use_over_time`` table).

    ``start``/``end`` default to the index period; a person is a new user in a period holding
    their first dispensing of the drug in the data, counted only where ``look_back_days`` of
    data precede the period's start. ``age_bands`` are the bands' lower bounds, in years.
    """

    start: date | None = None
    end: date | None = None
    look_back_days: int = Field(default=365, ge=0)
    age_bands: tuple[Annotated[int, Field(ge=0)], ...] = (0, 18, 45, 65, 80)

    @field_validator("age_bands")
    @classmethod
    def _increasing(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or value[0] != 0:
            raise ValueError("the first age band must start at 0 (every age in some band)")
        if any(b <= a for a, b in pairwise(value)):
            raise ValueError("age band bounds must increase")
        return value

    def band_labels(self) -> tuple[str, ...]:
        bounds = self.age_bands
        labels = [f"{a}-{b - 1}" for a, b in pairwise(bounds)]
        return (*labels, f"{bounds[-1]}+")


class Characterisation(_Model):
    """Table 1 (the ``characteristics`` and ``characteristics_smd`` tables): what the persons
    had in ``window`` (a name from ``windows``, whose DDD the consumption table holds too;
    default ``pre``).

    ``conditions`` name reimbursement codes (prefixes) to mark, beside the study's own
    reimbursement criteria; ``code_chapters`` adds a marker per code letter;
    ``comedication_top`` is how many ATC level-3 groups (most users first) to show.
    """

    window: Name = "pre"
    conditions: dict[Name, Annotated[tuple[ReimbursementCode, ...], Field(min_length=1)]] = Field(
        default_factory=dict
    )
    code_chapters: bool = True
    comedication_top: int = Field(default=10, ge=0, le=100)


class Study(_Model):
    """One study file. ``study_id`` is the file name without ``.yaml``."""

    schema_version: int
    study_id: Name
    title: str = Field(min_length=1)
    description: str | None = None
    reference: str | None = None
    index_drug: IndexDrug
    index_period: Period
    new_users: NewUsers | None
    follow_up: FollowUp | None
    windows: dict[Name, Window]
    drug_groups: Annotated[dict[Name, AtcPrefixes], Field(min_length=1)]
    inclusion: tuple[Rule, ...] = ()
    exclusion: tuple[Rule, ...] = ()
    exposure_window: WindowRef
    exposure_groups: Annotated[tuple[ExposureGroup, ...], Field(min_length=1)]
    statistics: Statistics = Field(default_factory=Statistics)
    persistence: Persistence = Field(default_factory=Persistence)
    use_over_time: UseOverTime | None = None
    characterisation: Characterisation = Field(default_factory=Characterisation)

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"this rxcohort reads schema_version {SCHEMA_VERSION}, not {value}")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Study:
        self._check_windows()
        self._check_rules()
        self._check_exposure_groups()
        self._check_use_over_time()
        self._check_window_ref(self.characterisation.window, "characterisation.window")
        return self._check_statistics()

    # -- cross-field checks; each message starts with the field path ---------------------------

    def _check_windows(self) -> None:
        missing = [w for w in REQUIRED_WINDOWS if w not in self.windows]
        if missing:
            raise ValueError(
                f"windows: needs a {' and a '.join(repr(w) for w in missing)} window "
                "(the before/after comparison)"
            )
        self._check_window_ref(self.exposure_window, "exposure_window")

    def _check_window_ref(self, ref: str | Window, where: str) -> None:
        if isinstance(ref, str) and ref not in self.windows:
            raise ValueError(
                f"{where}: unknown window {ref!r} (defined: {', '.join(self.windows)})"
            )

    def _check_rules(self) -> None:
        seen: dict[str, str] = {}
        for section in ("inclusion", "exclusion"):
            for i, rule in enumerate(getattr(self, section)):
                where = f"{section}[{i}]"
                if rule.name in seen:
                    raise ValueError(
                        f"{where}.name: {rule.name!r} is already used by {seen[rule.name]}"
                    )
                seen[rule.name] = where
                if isinstance(rule, DrugRule | ReimbursementRule):
                    self._check_window_ref(rule.window, f"{where}.window")
                    self._check_drug_set(rule, where, required=isinstance(rule, DrugRule))

    def _check_drug_set(self, rule: _DrugSet, where: str, *, required: bool) -> None:
        if rule.drug_group is not None and rule.atc is not None:
            raise ValueError(f"{where}: give either drug_group or atc, not both")
        if required and rule.drug_group is None and rule.atc is None:
            raise ValueError(f"{where}: needs drug_group (a name from drug_groups) or atc")
        if rule.drug_group is not None and rule.drug_group not in self.drug_groups:
            raise ValueError(
                f"{where}.drug_group: unknown drug group {rule.drug_group!r} "
                f"(defined: {', '.join(self.drug_groups)})"
            )

    def _check_exposure_groups(self) -> None:
        labels: dict[str, int] = {}
        previous: ExposureGroup | None = None
        for i, group in enumerate(self.exposure_groups):
            if group.label in labels:
                raise ValueError(
                    f"exposure_groups[{i}].label: {group.label!r} is already exposure_groups"
                    f"[{labels[group.label]}]"
                )
            labels[group.label] = i
            if previous is not None:
                if group.min < previous.min:
                    raise ValueError(
                        f"exposure_groups[{i}].min: groups must be listed from the lowest count "
                        f"up ({group.label} starts below {previous.label})"
                    )
                if previous.max is None or group.min <= previous.max:
                    raise ValueError(f"exposure_groups[{i}].min: overlaps {previous.label}")
            previous = group

    def _check_use_over_time(self) -> None:
        span = self.use_over_time_period()
        if span is not None and span[1] < span[0]:
            raise ValueError(f"use_over_time.end: {span[1]} is before the start, {span[0]}")

    def _check_statistics(self) -> Study:
        stats = self.statistics
        labels = [g.label for g in self.exposure_groups]
        for i, lag in enumerate(stats.trajectory.lag_months):
            if lag > stats.trajectory.months_after:
                raise ValueError(
                    f"statistics.trajectory.lag_months[{i}]: {lag} is beyond months_after "
                    f"({stats.trajectory.months_after})"
                )
        if stats.contrasts is None:
            default = ((labels[-1], labels[0]),) if len(labels) > 1 else ()
            return self.model_copy(
                update={"statistics": stats.model_copy(update={"contrasts": default})}
            )
        for i, pair in enumerate(stats.contrasts):
            for j, label in enumerate(pair):
                if label not in labels:
                    raise ValueError(
                        f"statistics.contrasts[{i}][{j}]: unknown exposure group {label!r} "
                        f"(defined: {', '.join(labels)})"
                    )
            if pair[0] == pair[1]:
                raise ValueError(f"statistics.contrasts[{i}]: compares {pair[0]} with itself")
        return self

    # -- derived values the pipeline needs ------------------------------------------------------

    @property
    def rules(self) -> tuple[tuple[str, Rule], ...]:
        """Inclusion then exclusion rules, in file order, as (section, rule)."""
        return tuple(("inclusion", r) for r in self.inclusion) + tuple(
            ("exclusion", r) for r in self.exclusion
        )

    def window_days(self, ref: str | Window) -> tuple[int, int]:
        return self.windows[ref].days if isinstance(ref, str) else ref.days

    def characterisation_conditions(self) -> dict[str, tuple[str, ...]]:
        """The conditions Table 1 marks: the reimbursement criteria's, then the named ones."""
        out = {r.name: r.codes for _, r in self.rules if isinstance(r, ReimbursementRule)}
        out.update(self.characterisation.conditions)
        return out

    def rule_atc(self, rule: DrugRule | ReimbursementRule) -> tuple[str, ...] | None:
        if rule.drug_group is not None:
            return self.drug_groups[rule.drug_group]
        return rule.atc

    def exposure_groups_cover_all_counts(self) -> bool:
        """True when every possible dispensing count falls in some exposure group.

        When the exposure window contains day 0 the index dispensing itself is counted, so
        the lowest possible count is 1; otherwise it is 0.
        """
        start, end = self.window_days(self.exposure_window)
        lowest = 1 if start <= 0 <= end else 0
        groups = self.exposure_groups
        if groups[0].min > lowest or groups[-1].max is not None:
            return False
        return all(a.max is not None and b.min == a.max + 1 for a, b in pairwise(groups))

    def use_over_time_period(self) -> tuple[date, date] | None:
        """First and last day of the calendar periods of ``use_over_time`` (None without it)."""
        section = self.use_over_time
        if section is None:
            return None
        return (section.start or self.index_period.start, section.end or self.index_period.end)

    def day_span(self) -> tuple[int, int]:
        """Earliest start and latest end over every window the study looks at."""
        days = [w.days for w in self.windows.values()]
        days.append(self.window_days(self.exposure_window))
        for _, rule in self.rules:
            if isinstance(rule, DrugRule | ReimbursementRule):
                days.append(self.window_days(rule.window))
        return (min(0, *(s for s, _ in days)), max(0, *(e for _, e in days)))
