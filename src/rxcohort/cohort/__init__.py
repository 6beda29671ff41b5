"""Cohort building: index dates, inclusion and exclusion criteria with attrition, exposure groups.

Every function is a pure transform (no I/O, no collect). A :class:`Cohort` carries the persons
and one attrition row per step: :func:`generate_index_cohort` starts one, each ``require_*``
takes one and returns the persons who meet its criterion with the criterion's row (its text
from the parameters) appended, and ``add_*`` steps (DataFrame in, DataFrame out) are applied
with :meth:`Cohort.map`. :meth:`Cohort.attrition` numbers the rows into the attrition table;
nothing is counted until that table is written.
"""

from rxcohort.cohort.attrition import Cohort, attrition_row, summarise_attrition
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
    "Cohort",
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
