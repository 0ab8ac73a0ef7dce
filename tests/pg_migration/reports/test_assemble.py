"""The assembler's shared steps without a database: base keys, finish (dedupe, verdict), the abort's
report, and report.md's cut-over section (rendered by the one markdown module)."""

from __future__ import annotations

from include.pg_migration.reports import assemble
from include.pg_migration.reports.markdown import to_markdown


class _Endpoint:
    def __init__(self, host: str):
        self.host = host

    def public(self) -> dict:
        return {"host": self.host, "port": 5432, "dbname": "wh", "user": "mig"}


def test_finish_dedupes_and_judges():
    data = assemble.finish({}, ["a", "b", "a"], ["w", "w"])
    assert data == {"failures": ["a", "b"], "warnings": ["w"], "verdict": "failed"}
    assert assemble.finish({}, [], [])["verdict"] == "passed"
    assert assemble.finish({}, [], [], complete=False)["verdict"] == "failed"
    assert assemble.finish({}, [], [], planned=True)["verdict"] == "planned"
    assert assemble.finish({}, ["x"], [], planned=True)["verdict"] == "failed"


def test_abort_report_says_what_was_dropped_and_fails_on_errors():
    result = {"aborted": ["r1"], "errors": [], "dropped": ["slot pgmig_x", "publication pgmig_x"]}
    data = assemble.abort_report(None, _Endpoint("tgt"), "ab1", "pg_migration_abort", {"p": 1}, [], result)
    assert data["verdict"] == "passed" and data["failures"] == []
    assert data["warnings"] == ["dropped slot pgmig_x", "dropped publication pgmig_x"]
    assert data["source"] is None and data["target"]["host"] == "tgt" and data["abort"] == result
    assert data["snapshot"]["note"] == "aborted replication of run(s) r1"
    assert {"dag_id", "run_id", "params", "finished_at", "started_at", "schemas"} <= set(data)

    unfinished = assemble.abort_report(None, None, "ab2", "pg_migration_abort", {}, ["task abort failed"], None)
    assert unfinished["verdict"] == "failed" and unfinished["target"] is None
    assert unfinished["failures"] == ["task abort failed", "the abort task did not finish: see its log"]
    assert unfinished["snapshot"]["note"] == "aborted replication of run(s) none"


def test_report_md_of_a_cutover_ends_with_its_section():
    cut = {
        "downtime_seconds": 4.25,
        "writes_stopped_at": "t0",
        "validated_at": "t1",
        "replicate_run_id": "rep1",
        "subscription": "sub",
        "slot": "slot",
        "publication": "pub",
        "replication_dropped": True,
        "caught_up_at": "t0",
        "sequences": 3,
        "large_objects": None,
        "matviews": [],
        "read_only_source": False,
        "drop": {"retained_wal_bytes": 2_500_000},
    }
    md = to_markdown({"dag_id": "pg_migration_cutover", "run_id": "c1", "verdict": "passed", "cutover": cut})
    assert md.startswith("# pg-migration report: PASSED")
    assert md.endswith("- the slot retained 2.5 MB of WAL when it was dropped\n")
    assert "\n\n## Cut-over\n\n- **downtime 4.2 s** (writes stopped t0 -> validated t1)" in md
    assert "## Cut-over" not in to_markdown({"dag_id": "pg_migration", "run_id": "r1"})
