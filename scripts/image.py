"""The worker image's manifest (include/aws/image.toml) and the Dockerfile generated from it.

    .venv/bin/python scripts/image.py dockerfile           # print the Dockerfile the manifest gives
    .venv/bin/python scripts/image.py dockerfile --write   # write include/aws/Dockerfile
    .venv/bin/python scripts/image.py hash                 # the manifest's hash (a local build's cache key)

tests/aws/test_image_manifest.py checks that include/aws/Dockerfile is exactly what the manifest gives,
and reads the Dockerfile back (FROM, RUN, COPY, ENV, USER, ENTRYPOINT) against the manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "include" / "aws" / "image.toml"
DOCKERFILE = REPO / "include" / "aws" / "Dockerfile"

HEADER = """\
# syntax=docker/dockerfile:1
# GENERATED from include/aws/image.toml by `scripts/image.py dockerfile --write`: edit the manifest, not
# this file (tests/aws/test_image_manifest.py checks the two agree).
#
# The pg-migration worker image for the ECS Fargate runner (include/aws/README.md). The official
# postgres image of the SOURCE's major version supplies pg_dump/psql (pg_dump must be at least the
# source's major); the worker (include/pg_migration, which needs only psycopg) and the TLS CA bundle
# (the containers' sslrootcert) are added. Build from the repository root, tagging pg<MAJOR>-<version>
# (the DAG's pre-flight reads the major), with the CA bundle in the build context:
#
#   curl -fsSo include/aws/rds-ca-bundle.pem https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem
#   docker build -f include/aws/Dockerfile --build-arg PG_MAJOR=15 \\
#       -t "$REPO_URI:pg15-$(git rev-parse --short HEAD)" .
#
# include/aws/Dockerfile.dockerignore keeps the context to include/pg_migration and the bundle (BuildKit).
"""


def load(path: Path = MANIFEST) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def manifest_hash(path: Path = MANIFEST) -> str:
    """sha256 of the manifest's content (canonical JSON), first 16 hex digits."""
    canonical = json.dumps(load(path), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def render_dockerfile(m: dict[str, Any]) -> str:
    py, ca, img = m["python"], m["ca_bundle"], m["image"]
    packages = " ".join(f'"{p}"' for p in py["packages"])
    env = list(img["env"].items())
    env_lines = " \\\n    ".join(f"{k}={v}" for k, v in env)
    copies = "\n".join(f"COPY {f['source']} {f['dest']}" for f in m["files"])
    entrypoint = json.dumps(img["entrypoint"])
    return f"""{HEADER}ARG PG_MAJOR={m["postgresql"]["client_major"]}
FROM {m["base"]["image"]}
ARG PG_MAJOR
ARG {ca["build_arg"]}={ca["default"]}

# Python {py["version"]} ({m["base"]["suite"]}) and the pinned packages, in a venv of their own.
RUN apt-get update \\
 && apt-get install -y --no-install-recommends {" ".join(py["debian_packages"])} \\
 && rm -rf /var/lib/apt/lists/* \\
 && python{py["version"]} -m venv {py["venv"]} \\
 && {py["venv"]}/bin/pip install --no-cache-dir --disable-pip-version-check {packages}

# The CA bundle the containers verify the servers with (sslrootcert; a missing file fails the build).
COPY --chmod=0644 ${{{ca["build_arg"]}}} {ca["path"]}

WORKDIR {img["workdir"]}
{copies}

ENV {env_lines}
LABEL org.opencontainers.image.title="pg-migration worker" \\
      io.pg-migration.pg-major="${{PG_MAJOR}}"

# The postgres image stops with SIGINT; the worker is a plain process: SIGTERM, then SIGKILL after the
# task definition's stopTimeout. A killed attempt's sessions are ended by its retry.
STOPSIGNAL {img["stopsignal"]}
# Not the server's entrypoint: no database runs here. Configuration is the environment only
# (PGMIG_* from the task definition, its secrets and the RunTask overrides).
USER {img["user"]}
ENTRYPOINT {entrypoint}
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    df = sub.add_parser("dockerfile", help="the Dockerfile the manifest gives")
    df.add_argument("--write", action="store_true", help=f"write {DOCKERFILE.relative_to(REPO)}")
    sub.add_parser("hash", help="the manifest's hash")
    args = ap.parse_args(argv)
    if args.command == "hash":
        print(manifest_hash())
        return 0
    text = render_dockerfile(load())
    if args.write:
        DOCKERFILE.write_text(text)
        print(f"wrote {DOCKERFILE.relative_to(REPO)}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
