"""Ownership (``ownership: carry | exact | target_user``): owners carried where the target role may.

On real servers: a PostgreSQL 15 source and target (a CREATEROLE target role grants itself any
non-superuser role) and a PostgreSQL 18 target (only roles it holds ADMIN OPTION on). Role names are
unique per test (roles are cluster-wide) and dropped afterwards.
"""

from __future__ import annotations

import uuid

import pytest
from psycopg import sql

from include.pg_migration import catalog, ownership, preflight, state
from include.pg_migration.harness import migrate_locally
from include.pg_migration.phases.validate import validate_schema
from scripts import localpg
from tests.conftest import _unique, create_db, endpoint

SOURCE = """
CREATE SCHEMA app AUTHORIZATION {owner};
SET ROLE {owner};
CREATE TYPE app.mood AS ENUM ('ok', 'sad');
CREATE DOMAIN app.positive AS int CHECK (VALUE > 0);
CREATE TABLE app.notes (id int PRIMARY KEY, body text, mood app.mood, n app.positive, secret bool);
CREATE SEQUENCE app.ticket;
CREATE VIEW app.open_notes AS SELECT id, body FROM app.notes WHERE NOT secret;
CREATE FUNCTION app.note_count() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT count(*) FROM app.notes';
CREATE POLICY public_only ON app.notes USING (NOT secret);
ALTER TABLE app.notes ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
GRANT SELECT ON app.open_notes TO {member};
RESET ROLE;
INSERT INTO app.notes SELECT g, 'note ' || g, 'ok', g, g % 3 = 0 FROM generate_series(1, 30) g;
CREATE TABLE app.by_superuser (id int);
SELECT pg_catalog.lo_from_bytea(0, 'large');
"""


def _drop_roles(names: list[str], places: list[tuple[localpg.Server, str]]) -> None:
    for server, db in places:
        with server.connect(db, autocommit=True) as conn:
            for name in names:
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
                    conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(name)))
    for server in {s for s, _ in places}:
        with server.connect(autocommit=True) as conn:
            for name in names:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def owned(pair):
    """The source: schema ``app`` owned by a NOLOGIN role (CREATE on the database), a LOGIN member of it
    with CREATEDB and BYPASSRLS (a grantee), a table of the superuser, a large object of the owner."""
    suffix = uuid.uuid4().hex[:8]
    owner, member = f"pgmig_own_{suffix}", f"pgmig_own_member_{suffix}"
    with pair.source_su() as src:
        src.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(owner)))
        src.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB BYPASSRLS CONNECTION LIMIT 7 PASSWORD 'secret' IN ROLE {}").format(
                sql.Identifier(member), sql.Identifier(owner)
            )
        )
        src.execute(
            sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(pair.source_db), sql.Identifier(owner))
        )
        src.execute(sql.SQL(SOURCE).format(owner=sql.Identifier(owner), member=sql.Identifier(member)))
        oid = src.execute("SELECT max(oid) FROM pg_largeobject_metadata").fetchone()[0]
        src.execute(sql.SQL("ALTER LARGE OBJECT {} OWNER TO {}").format(sql.Literal(oid), sql.Identifier(owner)))
    yield owner, member
    _drop_roles(
        [member, owner],
        [(pair.source_server, pair.source_db), (pair.target_server, pair.target_db)],
    )


def _findings(source, target, params) -> dict[str, tuple[str, str]]:
    inventory = catalog.inventory(source, ["app"], None)
    return {f["check"]: (f["verdict"], f["detail"]) for f in preflight.run(source, target, inventory, params)}


OWNERS = """
SELECT 'schema', nspname::text, pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'app'
UNION ALL SELECT 'rel', relname::text, pg_get_userbyid(relowner) FROM pg_class
 WHERE relnamespace = 'app'::regnamespace AND relkind IN ('r', 'v', 'S')
UNION ALL SELECT 'proc', proname::text, pg_get_userbyid(proowner) FROM pg_proc WHERE pronamespace = 'app'::regnamespace
UNION ALL SELECT 'type', typname::text, pg_get_userbyid(typowner) FROM pg_type
 WHERE typnamespace = 'app'::regnamespace AND typtype IN ('e', 'd')
UNION ALL SELECT 'lo', 'lo', pg_get_userbyid(lomowner) FROM pg_largeobject_metadata
ORDER BY 1, 2
"""


def test_carry_hands_every_object_to_its_owner_after_the_load_and_validation_reads_as_its_member(pair, owned):
    owner, member = owned
    admin = pair.target_server.admin_user
    found = _findings(pair.source, pair.target, {"pool_size": 2, "create_roles": True, "ownership": "carry"})
    verdict, detail = found["ownership"]
    assert verdict == "warning", detail  # the superuser's table is named, with its role
    assert "table app.by_superuser" in detail and "postgres (a superuser on the source)" in detail
    assert owner in detail and "roles created: " + owner in detail
    verdict, detail = found["role attributes"]
    assert verdict == "warning" and f"{member}: BYPASSRLS (a superuser must grant it) not granted" in detail
    exact = _findings(pair.source, pair.target, {"pool_size": 2, "create_roles": True, "ownership": "exact"})
    assert exact["ownership"][0] == "blocking" and "table app.by_superuser" in exact["ownership"][1]
    assert _findings(pair.source, pair.target, {"pool_size": 2, "ownership": "target_user"})["ownership"][0] == "ok"

    run_id = f"test__{uuid.uuid4().hex[:8]}"
    migrate_locally(pair.source, pair.target, run_id, include=["app"], ownership="carry")
    with pair.source_su() as src, pair.target_su() as tgt:
        expected = [(k, n, admin if n == "by_superuser" else o) for k, n, o in src.execute(OWNERS).fetchall()]
        assert tgt.execute(OWNERS).fetchall() == expected
        role = tgt.execute(
            "SELECT rolcanlogin, rolcreatedb, rolbypassrls, rolconnlimit FROM pg_roles WHERE rolname = %s", (member,)
        ).fetchone()
        assert role == (True, True, False, 7)  # BYPASSRLS not granted (reported), the rest carried
        hashes = [
            c.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (member,)).fetchone() for c in (src, tgt)
        ]
        assert hashes[0] == hashes[1]  # a superuser source role reads the hash: carried as it is
        assert tgt.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (member, owner)).fetchone()[0]
        assert tgt.execute("SELECT pg_has_role(%s, %s, 'USAGE')", (admin, owner)).fetchone()[0]
        phase = state.phases_of_run(tgt, run_id)["ownership"]
    assert phase["status"] == "done" and phase["detail"]["failures"] == []
    assert phase["detail"]["roles"] == [owner]  # created by pre-data already: a grantee of its own objects
    assert any("app.by_superuser" in w and "postgres" in w for w in phase["detail"]["warnings"])

    # a retried step changes nothing; under "exact" what stays the target role's fails the step, by name
    with pair.target.connect(autocommit=True) as tgt:
        params = state.get_run(tgt, run_id)["params"]
        state.start_run(tgt, run_id, "pg_migration", {**params, "ownership": "exact"}, True)
    again = ownership.hand_over(pair.source, pair.target, run_id)
    assert again["carried"] == phase["detail"]["carried"] and again["roles_created"] == []
    assert [f for f in again["failures"] if "by_superuser" in f] == [
        "table app.by_superuser stays the target role's: owner postgres is a superuser on the source"
    ]
    with pair.target.connect(autocommit=True) as tgt:
        assert state.phases_of_run(tgt, run_id)["ownership"]["status"] == "failed"

    # a later validate-only run reads as the owner's member: the forced row security is lifted, owners compared
    result = validate_schema(pair.source, pair.target, "app", owners=True)
    assert result.ok, result.mismatches
    notes = {t.table: t.target_rows for t in result.tables}
    assert notes["notes"] == 30
    with pair.target_su() as tgt:
        tgt.execute(sql.SQL("ALTER VIEW app.open_notes OWNER TO {}").format(sql.Identifier(admin)))
    result = validate_schema(pair.source, pair.target, "app", owners=True)
    assert result.mismatches == [f"ownership: owner of view app.open_notes differs: source {owner}, target {admin}"]


def test_a_non_superuser_source_cannot_read_passwords_and_says_so(pair, owned):
    owner, member = owned
    with pair.source_reader.connect() as src, pair.target.connect() as tgt:
        found = ownership.role_findings(src, tgt, [owner, member])
    (f,) = found
    assert f["verdict"] == "warning"
    assert (
        f"{member}: BYPASSRLS" in f["detail"]
        and "passwords cannot be read on the source without a superuser" in f["detail"]
    )


@pytest.fixture
def pg18_target(pg18_server):
    name = _unique("tgt")
    create_db(pg18_server, name, owner=pg18_server.admin_user)
    yield name
    localpg.drop_database(pg18_server, name)


def test_postgresql_16_plus_carries_only_roles_the_target_role_holds_admin_option_on(
    pair, owned, pg18_server, pg18_target
):
    """PostgreSQL 18 target: the owner the run creates is carried (its creator holds ADMIN OPTION); one
    that exists there already, created by the superuser, is not: a warning naming it ("exact": blocking)."""
    owner, member = owned
    foreign = f"pgmig_own_foreign_{uuid.uuid4().hex[:8]}"
    target = endpoint(pg18_server, pg18_target, pg18_server.admin_user, "target")
    with pair.source_su() as src:
        src.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(foreign)))
        src.execute(sql.SQL("GRANT CREATE ON SCHEMA app TO {}").format(sql.Identifier(foreign)))
        src.execute(sql.SQL("CREATE TABLE app.theirs (id int)"))
        src.execute(sql.SQL("ALTER TABLE app.theirs OWNER TO {}").format(sql.Identifier(foreign)))
    with pg18_server.connect(autocommit=True) as su:
        su.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(foreign)))
    try:
        params = {"pool_size": 2, "create_roles": True, "ownership": "carry", "mode": "replicate"}
        found = _findings(pair.source, target, params)
        verdict, detail = found["ownership"]
        assert verdict == "warning" and f"{foreign} (a role the target role holds no ADMIN OPTION on" in detail
        assert "table app.theirs" in detail
        assert (
            found["replication apply role"][0] == "ok" and "run_as_owner = false" in found["replication apply role"][1]
        )
        exact = _findings(pair.source, target, {**params, "ownership": "exact"})
        assert exact["ownership"][0] == "blocking"

        run_id = f"test__{uuid.uuid4().hex[:8]}"
        migrate_locally(pair.source, target, run_id, include=["app"], ownership="carry")
        with pg18_server.connect(pg18_target, autocommit=True) as tgt:
            owners = dict(
                tgt.execute(
                    "SELECT relname, pg_get_userbyid(relowner) FROM pg_class "
                    "WHERE relnamespace = 'app'::regnamespace AND relkind = 'r'"
                ).fetchall()
            )
            assert owners == {"notes": owner, "by_superuser": pg18_server.admin_user, "theirs": pg18_server.admin_user}
            admin = pg18_server.admin_user
            assert tgt.execute(
                "SELECT pg_has_role(%s, %s, 'USAGE'), pg_has_role(%s, %s, 'SET')", (admin, owner, admin, owner)
            ).fetchone() == (True, True)
        result = validate_schema(pair.source, target, "app", owners=True)
        assert result.ok, result.mismatches
        assert result.tables and {t.table: t.target_rows for t in result.tables}["notes"] == 30
    finally:
        _drop_roles([foreign, member, owner], [(pg18_server, pg18_target), (pair.source_server, pair.source_db)])


def test_target_user_and_runs_recorded_before_the_param_hand_over_nothing(pair):
    """``target_user`` is today's behaviour, and what a run recorded without the param gets: the step
    does nothing and records nothing."""
    with pair.target.connect(autocommit=True) as tgt:
        state.ensure(tgt)
        for run_id, params in (("test__tu", {"ownership": "target_user"}), ("test__old", {})):
            state.start_run(tgt, run_id, "pg_migration", params, True)
            assert ownership.hand_over(pair.source, pair.target, run_id)["skipped"]
            assert "ownership" not in state.phases_of_run(tgt, run_id)


def test_owned_objects_reads_both_sides_alike(pair):
    with pair.source_su() as src:
        src.execute(
            "CREATE SCHEMA s; CREATE TABLE s.t (id serial, g int GENERATED ALWAYS AS IDENTITY);"
            "CREATE AGGREGATE s.total(int) (sfunc = int4pl, stype = int);"
            "CREATE TYPE s.pair AS (a int, b int); CREATE TYPE s.span AS RANGE (subtype = int4);"
            "CREATE MATERIALIZED VIEW s.mv AS SELECT 1 AS one; CREATE PROCEDURE s.p(a int) LANGUAGE sql AS 'SELECT 1'"
        )
        objects = {(o.kind, o.name, o.args) for o in ownership.owned_objects(src, ["s"], large_objects=False)}
        path = src.execute("SHOW search_path").fetchone()[0]
    assert path == '"$user", public'  # restored after reading
    assert objects == {
        ("schema", "s", ""),
        ("table", "t", ""),  # its serial and identity sequences follow it
        ("aggregate", "total", "integer"),
        ("type", "pair", ""),
        ("type", "span", ""),
        ("materialized view", "mv", ""),
        ("procedure", "p", "IN a integer"),
    }
