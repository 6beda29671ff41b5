"""The shipped WHO DDD table: the values the studies rely on, keyed by year, checked on load."""

from __future__ import annotations

import pytest

from rxcohort.reference import load_who_ddd

HEADER = "atc_code,substance,valid_from_year,valid_to_year,ddd,unit,route,ddd_mg,source\n"


def _ddd_mg(rows, atc, year):
    matches = [r for r in rows if r.atc_code == atc and r.covers(year)]
    assert len(matches) <= 1
    return matches[0].ddd_mg if matches else "absent"


def test_reference_values_from_the_study_brief():
    rows = load_who_ddd()
    # STUDY.md: naltrexone 50 mg, morphine 0.1 g, oxycodone 75 mg, tramadol 0.3 g,
    # buprenorphine 1.2 mg, tapentadol 0.4 g, fentanyl 1.2 mg TD
    assert _ddd_mg(rows, "N07BB04", 2013) == 50.0
    assert _ddd_mg(rows, "N02AA01", 2013) == 100.0
    assert _ddd_mg(rows, "N02AA05", 2013) == 75.0
    assert _ddd_mg(rows, "N02AX02", 2013) == 300.0
    assert _ddd_mg(rows, "N02AE01", 2013) == 1.2
    assert _ddd_mg(rows, "N02AX06", 2013) == 400.0
    assert _ddd_mg(rows, "N02AB03", 2013) == 1.2
    assert _ddd_mg(rows, "N02BE01", 2013) == 3000.0
    assert _ddd_mg(rows, "M01AE01", 2013) == 1200.0


def test_codeine_combinations_change_code_between_2016_and_2017():
    rows = load_who_ddd()
    # in unit doses: known code, DDD not computable from strength
    assert _ddd_mg(rows, "N02AA59", 2013) is None
    assert _ddd_mg(rows, "N02AA59", 2016) is None
    assert _ddd_mg(rows, "N02AA59", 2017) == "absent"
    assert _ddd_mg(rows, "N02AJ06", 2016) == "absent"
    assert _ddd_mg(rows, "N02AJ06", 2017) is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("N02AX02,tramadol,,,0.3,g,O,30,src\n", "line 2: ddd_mg does not equal ddd in g"),
        ("N02AX02,tramadol,,,0.3,g,O,300,\n", "line 2: every DDD needs a source note"),
        ("N2AX02,tramadol,,,0.3,g,O,300,src\n", "line 2: atc_code must look like N02AX02"),
        ("N02AA59,codeine,,,5,UD,O,100,src\n", "line 2: ddd_mg must be empty for a DDD in UD"),
        (
            "N05CF01,zopiclone,,2013,7.5,mg,O,7.5,a\nN05CF01,zopiclone,2013,,7.5,mg,O,7.5,b\n",
            "two rows for N05CF01 cover the same year",
        ),
        ("N05CF01,zopiclone,2014,2013,7.5,mg,O,7.5,a\n", "valid_from_year is after valid_to_year"),
    ],
)
def test_malformed_reference_rows_are_refused(body, message):
    with pytest.raises(ValueError, match=message):
        load_who_ddd(HEADER + body)
