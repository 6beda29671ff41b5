"""rxcohort.contract: each table declared once; schemas, dtypes and masking lists follow it."""

from __future__ import annotations

import pytest

from rxcohort import contract
from rxcohort.errors import ParameterError
from rxcohort.privacy import EXPORTABLE_TABLES, MASKING_RULES
from rxcohort.stats.frames import COLUMNS, RESULT_SCHEMAS, empty


def test_a_column_line_reads_as_name_kind_nullability_and_role():
    spec = contract._table("t", "a str! key", "b long count", "c double", "d long? count")
    assert spec.names() == ("a", "b", "c", "d")
    assert [f.nullable for f in spec.schema().fields] == [False, True, True, True]
    assert [f.dataType.simpleString() for f in spec.schema().fields] == [
        "string",
        "bigint",
        "double",
        "bigint",
    ]
    assert spec.counts() == ("b", "d") and spec.keys() == ("a",)
    for bad in ("a", "a str extra", "a strng", "a str owner"):
        with pytest.raises(ParameterError):
            contract._table("t", bad)


def test_every_published_table_is_declared_and_masked_by_its_declared_counts():
    for name in EXPORTABLE_TABLES:
        spec = contract.table_spec(name)
        rule = MASKING_RULES[name]
        assert rule.person_counts == spec.counts() and rule.keys == spec.keys(), name
        assert spec.counts(), f"{name} publishes no person count to protect"
        # What each count hides beside it is a column of the table (or everything).
        for count, hidden in rule.dependants.items():
            assert count in spec.counts(), (name, count)
            assert set(hidden) <= set(spec.names()) | {"*"}, (name, hidden)


def test_the_result_frames_take_columns_dtypes_and_schemas_from_the_contract():
    for name, schema in RESULT_SCHEMAS.items():
        spec = contract.table_spec(name)
        assert COLUMNS[name] == list(spec.names())
        assert schema == spec.schema()
        frame = empty(name)
        for column, kind in spec.layout():
            expected = {"long": "int64", "long?": "Int64", "int": "int32", "double": "Float64"}
            assert str(frame[column].dtype) == expected.get(kind, "object"), (name, column)


@pytest.mark.slow
def test_the_demo_study_writes_the_declared_schemas(spark, demo_warehouse):
    from rxcohort import io

    warehouse, _, study_id = demo_warehouse
    for name in ("attrition", *RESULT_SCHEMAS, "km_curves", "km_medians", "cox_results", "runs"):
        path = warehouse / "studies" / study_id / name
        if not io.table_exists(path):
            continue
        written = io.read_table(spark, path).schema
        declared = contract.table_spec(name).schema()
        # Names, order and types as declared (nullability is the writer's: a transform's
        # columns are nullable where the declaration says a value is never null).
        assert [(f.name, f.dataType) for f in written.fields] == [
            (f.name, f.dataType) for f in declared.fields
        ], name
    for name in ("silver/persons", "silver/prescribers", "silver/dispensings"):
        written = io.read_table(spark, warehouse / name).schema
        declared = contract.table_spec(name.replace("/", "_")).schema()
        assert [f.name for f in written.fields] == [f.name for f in declared.fields], name
