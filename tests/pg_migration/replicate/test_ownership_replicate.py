"""Replicate mode with ``ownership: carry`` on PostgreSQL 18: the owners are handed over before the
subscription, whose apply worker (``run_as_owner = false``) then writes every change as the table's
owner -- which the hand-over made the target role able to SET ROLE to."""

from __future__ import annotations

import uuid

from psycopg import sql

from include.pg_migration import ownership
from include.pg_migration.harness import ReplicateRun
from include.pg_migration.replicate import lag
from tests.pg_migration.replicate.conftest import publisher, run_id


def run_validate_owners(p) -> list[str]:
    with p.source.connect(autocommit=True) as src, p.target.connect(autocommit=True) as tgt:
        return ownership.validate_owners(src, tgt, "own")


def test_changes_stream_in_as_the_carried_owner(rpair, tmp_path):
    p = rpair
    owner = f"pgmig_rown_{uuid.uuid4().hex[:8]}"
    admin = p.target_server.admin_user
    # created by the target role (the same cluster is the source here): it holds ADMIN OPTION on it
    with p.target_server.connect(p.target_db, user=admin, autocommit=True) as tgt:
        tgt.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(owner)))
    rid = run_id()
    run = None
    try:
        with p.source_su() as src:
            src.execute(
                sql.SQL(
                    "CREATE SCHEMA own AUTHORIZATION {o}; CREATE TABLE own.items (id int PRIMARY KEY, v text);"
                    "ALTER TABLE own.items OWNER TO {o};"
                    "INSERT INTO own.items SELECT g, 'x' FROM generate_series(1, 50) g"
                ).format(o=sql.Identifier(owner))
            )
        # a schema's owner needs CREATE on the database; without it the schema and what needs it stay
        with p.source.connect(autocommit=True) as src, p.target.connect(autocommit=True) as tgt:
            (f, *_) = ownership.preflight(src, tgt, ["own"], {"ownership": "carry", "mode": "replicate"})
        assert f["verdict"] == "warning", f
        assert f"{owner} (without CREATE on the database): schema own" in f["detail"]
        assert f"{owner} (without CREATE on schema own): table own.items" in f["detail"]
        with p.target.connect(autocommit=True) as tgt:
            db = sql.Identifier(p.target_db)
            tgt.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(db, sql.Identifier(owner)))
        run = ReplicateRun(
            p.source, p.target, rid, publisher=publisher(p), log_dir=tmp_path, include=["own"], ownership="carry"
        )
        plan = run.start()
        for unit in plan["units"]:
            run.unit(unit["unit_id"])
        run.finish()
        assert "ownership" in run.done and run.done.index("ownership") < run.done.index("subscribe")
        with p.source_su() as src:
            src.execute("INSERT INTO own.items VALUES (51, 'streamed'); UPDATE own.items SET v = 'y' WHERE id = 1")
        assert lag.wait_caught_up(p.source, p.target, rid, timeout_s=30)["caught_up"]
        with p.target_su() as tgt:
            assert (
                tgt.execute(
                    "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'own.items'::regclass"
                ).fetchone()[0]
                == owner
            )
            assert tgt.execute("SELECT count(*), max(v) FROM own.items").fetchone() == (51, "y")
            assert tgt.execute("SELECT bool_or(subrunasowner) FROM pg_subscription").fetchone()[0] is False
        # the cut-over validates as the owner's member, owners compared: equal
        done = run.cutover(quiet_s=0.5, writes_timeout_s=20, lag_timeout_s=30)
        assert done["verdict"] == "passed", done["failures"]
        with p.target_su() as tgt:
            tgt.execute(sql.SQL("ALTER TABLE own.items OWNER TO {}").format(sql.Identifier(admin)))
        again = run_validate_owners(p)
        assert again == [f"owner of table own.items differs: source {owner}, target {admin}"]
    finally:
        if run is not None:
            run.abort()
        for db in (p.source_db, p.target_db):
            with p.source_server.connect(db, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(owner)))
        with p.source_server.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(owner)))
