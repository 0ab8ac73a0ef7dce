"""Roles the target lacks, created with their attributes and memberships (not only a NOLOGIN name).

Used by pre-data (roles that grants name, ``create_roles``) and by the ownership hand-over
(:mod:`include.pg_migration.ownership`: roles that own objects). A role is created with the source's
LOGIN, INHERIT, CREATEDB, CREATEROLE, CONNECTION LIMIT and VALID UNTIL; its memberships in roles the
target has are granted (with ADMIN OPTION, and from PostgreSQL 16 on INHERIT and SET, as on the
source); a direct CREATE on the source database is granted on the target database. What the target
role may not grant is reported per role, never silently dropped:

* SUPERUSER -- never (the target role is not one);
* REPLICATION, BYPASSRLS -- up to PostgreSQL 15 only a superuser grants them; from 16 a CREATEROLE role
  grants only those it has itself. On Aurora REPLICATION is membership in ``rds_replication``;
* CREATEDB -- from 16 only by a role that has it;
* passwords -- ``pg_authid`` is readable by a superuser only: with a non-superuser source role, LOGIN
  roles are created without a password (set one: ``ALTER ROLE ... PASSWORD``). With a superuser
  source role the stored hash (SCRAM or md5) is carried as it is.

Roles that already exist on the target are never altered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

#: Attributes of the named source roles, and whether each has a direct CREATE on the source database.
ROLE_ATTRIBUTES = """
SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin, r.rolreplication,
       r.rolbypassrls, r.rolconnlimit, r.rolvaliduntil::pg_catalog.text AS rolvaliduntil,
       EXISTS (SELECT FROM pg_catalog.pg_database d, pg_catalog.aclexplode(d.datacl) a
                WHERE d.datname = pg_catalog.current_database() AND a.grantee = r.oid
                  AND a.privilege_type = 'CREATE') AS database_create
  FROM pg_catalog.pg_roles r WHERE r.rolname = ANY(%(roles)s) ORDER BY 1
"""

#: Memberships of the named source roles (``inherit_option``/``set_option`` exist from 16 on).
MEMBERSHIPS = """
SELECT g.rolname AS role, m.rolname AS member, am.admin_option,
       coalesce((pg_catalog.to_jsonb(am) ->> 'inherit_option')::bool, m.rolinherit) AS inherit_option,
       coalesce((pg_catalog.to_jsonb(am) ->> 'set_option')::bool, true) AS set_option
  FROM pg_catalog.pg_auth_members am
  JOIN pg_catalog.pg_roles g ON g.oid = am.roleid
  JOIN pg_catalog.pg_roles m ON m.oid = am.member
 WHERE m.rolname = ANY(%(roles)s) ORDER BY 2, 1
"""

#: Stored password hashes: readable by a superuser only.
PASSWORDS = """
SELECT rolname, rolpassword FROM pg_catalog.pg_authid WHERE rolname = ANY(%(roles)s) AND rolpassword IS NOT NULL
"""

#: What the current role is, and may grant.
SELF = """
SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls,
       pg_catalog.current_setting('server_version_num')::int AS version,
       EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'rds_superuser') AS aurora,
       pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE WITH GRANT OPTION') AS grant_create
  FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
"""

EXISTING = "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY(%(roles)s)"

#: Direct memberships on the target (what is granted already).
TARGET_MEMBERSHIPS = """
SELECT g.rolname, m.rolname FROM pg_catalog.pg_auth_members am
  JOIN pg_catalog.pg_roles g ON g.oid = am.roleid JOIN pg_catalog.pg_roles m ON m.oid = am.member
 WHERE m.rolname = ANY(%(roles)s)
"""

#: (attribute, CREATE ROLE keyword) carried when set on the source.
ATTRIBUTES = (
    ("rolcanlogin", "LOGIN"),
    ("rolcreatedb", "CREATEDB"),
    ("rolcreaterole", "CREATEROLE"),
    ("rolreplication", "REPLICATION"),
    ("rolbypassrls", "BYPASSRLS"),
    ("rolsuper", "SUPERUSER"),
)


def self_facts(conn: psycopg.Connection) -> dict[str, Any]:
    """The current role's attributes, the server's version number and whether it is Aurora."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(SELF).fetchone()


def ungrantable(role: dict[str, Any], me: dict[str, Any]) -> list[str]:
    """The attributes of source ``role`` (:data:`ROLE_ATTRIBUTES` row) that ``me`` (:func:`self_facts`
    of the target) may not give a role it creates, each with why (or the Aurora way)."""
    if me["rolsuper"]:
        return []
    v16 = me["version"] >= 160000
    out = []
    if role["rolsuper"]:
        out.append("SUPERUSER (only a superuser grants it)")
    if role["rolreplication"] and not (v16 and me["rolreplication"]):
        out.append(
            "REPLICATION ("
            + ("on Aurora: GRANT rds_replication TO the role" if me["aurora"] else "a superuser must grant it")
            + ")"
        )
    if role["rolbypassrls"] and not (v16 and me["rolbypassrls"]):
        out.append("BYPASSRLS (a superuser must grant it)")
    if role["rolcreatedb"] and v16 and not me["rolcreatedb"]:
        out.append("CREATEDB (the target role has not got it)")
    if role["rolcreaterole"] and not me["rolcreaterole"]:
        out.append("CREATEROLE (the target role has not got it)")
    return out


@dataclass
class RolePlan:
    """What creating ``names`` on the target would do: read from the source, judged against the target."""

    attributes: dict[str, dict[str, Any]]  # source role -> its ROLE_ATTRIBUTES row
    memberships: list[dict[str, Any]]  # MEMBERSHIPS rows of those roles
    passwords: dict[str, str]  # stored hashes (a superuser source role only)
    password_readable: bool
    missing: list[str]  # of the names, those the target lacks
    notes: dict[str, list[str]] = field(default_factory=dict)  # role -> what is not carried


def plan_roles(src: psycopg.Connection, tgt: psycopg.Connection, names: list[str]) -> RolePlan:
    """Read the named roles' attributes and memberships on the source; which the target lacks; per
    role, what would not be carried (attributes the target role may not grant, a missing password)."""
    names = sorted(set(names))
    with src.cursor(row_factory=dict_row) as cur:
        attributes = {r["rolname"]: r for r in cur.execute(ROLE_ATTRIBUTES, {"roles": names})}
        memberships = cur.execute(MEMBERSHIPS, {"roles": names}).fetchall()
    readable = bool(src.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user").fetchone()[0])
    passwords = {r[0]: r[1] for r in src.execute(PASSWORDS, {"roles": names})} if readable else {}
    have = {r[0] for r in tgt.execute(EXISTING, {"roles": names})}
    me = self_facts(tgt)
    plan = RolePlan(attributes, memberships, passwords, readable, [n for n in names if n not in have])
    for name in plan.missing:
        attrs = attributes.get(name)
        if attrs is None:
            continue
        notes = [f"{a} not granted" for a in ungrantable(attrs, me)]
        if attrs["rolcanlogin"] and name not in passwords:
            notes.append(
                "created without a password (passwords cannot be read on the source without a superuser: "
                "set one with ALTER ROLE ... PASSWORD)"
                if not readable
                else "created without a password (none on the source)"
            )
        if notes:
            plan.notes[name] = notes
    return plan


def create_roles(src: psycopg.Connection, tgt: psycopg.Connection, names: list[str]) -> tuple[list[str], list[str]]:
    """Create the named roles the target lacks with the source's attributes, then their memberships (see
    the module doc). Returns (roles created, notes naming each role and what was not carried)."""
    plan = plan_roles(src, tgt, names)
    me = self_facts(tgt)
    created, notes = [], []
    for name in plan.missing:
        attrs = plan.attributes.get(name)
        if attrs is None:
            notes.append(f"role {name!r} does not exist on the source either: not created")
            continue
        try:
            with tgt.transaction():
                tgt.execute(create_statement(attrs, me, plan.passwords.get(name)))
        except psycopg.Error as exc:
            notes.append(f"role {name!r} could not be created: {str(exc).strip().splitlines()[0]}")
            continue
        created.append(name)
        carried = [
            kw for attr, kw in ATTRIBUTES if attrs[attr] and not any(n.startswith(kw) for n in ungrantable(attrs, me))
        ]
        notes.append(
            f"role {name!r} created on the target ({' '.join(carried) or 'NOLOGIN'})"
            + "".join(f"; {n}" for n in plan.notes.get(name, []))
        )
        if attrs["database_create"]:
            notes += _grant_database_create(tgt, name, me)
    notes += _grant_memberships(tgt, plan.memberships, set(created), me)
    return created, notes


def create_statement(attrs: dict[str, Any], me: dict[str, Any], password: str | None) -> sql.Composed:
    """``CREATE ROLE`` with the source role's attributes that ``me`` may grant (:func:`ungrantable`)."""
    refused = ungrantable(attrs, me)
    words = [kw if attrs[attr] else f"NO{kw}" for attr, kw in ATTRIBUTES if not any(r.startswith(kw) for r in refused)]
    words = [w for w in words if w not in ("NOSUPERUSER", "NOREPLICATION", "NOBYPASSRLS") or me["rolsuper"]]
    words.append("INHERIT" if attrs["rolinherit"] else "NOINHERIT")
    stmt = sql.SQL("CREATE ROLE {} WITH ").format(sql.Identifier(attrs["rolname"])) + sql.SQL(" ".join(words))
    if attrs["rolconnlimit"] is not None and attrs["rolconnlimit"] >= 0:
        stmt += sql.SQL(" CONNECTION LIMIT {}").format(sql.Literal(int(attrs["rolconnlimit"])))
    if attrs["rolvaliduntil"] is not None:
        stmt += sql.SQL(" VALID UNTIL {}").format(sql.Literal(attrs["rolvaliduntil"]))
    if password is not None:
        stmt += sql.SQL(" PASSWORD {}").format(sql.Literal(password))
    return stmt


def _grant_database_create(tgt: psycopg.Connection, role: str, me: dict[str, Any]) -> list[str]:
    db = tgt.execute("SELECT pg_catalog.current_database()").fetchone()[0]
    if not (me["rolsuper"] or me["grant_create"]):
        return [f"role {role!r}: CREATE on the database not granted (the target role may not grant it)"]
    try:
        with tgt.transaction():
            tgt.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(db), sql.Identifier(role)))
    except psycopg.Error as exc:
        return [f"role {role!r}: CREATE on the database not granted: {str(exc).strip().splitlines()[0]}"]
    return []


def _grant_memberships(
    tgt: psycopg.Connection, memberships: list[dict[str, Any]], created: set[str], me: dict[str, Any]
) -> list[str]:
    """Memberships of the roles just created in roles the target has (as on the source); the others named."""
    mine = [m for m in memberships if m["member"] in created]
    if not mine:
        return []
    have = {r[0] for r in tgt.execute(EXISTING, {"roles": [m["role"] for m in mine]})}
    granted = {tuple(r) for r in tgt.execute(TARGET_MEMBERSHIPS, {"roles": sorted(created)})}
    notes = []
    for m in mine:
        if m["role"] not in have:
            notes.append(f"role {m['member']!r}: membership in {m['role']!r} not carried (no such role on the target)")
            continue
        if (m["role"], m["member"]) in granted:
            continue
        options = []
        if m["admin_option"]:
            options.append("ADMIN OPTION" if me["version"] < 160000 else "ADMIN TRUE")
        if me["version"] >= 160000:
            options += [f"INHERIT {str(m['inherit_option']).upper()}", f"SET {str(m['set_option']).upper()}"]
        stmt = sql.SQL("GRANT {} TO {}").format(sql.Identifier(m["role"]), sql.Identifier(m["member"]))
        if options:
            stmt += sql.SQL(" WITH " + ", ".join(options))
        try:
            with tgt.transaction():
                tgt.execute(stmt)
        except psycopg.Error as exc:
            notes.append(
                f"role {m['member']!r}: membership in {m['role']!r} not carried: {str(exc).strip().splitlines()[0]}"
            )
    return notes
