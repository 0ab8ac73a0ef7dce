"""A warehouse shaped like the seed's in table count: many schemas, deep inheritance, small data.

    from include.pg_migration.demo.many_tables import Shape, generate
    summary = generate("host=... dbname=empty_db user=postgres", Shape(schemas=12, children=40))

or ``python -m include.pg_migration.demo.many_tables --dsn "..." [--schemas N] [--children N] ...``.

The shape (all knobs in :class:`Shape`; the default is about 10,000 tables):

- ``zz_shared`` (sorts last on purpose): dimension tables ``dim_0..dim_{d-1}`` with integer keys, an
  enum ``currency_t``, a function ``fiscal_month(date)`` and a sequence ``doc_seq``.
- ``s001..sNNN``: ``parents`` inheritance parents per schema (``fact_<p>``), each with ``children``
  monthly children (``fact_<p>_m<k>``), every child with its own primary key, ``indexes`` more
  indexes and, when ``shared_keys``, a foreign key into a ``zz_shared`` dimension; a
  ``partitioned`` table (``events``, range-partitioned by month, ``partitions`` partitions); a local
  enum ``status_t``; defaults that call ``zz_shared.fiscal_month`` and ``zz_shared.doc_seq``; a view
  over the first parent joined to a dimension.
- ``aa_archive`` (sorts first on purpose): the oldest child of every first parent lives there,
  inheriting from a parent in a schema that sorts after it.

So every kind of cross-schema dependency (inheritance, partitions, views, types, functions, sequence
defaults, keys) crosses schema boundaries against alphabetical order. Each schema is created in its own
transaction, so generating fits a stock lock table (``max_locks_per_transaction`` 64). Deterministic:
no randomness, the rows are functions of their ids.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import psycopg
from psycopg import sql

SHARED = "zz_shared"
ARCHIVE = "aa_archive"


@dataclasses.dataclass(frozen=True)
class Shape:
    schemas: int = 60
    parents: int = 4  # inheritance parents per schema
    children: int = 36  # monthly children per parent
    partitions: int = 12  # partitions of each schema's partitioned table (0: no partitioned table)
    indexes: int = 1  # secondary indexes per table, beside the primary key
    rows: int = 5  # rows per leaf table (parents and partitioned tables hold none of their own)
    dimensions: int = 4  # dimension tables in zz_shared
    shared_keys: bool = True  # a foreign key from every child into a zz_shared dimension

    def schema_names(self) -> list[str]:
        return [f"s{i:03d}" for i in range(1, self.schemas + 1)]

    def table_count(self) -> int:
        """Tables (relkind r and p) the generator creates."""
        per_schema = self.parents * (1 + self.children) + (1 + self.partitions if self.partitions else 0)
        return self.dimensions + self.schemas * per_schema

    def leaf_tables(self) -> int:
        """Tables holding rows of their own."""
        return self.dimensions + self.schemas * (self.parents * self.children + self.partitions)


def _ident(*names: str) -> sql.Identifier:
    return sql.Identifier(*names)


def _shared_ddl(shape: Shape) -> list[sql.Composable]:
    out: list[sql.Composable] = [
        sql.SQL("CREATE SCHEMA {}").format(_ident(SHARED)),
        sql.SQL("CREATE TYPE {} AS ENUM ('EUR', 'USD', 'GBP')").format(_ident(SHARED, "currency_t")),
        sql.SQL("CREATE SEQUENCE {}").format(_ident(SHARED, "doc_seq")),
        sql.SQL(
            "CREATE FUNCTION {}(d date) RETURNS integer LANGUAGE sql IMMUTABLE "
            "RETURN (extract(year FROM d) * 100 + extract(month FROM d))::integer"
        ).format(_ident(SHARED, "fiscal_month")),
    ]
    for d in range(shape.dimensions):
        dim = _ident(SHARED, f"dim_{d}")
        out.append(sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY, name text NOT NULL)").format(dim))
        out.append(
            sql.SQL("INSERT INTO {} SELECT g, 'member ' || g FROM generate_series(1, {}) g").format(
                dim, sql.Literal(max(shape.rows, 1))
            )
        )
    out.append(sql.SQL("CREATE SCHEMA {}").format(_ident(ARCHIVE)))
    return out


def _month(k: int) -> tuple[str, str]:
    """[start, end) of the k-th month from 2000-01."""
    y, m = divmod(k, 12)
    y2, m2 = divmod(k + 1, 12)
    return f"{2000 + y:04d}-{m + 1:02d}-01", f"{2000 + y2:04d}-{m2 + 1:02d}-01"


def _leaf_rows(table: sql.Identifier, shape: Shape, k: int, dim_count: int) -> sql.Composable:
    start, _end = _month(k)
    return sql.SQL(
        "INSERT INTO {} (id, happened_on, dim_id, amount, note) "
        "SELECT g, {}::date + (g % 28), 1 + g % {}, g * 1.25, 'row ' || g FROM generate_series(1, {}) g"
    ).format(table, sql.Literal(start), sql.Literal(dim_count), sql.Literal(shape.rows))


def _schema_ddl(shape: Shape, schema: str, ordinal: int) -> list[sql.Composable]:
    s = schema
    dim_rows = max(shape.rows, 1)
    out: list[sql.Composable] = [
        sql.SQL("CREATE SCHEMA {}").format(_ident(s)),
        sql.SQL("CREATE TYPE {} AS ENUM ('open', 'closed')").format(_ident(s, "status_t")),
    ]
    for p in range(shape.parents):
        parent = _ident(s, f"fact_{p}")
        dim = f"dim_{(ordinal + p) % shape.dimensions}"
        out.append(
            sql.SQL(
                "CREATE TABLE {} (id bigint NOT NULL, happened_on date NOT NULL, dim_id integer NOT NULL, "
                "amount numeric(12,2), note text, status {} NOT NULL DEFAULT 'open', currency {} DEFAULT 'EUR', "
                "doc_no bigint DEFAULT nextval({}), month integer DEFAULT {}(current_date))"
            ).format(
                parent,
                _ident(s, "status_t"),
                _ident(SHARED, "currency_t"),
                sql.Literal(f"{SHARED}.doc_seq"),
                _ident(SHARED, "fiscal_month"),
            )
        )
        for k in range(shape.children):
            # the oldest child of the first parent lives in aa_archive, which sorts before its parent's schema
            child_schema = ARCHIVE if (p == 0 and k == 0) else s
            name = f"{s}_fact_{p}_m{k:03d}" if child_schema == ARCHIVE else f"fact_{p}_m{k:03d}"
            child = _ident(child_schema, name)
            start, end = _month(k)
            out.append(
                sql.SQL(
                    "CREATE TABLE {} (PRIMARY KEY (id), CHECK (happened_on >= {} AND happened_on < {})) INHERITS ({})"
                ).format(child, sql.Literal(start), sql.Literal(end), parent)
            )
            for i in range(shape.indexes):
                col = ("happened_on", "dim_id", "amount", "doc_no")[i % 4]
                out.append(sql.SQL("CREATE INDEX ON {} ({})").format(child, _ident(col)))
            if shape.shared_keys:
                out.append(
                    sql.SQL("ALTER TABLE {} ADD FOREIGN KEY (dim_id) REFERENCES {} (id)").format(
                        child, _ident(SHARED, dim)
                    )
                )
            out.append(_leaf_rows(child, shape, k, dim_rows))
    if shape.partitions:
        events = _ident(s, "events")
        out.append(
            sql.SQL(
                "CREATE TABLE {} (id bigint NOT NULL, happened_on date NOT NULL, dim_id integer NOT NULL, "
                "amount numeric(12,2), note text, PRIMARY KEY (id, happened_on)) PARTITION BY RANGE (happened_on)"
            ).format(events)
        )
        for k in range(shape.partitions):
            part = _ident(s, f"events_m{k:03d}")
            start, end = _month(k)
            out.append(
                sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                    part, events, sql.Literal(start), sql.Literal(end)
                )
            )
            out.append(_leaf_rows(part, shape, k, dim_rows))
        if shape.indexes:
            out.append(sql.SQL("CREATE INDEX ON {} (dim_id)").format(events))
    if shape.parents:
        out.append(
            sql.SQL(
                "CREATE VIEW {} AS SELECT f.id, f.happened_on, d.name FROM {} f JOIN {} d ON d.id = f.dim_id"
            ).format(_ident(s, "v_facts"), _ident(s, "fact_0"), _ident(SHARED, f"dim_{ordinal % shape.dimensions}"))
        )
    return out


def generate(dsn: str, shape: Shape = Shape(), progress: bool = False) -> dict:
    """Create the shape in the (empty) database of ``dsn``; one transaction per schema. Returns a summary."""
    started = time.monotonic()
    with psycopg.connect(dsn, autocommit=False) as conn:
        conn.execute("SET client_min_messages = warning")
        for stmt in _shared_ddl(shape):
            conn.execute(stmt)
        conn.commit()
        for ordinal, schema in enumerate(shape.schema_names()):
            for stmt in _schema_ddl(shape, schema, ordinal):
                conn.execute(stmt)
            conn.commit()
            if progress:
                print(f"many_tables: {schema} done ({time.monotonic() - started:.0f} s)", file=sys.stderr)
        conn.autocommit = True
        conn.execute("ANALYZE")
        tables = conn.execute(
            "SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(%s)",
            ([SHARED, ARCHIVE, *shape.schema_names()],),
        ).fetchone()[0]
    return {
        "shape": dataclasses.asdict(shape),
        "tables": tables,
        "schemas": 2 + shape.schemas,
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dsn", required=True, help="libpq DSN of an empty database")
    for field in dataclasses.fields(Shape):
        default = field.default
        if isinstance(default, bool):
            ap.add_argument(
                f"--{field.name.replace('_', '-')}", type=lambda v: v.lower() in ("1", "true", "yes"), default=default
            )
        else:
            ap.add_argument(f"--{field.name.replace('_', '-')}", type=int, default=default)
    args = ap.parse_args(argv)
    shape = Shape(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Shape)})
    print(json.dumps(generate(args.dsn, shape, progress=True), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
