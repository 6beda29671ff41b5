"""A generated delivery with defects: every row accounted for, defects found as the truth says.

The oracle is the generator's truth.json (which defects it injected, how many), not our code.
"""

from __future__ import annotations

import json
from datetime import date

import pytest

from rxcohort import io
from rxcohort.generate import generate_delivery
from rxcohort.pipelines import ingest_delivery


@pytest.mark.slow
def test_generated_delivery_with_defects_keeps_the_row_count_invariant(spark, tmp_path):
    delivery = tmp_path / "delivery"
    generate_delivery(
        spark,
        delivery,
        persons=200,
        seed=7,
        start=date(2012, 1, 1),
        end=date(2013, 12, 31),
        defects=0.05,
        ldn_rate=0.05,
    )
    truth = json.loads((delivery / "truth.json").read_text())
    injected = truth["defects"]["by_kind"]
    warehouse = tmp_path / "warehouse"
    result = ingest_delivery(spark, delivery, warehouse=warehouse)

    d = result.counts["dispensings"]
    assert d.read_this_load == truth["dispensings"]["rows"]
    assert d.read_this_load == d.clean + d.quarantined + d.duplicates
    silver = io.read_table(spark, warehouse / "silver/dispensings").count()
    quarantine = io.read_table(spark, warehouse / "quarantine/dispensings").count()
    bronze = io.read_table(spark, warehouse / "bronze/dispensings").count()
    assert bronze == silver + quarantine + d.duplicates == truth["dispensings"]["rows"]

    reasons = {reason: total for reason, (total, _) in d.reasons.items()}
    caught_returns = reasons.pop("unmatched_return", 0) + reasons.pop("return_exceeds_dispensed", 0)
    dates = reasons.pop("unparseable_date", 0) + reasons.pop("date_outside_file_year", 0)
    assert d.duplicates == injected["duplicate"]
    assert reasons == {
        "unknown_person": injected["unknown_person"],
        "malformed_atc": injected["malformed_atc"],
    }
    assert dates == injected["impossible_date"]
    # An orphan return lands, by chance, within 14 days of a dispensing of the same product
    # now and then and is netted against it; a genuine return is never quarantined.
    assert 0.8 * injected["return"] <= caught_returns <= injected["return"]
    # whitespace and missing_ddd defects are repaired or reported, not quarantined
    persons = result.counts["persons"]
    assert (persons.clean, persons.quarantined) == (truth["arguments"]["persons"], 0)
