"""The data path's source side: rows read by a ``psql`` child, committed only when it finished cleanly."""

from __future__ import annotations

import pytest

from include.pg_migration import state
from include.pg_migration.errors import UnitFailed
from include.pg_migration.phases.data import PsqlSource, copy_table
from include.pg_migration.sessions import open_source_snapshot

ROWS = 200_000
DDL = """
CREATE SCHEMA s;
CREATE TYPE s.pt AS (x int, y int);
CREATE TABLE s.facts (id bigint, doc text, at timestamptz, p s.pt);
CREATE TABLE s."odd
name" (id int);
"""


@pytest.fixture
def loaded(pair):
    with pair.source_su() as src:
        src.execute(DDL)
        src.execute(
            "INSERT INTO s.facts SELECT g, '{\"k\": ' || g || '}', now(), ROW(g, -g)::s.pt"
            " FROM generate_series(1, %s) g",
            (ROWS,),
        )
        src.execute("""INSERT INTO s."odd\nname" SELECT generate_series(1, 10)""")
    with pair.target.connect(autocommit=True) as tgt:
        tgt.execute(DDL)
        tgt.execute("INSERT INTO s.facts (id) SELECT generate_series(1, 7)")  # an earlier attempt's rows
        state.ensure(tgt)
    return pair


def _copy(pair, table: str, reader_factory=PsqlSource.for_unit):
    src = open_source_snapshot(pair.source, "pgmig test", None)
    with src, pair.target.connect("pgmig test") as tgt:
        reader = reader_factory(pair.source, "pgmig test", src)
        return copy_table(src, tgt, "s", table, "run", "unit", None, True, reader), reader


def _count(pair, table: str) -> int:
    with pair.target.connect(autocommit=True) as tgt:
        return tgt.execute(f'SELECT count(*) FROM ONLY s."{table}"').fetchone()[0]


def test_rows_come_through_psql_in_text_and_binary(loaded):
    result, reader = _copy(loaded, "facts")
    assert reader is not None and reader.psql.endswith("psql")
    assert (result.source_rows, result.target_rows, result.format) == (ROWS, ROWS, "text")  # composite column
    assert _count(loaded, "facts") == ROWS
    with loaded.source_su() as src:
        src.execute("ALTER TABLE s.facts DROP COLUMN p")
    with loaded.target.connect(autocommit=True) as tgt:
        tgt.execute("ALTER TABLE s.facts DROP COLUMN p")
    result, _ = _copy(loaded, "facts")
    assert (result.source_rows, result.target_rows, result.format) == (ROWS, ROWS, "binary")


def test_a_psql_that_dies_mid_stream_commits_nothing(loaded):
    class Dying(PsqlSource):
        def stream(self, *args, **kwargs):
            outer = super().stream(*args, **kwargs)

            class Wrapped:
                def __enter__(self_inner):
                    stream = outer.__enter__()
                    blocks = stream.blocks

                    def first_block_then_kill():
                        for block in blocks():
                            yield block
                            stream.proc.kill()  # the source side dies after one block

                    stream.blocks = first_block_then_kill
                    return stream

                def __exit__(self_inner, *exc):
                    return outer.__exit__(*exc)

            return Wrapped()

    with pytest.raises(UnitFailed, match=r"table s\.facts: reading the source failed"):
        _copy(loaded, "facts", Dying.for_unit)
    assert _count(loaded, "facts") == 7  # the earlier rows: TRUNCATE and the partial COPY rolled back


def test_a_name_psql_cannot_carry_goes_through_python(loaded):
    assert not PsqlSource.can_carry("s", "odd\nname")
    result, _ = _copy(loaded, "odd\nname")
    assert (result.source_rows, result.target_rows) == (10, 10)
