"""The lock budget: how many entries of each server's shared lock table the run may use.

PostgreSQL's lock table holds ``max_locks_per_transaction`` entries per server process slot and per
prepared transaction, shared by every session of the server (an entry is taken by each object a
transaction locks, until it ends; a few weak relation locks per session go to the backend's own
fast-path slots instead). A transaction that needs one entry more than the table has left fails "out
of shared memory" (spare shared memory stretches the table a little, by luck). Raising the setting
means restarting production (on Aurora a parameter group change and a reboot), so the run never
needs it: it reads the settings of each server and computes its size, never assumes it::

    slots = max_connections + autovacuum workers + max_worker_processes + max_wal_senders + auxiliary
    size  = max_locks_per_transaction x (slots + max_prepared_transactions)

(autovacuum workers: ``autovacuum_max_workers`` and the launcher before PostgreSQL 18,
``autovacuum_worker_slots`` and two special workers from 18: a stock 15 holds 64 x 122 = 7,808 entries,
a stock 18 64 x 136 = 8,704). The param ``lock_share`` (default 0.5) is the share of each size that all
the run's sessions together may hold at once -- the snapshot holder, the ``pg_dump`` batches, pre-data
(a re-run's drops included), the units, post-data, validation -- leaving the rest to production.
Pre-flight reads both budgets and the entries held now (``pg_locks``) and prints how pre-data will
batch (:mod:`include.pg_migration.batching`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import psycopg

#: The settings the size is computed from (missing ones, e.g. autovacuum_worker_slots before 18, read 0).
SETTINGS = """
SELECT name, setting::integer
  FROM pg_catalog.pg_settings
 WHERE name IN ('max_locks_per_transaction', 'max_connections', 'autovacuum_max_workers',
                'autovacuum_worker_slots', 'max_worker_processes', 'max_wal_senders',
                'max_prepared_transactions', 'server_version_num')
"""

#: Entries of the shared lock table held or awaited now, by every session (fast-path locks excluded:
#: they live in each backend's own slots).
HELD = "SELECT count(*) FROM pg_catalog.pg_locks WHERE NOT fastpath"

#: Entries held by this session.
HELD_HERE = "SELECT count(*) FROM pg_catalog.pg_locks WHERE NOT fastpath AND pid = pg_catalog.pg_backend_pid()"

DEFAULT_SHARE = 0.5
#: Entries the snapshot holder and a phase's own control sessions may hold besides its batches.
RESERVED = 64

#: "out of shared memory" (the lock table is full) and "too many ... locks" both report SQLSTATE 53200.
OUT_OF_SHARED_MEMORY = "53200"


@dataclass(frozen=True)
class Budget:
    """One server's lock table and the run's share of it."""

    side: str
    max_locks_per_transaction: int
    slots: int
    prepared: int
    share: float
    held_now: int

    @property
    def size(self) -> int:
        return self.max_locks_per_transaction * (self.slots + self.prepared)

    @property
    def allowed(self) -> int:
        """Entries all the run's sessions together may hold at once."""
        return int(self.size * self.share)

    @property
    def per_transaction(self) -> int:
        """Entries one pre-data transaction (or pg_dump batch) may take: the run's share, less what
        the snapshot holder and the phase's control sessions keep."""
        return max(self.allowed - RESERVED, 1)

    def setting_needed(self, entries: int) -> int:
        """The ``max_locks_per_transaction`` at which ``entries`` fit one transaction of the run."""
        return math.ceil((entries + RESERVED) / self.share / (self.slots + self.prepared))

    def describe(self) -> str:
        return (
            f"{self.side}: lock table {self.size:,} entries (max_locks_per_transaction "
            f"{self.max_locks_per_transaction} x ({self.slots} process slots + {self.prepared} prepared)), "
            f"the run's share {self.share:g} = {self.allowed:,}, {self.held_now:,} held now"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "size": self.size, "allowed": self.allowed, "per_transaction": self.per_transaction}


def process_slots(settings: dict[str, int]) -> int:
    """Server process slots, as PostgreSQL sizes its lock table (``MaxBackends``)."""
    if settings.get("server_version_num", 0) >= 180000:
        autovacuum = settings.get("autovacuum_worker_slots", 16) + 2  # launcher + slot sync worker
    else:
        autovacuum = settings.get("autovacuum_max_workers", 3) + 1  # + the launcher
    return (
        settings["max_connections"]
        + autovacuum
        + settings.get("max_worker_processes", 8)
        + settings.get("max_wal_senders", 10)
    )


def share_of(params: dict[str, Any]) -> float:
    share = float(params.get("lock_share") or DEFAULT_SHARE)
    if not 0 < share <= 1:
        raise ValueError(f"lock_share must be in (0, 1] (got {share})")
    return share


def read_budget(conn: psycopg.Connection, side: str, share: float = DEFAULT_SHARE) -> Budget:
    """The budget of the server ``conn`` is connected to, from its settings and ``pg_locks`` now."""
    settings = dict(conn.execute(SETTINGS).fetchall())
    held = conn.execute(HELD).fetchone()[0]
    return Budget(
        side=side,
        max_locks_per_transaction=settings["max_locks_per_transaction"],
        slots=process_slots(settings),
        prepared=settings.get("max_prepared_transactions", 0),
        share=share,
        held_now=held,
    )


def held(conn: psycopg.Connection, here: bool = False) -> int:
    return conn.execute(HELD_HERE if here else HELD).fetchone()[0]


def is_exhausted(exc: BaseException) -> bool:
    """Whether a server error (or a client tool's message) says the lock table is full."""
    if isinstance(exc, psycopg.Error) and exc.sqlstate == OUT_OF_SHARED_MEMORY:
        return True
    return "out of shared memory" in str(exc) or "max_locks_per_transaction" in str(exc)


def exhausted_message(what: str, budget: Budget, held_then: int | None, error: str) -> str:
    """Names the step, the setting and the entries held when the lock table ran out."""
    then = f"{held_then:,} entries held then" if held_then is not None else "the entries held then unknown"
    return (
        f"{what}: the {budget.side}'s lock table ran out ({error.strip().splitlines()[0]}); "
        f"max_locks_per_transaction {budget.max_locks_per_transaction} gives {budget.size:,} entries, "
        f"{then} by all sessions, of which the run may use {budget.allowed:,} (lock_share {budget.share:g}): "
        "other sessions took the rest. The step was rolled back as a whole; its retry starts it again"
    )
