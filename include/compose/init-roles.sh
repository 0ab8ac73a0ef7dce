#!/bin/bash
# docker-entrypoint-initdb.d script for the compose PostgreSQL servers (pg-source, pg-target):
# the roles scripts/localpg.py creates locally.
#   aurora_admin  the "Aurora master user": LOGIN CREATEDB CREATEROLE NOSUPERUSER NOREPLICATION
#   migrator      source-side role of the near-zero-downtime mode: LOGIN REPLICATION, pg_read_all_data
# OWNED_DATABASES (space-separated) are created OWNER aurora_admin (on pg-target: the warehouse DBs).
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v admin_pw="${AURORA_ADMIN_PASSWORD:?}" -v migrator_pw="${MIGRATOR_PASSWORD:?}" <<'SQL'
CREATE ROLE aurora_admin LOGIN PASSWORD :'admin_pw' CREATEDB CREATEROLE NOSUPERUSER NOREPLICATION;
CREATE ROLE migrator LOGIN PASSWORD :'migrator_pw' REPLICATION NOSUPERUSER;
GRANT pg_read_all_data TO migrator;
SQL

for db in ${OWNED_DATABASES:-}; do
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        -c "CREATE DATABASE \"$db\" OWNER aurora_admin"
done
