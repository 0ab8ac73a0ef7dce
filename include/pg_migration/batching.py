"""Pre-data in batches that fit the lock budget: chosen and ordered from the catalog.

``pg_dump`` locks every relation it dumps until it ends, and a transaction that creates tables holds a
lock on each (and on its TOAST table and index) until it commits: at ten thousand tables one of either
overruns a stock lock table (:mod:`include.pg_migration.locks`). So pre-data dumps and applies the
definitions in batches, each within the budget of both servers:

1. a dump of the selected schemas with every relation excluded (``-n s -T "s".*``): the schemas, types,
   domains, functions (``pg_dump`` selects only relations and schemas, never one type or function);
   applied first, in transactions of a bounded number of entries -- except the functions that need a
   relation (its row type as an argument or result, a ``BEGIN ATOMIC`` body reading it), applied right
   after the batch that creates the last relation they need;
2. the relations in batches (``-t``; on ``pg_dump`` 17+ a ``--filter`` file), every one in the run's
   exported snapshot, ordered from the source catalog (``pg_inherits``, ``pg_depend``) so that no batch
   needs an object of a later one: parents before children (inheritance and partitions), sequences
   before the tables whose defaults use them, views after what they read, a table with its owned
   sequences; a dependency cycle stays inside one batch. Each batch is applied in one target transaction.

A re-run's drops are batched the same way from the target's catalog, dependents first (children before
parents, a table before the tables its foreign keys reference, views before what they read), then each
schema's remaining types and functions with the schema.

Where one indivisible step cannot fit whatever the batching -- a dependency cycle too large, a foreign
key on a partitioned table (added, validated and dropped with every partition locked at once) -- pre-flight
fails naming the object, the setting, the value it needs and why (:func:`indivisible`).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg

from include.pg_migration import locks
from include.pg_migration.findings import finding
from include.pg_migration.locks import Budget

#: The selected schemas' relations; owned sequences (serial, identity) name the table they belong to.
RELATIONS = """
SELECT c.oid::bigint, n.nspname, c.relname, c.relkind::text, c.reltoastrelid <> 0,
       (SELECT count(*) FROM pg_catalog.pg_attrdef a WHERE a.adrelid = c.oid),
       (SELECT d.refobjid::bigint FROM pg_catalog.pg_depend d
         WHERE c.relkind = 'S' AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
           AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype IN ('a', 'i') LIMIT 1)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e
                    WHERE e.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND e.objid = c.oid
                      AND e.deptype = 'e')
"""

#: (dependent, needed) between relations and functions: a child needs its parents; a view what its rule
#: reads; a table what its defaults and checks use; a function the relations whose row type it takes or
#: returns or its BEGIN ATOMIC body reads. Kinds: 'r' relation (pg_class oid), 'f' function (pg_proc oid).
#: Foreign keys are post-data: applied after all data, never ordering pre-data.
EDGES = """
SELECT 'r', i.inhrelid::bigint, 'r', i.inhparent::bigint FROM pg_catalog.pg_inherits i
UNION
SELECT CASE WHEN d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass THEN 'f' ELSE 'r' END,
       (CASE d.classid WHEN 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                           THEN (SELECT r.ev_class FROM pg_catalog.pg_rewrite r WHERE r.oid = d.objid)
                       WHEN 'pg_catalog.pg_attrdef'::pg_catalog.regclass
                           THEN (SELECT a.adrelid FROM pg_catalog.pg_attrdef a WHERE a.oid = d.objid)
                       WHEN 'pg_catalog.pg_constraint'::pg_catalog.regclass
                           THEN (SELECT k.conrelid FROM pg_catalog.pg_constraint k
                                  WHERE k.oid = d.objid AND k.contype NOT IN ('f', 'p', 'u', 'x'))
                       ELSE d.objid END)::bigint,
       CASE WHEN d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass THEN 'f' ELSE 'r' END,
       (CASE d.refclassid WHEN 'pg_catalog.pg_type'::pg_catalog.regclass
                              THEN (SELECT coalesce(nullif(t.typrelid, 0), e.typrelid)
                                      FROM pg_catalog.pg_type t
                                      LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem
                                     WHERE t.oid = d.refobjid)
                          ELSE d.refobjid END)::bigint
  FROM pg_catalog.pg_depend d
 WHERE d.deptype = 'n'
   AND d.classid IN ('pg_catalog.pg_rewrite'::pg_catalog.regclass, 'pg_catalog.pg_attrdef'::pg_catalog.regclass,
                     'pg_catalog.pg_constraint'::pg_catalog.regclass, 'pg_catalog.pg_proc'::pg_catalog.regclass,
                     'pg_catalog.pg_class'::pg_catalog.regclass)
   AND d.refclassid IN ('pg_catalog.pg_class'::pg_catalog.regclass, 'pg_catalog.pg_proc'::pg_catalog.regclass,
                        'pg_catalog.pg_type'::pg_catalog.regclass)
"""

#: Functions of the selected schemas, with the name pg_dump gives their entry (identifiers quoted as
#: under --quote-all-identifiers): matched against the dump of the schemas without relations.
FUNCTIONS = """
SELECT p.oid::bigint, n.nspname,
       p.proname || '(' || coalesce((SELECT string_agg(pg_catalog.format_type(a.t, NULL), ', ' ORDER BY a.i)
                                       FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(t, i)), '') || ')'
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = ANY(%(schemas)s)
"""

#: Foreign keys of (or into) partitioned tables: adding, validating or dropping one locks every partition
#: of both sides in one statement. With the leaf partitions of each side.
PARTITIONED_KEYS = """
WITH RECURSIVE tree(root, rel) AS (
    SELECT c.oid, c.oid FROM pg_catalog.pg_class c WHERE c.relkind = 'p'
    UNION ALL
    SELECT t.root, i.inhrelid FROM tree t JOIN pg_catalog.pg_inherits i ON i.inhparent = t.rel
), size AS (SELECT root, count(*) AS rels FROM tree GROUP BY root)
SELECT n.nspname, c.relname, k.conname,
       coalesce((SELECT rels FROM size WHERE root = k.conrelid), 1)
       + coalesce((SELECT rels FROM size WHERE root = k.confrelid), 1)
  FROM pg_catalog.pg_constraint k
  JOIN pg_catalog.pg_class c ON c.oid = k.conrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE k.contype = 'f' AND k.conparentid = 0 AND n.nspname = ANY(%(schemas)s)
   AND (c.relkind = 'p' OR (SELECT f.relkind FROM pg_catalog.pg_class f WHERE f.oid = k.confrelid) = 'p')
"""

#: Entries a pg_dump holds besides the relations it dumps (catalogs and their indexes: measured 122 on
#: PostgreSQL 15), and per relation dumped (measured 1.06).
DUMP_BASE = 150
DUMP_PER_RELATION = 1.25
#: Entries a pre-data transaction holds besides what it creates (catalogs beyond the 16 fast-path slots,
#: the run's state tables, its transaction id).
APPLY_BASE = 40
#: Entries an FK statement holds per relation of both sides (the relation, its index, its constraint).
FK_PER_RELATION = 3


@dataclass
class Node:
    """A relation (with its owned sequences) or a function that needs a relation."""

    key: tuple[str, int]
    schema: str
    name: str
    kind: str
    cost: int  # lock entries its CREATE takes on the target (its own, TOAST table and index, sequences)
    relations: list[tuple[str, str]] = field(default_factory=list)  # what pg_dump -t names for it
    needs: set[tuple[str, int]] = field(default_factory=set)
    defaults: int = 0  # column defaults pg_dump sets apart (one lock entry each: the pg_attrdef replaced)

    def label(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class Batch:
    """One pg_dump of relations (the functions needing them applied after), within the source's budget."""

    relations: list[tuple[str, str]]
    functions: list[tuple[str, str]]  # (schema, pg_dump entry name) applied after the batch's relations
    source_locks: int
    target_locks: int  # its creation on the target, in transactions of at most the target's budget

    def to_dict(self) -> dict[str, Any]:
        return {
            "relations": len(self.relations),
            "functions": len(self.functions),
            "source_locks": self.source_locks,
            "target_locks": self.target_locks,
            "first": ".".join(self.relations[0]) if self.relations else None,
            "last": ".".join(self.relations[-1]) if self.relations else None,
        }


@dataclass
class Plan:
    batches: list[Batch]
    target_limit: int  # lock entries per target transaction
    costs: dict[tuple[str, str], int]  # (schema, relation) -> entries its creation takes on the target
    too_big: list[str]  # indivisible steps that fit no budget, each explained

    def deferred_functions(self) -> set[tuple[str, str]]:
        return {f for b in self.batches for f in b.functions}

    def entry_cost(self, entry_type: str, schema: str | None, name: str, seen: set) -> int:
        """Lock entries applying one pg_dump entry takes on the target, in a transaction that already
        locked the relations of ``seen`` (updated): a relation's own and its TOAST's and what it needs; a
        default (its pg_attrdef, and its table unless seen: measured), a comment, a grant: one."""
        if entry_type in RELATION_ENTRIES:
            seen.add((schema, name))
            return self.costs.get((schema or "", name), 4)
        if entry_type in ("DEFAULT", "CHECK CONSTRAINT", "SEQUENCE OWNED BY"):
            table = (schema, name.split(" ", 1)[0])  # "<table> <column>", "<table> <constraint>"
            new = table not in seen
            seen.add(table)
            return 2 if new else 1
        return 1 if entry_type in ("COMMENT", "ACL") else 2

    def transactions(self) -> int:
        """Target transactions the relations take, about."""
        room = max(self.target_limit - APPLY_BASE, 1)
        return sum(-(-b.target_locks // room) for b in self.batches)

    def describe(self) -> str:
        rel = sum(len(b.relations) for b in self.batches)
        if not self.batches:
            return "no relation to create"
        widest = max(self.batches, key=lambda b: len(b.relations))
        return (
            f"{rel:,} relation(s) in {len(self.batches)} pg_dump batch(es) of at most {len(widest.relations):,} "
            f"relations (about {max(b.source_locks for b in self.batches):,} source lock entries each), applied "
            f"in about {self.transactions():,} target transaction(s) of at most {self.target_limit:,} lock "
            "entries, after the schemas, types and functions"
        )


#: pg_dump entry types that create a relation.
RELATION_ENTRIES = ("TABLE", "VIEW", "MATERIALIZED VIEW", "SEQUENCE", "FOREIGN TABLE")


def _relation_nodes(src: psycopg.Connection, schemas: list[str]) -> tuple[dict, dict[int, tuple[str, int]]]:
    nodes: dict[tuple[str, int], Node] = {}
    owned: list[tuple[int, str, str, int]] = []
    for oid, schema, name, kind, toast, defaults, owner in src.execute(RELATIONS, {"schemas": schemas}):
        if kind == "S" and owner is not None:
            owned.append((oid, schema, name, owner))
            continue
        # measured (pg_locks, PostgreSQL 15): the relation, its TOAST table (two modes) and index, and each
        # default pg_dump sets apart (ALTER COLUMN ... SET DEFAULT replaces an inherited one: its pg_attrdef)
        cost = 1 + (3 if toast else 0) + (1 if kind in ("v", "m") else 0)
        nodes[("r", oid)] = Node(("r", oid), schema, name, kind, cost, [(schema, name)], defaults=defaults)
    alias = {k[1]: k for k in nodes}
    for oid, schema, name, owner in owned:
        node = nodes.get(("r", owner))
        if node is None:  # owned by a relation outside the selection: a relation of its own
            nodes[("r", oid)] = Node(("r", oid), schema, name, "S", 1, [(schema, name)])
            alias[oid] = ("r", oid)
            continue
        node.cost += 1
        node.relations.append((schema, name))
        alias[oid] = node.key
    return nodes, alias


def read_graph(src: psycopg.Connection, schemas: list[str]) -> dict[tuple[str, int], Node]:
    """The selection's relations and relation-needing functions, with what each needs (from the source)."""
    nodes, alias = _relation_nodes(src, schemas)
    functions = {oid: (schema, name) for oid, schema, name in _functions(src, schemas)}
    edges = src.execute(EDGES).fetchall()
    deferred = {a for a_kind, a, b_kind, b in edges if a_kind == "f" and b_kind == "r" and b in alias}
    while True:  # and the functions whose bodies need those
        more = {a for a_kind, a, b_kind, b in edges if a_kind == b_kind == "f" and b in deferred} - deferred
        if not more:
            break
        deferred |= more
    for oid in deferred & set(functions):
        schema, name = functions[oid]
        nodes[("f", oid)] = Node(("f", oid), schema, name, "function", 2)
    for a_kind, a, b_kind, b in edges:
        if a is None or b is None:
            continue
        dep = alias.get(a) if a_kind == "r" else (("f", a) if ("f", a) in nodes else None)
        need = alias.get(b) if b_kind == "r" else (("f", b) if ("f", b) in nodes else None)
        if dep and need and dep != need:
            nodes[dep].needs.add(need)
    return nodes


def _functions(src: psycopg.Connection, schemas: list[str]) -> list[tuple[int, str, str]]:
    with src.transaction():  # a savepoint in the snapshot's transaction: the setting ends with it
        src.execute("SET LOCAL quote_all_identifiers = on")
        return src.execute(FUNCTIONS, {"schemas": schemas}).fetchall()


def _components(nodes: dict[tuple[str, int], Node]) -> list[list[tuple[str, int]]]:
    """Strongly connected components (iterative Tarjan), each a dependency cycle or a single node."""
    index: dict[tuple[str, int], int] = {}
    low: dict[tuple[str, int], int] = {}
    stack: list[tuple[str, int]] = []
    on_stack: set[tuple[str, int]] = set()
    out: list[list[tuple[str, int]]] = []
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(nodes[root].needs)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(nodes[w].needs))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(comp)
    return out


def ordered_components(nodes: dict[tuple[str, int], Node]) -> list[list[tuple[str, int]]]:
    """Components in an order where everything a component needs comes before it (ties: schema, name)."""
    comps = _components(nodes)
    of = {k: i for i, comp in enumerate(comps) for k in comp}
    needs: dict[int, set[int]] = defaultdict(set)
    users: dict[int, set[int]] = defaultdict(set)
    for i, comp in enumerate(comps):
        for k in comp:
            for n in nodes[k].needs:
                if of[n] != i:
                    needs[i].add(of[n])
                    users[of[n]].add(i)

    def sort_key(i: int) -> tuple:
        first = min((nodes[k].schema, nodes[k].name, k) for k in comps[i])
        return (first, i)

    ready = [sort_key(i) for i in range(len(comps)) if not needs[i]]
    heapq.heapify(ready)
    out = []
    while ready:
        _, i = heapq.heappop(ready)
        out.append(comps[i])
        for u in users[i]:
            needs[u].discard(i)
            if not needs[u]:
                heapq.heappush(ready, sort_key(u))
    return out


def plan(src: psycopg.Connection, schemas: list[str], source: Budget, target: Budget) -> Plan:
    """The batches of the selection's relations that fit both budgets (from the source's catalog)."""
    nodes = read_graph(src, schemas)
    return pack(nodes, source.per_transaction, target.per_transaction)


def dump_plan(src: psycopg.Connection, schemas: list[str], source: Budget) -> Plan:
    """Batches for dumping only (post-data: nothing created on the target by them)."""
    return pack(read_graph(src, schemas), source.per_transaction, source.per_transaction)


def pack(nodes: dict[tuple[str, int], Node], source_limit: int, target_limit: int) -> Plan:
    """Components in dependency order into pg_dump batches within ``source_limit``; a function needing
    a relation closes the batch it is in (it is applied after the batch's relations, so what uses it
    comes in a later one). A cycle larger than one pg_dump may hold is named in ``too_big``."""
    batches: list[Batch] = []
    too_big: list[str] = []
    placed: dict[tuple[str, int], int] = {}
    current: list[tuple[str, int]] = []
    src_cost = tgt_cost = 0
    costs: dict[tuple[str, str], int] = {}

    def close() -> None:
        nonlocal src_cost, tgt_cost
        if current:
            rels = [r for k in current for r in nodes[k].relations]
            fns = [(nodes[k].schema, nodes[k].name) for k in current if k[0] == "f"]
            batches.append(Batch(rels, fns, DUMP_BASE + src_cost, tgt_cost))
            current.clear()
            src_cost = tgt_cost = 0

    for comp in ordered_components(nodes):
        rels = sum(len(nodes[k].relations) for k in comp)
        outside = {n for k in comp for n in nodes[k].needs if n not in comp and placed.get(n) != len(batches)}
        comp_src = int(rels * DUMP_PER_RELATION + 0.999) + len(outside)
        if DUMP_BASE + comp_src > source_limit:
            too_big.append(_cycle_too_big(nodes, comp, DUMP_BASE + comp_src))
        needs_fn_here = any(placed.get(n) == len(batches) and n[0] == "f" for k in comp for n in nodes[k].needs)
        if current and (needs_fn_here or DUMP_BASE + src_cost + comp_src > source_limit):
            close()
        for k in comp:
            node = nodes[k]
            cost = node.cost + len(node.needs)
            costs[(node.schema, node.name)] = cost
            tgt_cost += cost + node.defaults
            placed[k] = len(batches)
        current.extend(comp)
        src_cost += comp_src
    close()
    return Plan(batches, target_limit, costs, too_big)


def _cycle_too_big(nodes: dict, comp: list, need: int) -> str:
    names = sorted(nodes[k].label() for k in comp)
    return (
        f"source|{need}|the dependency cycle of {len(names)} object(s) {', '.join(names[:10])}"
        f"{' ...' if len(names) > 10 else ''} must be dumped by one pg_dump"
    )


def indivisible(src: psycopg.Connection, schemas: list[str], plan_: Plan, source: Budget, target: Budget) -> list[str]:
    """The steps that fit no batching, each naming the object, the setting, the value it needs and why."""
    out = []
    for item in plan_.too_big:
        side, need, why = item.split("|", 2)
        budget = source if side == "source" else target
        out.append(_needs(budget, int(need), why))
    for schema, table, key, rels in src.execute(PARTITIONED_KEYS, {"schemas": schemas}):
        need = APPLY_BASE + rels * FK_PER_RELATION
        if need > target.per_transaction:
            why = (
                f"foreign key {key} of {schema}.{table} spans {rels} relation(s) with the partitions of both "
                "sides, every one locked at once when it is added, validated or dropped"
            )
            out.append(_needs(target, need, why))
    return out


def _needs(budget: Budget, need: int, why: str) -> str:
    return (
        f"{why}: about {need:,} lock entries on the {budget.side}, more than the run's "
        f"{budget.per_transaction:,} per transaction (lock_share {budget.share:g} of "
        f"{budget.size:,}); needs max_locks_per_transaction >= {budget.setting_needed(need)} on the "
        f"{budget.side} (now {budget.max_locks_per_transaction}), or a larger lock_share"
    )


def preflight(src: psycopg.Connection, tgt: psycopg.Connection, schemas: list[str], params: dict[str, Any]) -> list:
    """Pre-flight's ``lock budget`` findings: both budgets, the entries held now, how pre-data will batch;
    blocking for each step that fits no batching (before anything is written)."""
    share = locks.share_of(params)
    source, target = locks.read_budget(src, "source", share), locks.read_budget(tgt, "target", share)
    plan_ = plan(src, schemas, source, target)
    out = []
    for budget in (source, target):
        free = budget.size - budget.held_now
        if free < budget.allowed:
            out.append(
                finding(
                    "lock budget",
                    "warning",
                    f"{budget.describe()}: only {free:,} free now, less than the run's share; a batch may "
                    "find the table full and fail by name (its retry starts it again)",
                )
            )
    out.append(finding("lock budget", "ok", f"{source.describe()}; {target.describe()}; pre-data: {plan_.describe()}"))
    out += [finding("lock budget", "blocking", why) for why in indivisible(src, schemas, plan_, source, target)]
    return out
