"""Studies as data: a ``cohorts/*.yaml`` file is validated (``models``, ``loader``) and
described (``describe``). Nothing here imports pyspark; :func:`rxcohort.pipelines.run_study`
builds a study's tables.
"""

from __future__ import annotations

from rxcohort.study.describe import describe_study
from rxcohort.study.loader import load_study, load_study_source, parse_study
from rxcohort.study.models import Study

__all__ = ["Study", "describe_study", "load_study", "load_study_source", "parse_study"]
