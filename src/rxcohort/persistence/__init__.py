"""LDN dose, treatment episodes and persistence (time on treatment) for a study cohort.

The study pipeline calls :func:`build_persistence_tables`; the pieces are public so a notebook
can chain them: ``add_supply`` -> ``generate_episodes`` -> ``summarise_dose`` ->
``generate_persistence`` -> ``fit_km_curves`` / ``fit_km_medians`` / ``fit_cox``.
Method and columns: docs/persistence.md.
"""

from __future__ import annotations

from rxcohort.persistence.analysis import build_persistence_tables, restrict_to_follow_up
from rxcohort.persistence.episodes import (
    add_dose_band,
    add_episode_number,
    add_supply,
    generate_episodes,
    summarise_dose,
)
from rxcohort.persistence.follow_up import (
    add_age_band,
    add_follow_up,
    generate_persistence,
)
from rxcohort.persistence.survival import fit_cox, fit_km_curves, fit_km_medians

__all__ = [
    "add_age_band",
    "add_dose_band",
    "add_episode_number",
    "add_follow_up",
    "add_supply",
    "build_persistence_tables",
    "fit_cox",
    "fit_km_curves",
    "fit_km_medians",
    "generate_episodes",
    "generate_persistence",
    "restrict_to_follow_up",
    "summarise_dose",
]
