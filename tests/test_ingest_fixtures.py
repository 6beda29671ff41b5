"""Tiny deliveries written inline for the ingest tests (helpers; the checks are in other files)."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from rxcohort.schemas import DISPENSINGS_COLUMNS, PERSONS_COLUMNS, PRESCRIBERS_COLUMNS

PERSONS = [
    # person_id, sex, birth_year, death_date, emigration_date, county
    ("P1", "2", "1960", "", "", "03"),
    ("P2", "1", "1971", "", "", "46"),
    ("P3", "2", "1985", "2015-06-30", "", "11"),
]
PRESCRIBERS = [
    ("D1", "physician", "general_practice"),
    ("D2", "physician", "neurology"),
]


def dispensing(
    dispensing_id: str,
    person_id: str = "P1",
    dispense_date: str = "2013-03-01",
    atc_code: str = "N02AX02",
    *,
    product_id: str = "123456",
    product_name: str = "Tramadol 50 mg",
    magistral: str = "0",
    strength_mg: str = "50",
    units_per_pack: str = "30",
    packs: str = "1",
    ddd_per_pack: str = "5",
    prescriber_id: str = "D1",
    reimbursement: str = "blue",
    reimbursement_code: str = "L88",
) -> tuple[str, ...]:
    return (
        dispensing_id,
        person_id,
        dispense_date,
        atc_code,
        product_id,
        product_name,
        magistral,
        strength_mg,
        units_per_pack,
        packs,
        ddd_per_pack,
        prescriber_id,
        reimbursement,
        reimbursement_code,
    )


def csv_text(columns: Sequence[str], rows: Sequence[Sequence[str] | str]) -> str:
    """Header and rows joined by ';' (a str row is written as the raw line)."""
    lines = [";".join(columns)]
    lines += [r if isinstance(r, str) else ";".join(r) for r in rows]
    return "\n".join(lines) + "\n"


def write_delivery(
    root: Path,
    *,
    persons: Sequence = PERSONS,
    prescribers: Sequence = PRESCRIBERS,
    dispensings: dict[int, Sequence] | None = None,
    period: tuple[str, str] | None = ("2012-01-01", "2015-12-31"),
    gzip_files: Sequence[str] = (),
    manifest: bool = True,
    raw_files: dict[str, bytes] | None = None,
) -> Path:
    """Write a delivery directory; ``raw_files`` (relative path -> bytes) overrides any file."""
    root.mkdir(parents=True, exist_ok=True)
    dispensings = dispensings if dispensings is not None else {2013: [dispensing("X1")]}
    contents: dict[str, bytes] = {
        "persons.csv": csv_text(PERSONS_COLUMNS, persons).encode(),
        "prescribers.csv": csv_text(PRESCRIBERS_COLUMNS, prescribers).encode(),
    }
    for year, rows in dispensings.items():
        contents[f"dispensings/dispensings_{year}.csv"] = csv_text(
            DISPENSINGS_COLUMNS, rows
        ).encode()
    for name in gzip_files:
        contents[name + ".gz"] = gzip.compress(contents.pop(name), mtime=0)
    contents.update(raw_files or {})
    for rel, data in contents.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if manifest:
        body = {
            "registry": "NorPD (synthetic)",
            "extract_date": "2016-03-01",
            "files": {rel: hashlib.sha256(data).hexdigest() for rel, data in contents.items()},
        }
        if period:
            body["period"] = list(period)
        (root / "manifest.json").write_text(json.dumps(body), encoding="utf-8")
    return root
