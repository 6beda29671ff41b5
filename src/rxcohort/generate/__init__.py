"""Synthetic NorPD deliveries: a population, its prescribers and their dispensings.

``generate_delivery`` writes a delivery in the format of CONTRACT §1 with a known truth (the
LDN wave and its injected effects, the defects put in) recorded in ``truth.json``. Every value
is a hash of the seed and what it describes, so the same arguments give byte-identical files.
"""

from __future__ import annotations

from rxcohort.generate.catalogue import DEFAULT_EFFECTS
from rxcohort.generate.delivery import FileInfo, GenerateResult, generate_delivery

__all__ = ["DEFAULT_EFFECTS", "FileInfo", "GenerateResult", "generate_delivery"]
