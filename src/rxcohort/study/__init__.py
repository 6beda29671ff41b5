"""Studies as data: a ``cohorts/*.yaml`` file is validated, described, built and recorded.

``load_study`` and ``describe_study`` start no Spark; ``run_study`` builds the study's tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rxcohort.study.describe import describe_study
from rxcohort.study.loader import load_study, load_study_source, parse_study
from rxcohort.study.models import Study

if TYPE_CHECKING:
    from rxcohort.study.pipeline import StudyRun


def run_study(spark: Any, study_file: Any, **kwargs: Any) -> StudyRun:
    """Build, write and record a study (see :func:`rxcohort.study.pipeline.run_study`)."""
    # Imported here so `rxcohort check` never imports pyspark.
    from rxcohort.study.pipeline import run_study as _run_study

    return _run_study(spark, study_file, **kwargs)


__all__ = ["Study", "describe_study", "load_study", "load_study_source", "parse_study", "run_study"]
