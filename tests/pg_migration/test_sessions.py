"""Session tags: one per (run, unit, session kind) whatever the names' lengths; a retry ends every
session of the killed attempt of its unit (all kinds) and never another unit's."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from include.pg_migration import sessions
from include.pg_migration.harness import LocalRun
from include.pg_migration.sessions import tag

RUN = "manual__2026-12-04T19:00:00+00:00"
LONG = "s" * 60  # two schemas (units) whose ids share their first 60 bytes
UNIT_A, UNIT_B, SHORT = LONG + "_a", LONG + "_b", "shortu"


def test_tag_fits_and_is_valid_utf8():
    for unit in ("u", "a" * 200, "é" * 100, "表" * 40, "x" * 61 + "é", "🐘" * 30):
        for kind in (sessions.WORKER, sessions.INDEX):
            t = tag(RUN, unit, kind)
            assert len(t.encode()) <= 63, t
            assert t.encode().decode() == t  # valid UTF-8: no cut inside a character
            assert "\ufffd" not in t


def test_tag_is_unique_per_run_unit_and_kind():
    assert tag(RUN, "a" * 47 + "#1") != tag(RUN, "a" * 47 + "#2")
    assert tag(RUN, UNIT_A) != tag(RUN, UNIT_B)
    assert tag(RUN, "é" * 100 + "1") != tag(RUN, "é" * 100 + "2")
    assert tag(RUN, SHORT) != tag(RUN + "x", SHORT)
    assert tag(RUN, SHORT, sessions.WORKER) != tag(RUN, SHORT, sessions.INDEX)
    assert tag(RUN, SHORT) == tag(RUN, SHORT, sessions.WORKER)  # the default kind
    # a phase worker never shares a unit's tag, even with a schema named like the phase
    assert not sessions.phase_tag(RUN, "pre-data").startswith(sessions.tag_prefix(RUN, "pre-data"))


def test_tag_keeps_the_unit_name_as_a_readable_suffix():
    assert tag(RUN, "sales#2").endswith(" sales#2")
    assert tag(RUN, "sales#2", sessions.INDEX).endswith(" sales#2")
    assert tag(RUN, "sales#2").startswith("pgmig ")
    assert UNIT_A[:20] in tag(RUN, UNIT_A)  # a long name: its start stays readable


def test_every_kind_shares_the_unit_prefix_and_no_other_unit_does():
    prefix = sessions.tag_prefix(RUN, UNIT_A)
    assert not any(c in prefix for c in "%_\\")  # a LIKE pattern as it stands
    for kind in (sessions.WORKER, sessions.INDEX):
        assert tag(RUN, UNIT_A, kind).startswith(prefix)
        assert not tag(RUN, UNIT_B, kind).startswith(prefix)
    with pytest.raises(ValueError, match="kind"):
        tag(RUN, UNIT_A, "index")


def _alive(conn: psycopg.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


def _started_run(pair) -> LocalRun:
    with pair.source_su() as src:
        for schema in (UNIT_A, UNIT_B, SHORT):
            src.execute(f'CREATE SCHEMA "{schema}"')
            src.execute(f'CREATE TABLE "{schema}".t (id int PRIMARY KEY, v text)')
            src.execute(f"INSERT INTO \"{schema}\".t SELECT g, 'v' || g FROM generate_series(1, 100) g")
    run = LocalRun(pair.source, pair.target, f"test__{uuid.uuid4().hex[:8]}", pool_size=4)
    units = {u["unit_id"] for u in run.start()["units"]}
    assert {UNIT_A, UNIT_B, SHORT} <= units
    return run


def test_units_sharing_60_bytes_do_not_end_each_other(pair):
    """Real servers and the real worker: unit A's sessions (opened as its worker opens them, on both
    sides, and still running) survive the start of unit B, whose id shares A's first 60 bytes."""
    run = _started_run(pair)
    try:
        a_target = pair.target.connect(tag(run.run_id, UNIT_A), autocommit=True)
        a_source = pair.source.connect(tag(run.run_id, UNIT_A), autocommit=True)
        with a_target, a_source:
            run.unit(UNIT_B)
            assert _alive(a_target), "unit B's start ended unit A's target session"
            assert _alive(a_source), "unit B's start ended unit A's source session"
        run.unit(UNIT_A)
        run.unit(SHORT)
        run.finish()
    finally:
        run.close()


def test_a_retry_ends_every_stale_session_of_its_unit(pair):
    """A killed attempt left its worker session and its index builder's session running: the retry
    ends both (every kind of that run+unit), and no session of another unit."""
    run = _started_run(pair)
    try:
        stale = [
            pair.target.connect(tag(run.run_id, SHORT), autocommit=True),
            pair.target.connect(tag(run.run_id, SHORT, sessions.INDEX), autocommit=True),  # as IndexBuilder tags it
        ]
        bystander = pair.target.connect(tag(run.run_id, UNIT_A), autocommit=True)
        run.unit(SHORT)  # the retry
        assert [_alive(c) for c in stale] == [False, False], "the retry left a stale session of its unit"
        assert _alive(bystander)
        for c in [*stale, bystander]:
            c.close()
    finally:
        run.close()


def test_multibyte_unit_names_end_only_their_own_sessions(pair):
    """The server rewrites non-ASCII characters of an application_name: the ASCII prefix still
    matches, and a unit whose name differs only after 40 multibyte characters is a different unit."""
    run_id, unit, other = f"test__{uuid.uuid4().hex[:8]}", "表" * 40, "表" * 40 + "x"
    mine = pair.target.connect(tag(run_id, unit, sessions.INDEX), autocommit=True)
    theirs = pair.target.connect(tag(run_id, other), autocommit=True)
    with pair.target.connect(tag(run_id, unit), autocommit=True) as retry, mine, theirs:
        assert sessions.end_stale_sessions(retry, run_id, unit) == 1
        assert not _alive(mine) and _alive(theirs)
