"""Planning: turn discovered schemas into units of work, largest first.

A :class:`Unit` is the contract between the plan, the DAG (which maps over units) and the worker
(which runs one). It is a small JSON-able record; the worker reads its definition from the
target's state tables by ``run_id`` + ``unit_id``, so only the id travels to a container.

Ordering never depends on which parallel unit finishes first: all DDL that defines tables is
applied once before any data unit (pre-data), every data unit only fills tables and builds the
indexes/keys of the tables it filled, and everything that spans tables (foreign keys, triggers,
index attachments, materialized-view data) is applied after every data unit (post-data).

Validation is planned too: :func:`validation_groups` packs the schemas into a few groups of about
equal cost, one validation task instance each.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from include.pg_migration import selection, state
from include.pg_migration.catalog import Schema
from include.pg_migration.conn import Endpoint

MIN_UNIT_BYTES = 32 * 1024 * 1024


@dataclass
class Unit:
    unit_id: str
    schema: str
    tables: list[str] = field(default_factory=list)
    bytes: int = 0
    part: int = 1
    parts: int = 1
    kind: str = "data"

    @property
    def label(self) -> str:
        return self.schema if self.parts == 1 else f"{self.schema} [{self.part}/{self.parts}]"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["label"] = self.label
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Unit:
        return cls(**{k: v for k, v in data.items() if k != "label"})


def unit_target_bytes(schemas: list[Schema], pool_size: int) -> int:
    """Size above which a schema is split: about a third of one slot's fair share, at least 32 MB."""
    total = sum(t.bytes for s in schemas for t in s.tables if t.holds_data)
    return max(MIN_UNIT_BYTES, math.ceil(total / max(1, pool_size * 3)))


def plan_units(
    schemas: list[Schema],
    pool_size: int = 4,
    split_bytes: int | None = None,
    no_data: set[tuple[str, str]] = frozenset(),
) -> list[Unit]:
    """Units largest first. A schema bigger than ``split_bytes`` is split by tables (LPT packing).
    ``no_data``: ``(schema, table)`` whose rows the selection leaves out (``exclude_table_data``)."""
    limit = split_bytes or unit_target_bytes(schemas, pool_size)
    units: list[Unit] = []
    for schema in schemas:
        loads = (t for t in schema.tables if t.holds_data and (schema.name, t.name) not in no_data)
        tables = sorted(loads, key=lambda t: (-t.bytes, t.name))
        if not tables:
            continue
        size = sum(t.bytes for t in tables)
        parts = min(len(tables), max(1, math.ceil(size / limit)))
        bins: list[list[Any]] = [[0, []] for _ in range(parts)]
        for table in tables:  # longest processing time first: each table to the lightest bin
            lightest = min(bins, key=lambda b: b[0])
            lightest[0] += table.bytes
            lightest[1].append(table.name)
        bins.sort(key=lambda b: -b[0])
        for i, (nbytes, names) in enumerate(bins, start=1):
            unit_id = schema.name if parts == 1 else f"{schema.name}#{i}"
            units.append(Unit(unit_id=unit_id, schema=schema.name, tables=names, bytes=nbytes, part=i, parts=parts))
    units.sort(key=lambda u: (-u.bytes, u.unit_id))
    return units


def predicted_makespan(units: list[Unit], pool_size: int, bytes_per_second: float) -> float:
    """Greedy list scheduling of units (largest first) on ``pool_size`` slots: predicted seconds."""
    slots = [0.0] * max(1, pool_size)
    for unit in sorted(units, key=lambda u: -u.bytes):
        i = slots.index(min(slots))
        slots[i] += unit.bytes / max(bytes_per_second, 1.0)
    return max(slots) if units else 0.0


#: What validating one schema costs beyond its bytes (catalog queries for structure and sequences on
#: both sides), counted as bytes when groups are balanced: many small schemas spread by count.
SCHEMA_VALIDATION_BYTES = 32 * 1024 * 1024


def validation_groups(
    schemas: Iterable[dict[str, Any] | tuple[str, int]],
    pool_size: int,
    schema_cost_bytes: int = SCHEMA_VALIDATION_BYTES,
) -> list[dict[str, Any]]:
    """Schemas in at most ``max(1, 2 * pool_size)`` groups of about equal validation cost, each
    validated by one task instance (one after another), so a run has a few validation task
    instances instead of one per schema.

    ``schemas``: ``{"schema" (or "name"), "bytes"}`` dicts (the plan's ``schema_sizes``) or
    ``(name, bytes)`` pairs. Longest processing time first: schemas largest first, each to the group
    with the least cost so far (cost = bytes + ``schema_cost_bytes``), so a schema that dominates
    stays alone. Groups come largest first, their schemas largest first; each group is
    ``{"label": "sales" | "hr +4", "schemas": [...], "bytes": n}``. Pure and deterministic.
    """
    sizes: dict[str, int] = {}
    for item in schemas:
        name, nbytes = (item.get("schema") or item.get("name"), item.get("bytes")) if isinstance(item, dict) else item
        sizes[str(name)] = max(0, int(nbytes or 0))
    if not sizes:
        return []
    ordered = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))
    bins: list[dict[str, Any]] = [
        {"cost": 0, "bytes": 0, "schemas": []} for _ in range(min(len(ordered), max(1, 2 * pool_size)))
    ]
    for name, nbytes in ordered:
        lightest = min(bins, key=lambda b: (b["cost"], len(b["schemas"])))
        lightest["cost"] += nbytes + schema_cost_bytes
        lightest["bytes"] += nbytes
        lightest["schemas"].append(name)
    bins.sort(key=lambda b: (-b["cost"], b["schemas"][0]))
    return [
        {
            "label": b["schemas"][0] + (f" +{len(b['schemas']) - 1}" if len(b["schemas"]) > 1 else ""),
            "schemas": b["schemas"],
            "bytes": b["bytes"],
        }
        for b in bins
    ]


def make_plan(inventory: dict[str, Any], pool_size: int, split_bytes: int | None = None) -> dict[str, Any]:
    """The ``plan`` task's work: the inventory's schemas as units, largest first, with totals."""
    schemas = [Schema.from_dict(s) for s in inventory["schemas"]]
    left_out = selection.left_out(inventory)
    units = plan_units(schemas, pool_size, split_bytes, no_data=selection.keys(left_out["data"]))
    the_plan = {
        "schemas": [s.name for s in schemas],
        "units": [u.to_dict() for u in units],
        "bytes": sum(s.bytes for s in schemas),
        "tables": sum(len(s.tables) for s in schemas),
    }
    if inventory.get("selection"):  # what the table-level selection left out: pre-data, validation, report
        the_plan["left_out"] = inventory["selection"]
    return the_plan


def register(
    target: Endpoint,
    run_id: str,
    dag_id: str,
    params: dict[str, Any],
    the_plan: dict[str, Any],
    source: Endpoint,
    consistent: bool = True,
) -> None:
    """Create the state schema, hold the guard, store the run and its units on the target."""
    with target.connect("pg_migration register", autocommit=True) as conn:
        state.ensure(conn)
        state.acquire_guard(conn, run_id, dag_id)
        state.start_run(conn, run_id, dag_id, params, consistent)
        state.set_run(
            conn,
            run_id,
            plan=the_plan,
            source=source.public(),
            snapshot_id=None,
            snapshot_released_at=None,
            release_requested=False,
            status="running",
        )
        state.save_units(conn, run_id, the_plan["units"])
