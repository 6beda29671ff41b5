"""Cohort building: index dates, inclusion and exclusion criteria with attrition, exposure groups.

Every function is a pure transform (DataFrames in, DataFrames out, no I/O, no collect). The
``require_*`` functions return ``(cohort, attrition_row)``: the persons who meet the criterion
and a one-row frame (criterion, n_persons) that :func:`summarise_attrition` numbers and turns
into the attrition table. Nothing is counted until the attrition table is written.
"""

from rxcohort.cohort.attrition import attrition_row, summarise_attrition
from rxcohort.cohort.criteria import (
    add_person_attributes,
    require_age,
    require_drug_use,
    require_follow_up,
    require_reimbursement_code,
    require_sex,
)
from rxcohort.cohort.exposure import add_exposure_count, add_exposure_group, require_exposure_group
from rxcohort.cohort.index import generate_index_cohort, require_new_users
from rxcohort.transforms.drugs import DrugDefinition, describe_days

__all__ = [
    "DrugDefinition",
    "add_exposure_count",
    "add_exposure_group",
    "add_person_attributes",
    "attrition_row",
    "describe_days",
    "generate_index_cohort",
    "require_age",
    "require_drug_use",
    "require_exposure_group",
    "require_follow_up",
    "require_new_users",
    "require_reimbursement_code",
    "require_sex",
    "summarise_attrition",
]
