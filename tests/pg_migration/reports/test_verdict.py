"""The verdict task's body, without Airflow or a database: it fails the run on a failed report, on a
missing report, and on a failed cleanup (which may have left the snapshot and the guard held)."""

from __future__ import annotations

import sys

import pytest

from include.pg_migration.errors import MigrationError
from tests.conftest import REPO

if str(REPO / "dags") not in sys.path:
    sys.path.insert(0, str(REPO / "dags"))

PASSED = {"verdict": "passed", "report": "/tmp/r", "failures": []}


def test_a_passed_report_and_a_done_cleanup_pass():
    from pg_migration_support import steps

    steps.verdict(PASSED, {"released": True})
    steps.verdict(PASSED, {"released": False, "warning": "snapshot already gone"})  # a warning, not a failure
    steps.verdict(PASSED)  # DAGs without a cleanup task of their own


def test_a_failed_cleanup_fails_a_passed_migration_saying_what_may_be_held():
    from pg_migration_support import steps

    with pytest.raises(MigrationError, match="PASSED, but the cleanup task failed.*guard may still be held"):
        steps.verdict(PASSED, None)


def test_a_failed_or_missing_report_fails_first():
    from pg_migration_support import steps

    failed = {"verdict": "failed", "report": "/tmp/r", "failures": ["sales.orders: 1 row(s) lost"]}
    with pytest.raises(MigrationError, match="migration FAILED: sales.orders"):
        steps.verdict(failed, None)
    with pytest.raises(MigrationError, match="no report was produced"):
        steps.verdict(None, {"released": True})
