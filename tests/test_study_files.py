"""Study files: the three shipped studies, defaults, one test per kind of mistake, ``rxcohort check``.

None of these start Spark: a wrong study file must fail before Spark does.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import pytest

from rxcohort.errors import ConfigError
from rxcohort.study import describe_study, load_study, parse_study
from rxcohort.study.models import Window

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "cohorts" / "ldn_opioids_2013.yaml"
BASE = REFERENCE.read_text(encoding="utf-8")


def parse(text: str, study_id: str = "x"):
    return parse_study(text, study_id=study_id, source="cohorts/x.yaml").study


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as raised:
        parse(text)
    return str(raised.value)


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, f"the edit target must occur once: {old!r}"
    return text.replace(old, new)


# -- the shipped studies ----------------------------------------------------------------------


def test_reference_study_encodes_contract_section_5():
    study = load_study(REFERENCE)
    assert study.study_id == "ldn_opioids_2013"
    # Rule 1.
    assert study.index_drug.atc == ("N07BB04",)
    assert (study.index_drug.strength_mg.min, study.index_drug.strength_mg.max) == (None, 5.0)
    # Rule 2.
    assert (study.index_period.start, study.index_period.end) == (
        date(2013, 1, 1),
        date(2013, 12, 31),
    )
    # Rule 3: the whole delivery is the look-back.
    assert study.new_users is not None and study.new_users.look_back_days is None
    # Rule 4.
    assert study.follow_up is not None
    assert (study.follow_up.days, study.follow_up.events) == (364, ("death", "emigration"))
    # Rule 5.
    (rule,) = study.inclusion
    assert (rule.kind, rule.drug_group, rule.window, rule.min_count) == (
        "drug",
        "opioids",
        "pre",
        1,
    )
    assert study.exclusion == ()
    # Rule 6.
    assert study.exposure_window == "post"
    assert [(g.label, g.min, g.max) for g in study.exposure_groups] == [
        ("ldn_1", 1, 1),
        ("ldn_2_3", 2, 3),
        ("ldn_4plus", 4, None),
    ]
    # Rule 7.
    assert {k: w.days for k, w in study.windows.items()} == {"pre": (-365, -1), "post": (0, 364)}
    # Rule 9.
    assert study.drug_groups == {
        "opioids": ("N02A",),
        "nsaids": ("M01A",),
        "other_analgesics": ("N02B",),
    }
    # Rule 12 and the sections other steps read.
    assert study.statistics.contrasts == (("ldn_4plus", "ldn_1"),)
    assert study.statistics.contrast_names == ("ldn_4plus_vs_ldn_1",)
    assert study.statistics.responder_threshold == 0.30
    trajectory = study.statistics.trajectory
    assert (trajectory.months_before, trajectory.months_after, trajectory.lag_months) == (
        12,
        12,
        (0, 1, 2, 3),
    )
    assert (study.persistence.enabled, study.persistence.grace_days) == (True, 30)
    assert study.exposure_groups_cover_all_counts()


def _core(study) -> dict:
    data = study.model_dump()
    for key in ("study_id", "title", "description", "reference"):
        data.pop(key)
    return data


def test_psychotropics_study_differs_only_in_drug_groups_and_prior_use():
    reference = _core(load_study(REFERENCE))
    study = load_study(REPO / "cohorts" / "ldn_psychotropics_2013.yaml")
    assert study.drug_groups == {
        "antiepileptics": ("N03A",),
        "antipsychotics": ("N05A",),
        "anxiolytics": ("N05B",),
        "hypnotics": ("N05C",),
        "antidepressants": ("N06A",),
    }
    assert {**_core(study), "drug_groups": None, "inclusion": None} == {
        **reference,
        "drug_groups": None,
        "inclusion": None,
    }
    assert study.inclusion == ()


def test_utilisation_study_takes_every_ldn_user_in_2013_and_2014():
    reference = _core(load_study(REFERENCE))
    study = load_study(REPO / "cohorts" / "ldn_utilisation_2013_2014.yaml")
    assert (study.index_period.start, study.index_period.end) == (
        date(2013, 1, 1),
        date(2014, 12, 31),
    )
    assert study.new_users is None and study.follow_up is None and study.inclusion == ()
    assert study.use_over_time is not None
    assert study.use_over_time_period() == (date(2013, 1, 1), date(2014, 12, 31))
    changed = ("index_period", "new_users", "follow_up", "inclusion", "use_over_time")
    assert {k: v for k, v in _core(study).items() if k not in changed} == {
        k: v for k, v in reference.items() if k not in changed
    }


def test_statistics_and_persistence_have_defaults():
    text = BASE.split("# Read by the statistics step")[0]
    study = parse(text)
    assert study.statistics.contrasts == (("ldn_4plus", "ldn_1"),)  # highest vs lowest group
    assert study.statistics.responder_threshold == 0.30
    assert study.statistics.trajectory.lag_months == (0, 1, 2, 3)
    assert (study.persistence.enabled, study.persistence.grace_days) == (True, 30)


def test_exposure_coverage_depends_on_the_bins_and_the_window():
    gap = parse(edit("  - {label: ldn_2_3, min: 2, max: 3}\n", ""))
    assert not gap.exposure_groups_cover_all_counts()
    capped = parse(edit("{label: ldn_4plus, min: 4}", "{label: ldn_4plus, min: 4, max: 10}"))
    assert not capped.exposure_groups_cover_all_counts()
    # A window without the index day can count 0 dispensings, which ldn_1 (from 1) leaves out.
    later = parse(edit("exposure_window: post", "exposure_window: {start: 1, end: 364}"))
    assert later.exposure_window == Window(start=1, end=364)
    assert not later.exposure_groups_cover_all_counts()


def test_study_id_is_the_file_name(tmp_path):
    path = tmp_path / "my_study.yaml"
    path.write_text(BASE, encoding="utf-8")
    assert load_study(path).study_id == "my_study"
    path.write_text("study_id: other\n" + BASE, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"study_id: 'other' differs from the file name"):
        load_study(path)


# -- one test per kind of mistake -------------------------------------------------------------

MISTAKES = {
    "unknown drug group": (
        edit("drug_group: opioids", "drug_group: opiods"),
        "cohorts/x.yaml: inclusion[0].drug_group: unknown drug group 'opiods' (defined: opioids, "
        "nsaids, other_analgesics)",
    ),
    "overlapping bins": (
        edit("{label: ldn_2_3, min: 2, max: 3}", "{label: ldn_2_3, min: 1, max: 3}"),
        "cohorts/x.yaml: exposure_groups[1].min: overlaps ldn_1",
    ),
    "bins out of order": (
        edit("{label: ldn_4plus, min: 4}", "{label: ldn_4plus, min: 0, max: 0}"),
        "cohorts/x.yaml: exposure_groups[2].min: groups must be listed from the lowest count up "
        "(ldn_4plus starts below ldn_2_3)",
    ),
    "bin max below min": (
        edit("{label: ldn_2_3, min: 2, max: 3}", "{label: ldn_2_3, min: 3, max: 2}"),
        "cohorts/x.yaml: exposure_groups[1].max: is below min (2 < 3)",
    ),
    "duplicate bin label": (
        edit("{label: ldn_4plus, min: 4}", "{label: ldn_1, min: 4}"),
        "cohorts/x.yaml: exposure_groups[2].label: 'ldn_1' is already exposure_groups[0]",
    ),
    "window end before start": (
        edit("pre: {start: -365, end: -1}", "pre: {start: -1, end: -365}"),
        "cohorts/x.yaml: windows.pre.end: ends before its start (-365 < -1)",
    ),
    "inline window end before start": (
        edit("    window: pre\n", "    window: {start: 3, end: 1}\n"),
        "cohorts/x.yaml: inclusion[0].window.end: ends before its start (1 < 3)",
    ),
    "window of the wrong type": (
        edit("    window: pre\n", "    window: 5\n"),
        "cohorts/x.yaml: inclusion[0].window: should be a window name or {start: <day>, end: <day>}",
    ),
    "unknown window": (
        edit("    window: pre\n", "    window: pree\n"),
        "cohorts/x.yaml: inclusion[0].window: unknown window 'pree' (defined: pre, post)",
    ),
    "missing pre window": (
        edit("  pre: {start: -365, end: -1}\n", ""),
        "cohorts/x.yaml: windows: needs a 'pre' window (the before/after comparison)",
    ),
    "bad ATC prefix": (
        edit("opioids: [N02A]", "opioids: [N2A]"),
        "cohorts/x.yaml: drug_groups.opioids[0]: 'N2A' is not an ATC code or prefix (one of the "
        "levels N, N02, N02A, N02AA, N02AA01)",
    ),
    "lower-case ATC code": (
        edit("atc: [N07BB04]", "atc: [n07bb04]"),
        "cohorts/x.yaml: index_drug.atc[0]: 'n07bb04' is not an ATC code or prefix (one of the "
        "levels N, N02, N02A, N02AA, N02AA01)",
    ),
    "bad name": (
        edit("  nsaids: [M01A]", "  NSAIDs: [M01A]"),
        "cohorts/x.yaml: drug_groups.NSAIDs: 'NSAIDs' is not a valid name (lower-case letters, "
        "digits and _, starting with a letter)",
    ),
    "unknown key": (
        edit("    min_count: 1\n", "    min_count: 1\n    windw: pre\n"),
        "cohorts/x.yaml: inclusion[0].windw: unknown key (did you mean 'window'?)",
    ),
    "unknown top-level key": (
        BASE + "\ncohort_name: x\n",
        "cohorts/x.yaml: cohort_name: unknown key",
    ),
    "key given twice": (
        BASE + "\ntitle: again\n",
        f"cohorts/x.yaml: line {BASE.count(chr(10)) + 2}: key 'title' appears twice",
    ),
    "unknown rule kind": (
        edit("kind: drug", "kind: drugs"),
        "cohorts/x.yaml: inclusion[0].kind: unknown kind 'drugs' (one of drug, reimbursement, age, sex)",
    ),
    "rule without kind": (
        edit("    kind: drug\n", ""),
        "cohorts/x.yaml: inclusion[0]: needs a kind (one of drug, reimbursement, age, sex)",
    ),
    "drug rule with two drug sets": (
        edit("    drug_group: opioids\n", "    drug_group: opioids\n    atc: [N02A]\n"),
        "cohorts/x.yaml: inclusion[0]: give either drug_group or atc, not both",
    ),
    "drug rule without drug set": (
        edit("    drug_group: opioids\n", ""),
        "cohorts/x.yaml: inclusion[0]: needs drug_group (a name from drug_groups) or atc",
    ),
    "rule name used twice": (
        edit(
            "exclusion: []",
            "exclusion:\n  - {name: prior_opioid_use, kind: sex, sex: male}",
        ),
        "cohorts/x.yaml: exclusion[0].name: 'prior_opioid_use' is already used by inclusion[0]",
    ),
    "age rule without bounds": (
        edit("exclusion: []", "exclusion:\n  - {name: age, kind: age}"),
        "cohorts/x.yaml: exclusion[0]: an age rule needs min, max or both",
    ),
    "unknown sex": (
        edit("exclusion: []", "exclusion:\n  - {name: men, kind: sex, sex: m}"),
        "cohorts/x.yaml: exclusion[0].sex: Input should be 'male' or 'female', got 'm'",
    ),
    "bad reimbursement code": (
        edit(
            "exclusion: []",
            "exclusion:\n  - {name: ra, kind: reimbursement, codes: [l88], window: pre}",
        ),
        "cohorts/x.yaml: exclusion[0].codes[0]: 'l88' is not an ICPC-2 or ICD-10 code or prefix "
        "(e.g. L88, M05)",
    ),
    "unsupported schema version": (
        edit("schema_version: 1", "schema_version: 2"),
        "cohorts/x.yaml: schema_version: this rxcohort reads schema_version 1, not 2",
    ),
    "required section missing": (
        edit("new_users: {look_back_days: null}\n", ""),
        "cohorts/x.yaml: new_users: is required",
    ),
    "index period end before start": (
        edit("{start: 2013-01-01, end: 2013-12-31}", "{start: 2013-01-01, end: 2012-12-31}"),
        "cohorts/x.yaml: index_period.end: ends before its start (2012-12-31 < 2013-01-01)",
    ),
    "strength not a number": (
        edit("{max: 5}", "{max: five}"),
        "cohorts/x.yaml: index_drug.strength_mg.max: Input should be a valid number, unable to "
        "parse string as a number, got 'five'",
    ),
    "unknown contrast group": (
        edit("[[ldn_4plus, ldn_1]]", "[[ldn_4plus, ldn_0]]"),
        "cohorts/x.yaml: statistics.contrasts[0][1]: unknown exposure group 'ldn_0' (defined: "
        "ldn_1, ldn_2_3, ldn_4plus)",
    ),
    "contrast of a group with itself": (
        edit("[[ldn_4plus, ldn_1]]", "[[ldn_1, ldn_1]]"),
        "cohorts/x.yaml: statistics.contrasts[0]: compares ldn_1 with itself",
    ),
    "lag beyond follow-up": (
        edit("lag_months: [0, 1, 2, 3]", "lag_months: [0, 13]"),
        "cohorts/x.yaml: statistics.trajectory.lag_months[1]: 13 is beyond months_after (12)",
    ),
    "responder threshold out of range": (
        edit("responder_threshold: 0.30", "responder_threshold: 30"),
        "cohorts/x.yaml: statistics.responder_threshold: Input should be less than 1, got 30",
    ),
    "not YAML": (
        edit("windows:\n", "windows:\n  - x\n  y: [\n"),
        "cohorts/x.yaml: line 32: expected <block end>, but found '?'",
    ),
    "not a mapping": (
        "- just\n- a list\n",
        "cohorts/x.yaml: expected a mapping of study settings at the top level",
    ),
    "impossible date": (
        edit("{start: 2013-01-01, end: 2013-12-31}", "{start: 2013-01-01, end: 2013-13-31}"),
        "cohorts/x.yaml: index_period.end: Input should be a valid date or datetime, month value "
        "is outside expected range of 1-12, got '2013-13-31'",
    ),
    "misspelt required key: the misspelling first, then what is missing": (
        edit("windows:\n", "windws:\n"),
        "cohorts/x.yaml: 2 problems: windws: unknown key (did you mean 'windows'?); windows: is "
        "required",
    ),
    "every problem at once": (
        edit(
            "opioids: [N02A]",
            "opioids: [N2A]",
            edit("schema_version: 1", "schema_version: 2", edit("title:", "titel:")),
        ),
        "cohorts/x.yaml: 4 problems: titel: unknown key (did you mean 'title'?); schema_version: "
        "this rxcohort reads schema_version 1, not 2; title: is required; drug_groups.opioids[0]: "
        "'N2A' is not an ATC code or prefix (one of the levels N, N02, N02A, N02AA, N02AA01)",
    ),
}


@pytest.mark.parametrize("kind", list(MISTAKES))
def test_a_wrong_study_file_names_the_field_and_why(kind):
    text, message = MISTAKES[kind]
    assert error_of(text) == message


def test_study_file_paths_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.yaml: no such study file"):
        load_study(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"study\.yml\.txt: a study file must end in \.yaml"):
        load_study(tmp_path / "study.yml.txt")
    bad_name = tmp_path / "LDN-2013.yaml"
    bad_name.write_text(BASE, encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"LDN-2013\.yaml: study_id: 'LDN-2013' is not a valid name"
    ):
        load_study(bad_name)


# -- describe and `rxcohort check` ------------------------------------------------------------


def test_describe_study_reads_as_a_methods_paragraph():
    text = describe_study(load_study(REFERENCE))
    for phrase in [
        "Low-dose naltrexone and opioid use (study ldn_opioids_2013, study file schema version 1)",
        "persons with a dispensing of LDN (ATC N07BB04, strength at most 5 mg) between "
        "1 January 2013 and 31 December 2013",
        "persons with a dispensing of LDN at any time before the index date in the data were excluded",
        "whose death or emigration was recorded before day 364 after the index date were excluded",
        "Criterion prior_opioid_use: we required at least one dispensing of opioids (ATC N02A) "
        "in the 365 days before the index date (window pre).",
        "ldn_1 (1); ldn_2_3 (2 to 3); ldn_4plus (4 or more)",
        "Age at index is the index year minus the birth year.",
        "opioids (ATC N02A); nsaids (ATC M01A); other_analgesics (ATC N02B)",
        "the difference in differences of ldn_4plus versus ldn_1",
        "at least 30%",
        "a gap of more than 30 days",
    ]:
        assert phrase in text, phrase
    # rich (the CLI's printer) would swallow [bracketed] words as markup.
    assert "[" not in text and "]" not in text


def test_describe_study_says_what_the_utilisation_study_leaves_out():
    text = describe_study(load_study(REPO / "cohorts" / "ldn_utilisation_2013_2014.yaml"))
    assert "between 1 January 2013 and 31 December 2014" in text
    cohort = text.split("Analyses:")[0]
    assert "new users" not in cohort and "followed for the whole period" not in cohort
    assert "Use over calendar time: users of LDN and of each drug group per 1,000" in text


def test_rxcohort_check_prints_the_study_and_fails_on_a_bad_file(tmp_path, monkeypatch, capsys):
    from rxcohort import cli

    monkeypatch.setattr(sys, "argv", ["rxcohort", "check", str(REFERENCE)])
    cli.main()  # returns normally: exit status 0
    assert "Criterion prior_opioid_use" in " ".join(capsys.readouterr().out.split())

    bad = tmp_path / "bad.yaml"
    bad.write_text(edit("drug_group: opioids", "drug_group: opiods"), encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["rxcohort", "check", str(bad)])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert (
        err == f"rxcohort: {bad}: inclusion[0].drug_group: unknown drug group 'opiods' "
        "(defined: opioids, nsaids, other_analgesics)\n"
    )
