"""What a re-run's pre-data drops, and how: refused when it would take objects outside the selection,
else in transactions within the target's lock budget.

Before pre-data drops a selected schema (or re-creates objects of ``public``) it asks ``pg_depend`` what
the drop would cascade to outside what is re-created (:data:`DEPENDENTS`): a view, key, function or
default of another schema refuses the run unless ``replace_dependents``. The drops themselves are
planned from the target's catalog (:func:`drop_plan`): the relations dependents first -- children
before parents, a table before the tables its foreign keys reference, views before what they read --
in transactions within the budget (a partition's drop locks only it and its parent; a partitioned
table's drop would lock every partition at once), then each schema with its remaining types and
functions.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import psycopg
from psycopg import sql

from include.pg_migration.batching import APPLY_BASE, EDGES, Node, ordered_components
from include.pg_migration.pgtools import Entry

PUBLIC_RELATION_KIND = """
SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                      WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, c.oid
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relname = %(name)s AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
"""

PUBLIC_ROUTINES = """
SELECT p.oid::pg_catalog.regprocedure::text, p.oid
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'public' AND p.proname = %(name)s
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid AND d.deptype = 'e')
"""

PUBLIC_TYPE = """
SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid
  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
 WHERE n.nspname = 'public' AND t.typname = %(name)s AND t.typtype IN ('c', 'd', 'e', 'r', 'm')
   AND (t.typrelid = 0 OR (SELECT relkind FROM pg_catalog.pg_class WHERE oid = t.typrelid) = 'c')
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.objid = t.oid AND d.deptype = 'e')
"""

#: What dropping the schemas (and the ``public`` objects re-created: ``classes``/``objects``) cascades
#: to outside them, as ``DROP ... CASCADE`` would: dependents ('n', 'a', partition, extension member,
#: internal), an internal part taking its owner along, a column dropped with its type. Reported by owner
#: (a view, not its rewrite rule; a table, not its columns), as "<kind> <schema-qualified identity>".
DEPENDENTS = """
WITH RECURSIVE roots(classid, objid, objsubid) AS (
    SELECT 'pg_catalog.pg_namespace'::pg_catalog.regclass::oid, n.oid, 0
      FROM pg_catalog.pg_namespace n WHERE n.nspname = ANY(%(schemas)s)
    UNION
    SELECT r.classid, r.objid, 0
      FROM unnest(%(classes)s::text[]::pg_catalog.regclass[]::oid[], %(objects)s::oid[]) AS r(classid, objid)
), doomed(classid, objid, objsubid) AS (
    SELECT classid, objid, objsubid FROM roots
    UNION
    SELECT x.classid, x.objid, x.objsubid
      FROM doomed o, LATERAL (
          SELECT d.classid, d.objid, d.objsubid FROM pg_catalog.pg_depend d
           WHERE d.refclassid = o.classid AND d.refobjid = o.objid
             AND (o.objsubid = 0 OR d.refobjsubid = o.objsubid) AND d.deptype IN ('n', 'a', 'i', 'P', 'S', 'e')
          UNION ALL
          SELECT d.refclassid, d.refobjid, d.refobjsubid FROM pg_catalog.pg_depend d
           WHERE d.classid = o.classid AND d.objid = o.objid AND d.objsubid = o.objsubid AND d.deptype = 'i'
      ) x
), described AS (
    SELECT o.classid, o.objid, o.objsubid, i.type, i.identity,
           coalesce(i.schema, (  -- pg_identify_object's schema is quoted where needed: quote these too
               SELECT pg_catalog.quote_ident(n.nspname)
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE c.oid = CASE o.classid
                    WHEN 'pg_catalog.pg_attrdef'::pg_catalog.regclass
                        THEN (SELECT a.adrelid FROM pg_catalog.pg_attrdef a WHERE a.oid = o.objid)
                    WHEN 'pg_catalog.pg_trigger'::pg_catalog.regclass
                        THEN (SELECT t.tgrelid FROM pg_catalog.pg_trigger t WHERE t.oid = o.objid)
                    WHEN 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                        THEN (SELECT r.ev_class FROM pg_catalog.pg_rewrite r WHERE r.oid = o.objid)
                    WHEN 'pg_catalog.pg_policy'::pg_catalog.regclass
                        THEN (SELECT p.polrelid FROM pg_catalog.pg_policy p WHERE p.oid = o.objid) END
           ), (
               SELECT pg_catalog.quote_ident(n.nspname)
                 FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
                WHERE o.classid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND e.oid = o.objid
           )) AS schema
      FROM doomed o, LATERAL pg_catalog.pg_identify_object(o.classid, o.objid, o.objsubid) i
)
SELECT DISTINCT o.type || ' ' || o.identity
  FROM described o
 WHERE (o.schema IS NULL OR o.schema <> ALL(SELECT pg_catalog.quote_ident(s) FROM unnest(%(schemas)s::text[]) s))
   AND o.schema IS DISTINCT FROM 'pg_toast'
   AND NOT EXISTS (SELECT 1 FROM roots r WHERE r.classid = o.classid AND r.objid = o.objid)
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = o.classid AND d.objid = o.objid AND d.objsubid = o.objsubid AND d.deptype = 'i')
   AND NOT (o.objsubid <> 0 AND EXISTS (SELECT 1 FROM doomed w
                                          WHERE w.classid = o.classid AND w.objid = o.objid AND w.objsubid = 0))
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                     JOIN roots r ON r.classid = d.refclassid AND r.objid = d.refobjid
                    WHERE d.classid = o.classid AND d.objid = o.objid AND d.deptype = 'a')
 ORDER BY 1
"""


def public_drops(tgt: psycopg.Connection, entries: list[Entry]) -> list[tuple[sql.Composed, str, int]]:
    """The objects of ``public`` that the dump re-creates (never the schema, never extension objects):
    (the DROP statement, the catalog, the oid) of each."""
    drops: list[tuple[sql.Composed, str, int]] = []
    for entry in entries:
        if entry.schema != "public":
            continue
        if entry.type in ("TABLE", "VIEW", "MATERIALIZED VIEW", "SEQUENCE", "FOREIGN TABLE"):
            row = tgt.execute(PUBLIC_RELATION_KIND, {"name": entry.name}).fetchone()
            if row:
                stmt = sql.SQL("DROP {} IF EXISTS {} CASCADE").format(
                    sql.SQL(row[0]), sql.Identifier("public", entry.name)
                )
                drops.append((stmt, "pg_catalog.pg_class", row[1]))
        elif entry.type in ("FUNCTION", "PROCEDURE", "AGGREGATE"):
            for signature, oid in tgt.execute(PUBLIC_ROUTINES, {"name": entry.name.split("(")[0]}).fetchall():
                kind = "AGGREGATE" if entry.type == "AGGREGATE" else "ROUTINE"
                drops.append(
                    (
                        sql.SQL("DROP {} IF EXISTS {} CASCADE").format(sql.SQL(kind), sql.SQL(signature)),
                        "pg_catalog.pg_proc",
                        oid,
                    )
                )
        elif entry.type in ("TYPE", "DOMAIN"):
            row = tgt.execute(PUBLIC_TYPE, {"name": entry.name}).fetchone()
            if row:
                stmt = sql.SQL("DROP {} IF EXISTS {} CASCADE").format(
                    sql.SQL(row[0]), sql.Identifier("public", entry.name)
                )
                drops.append((stmt, "pg_catalog.pg_type", row[1]))
    return drops


# -- a re-run's drops, from the target's catalog ---------------------------------------------------------

#: Foreign keys between relations (dropping the referencing table first spares the referenced one's lock).
FOREIGN_KEYS = """
SELECT 'r', k.conrelid::bigint, 'r', k.confrelid::bigint FROM pg_catalog.pg_constraint k WHERE k.contype = 'f'
"""

#: The relations of the schemas to drop, with the objects that go with each (its indexes, constraints,
#: defaults, rules, types, TOAST table: one lock entry each when dropped).
DROP_RELATIONS = """
SELECT c.oid::bigint, n.nspname, c.relname, c.relkind::text,
       2 + (SELECT count(*) FROM pg_catalog.pg_depend d
             WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
               AND d.refobjid IN (c.oid, c.reltoastrelid)),
       (SELECT d.refobjid::bigint FROM pg_catalog.pg_depend d
         WHERE c.relkind = 'S' AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
           AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype IN ('a', 'i') LIMIT 1)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
"""

#: What stays of a schema once its relations are gone: dropped with it, one lock entry each.
SCHEMA_REST = """
SELECT n.nspname,
       (SELECT count(*) FROM pg_catalog.pg_type t WHERE t.typnamespace = n.oid AND t.typrelid = 0)
       + (SELECT count(*) FROM pg_catalog.pg_proc p WHERE p.pronamespace = n.oid)
  FROM pg_catalog.pg_namespace n WHERE n.nspname = ANY(%(schemas)s)
"""

DROP_KIND = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE", "f": "FOREIGN TABLE"}


@dataclass
class DropBatch:
    relations: dict[str, list[tuple[str, str]]]  # DROP kind -> relations
    locks: int


def drop_plan(tgt: psycopg.Connection, schemas: list[str], limit: int) -> tuple[list[DropBatch], list[str]]:
    """The drops of the schemas' relations in transactions within ``limit`` lock entries, dependents
    first; and the schemas whose rest (types, functions) does not fit one transaction (named)."""
    nodes: dict[tuple[str, int], Node] = {}
    owned: list[tuple[int, int]] = []
    for oid, schema, name, kind, cost, owner in tgt.execute(DROP_RELATIONS, {"schemas": schemas}):
        if kind == "S" and owner is not None:
            owned.append((oid, owner))
        nodes[("r", oid)] = Node(("r", oid), schema, name, kind, cost, [(schema, name)])
    alias = {k[1]: k for k in nodes}
    for oid, owner in owned:
        if ("r", owner) in nodes:
            nodes[("r", owner)].cost += nodes.pop(("r", oid)).cost
            alias[oid] = ("r", owner)
    for query in (EDGES, FOREIGN_KEYS):
        for a_kind, a, b_kind, b in tgt.execute(query):
            if a_kind == b_kind == "r" and alias.get(a) and alias.get(b) and alias[a] != alias[b]:
                nodes[alias[b]].needs.add(alias[a])  # reversed: a dependent is dropped before what it needs
                nodes[alias[a]].cost += 1  # and its drop locks what it needs (a parent, a referenced table)
    batches: list[DropBatch] = []
    current: list[tuple[str, int]] = []
    locks = APPLY_BASE

    def close() -> None:
        if current:
            by_kind: dict[str, list[tuple[str, str]]] = defaultdict(list)
            for k in current:
                by_kind[DROP_KIND[nodes[k].kind]].append((nodes[k].schema, nodes[k].name))
            batches.append(DropBatch(dict(by_kind), locks))
            current.clear()

    for comp in ordered_components(nodes):
        cost = sum(nodes[k].cost for k in comp)
        if current and locks + cost > limit:
            close()
            locks = APPLY_BASE
        current.extend(comp)
        locks += cost
    close()
    rest = [
        f"schema {schema}: dropping its {n:,} types, functions and other objects in one transaction"
        for schema, n in tgt.execute(SCHEMA_REST, {"schemas": schemas})
        if APPLY_BASE + n > limit
    ]
    return batches, rest
