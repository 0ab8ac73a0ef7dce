"""CLI: ``python -m include.pg_migration.demo --dsn "<libpq dsn>" [--scale S] [--seed N]``.

Loads the demo warehouse into the given empty database and prints the summary
as JSON on stdout (progress goes to stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .warehouse import WarehouseError, load_warehouse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m include.pg_migration.demo",
        description="Load the deterministic demo warehouse into an empty PostgreSQL database.",
    )
    parser.add_argument(
        "--dsn",
        required=True,
        help='libpq connection string or URI of the empty target database, e.g. "host=h dbname=d user=postgres"',
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="data volume factor: 1.0 is roughly 50 MB, 100 several GB (default: 1.0)",
    )
    parser.add_argument("--seed", type=int, default=42, help="same seed and scale give identical data (default: 42)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output on stderr")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        summary = load_warehouse(args.dsn, scale=args.scale, seed=args.seed)
    except (ValueError, WarehouseError) as exc:
        parser.exit(2, f"error: {exc}\n")
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
