"""A study in plain words: the methods paragraph ``rxcohort check`` prints.

No square brackets in the text: the CLI prints it through rich, which reads them as markup.
"""

from __future__ import annotations

import textwrap
from datetime import date

from rxcohort.study.models import (
    AgeRule,
    DrugRule,
    ReimbursementRule,
    SexRule,
    Study,
    Window,
)


def describe_study(study: Study, *, width: int | None = None) -> str:
    """Title, a methods paragraph and the analysis settings; wrapped at ``width`` if given.

    Unwrapped by default, so the terminal wraps it and a paragraph pastes as one line.
    """
    paragraphs = [
        f"{study.title} (study {study.study_id}, study file schema version {study.schema_version})",
    ]
    if study.reference:
        paragraphs.append(f"Design: {study.reference}.")
    paragraphs.append(" ".join(_methods(study)))
    paragraphs.append(" ".join(_outcomes(study)))
    paragraphs.append(" ".join(_analyses(study)))
    if width is not None:
        paragraphs = [textwrap.fill(p, width=width) for p in paragraphs]
    return "\n\n".join(paragraphs)


def _methods(study: Study) -> list[str]:
    drug = study.index_drug
    definition = f"ATC {_codes(drug.atc)}"
    bounds = drug.strength_mg
    if bounds is not None and (bounds.min is not None or bounds.max is not None):
        definition += ", " + _strength(bounds.min, bounds.max)
    period = study.index_period
    text = [
        f"The cohort consists of persons with a dispensing of {drug.name} ({definition}) "
        f"between {_date(period.start)} and {_date(period.end)}; the date of the first such "
        "dispensing is the index date. Returns and corrections (zero or negative packs) are "
        f"not counted as dispensings of {drug.name}."
    ]
    if study.new_users is not None:
        look_back = study.new_users.look_back_days
        span = (
            "at any time before the index date in the data"
            if look_back is None
            else f"in the {look_back} days before the index date"
        )
        text.append(
            f"To include new users only, persons with a dispensing of {drug.name} {span} were excluded."
        )
    if study.follow_up is not None:
        events = " or ".join(study.follow_up.events)
        text.append(
            f"Persons whose {events} was recorded before day {study.follow_up.days} after the "
            "index date were excluded, so that everyone included could be followed for the "
            "whole period."
        )
    for section, rule in study.rules:
        text.append(_rule_sentence(study, section, rule))
    if not study.exposure_groups_cover_all_counts():
        text.append(
            "Persons whose number of dispensings fell in none of the exposure groups were excluded."
        )
    groups = "; ".join(f"{g.label} ({g.describe()})" for g in study.exposure_groups)
    text.append(
        f"Persons were grouped by the number of dispensings of {drug.name} "
        f"{_window_words(study, study.exposure_window)}: {groups}."
    )
    text.append(
        "Age at index is the index year minus the birth year. Every criterion is applied in "
        "the order given; the attrition table counts the persons left after each."
    )
    return text


def _outcomes(study: Study) -> list[str]:
    groups = "; ".join(
        f"{name} (ATC {_codes(prefixes)})" for name, prefixes in study.drug_groups.items()
    )
    windows = "; ".join(f"{name}, {_days(w.start, w.end)}" for name, w in study.windows.items())
    return [
        f"Drug use was measured for each person in each drug group - {groups} - and in each "
        f"window - {windows}: the sum of defined daily doses (DDD; returns subtract, "
        "dispensings with unknown DDD add none and are counted separately), the number of "
        "dispensings, and whether the person had any (a user)."
    ]


def _analyses(study: Study) -> list[str]:
    stats = study.statistics
    text = [
        "Analyses: the mean paired change in DDD from pre to post with its 95% confidence "
        "interval in each exposure group"
    ]
    if stats.contrasts:
        pairs = ", ".join(f"{high} versus {low}" for high, low in stats.contrasts)
        text[0] += f"; the difference in differences of {pairs} (Welch's t)"
    text[0] += (
        f"; responders, persons whose DDD fell by at least {stats.responder_threshold:.0%}; "
        f"monthly DDD from {stats.trajectory.months_before} months before to "
        f"{stats.trajectory.months_after} months after the index month, with lags of "
        f"{_numbers(stats.trajectory.lag_months)} months."
    )
    if study.persistence.enabled:
        text.append(
            f"Persistence on {study.index_drug.name}: time on treatment, with treatment taken "
            f"to have stopped after a gap of more than {study.persistence.grace_days} days."
        )
    else:
        text.append("Persistence is not analysed.")
    text.append(_characterisation(study))
    span = study.use_over_time_period()
    if study.use_over_time is not None and span is not None:
        bands = ", ".join(study.use_over_time.band_labels())
        text.append(
            f"Use over calendar time: users of {study.index_drug.name} and of each drug group "
            f"per 1,000 inhabitants per year and month from {_date(span[0])} to "
            f"{_date(span[1])}, by sex and age band ({bands}); new users after "
            f"{study.use_over_time.look_back_days} days without the drug."
        )
    return text


def _characterisation(study: Study) -> str:
    section = study.characterisation
    start, end = study.window_days(section.window)
    parts = ["sex", "age", "use of each drug group"]
    conditions = study.characterisation_conditions()
    if conditions:
        named = "; ".join(f"{name.replace('_', ' ')} ({_codes(codes)})"
                          for name, codes in conditions.items())  # fmt: skip
        parts.append(f"reimbursement codes for {named}")
    if section.code_chapters:
        parts.append("each reimbursement code letter")
    if section.comedication_top:
        parts.append(f"the {section.comedication_top} ATC level-3 groups with the most users")
    return (
        f"Table 1: {', '.join(parts[:-1])} and {parts[-1]}, {_days(start, end)} (window "
        f"{section.window}), by exposure group, with standardised mean differences."
    )


def _rule_sentence(
    study: Study, section: str, rule: DrugRule | ReimbursementRule | AgeRule | SexRule
) -> str:
    verb = "required" if section == "inclusion" else "excluded persons with"
    if isinstance(rule, DrugRule):
        what = f"{_count(rule.min_count)} of {_drug_set(study, rule)} {_window_words(study, rule.window)}"
    elif isinstance(rule, ReimbursementRule):
        what = f"{_count(rule.min_count)}"
        if rule.drug_group is not None or rule.atc is not None:
            what += f" of {_drug_set(study, rule)}"
        what += f" with reimbursement code {_codes(rule.codes)} {_window_words(study, rule.window)}"
    elif isinstance(rule, AgeRule):
        if rule.min is not None and rule.max is not None:
            what = f"an age at index of {rule.min} to {rule.max} years"
        elif rule.min is not None:
            what = f"an age at index of {rule.min} years or more"
        else:
            what = f"an age at index of {rule.max} years or less"
    else:
        what = f"{rule.sex} sex"
    return f"Criterion {rule.name}: we {verb} {what}."


def _drug_set(study: Study, rule: DrugRule | ReimbursementRule) -> str:
    if rule.drug_group is not None:
        return f"{rule.drug_group} (ATC {_codes(study.drug_groups[rule.drug_group])})"
    return f"ATC {_codes(rule.atc or ())}"


def _count(n: int) -> str:
    return "at least one dispensing" if n == 1 else f"at least {n} dispensings"


def _window_words(study: Study, ref: str | Window) -> str:
    start, end = study.window_days(ref)
    name = f" (window {ref})" if isinstance(ref, str) else ""
    return f"{_days(start, end)}{name}"


def _days(start: int, end: int) -> str:
    if end == -1:
        return f"in the {-start} days before the index date"
    if end < 0:
        return f"from {-start} to {-end} days before the index date"
    if start == 0:
        return f"from the index date to day {end} after it"
    if start > 0:
        return f"from {start} to {end} days after the index date"
    return f"from {-start} days before to {end} days after the index date"


def _strength(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"strength {_num(low)} to {_num(high)} mg"
    if high is not None:
        return f"strength at most {_num(high)} mg"
    return f"strength at least {_num(low or 0)} mg"


def _codes(codes: tuple[str, ...] | list[str]) -> str:
    return ", ".join(codes)


def _numbers(values: tuple[int, ...]) -> str:
    if len(values) > 2 and list(values) == list(range(values[0], values[-1] + 1)):
        return f"{values[0]} to {values[-1]}"
    return ", ".join(str(v) for v in values)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _date(value: date) -> str:
    return f"{value.day} {value.strftime('%B')} {value.year}"
