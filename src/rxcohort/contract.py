"""The table contract: every table rxcohort writes, its columns declared once, in one style.

A column is one line ``"name kind"``: ``kind`` is ``str``, ``long`` (a count, never null in
pandas), ``long?`` (a count that may be undefined), ``int``, ``double``, ``bool``, ``date``,
``timestamp`` or ``map<str,long>``; a trailing ``!`` means never null in the Delta table.
A third word gives the column's role in disclosure control: ``count`` (a count of persons:
a value of 1-4 is masked) or ``key`` (a label of the row, never masked).

From these declarations come the Spark schemas (:meth:`TableSpec.schema`, via :func:`table_spec`), the pandas dtypes
(``rxcohort.stats.frames``), the column orders the transforms select and the exports write
(:meth:`TableSpec.names`), and the count and key columns of the masking rules
(``rxcohort.privacy``, which adds what each count's masking hides beside it).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql.types import (
    BooleanType,
    DataType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from rxcohort.errors import ParameterError

_SPARK_TYPES: dict[str, DataType] = {
    "str": StringType(),
    "long": LongType(),
    "long?": LongType(),
    "int": IntegerType(),
    "double": DoubleType(),
    "bool": BooleanType(),
    "date": DateType(),
    "timestamp": TimestampType(),
    "map<str,long>": MapType(StringType(), LongType()),
}
ROLES = ("count", "key")

# CONTRACT section 1: persons.csv codes sex as 1 (male) or 2 (female).
SEX_CODES: dict[str, int] = {"male": 1, "female": 2}
SEX_LABELS: dict[int, str] = {code: label for label, code in SEX_CODES.items()}


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: str
    nullable: bool = True
    role: str | None = None


@dataclass(frozen=True)
class TableSpec:
    """One table: its name and its columns, in the order they are written."""

    name: str
    columns: tuple[ColumnSpec, ...]

    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def layout(self) -> tuple[tuple[str, str], ...]:
        """(column, kind) pairs, for the pandas side (``rxcohort.stats.frames``)."""
        return tuple((c.name, c.kind) for c in self.columns)

    def schema(self) -> StructType:
        return StructType(
            [StructField(c.name, _SPARK_TYPES[c.kind], c.nullable) for c in self.columns]
        )

    def counts(self) -> tuple[str, ...]:
        """The columns that count persons (masked when 1-4)."""
        return tuple(c.name for c in self.columns if c.role == "count")

    def keys(self) -> tuple[str, ...]:
        """The columns that label a row (never masked)."""
        return tuple(c.name for c in self.columns if c.role == "key")


def _table(name: str, *columns: str) -> TableSpec:
    specs = []
    for line in columns:
        words = line.split()
        if len(words) not in (2, 3) or (len(words) == 3 and words[2] not in ROLES):
            raise ParameterError(f"{name}: cannot read column {line!r}")
        kind = words[1].rstrip("!")
        if kind not in _SPARK_TYPES:
            raise ParameterError(f"{name}: unknown kind in {line!r}")
        role = words[2] if len(words) == 3 else None
        specs.append(ColumnSpec(words[0], kind, not words[1].endswith("!"), role))
    return TableSpec(name, tuple(specs))


_LINEAGE = ("source_file str", "load_id str")

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (
        # -- silver: what the cohort engine reads (CONTRACT section 1, typed) ------------------
        _table(
            "silver_persons",
            "person_id str!",
            "sex int",
            "birth_year int",
            "death_date date",
            "emigration_date date",
            "county str",
            *_LINEAGE,
        ),
        _table(
            "silver_prescribers", "prescriber_id str!", "profession str", "specialty str", *_LINEAGE
        ),
        # One row per dispensing_id. ``ddd`` is CONTRACT section 5 rule 8 (packs * ddd_per_pack,
        # else computed from strength and the WHO DDD); ``ddd_method``: registry, computed, null.
        _table(
            "silver_dispensings",
            "dispensing_id str!",
            "person_id str!",
            "dispense_date date!",
            "atc_code str!",
            "product_id str",
            "product_name str",
            "magistral bool",
            "strength_mg double",
            "units_per_pack double",
            "packs double!",
            "ddd_per_pack double",
            "ddd double",
            "ddd_method str",
            "prescriber_id str",
            "reimbursement str",
            "reimbursement_code str",
            *_LINEAGE,
            "dispense_year int!",
        ),
        # -- the ingest's bookkeeping ------------------------------------------------------------
        # bronze/files: one row per delivered file currently in bronze (the ingest's registry).
        _table(
            "files",
            "source_file str!",
            "table_name str!",
            "delivered_as str!",
            "file_year int",
            "sha256 str!",
            "size_bytes long!",
            "lines long!",
            "blank_lines long!",
            "rows long!",
            "period_start date",
            "period_end date",
            "load_id str!",
            "load_time timestamp!",
        ),
        # silver/deliveries: one row per ingest that changed something.
        _table(
            "deliveries",
            "load_id str!",
            "registry str",
            "extract_date date",
            "period_start date",
            "period_end date",
            "period_source str!",
            "n_files int!",
            "n_files_changed int!",
            "rows_read long!",
            "manifest_sha256 str",
            "load_time timestamp!",
        ),
        # silver/changes: one row per table x part whose rows a load changed; table_name is
        # silver/dispensings, quarantine/...; part_column dispense_year, source_file or null;
        # change added, removed or changed.
        _table(
            "changes",
            "load_id str!",
            "table_name str!",
            "part_column str",
            "part_value str",
            "change str!",
            "rows_before long!",
            "rows_after long!",
        ),
        # quality/runs: one row per expectation per suite per ingest.
        _table(
            "quality_runs",
            "load_id str!",
            "suite str!",
            "expectation_index int!",
            "expectation str!",
            "column str",
            "severity str!",
            "success bool!",
            "observed str",
            "arguments str",
            "run_time timestamp!",
        ),
        # -- a study's record of its runs ----------------------------------------------------
        _table(
            "runs",
            "run_id str!",
            "study_id str!",
            "status str!",
            "as_of_run_id str",
            "definition_sha256 str!",
            "definition_yaml str!",
            "rxcohort_version str!",
            "git_commit str",
            "input_versions map<str,long>!",
            "output_versions map<str,long>!",
            "n_persons long",
            "started_at timestamp!",
            "finished_at timestamp!",
            "error str",
        ),
        # -- a study's published results (exported, in the report) ------------------------------
        _table(
            "attrition",
            "step int key",
            "criterion str key",
            "n_persons long count",
            "n_excluded long count",
        ),
        _table(
            "group_results",
            "exposure_group str key",
            "drug_group str key",
            "n_persons long count",
            "mean_ddd_pre double",
            "mean_ddd_post double",
            "mean_diff double",
            "ci_low double",
            "ci_high double",
            "rel_change double",
            "users_pre long count",
            "users_post long count",
            "sd_diff double",
            "p_value double",
            "rel_change_ci_low double",
            "rel_change_ci_high double",
            "prop_users_pre double",
            "prop_users_post double",
            "prop_diff double",
            "prop_diff_ci_low double",
            "prop_diff_ci_high double",
        ),
        _table(
            "did_results",
            "drug_group str key",
            "contrast str key",
            "did double",
            "ci_low double",
            "ci_high double",
            "p_value double",
            "exposure_group_high str key",
            "exposure_group_low str key",
            "n_persons_high long count",
            "n_persons_low long count",
            "users_pre_high long count",
            "users_post_high long count",
            "users_pre_low long count",
            "users_post_low long count",
            "mean_diff_high double",
            "mean_diff_low double",
            "did_users_pp double",
            "did_users_pp_ci_low double",
            "did_users_pp_ci_high double",
        ),
        _table(
            "responders",
            "exposure_group str key",
            "drug_group str key",
            "threshold double key",
            "n_persons long count",
            "n_eligible long count",
            "n_responders long count",
            "prop_responders double",
            "ci_low double",
            "ci_high double",
        ),
        _table(
            "trajectories",
            "exposure_group str key",
            "drug_group str key",
            "month int key",
            "n_persons long count",
            "n_users long count",
            "mean_ddd double",
            "sd_ddd double",
            "ci_low double",
            "ci_high double",
        ),
        _table(
            "its_results",
            "exposure_group str key",
            "drug_group str key",
            "lag_months int key",
            "parameter str key",
            "estimate double",
            "ci_low double",
            "ci_high double",
            "p_value double",
            "n_persons long count",
            "n_months long key",
        ),
        # rxcohort.transforms.utilisation
        _table(
            "use_over_time",
            "period_type str key",
            "period_start date key",
            "drug str key",
            "sex str key",
            "age_band str key",
            "n_users long count",
            "n_new_users long? count",
            "n_population long count",
            "per_1000 double",
            "ci_low double",
            "ci_high double",
        ),
        # rxcohort.transforms.characterisation (Table 1)
        _table(
            "characteristics",
            "exposure_group str key",
            "variable str key",
            "level str key",
            "window str key",
            "n_persons long count",
            "n long? count",
            "percent double",
            "mean double",
            "sd double",
            "q1 double",
            "median double",
            "q3 double",
        ),
        _table(
            "characteristics_smd",
            "exposure_group_high str key",
            "exposure_group_low str key",
            "variable str key",
            "level str key",
            "window str key",
            "n_persons_high long count",
            "n_persons_low long count",
            "n_high long? count",
            "n_low long? count",
            "smd double",
        ),
        _table(
            "prescriber_summary",
            "unit str key",
            "category str key",
            "level str key",
            "n long count",
            "n_total long count",
            "share double",
            "ci_low double",
            "ci_high double",
        ),
        # rxcohort.persistence (Kaplan-Meier and Cox, fitted with lifelines)
        _table(
            "km_curves",
            "stratum_variable str! key",
            "stratum str! key",
            "time double! key",
            "at_risk long! count",
            "events long! count",
            "censored long! count",
            "survival double",
            "ci_low double",
            "ci_high double",
        ),
        _table(
            "km_medians",
            "stratum_variable str! key",
            "stratum str! key",
            "n_persons long! count",
            "n_events long! count",
            "median_time double",
            "median_ci_low double",
            "median_ci_high double",
        ),
        _table(
            "cox_results",
            "covariate str! key",
            "level str key",
            "reference str key",
            "n_persons long? count",
            "n_events long? count",
            "coef double",
            "se_coef double",
            "hr double",
            "ci_low double",
            "ci_high double",
            "p_value double",
            "ph_test_stat double",
            "ph_p_value double",
            "status str!",
            "note str",
        ),
    )
}


def table_spec(name: str) -> TableSpec:
    """The declared table ``name`` (a KeyError names a table nobody declared)."""
    return TABLES[name]


def spark_schemas(*names: str) -> tuple[StructType, ...]:
    """The Spark schemas of the declared tables ``names``, in that order."""
    return tuple(TABLES[name].schema() for name in names)
