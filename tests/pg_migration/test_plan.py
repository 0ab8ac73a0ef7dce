"""Planning without a database: validation groups (units are exercised through the migrations)."""

from __future__ import annotations

import itertools
import random

import pytest

from include.pg_migration.plan import SCHEMA_VALIDATION_BYTES, validation_groups

MB = 1024 * 1024


def covered(groups: list[dict]) -> list[str]:
    return sorted(itertools.chain.from_iterable(g["schemas"] for g in groups))


def cost(group: dict) -> int:
    return group["bytes"] + SCHEMA_VALIDATION_BYTES * len(group["schemas"])


def test_no_schema_no_group():
    assert validation_groups([], 4) == []


def test_few_schemas_one_group_each_largest_first():
    groups = validation_groups([("hr", 5 * MB), ("sales", 900 * MB), ("crm", 40 * MB)], 4)
    assert groups == [
        {"label": "sales", "schemas": ["sales"], "bytes": 900 * MB},
        {"label": "crm", "schemas": ["crm"], "bytes": 40 * MB},
        {"label": "hr", "schemas": ["hr"], "bytes": 5 * MB},
    ]


@pytest.mark.parametrize(("pool_size", "limit"), [(1, 2), (2, 4), (4, 8), (0, 1)])
def test_at_most_two_groups_per_pool_slot_every_schema_once(pool_size, limit):
    schemas = [(f"s{i:03d}", (i * 7919) % 300 * MB) for i in range(200)]
    groups = validation_groups(schemas, pool_size)
    assert len(groups) == limit
    assert covered(groups) == sorted(name for name, _ in schemas)


def test_a_dominant_schema_stays_alone():
    schemas = [("big", 50_000 * MB)] + [(f"small{i}", (i + 1) * 10 * MB) for i in range(30)]
    groups = validation_groups(schemas, 2)
    assert groups[0] == {"label": "big", "schemas": ["big"], "bytes": 50_000 * MB}
    assert len(groups) == 4 and covered(groups[1:]) == sorted(f"small{i}" for i in range(30))


def test_groups_are_balanced_and_labelled_by_their_largest_schema():
    rng = random.Random(7)
    schemas = [(f"s{i}", rng.randint(0, 2000) * MB) for i in range(60)]
    groups = validation_groups(schemas, 3)
    assert len(groups) == 6
    costs = [cost(g) for g in groups]
    assert costs == sorted(costs, reverse=True)  # largest group first
    largest_schema = max(b for _, b in schemas) + SCHEMA_VALIDATION_BYTES
    assert max(costs) - min(costs) <= largest_schema  # LPT: within one schema of each other
    sizes = dict(schemas)
    for g in groups:
        assert [sizes[s] for s in g["schemas"]] == sorted((sizes[s] for s in g["schemas"]), reverse=True)
        assert g["label"] == f"{g['schemas'][0]} +{len(g['schemas']) - 1}"
        assert g["bytes"] == sum(sizes[s] for s in g["schemas"])


def test_empty_schemas_spread_by_count():
    groups = validation_groups([(f"e{i}", 0) for i in range(20)], 2)
    assert sorted(len(g["schemas"]) for g in groups) == [5, 5, 5, 5]


def test_plan_schema_sizes_are_accepted_and_the_result_is_deterministic():
    sizes = [{"schema": "sales", "bytes": 10 * MB, "tables": 3}, {"name": "hr", "bytes": None}]
    assert validation_groups(sizes, 1) == validation_groups([("hr", 0), ("sales", 10 * MB)], 1)
    assert validation_groups(sizes, 1) == [
        {"label": "sales", "schemas": ["sales"], "bytes": 10 * MB},
        {"label": "hr", "schemas": ["hr"], "bytes": 0},
    ]
