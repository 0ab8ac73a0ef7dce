"""One manifest (include/aws/image.toml) drives the worker image: include/aws/Dockerfile is generated from
it (scripts/image.py) and read back against it here, instruction by instruction. No Docker needed."""

from __future__ import annotations

import json
import re
import shlex
import tomllib

import pytest

from scripts import image
from tests.aws.conftest import REPO

AWS = REPO / "include" / "aws"
#: The Python each Debian suite ships as python3 (the manifest's python.version must be its).
SUITE_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}


@pytest.fixture(scope="module")
def manifest() -> dict:
    return image.load()


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: comments dropped, continuation lines joined."""
    out, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), " ".join(rest.split())))
        pending = ""
    return out


def test_the_dockerfile_is_the_manifests():
    rendered = image.render_dockerfile(image.load())
    assert (AWS / "Dockerfile").read_text() == rendered, (
        "include/aws/Dockerfile differs from include/aws/image.toml: run "
        "`.venv/bin/python scripts/image.py dockerfile --write` (and edit the manifest, not the Dockerfile)"
    )


def check(dockerfile: str, m: dict) -> list[str]:
    """What in ``dockerfile`` disagrees with the manifest ``m`` (empty: they agree)."""
    ins = instructions(dockerfile)
    by: dict[str, list[str]] = {}
    for word, args in ins:
        by.setdefault(word, []).append(args)
    problems = []
    if by.get("FROM") != [m["base"]["image"]]:
        problems.append(f"FROM {by.get('FROM')} != {m['base']['image']}")
    if f"PG_MAJOR={m['postgresql']['client_major']}" not in by.get("ARG", []):
        problems.append(f"no ARG PG_MAJOR={m['postgresql']['client_major']}")
    run = " ".join(by.get("RUN", []))
    py = m["python"]
    for needed in [*py["debian_packages"], f"python{py['version']} -m venv {py['venv']}"]:
        if needed not in run:
            problems.append(f"RUN lacks {needed!r}")
    pip = re.search(r"/bin/pip install (.*?)(?:&&|$)", run)
    pinned = {p for p in shlex.split(pip.group(1)) if not p.startswith("-")} if pip else set()
    if pinned != set(py["packages"]):
        problems.append(f"pip installs {sorted(pinned)}, the manifest pins {py['packages']}")
    copies = {tuple(a.split()[-2:]) for a in by.get("COPY", [])}
    ca = m["ca_bundle"]
    want = {(f["source"], f["dest"]) for f in m["files"]} | {("${" + ca["build_arg"] + "}", ca["path"])}
    if copies != want:
        problems.append(f"COPY {sorted(copies)} != {sorted(want)}")
    if f"{ca['build_arg']}={ca['default']}" not in by.get("ARG", []):
        problems.append(f"no ARG {ca['build_arg']}={ca['default']}")
    env = dict(kv.split("=", 1) for args in by.get("ENV", []) for kv in args.split())
    if env != m["image"]["env"]:
        problems.append(f"ENV {env} != {m['image']['env']}")
    for word, key in (("USER", "user"), ("WORKDIR", "workdir"), ("STOPSIGNAL", "stopsignal")):
        if by.get(word) != [m["image"][key]]:
            problems.append(f"{word} {by.get(word)} != {m['image'][key]}")
    if [json.loads(a) for a in by.get("ENTRYPOINT", [])] != [m["image"]["entrypoint"]]:
        problems.append(f"ENTRYPOINT {by.get('ENTRYPOINT')} != {m['image']['entrypoint']}")
    return problems


def test_the_dockerfile_read_back_agrees_with_the_manifest(manifest):
    assert check((AWS / "Dockerfile").read_text(), manifest) == []


@pytest.mark.parametrize(
    "edit",
    [
        ('"psycopg[binary]==3.3.9"', '"psycopg[binary]==3.3.8"'),
        ("USER postgres", "USER root"),
        ("PYTHONPATH=/app", "PYTHONPATH=/srv"),
        ("FROM postgres:${PG_MAJOR}-bookworm", "FROM postgres:${PG_MAJOR}"),
        ('ENTRYPOINT ["python", "-m", "include.pg_migration.worker"]', 'ENTRYPOINT ["bash"]'),
        ("COPY include/pg_migration/ /app/include/pg_migration/", ""),
    ],
    ids=["pin", "user", "env", "base", "entrypoint", "files"],
)
def test_a_hand_edit_of_the_dockerfile_is_caught(manifest, edit):
    text = (AWS / "Dockerfile").read_text()
    assert edit[0] in text
    assert check(text.replace(edit[0], edit[1]), manifest), edit


def test_the_manifest_matches_the_project(manifest):
    from pg_migration_support import ecs

    # the pinned packages are the Airflow side's (requirements.txt)
    requirements = {
        line.split("==")[0]: line for line in (REPO / "requirements.txt").read_text().splitlines() if "==" in line
    }
    for pin in manifest["python"]["packages"]:
        assert requirements.get(pin.split("==")[0]) == pin, pin
    assert SUITE_PYTHON[manifest["base"]["suite"]] == manifest["python"]["version"]
    assert manifest["base"]["distribution"] == "debian" and manifest["base"]["suite"] in manifest["base"]["image"]
    assert manifest["image"]["env"]["PGMIG_PG_BIN"] == manifest["postgresql"]["bin"]
    # the containers' sslrootcert is the image's bundle
    assert ecs.CONTAINER_CA_BUNDLE == manifest["ca_bundle"]["path"]
    # what is copied exists and passes the build context's .dockerignore
    ignore = (AWS / "Dockerfile.dockerignore").read_text().splitlines()
    for f in manifest["files"]:
        assert (REPO / f["source"]).exists(), f["source"]
        assert f"!{f['source']}" in ignore, f["source"]
    assert f"!{manifest['ca_bundle']['default']}" in ignore
    assert manifest["ca_bundle"]["default"] in (REPO / ".gitignore").read_text()  # downloaded, never committed


def test_the_manifest_hash_is_its_content(tmp_path, manifest):
    copy = tmp_path / "image.toml"
    copy.write_text(image.MANIFEST.read_text() + "\n# a comment changes nothing\n")
    assert image.manifest_hash(copy) == image.manifest_hash()
    data = tomllib.loads(copy.read_text())
    copy.write_text(image.MANIFEST.read_text().replace('user = "postgres"', 'user = "nobody"'))
    assert tomllib.loads(copy.read_text()) != data and image.manifest_hash(copy) != image.manifest_hash()
