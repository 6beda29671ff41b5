"""Synthetic NorPD deliveries: a population, its prescribers and their dispensings.

``generate_delivery`` writes a delivery in the format of CONTRACT §1 with a known truth (the
LDN wave and its injected effects, the defects put in) recorded in ``truth.json``. Every value
is a hash of the seed and what it describes, so the same arguments give byte-identical files.
"""

from __future__ import annotations

from rxcohort.generate.catalogue import DEFAULT_EFFECTS
from rxcohort.generate.delivery import FileInfo, GenerateResult, generate_delivery

# The generator sorts every row of the delivery once, to write the files in order, and the
# embedded engine's spilling sort cannot merge that within the default memory pool at a
# million persons: the generator's own process runs without the pool (it peaked at 14.6 GB at
# 1M persons). Real deliveries never pass through here.
SAIL_CONF = {"runtime.memory_pool.type": "unbounded"}

__all__ = ["DEFAULT_EFFECTS", "SAIL_CONF", "FileInfo", "GenerateResult", "generate_delivery"]
