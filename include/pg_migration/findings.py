"""A check's finding: ``{"check", "verdict": "ok"|"warning"|"blocking", "detail"}``.

The one shape the pre-flight (:mod:`include.pg_migration.preflight`) and the replication checks
(:mod:`include.pg_migration.replicate.checks`) report in; the run's report lists them as they are.
"""

from __future__ import annotations

#: How many names a finding lists before "and N more".
LIST_MAX = 30


def finding(check: str, verdict: str, detail: str) -> dict[str, str]:
    return {"check": check, "verdict": verdict, "detail": detail}


def names_list(items: list[str], limit: int = LIST_MAX) -> str:
    """``a, b, c and 12 more``: at most ``limit`` names of a finding's detail."""
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")
