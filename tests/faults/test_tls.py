"""Connections with sslmode=verify-full and a CA bundle work end to end (worker, pg_dump, validation)."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from include.pg_migration.catalog import inventory
from include.pg_migration.conn import Endpoint
from include.pg_migration.errors import ConfigError
from include.pg_migration.harness import migrate_locally
from include.pg_migration.phases.validate import validate_schema
from scripts import localpg
from tests.conftest import Pair, _unique, assert_equal_data, create_db


@pytest.fixture
def tls_pair():
    server = localpg.ensure_server("scratch")
    with server.connect(autocommit=True) as conn:
        if conn.execute("SHOW ssl").fetchone()[0] != "on":  # started before TLS was configured
            localpg.stop_server("scratch")
            server = localpg.ensure_server("scratch")
    pair = Pair(server, server, _unique("src"), _unique("tgt"))
    create_db(server, pair.source_db)
    create_db(server, pair.target_db, owner=server.admin_user)
    yield pair
    localpg.drop_database(server, pair.source_db)
    localpg.drop_database(server, pair.target_db)


def _verify_full(endpoint: Endpoint, ca: str) -> Endpoint:
    return dataclasses.replace(endpoint, sslmode="verify-full", sslrootcert=ca)


def test_verify_full_with_a_ca_bundle(tls_pair):
    from include.pg_migration.demo import load_warehouse

    load_warehouse(tls_pair.source_server.dsn(tls_pair.source_db), scale=0.05)
    ca = str(localpg.tls_ca_file("scratch"))
    source, target = _verify_full(tls_pair.source, ca), _verify_full(tls_pair.target, ca)
    with source.connect() as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0] is True
    migrate_locally(source, target, f"tls__{uuid.uuid4().hex[:6]}", pool_size=2)
    with tls_pair.source_su() as src, tls_pair.target_su() as tgt:
        assert_equal_data(src, tgt)
    assert validate_schema(source, target, "sales").mismatches == []

    # a CA bundle that did not sign the server's certificate (the system's public CAs) is refused
    with pytest.raises(ConfigError, match="cannot connect to source"):
        inventory(_verify_full(tls_pair.source, "/etc/ssl/certs/ca-certificates.crt"), None, None)
