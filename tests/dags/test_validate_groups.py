"""The validate task's body for one validation group, without Airflow or a database: every schema is
tried, one after another; the group fails afterwards, naming each schema that could not be validated."""

from __future__ import annotations

import sys

import pytest

from include.pg_migration.errors import MigrationError
from tests.conftest import REPO

if str(REPO / "dags") not in sys.path:
    sys.path.insert(0, str(REPO / "dags"))


def test_a_group_validates_every_schema_in_order():
    from pg_migration_support import tasks

    seen = []
    results = tasks.validate_each(["sales", "hr"], lambda s: seen.append(s) or {"schema": s, "ok": True})
    assert seen == ["sales", "hr"] and [r["schema"] for r in results] == ["sales", "hr"]


def test_a_failing_schema_does_not_stop_the_others_and_is_named():
    from pg_migration_support import tasks

    seen = []

    def validate_one(schema):
        seen.append(schema)
        if schema in ("crm", "ref"):
            raise MigrationError(f"cannot connect while validating {schema}")
        return {"schema": schema, "ok": False, "mismatches": 3}  # a mismatch is recorded, not raised

    with pytest.raises(MigrationError) as failed:
        tasks.validate_each(["crm", "hr", "ref", "util"], validate_one)
    assert seen == ["crm", "hr", "ref", "util"]
    assert str(failed.value) == (
        "validation failed for 2 of 4 schema(s): crm: cannot connect while validating crm; "
        "ref: cannot connect while validating ref"
    )
