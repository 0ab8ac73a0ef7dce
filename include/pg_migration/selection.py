"""Table-level selection: ``pg_dump -t / -T / --exclude-table-data`` with pg_dump's own pattern rules.

Three trigger-form params, each a list of patterns (:class:`Selection`):

``tables``              only these tables (and only the schemas that hold one of them); empty: every table
``exclude_tables``      leave these tables out altogether (no definition, no data): ``pg_dump -T``
``exclude_table_data``  create these tables but copy none of their rows: ``pg_dump --exclude-table-data``

A pattern is read exactly as pg_dump reads one (:func:`translate`, after PostgreSQL's
``patternToSQLRegex`` and ``processSQLNamePattern``, fe_utils/string_utils.c):

* ``*`` is any sequence of characters, ``?`` any one character (outside double quotes);
* ``.`` separates the parts: ``table``, ``schema.table`` or ``database.schema.table`` (the database
  part, taken literally, must be the source's database: pg_dump's "cross-database references are not
  implemented"; more dots are an "improper relation name");
* outside double quotes letters fold to lower case, as SQL identifiers do; inside them nothing
  folds, ``* ? .`` are literal, and ``""`` is one ``"`` (so ``"Reporting Mart"."Q*"`` is literal but
  for nothing, while ``"Reporting Mart".q*`` is any table of that schema starting with q);
* ``$`` is always literal; other regular-expression characters pass through outside quotes (``[ab]``,
  ``(x|y)``, ``+``: pg_dump's "knowledgeable users"), except ``[]``, which is literal;
* a part is anchored (it matches the whole name), and the match runs on the SOURCE with its own
  regular expressions (``OPERATOR(pg_catalog.~) ... COLLATE pg_catalog.default``);
* a pattern without a schema part matches only the tables visible on the source role's default
  ``search_path`` (``pg_table_is_visible``), exactly as ``pg_dump -t name`` does.

Patterns select tables (plain, partitioned, foreign): views, sequences, types and functions follow
their schema. Every pattern must match at least one table of the selected schemas, or discover fails
naming it (``pg_dump --strict-names``). Pre-flight (:func:`consistency`) refuses a selection that
cannot be restored consistently, naming both objects: an included child or partition of a table left
out, a partition left out of an included partitioned table, a foreign key from an included table to
one left out or whose data is left out, a view of the selected schemas reading a table left out.
The plan carries what was left out (``plan["left_out"]``): pre-data dumps with ``-T`` for it, the
data units skip both kinds, validation ignores the tables left out and expects 0 rows in those whose
data is, and the report lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from include.pg_migration.errors import PlanError
from include.pg_migration.findings import finding, names_list

#: The params that carry patterns, in the order pg_dump applies them (exclusion wins).
PARAMS = ("tables", "exclude_tables", "exclude_table_data")

#: Tables (relkind r, p, f) each pattern matches, as pg_dump's ``expand_table_name_patterns`` queries
#: them: name and schema by regular expression, or, for a pattern without a schema part, visibility.
MATCHES = """
SELECT p.ord::int AS pattern, n.nspname AS schema, c.relname AS name
  FROM ROWS FROM (pg_catalog.unnest(%(schema_res)s::text[]), pg_catalog.unnest(%(name_res)s::text[]))
       WITH ORDINALITY AS p(schema_re, name_re, ord)
  JOIN pg_catalog.pg_class c
    ON c.relkind IN ('r', 'p', 'f') AND c.relname OPERATOR(pg_catalog.~) p.name_re COLLATE pg_catalog.default
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s)
   AND CASE WHEN p.schema_re IS NULL THEN pg_catalog.pg_table_is_visible(c.oid)
            ELSE n.nspname OPERATOR(pg_catalog.~) p.schema_re COLLATE pg_catalog.default END
"""

#: Inheritance (and partition) links, foreign keys and views (materialized too) over tables, from the
#: selected schemas: what a table-level selection must keep together. One pass over pg_inherits,
#: pg_constraint and pg_depend's rewrite rules (linear in their size).
LINKS = """
SELECT CASE WHEN c.relispartition THEN 'partition' ELSE 'child' END AS kind,
       cn.nspname AS schema, c.relname AS name, pn.nspname AS other_schema, p.relname AS other, '' AS via
  FROM pg_catalog.pg_inherits i
  JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
  JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace
  JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
  JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
 WHERE cn.nspname = ANY(%(schemas)s) OR pn.nspname = ANY(%(schemas)s)
UNION ALL
SELECT 'key', n.nspname, t.relname, rn.nspname, r.relname, k.conname
  FROM pg_catalog.pg_constraint k
  JOIN pg_catalog.pg_class t ON t.oid = k.conrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
  JOIN pg_catalog.pg_class r ON r.oid = k.confrelid
  JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
 WHERE k.contype = 'f' AND n.nspname = ANY(%(schemas)s) AND k.conparentid = 0
UNION ALL
SELECT DISTINCT 'view', vn.nspname, v.relname, tn.nspname, t.relname, ''
  FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_rewrite w ON w.oid = d.objid
  JOIN pg_catalog.pg_class v ON v.oid = w.ev_class
  JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
  JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
  JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
 WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
   AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'n'
   AND vn.nspname = ANY(%(schemas)s) AND v.oid <> t.oid AND t.relkind IN ('r', 'p', 'f')
"""

#: Indexes of some tables of a schema (validation leaves the indexes of tables left out aside).
INDEXES_OF = """
SELECT i.relname FROM pg_catalog.pg_index x
  JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
  JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
 WHERE n.nspname = %(schema)s AND t.relname = ANY(%(tables)s)
"""


# -- patterns ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    """One pattern as pg_dump reads it: anchored regular expressions of the name and (when given) the
    schema, and the literal database part (when given)."""

    text: str
    name_re: str
    schema_re: str | None = None
    database: str | None = None


#: Regular-expression characters escaped inside double quotes (patternToSQLRegex's list).
_REGEX_SPECIAL = "|*+?()[]{}.^\\"


def translate(text: str) -> Pattern:
    """``text`` as pg_dump's ``patternToSQLRegex`` (force_escape off, literal database part) reads it."""
    parts: list[list[str]] = [["^("]]
    literal: list[str] = []  # the first part as written (case folded), for the database name
    state = {"quoted": False, "first": True, "dots": 0}

    def emit(regex: str, written: str) -> None:
        parts[-1].append(regex)
        if state["first"]:
            literal.append(written)

    i = 0
    while i < len(text):
        ch, after = text[i], text[i + 1 : i + 2]
        quoted = state["quoted"]
        if ch == '"':
            if quoted and after == '"':
                emit('"', '"')  # "" inside quotes: one quote
                i += 1
            else:
                state["quoted"] = not quoted
        elif not quoted and "A" <= ch <= "Z":  # pg_tolower of what isupper() calls upper: ASCII
            emit(ch.lower(), ch.lower())
        elif not quoted and ch in "*?":
            emit(".*" if ch == "*" else ".", ch)
        elif not quoted and ch == ".":
            state["first"], state["dots"] = False, state["dots"] + 1
            if len(parts) < 3:
                parts[-1].append(")$")
                parts.append(["^("])
            else:
                parts[-1].append(".")
        elif ch == "$":  # always literal: valid in identifiers, and the parts are anchored anyway
            emit("\\$", "$")
        elif quoted and ch in _REGEX_SPECIAL or ch == "[" and after == "]":
            emit("\\" + ch, ch)
        else:
            emit(ch, ch)
        i += 1
    parts[-1].append(")$")
    if state["dots"] > 2:
        raise PlanError(f"improper relation name (too many dotted names): {text}")
    res = ["".join(p) for p in parts]
    return Pattern(
        text=text,
        name_re=res[-1],
        schema_re=res[-2] if len(res) >= 2 else None,
        database="".join(literal) if len(res) == 3 else None,
    )


@dataclass
class Selection:
    """The three pattern lists of a run (empty lists: every table of the selected schemas)."""

    tables: list[str] = field(default_factory=list)
    exclude_tables: list[str] = field(default_factory=list)
    exclude_table_data: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, params: dict[str, Any] | None) -> Selection:
        params = params or {}
        return cls(*([p for p in (params.get(k) or []) if p] for k in PARAMS))

    def __bool__(self) -> bool:
        return bool(self.tables or self.exclude_tables or self.exclude_table_data)

    def patterns(self) -> list[tuple[str, str]]:
        """``(param, pattern)`` of every pattern, in PARAMS order."""
        return [(k, p) for k in PARAMS for p in getattr(self, k)]

    def to_dict(self) -> dict[str, list[str]]:
        return {k: list(getattr(self, k)) for k in PARAMS}


def match(conn: psycopg.Connection, sel: Selection, schemas: list[str]) -> list[set[tuple[str, str]]]:
    """Per pattern of ``sel.patterns()``: the tables ``(schema, name)`` of ``schemas`` it matches on
    the source. A database part other than the source's own fails, as in pg_dump."""
    pats = [translate(p) for _, p in sel.patterns()]
    database = conn.execute("SELECT pg_catalog.current_database()").fetchone()[0]
    for pat in pats:
        if pat.database is not None and pat.database != database:
            raise PlanError(f"cross-database references are not implemented: {pat.text}")
    found: list[set[tuple[str, str]]] = [set() for _ in pats]
    if pats:
        params = {"schema_res": [p.schema_re for p in pats], "name_res": [p.name_re for p in pats], "schemas": schemas}
        for ordinal, schema, name in conn.execute(MATCHES, params):
            found[ordinal - 1].add((schema, name))
    return found


# -- what a selection leaves out -----------------------------------------------------------------------


def decide(sel: Selection, matches: list[set[tuple[str, str]]], tables: list[tuple[str, str]]) -> dict[str, Any]:
    """What ``sel`` leaves out of ``tables`` (every table of the selected schemas), given each
    pattern's ``matches``: ``{"patterns", "tables": [{schema, table, why}], "data": [...]}``. A
    pattern matching nothing raises PlanError naming it (``--strict-names``)."""
    named = sel.patterns()
    empty = [f"{param} {pattern!r}" for (param, pattern), hits in zip(named, matches, strict=True) if not hits]
    if empty:
        raise PlanError(
            "pattern(s) matching no table of the selected schemas (pg_dump --strict-names): " + ", ".join(empty)
        )
    by_param: dict[str, dict[tuple[str, str], str]] = {k: {} for k in PARAMS}
    for (param, pattern), hits in zip(named, matches, strict=True):
        for key in hits:
            by_param[param].setdefault(key, pattern)
    left_tables, left_data = [], []
    for key in tables:
        why = None
        if key in by_param["exclude_tables"]:
            why = f"exclude_tables {by_param['exclude_tables'][key]!r}"
        elif sel.tables and key not in by_param["tables"]:
            why = "matched by no pattern of tables"
        if why:
            left_tables.append({"schema": key[0], "table": key[1], "why": why})
        elif key in by_param["exclude_table_data"]:
            why = f"exclude_table_data {by_param['exclude_table_data'][key]!r}"
            left_data.append({"schema": key[0], "table": key[1], "why": why})
    return {"patterns": sel.to_dict(), "tables": left_tables, "data": left_data}


def choose(conn: psycopg.Connection, sel: Selection, schemas: list[Any]) -> tuple[list[Any], dict[str, Any] | None]:
    """Discover's hook: apply ``sel`` to the discovered schemas (``catalog.Schema``: ``name``,
    ``bytes``, ``tables`` of ``name`` and ``bytes``). Returns the schemas narrowed (tables left out
    removed; with ``tables`` patterns, only the schemas that keep a table) and what was left out
    (None without patterns)."""
    if not sel:
        return schemas, None
    names = [s.name for s in schemas]
    every = [(s.name, t.name) for s in schemas for t in s.tables]
    left = decide(sel, match(conn, sel, names), every)
    out_keys = {(t["schema"], t["table"]) for t in left["tables"]}
    kept = []
    for schema in schemas:
        gone = [t for t in schema.tables if (schema.name, t.name) in out_keys]
        schema.tables = [t for t in schema.tables if (schema.name, t.name) not in out_keys]
        schema.bytes = max(0, schema.bytes - sum(t.bytes for t in gone))
        if schema.tables or not sel.tables:
            kept.append(schema)
    kept_names = {s.name for s in kept}
    left["schemas"] = [n for n in names if n not in kept_names]  # their tables are not listed one by one
    left["tables"] = [t for t in left["tables"] if t["schema"] in kept_names]
    left["data"] = [t for t in left["data"] if t["schema"] in kept_names]
    return kept, left


def left_out(plan_or_inventory: dict[str, Any] | None) -> dict[str, Any]:
    """The ``left_out`` of a plan (or the ``selection`` of an inventory); empty lists when none."""
    data = plan_or_inventory or {}
    got = data.get("left_out") or data.get("selection") or {}
    return {"patterns": got.get("patterns", {}), "tables": got.get("tables", []), "data": got.get("data", [])}


#: Validation's note on a table whose rows the selection leaves out (``exclude_table_data``).
NO_DATA = "data left out by exclude_table_data"


def no_data_note(source_rows_now: int | None) -> str:
    return f"{NO_DATA}: 0 rows expected ({source_rows_now} in the source)"


def left_out_in(plan: dict[str, Any] | None, schema: str) -> tuple[set[str], set[str]]:
    """The tables of one schema a plan leaves out, and those whose data it leaves out (validation)."""
    left = left_out(plan)
    return names_in(left["tables"], schema), names_in(left["data"], schema)


def keys(entries: list[dict[str, str]], schema: str | None = None) -> set[tuple[str, str]]:
    return {(e["schema"], e["table"]) for e in entries if schema is None or e["schema"] == schema}


def names_in(entries: list[dict[str, str]], schema: str) -> set[str]:
    """The table names of ``entries`` (a ``left_out`` list) in one schema."""
    return {e["table"] for e in entries if e["schema"] == schema}


# -- pre-flight: can the selection be restored consistently? -------------------------------------------


def conflicts(left: dict[str, Any], links: list[tuple[str, str, str, str, str, str]], selected: set[str]) -> list[str]:
    """Why a selection cannot be restored consistently, each naming both objects. ``links``:
    ``(kind, schema, name, other_schema, other, via)`` from :data:`LINKS`; ``selected``: the schemas."""
    out_tables, out_data = keys(left["tables"]), keys(left["data"])
    why = {(e["schema"], e["table"]): e["why"] for e in left["tables"] + left["data"]}

    def kept(key: tuple[str, str]) -> bool:
        return key[0] in selected and key not in out_tables

    def q(key: tuple[str, str]) -> str:
        return f"{key[0]}.{key[1]}"

    problems = []
    for kind, schema, name, other_schema, other, via in links:
        this, that = (schema, name), (other_schema, other)
        if kind in ("child", "partition") and kept(this) and that in out_tables:
            problems.append(f"{q(this)} is included but its parent {q(that)} is left out ({why[that]})")
        elif kind == "partition" and kept(that) and this in out_tables:
            problems.append(
                f"partition {q(this)} is left out ({why[this]}) of the included partitioned table {q(that)}: "
                "its rows would be missing from it (include every partition, e.g. a pattern ending in *)"
            )
        elif kind == "view" and this[0] in selected and that in out_tables:
            problems.append(f"view {q(this)} reads {q(that)}, which is left out ({why[that]})")
        elif kind == "key" and kept(this) and that in out_tables:
            problems.append(f"foreign key {via} of {q(this)} references {q(that)}, which is left out ({why[that]})")
        elif kind == "key" and kept(this) and this not in out_data and that in out_data:
            problems.append(
                f"foreign key {via} of {q(this)} references {q(that)}, whose data is left out ({why[that]}): "
                f"the rows of {q(this)} would violate it"
            )
    return problems


def consistency(conn: psycopg.Connection, inventory: dict[str, Any], mode: str = "snapshot") -> list[dict[str, str]]:
    """Pre-flight's hook: the ``table selection`` finding (blocking when :func:`conflicts` finds any;
    in ``mode`` replicate, which publishes every table of the schemas, any table left out)."""
    left = left_out(inventory)
    if not (left["tables"] or left["data"]):
        return []
    if mode == "replicate":
        return [
            finding(
                "table selection",
                "blocking",
                "tables, exclude_tables and exclude_table_data are not supported in mode replicate (the "
                f"publication carries every table of the schemas); {summary(left)}",
            )
        ]
    selected = {s["name"] for s in inventory["schemas"]}
    links = conn.execute(LINKS, {"schemas": sorted(selected)}).fetchall()
    problems = conflicts(left, links, selected)
    if problems:
        return [
            finding(
                "table selection",
                "blocking",
                "the selection cannot be restored consistently: "
                + "; ".join(problems[:50])
                + (f"; and {len(problems) - 50} more" if len(problems) > 50 else ""),
            )
        ]
    return [finding("table selection", "ok", summary(left))]


def summary(left: dict[str, Any]) -> str:
    """``left out: 3 table(s) (a.b, ...); data left out: 1 table(s) (c.d)`` (a finding, a log line)."""
    tables = [f"{e['schema']}.{e['table']}" for e in left["tables"]]
    data = [f"{e['schema']}.{e['table']}" for e in left["data"]]
    return (
        f"left out: {len(tables)} table(s) ({names_list(tables) or 'none'}); "
        f"data left out: {len(data)} table(s) ({names_list(data) or 'none'})"
    )


# -- validation: what the structure comparison leaves aside ---------------------------------------------


def without_left_out(
    conn: psycopg.Connection, schema: str, items: set[tuple[str, str, str]], tables: set[str]
) -> set[tuple[str, str, str]]:
    """A schema's structure inventory (``(kind, name, definition)``, validate.INVENTORY) without what
    belongs to the ``tables`` left out: their rows, columns, indexes, constraints, triggers, privileges."""
    if not tables:
        return items
    indexes = {r[0] for r in conn.execute(INDEXES_OF, {"schema": schema, "tables": sorted(tables)})}

    def belongs(kind: str, name: str) -> bool:
        if kind == "table":
            return name in tables
        if kind == "index":
            return name in indexes
        if kind in ("column", "constraint", "trigger"):
            return name.split(".", 1)[0] in tables or any(name.startswith(t + ".") for t in tables)
        if kind == "privilege":
            return any(f" on table {t} to " in name for t in tables)
        return False

    return {item for item in items if not belongs(item[0], item[1])}
