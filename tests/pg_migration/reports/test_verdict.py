"""The verdict (:func:`include.pg_migration.reports.assemble.verdict`, the verdict task's rule), without
Airflow or a database: it fails the run on a failed report, on a missing report, and on a failed
cleanup (which may have left the snapshot and the guard held)."""

from __future__ import annotations

import pytest

from include.pg_migration.errors import MigrationError
from include.pg_migration.reports import assemble

PASSED = {"verdict": "passed", "report": "/tmp/r", "failures": []}


def test_a_passed_report_and_a_done_cleanup_pass():
    assemble.verdict(PASSED, {"released": True})
    assemble.verdict(PASSED, {"released": False, "warning": "snapshot already gone"})  # a warning, not a failure
    assemble.verdict(PASSED)  # DAGs without a cleanup task of their own


def test_a_failed_cleanup_fails_a_passed_migration_saying_what_may_be_held():
    with pytest.raises(MigrationError, match="PASSED, but the cleanup task failed.*guard may still be held"):
        assemble.verdict(PASSED, None)


def test_a_failed_or_missing_report_fails_first():
    failed = {"verdict": "failed", "report": "/tmp/r", "failures": ["sales.orders: 1 row(s) lost"]}
    with pytest.raises(MigrationError, match="migration FAILED: sales.orders"):
        assemble.verdict(failed, None)
    with pytest.raises(MigrationError, match="no report was produced"):
        assemble.verdict(None, {"released": True})
