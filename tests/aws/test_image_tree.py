"""The worker image's tree, built here without a Docker daemon (scripts/image_tree.py: mmdebstrap from
Debian bookworm's packages, the manifest's venv and pins, the postgres user), runs the migration's worker
phases chrooted (``/proc`` and ``/dev`` mounted, as the image's USER, with the image's ENV and the
manifest's CA bundle path) against the local TLS server with ``sslmode=verify-full``: snapshot holder,
pre-data, the data units, large objects and post-data of the demo warehouse, ending equal.

Slow (``make test-slow``): the cold build takes minutes (see the closing note / docs); a warm one
reuses ``/var/tmp/pg-migration-image/<manifest hash>``. Needs root and ``mmdebstrap``.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from include.pg_migration.conn import Endpoint
from include.pg_migration.harness import LocalRun
from include.pg_migration.phases import snapshot
from include.pg_migration.run_order import DATA, LARGE_OBJECTS, POST_DATA, PRE_DATA, SNAPSHOT
from include.pg_migration.runner import worker_env
from scripts import image, image_tree, localpg
from tests.conftest import Pair, _unique, assert_equal_data, create_db

pytestmark = pytest.mark.slow
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="module")
def tree():
    if shutil.which("mmdebstrap") is None:
        pytest.fail("mmdebstrap is not installed (apt-get install mmdebstrap)", pytrace=False)
    root, seconds = image_tree.build()
    print(f"image tree {root}: {f'cold build {seconds:.0f} s' if seconds else 'cached'}")
    image_tree.install_files(root, localpg.tls_ca_file("scratch"))
    mounts = [(["mount", "--bind", "/dev", str(root / "dev")], root / "dev")]
    mounts.append((["mount", "-t", "proc", "proc", str(root / "proc")], root / "proc"))
    done = []
    try:
        for cmd, where in mounts:
            subprocess.run(cmd, check=True)
            done.append(where)
        yield root
    finally:
        for where in reversed(done):
            subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def tls_pair():
    server = localpg.ensure_server("scratch")
    pair = Pair(server, server, _unique("src"), _unique("tgt"))
    create_db(server, pair.source_db)
    create_db(server, pair.target_db, owner=server.admin_user)
    yield pair
    localpg.drop_database(server, pair.source_db)
    localpg.drop_database(server, pair.target_db)


def _image_env(m: dict) -> dict[str, str]:
    major = str(m["postgresql"]["client_major"])
    env = {k: v.replace("$PATH", BASE_PATH).replace("${PG_MAJOR}", major) for k, v in m["image"]["env"].items()}
    return {**env, "HOME": "/var/lib/postgresql", "LANG": "C.UTF-8"}


class ChrootRun(LocalRun):
    """The harness's run with every worker phase in the image's tree (the container's view of TLS)."""

    def __init__(self, root: Path, source: Endpoint, target: Endpoint, run_id: str, **kw):
        super().__init__(source, target, run_id, **kw)
        self.root, self.manifest = root, image.load()
        ca = self.manifest["ca_bundle"]["path"]
        self.inside = [dataclasses.replace(e, sslrootcert=ca) for e in (source, target)]
        self.ran: list[str] = []

    def _cmd(self) -> list[str]:
        img = self.manifest["image"]
        user = img["user"]
        inner = f"cd {img['workdir']} && exec " + " ".join(img["entrypoint"])
        return ["chroot", f"--userspec={user}:{user}", str(self.root), "/bin/sh", "-c", inner]

    def _env(self, phase: str, unit_id: str | None = None) -> dict[str, str]:
        return {**_image_env(self.manifest), **worker_env(*self.inside, self.run_id, phase, unit_id)}

    def _run(self, phase: str, unit_id: str | None = None) -> None:
        proc = subprocess.run(self._cmd(), env=self._env(phase, unit_id), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{phase} {unit_id or ''} in the image tree: {proc.stderr[-3000:]}"
        self.ran.append(phase)

    def step_snapshot(self) -> None:
        log = (self.log_dir / f"chroot-snapshot-{self.run_id}.log").open("ab")
        self.holder = subprocess.Popen(
            self._cmd(), env=self._env(SNAPSHOT), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        snapshot.wait_for_snapshot(self.target, self.run_id)
        self.ran.append(SNAPSHOT)

    def step_pre_data(self) -> None:
        self._run(PRE_DATA)

    def unit(self, unit_id: str) -> None:
        self._run(DATA, unit_id)

    def step_large_objects(self) -> None:
        self._run(LARGE_OBJECTS)

    def step_post_data(self) -> None:
        self._run(POST_DATA)


def test_the_worker_runs_from_the_image_tree_with_tls_verified(tree, tls_pair, tmp_path):
    from include.pg_migration.demo import load_warehouse

    # the tree is the manifest's: its Python, its pinned psycopg, its pg_dump, its user
    m = image.load()
    assert (tree / m["python"]["venv"].lstrip("/") / "bin" / f"python{m['python']['version']}").exists()
    assert (tree / f"usr/lib/postgresql/{m['postgresql']['client_major']}/bin/pg_dump").exists()
    assert "postgres:" in (tree / "etc/passwd").read_text()

    load_warehouse(tls_pair.source_server.dsn(tls_pair.source_db), scale=0.05)
    ca = str(localpg.tls_ca_file("scratch"))
    # verify-full everywhere; inside the tree the CA is only at the manifest's path (not on this host)
    assert not Path(m["ca_bundle"]["path"]).exists()
    source, target = (
        dataclasses.replace(e, sslmode="verify-full", sslrootcert=ca) for e in (tls_pair.source, tls_pair.target)
    )
    run = ChrootRun(tree, source, target, f"img__{uuid.uuid4().hex[:6]}", pool_size=2, log_dir=tmp_path)
    try:
        planned = run.start()
        assert planned["units"]
        for unit in planned["units"]:
            run.unit(unit["unit_id"])
        run.finish()
    finally:
        run.close()
        if getattr(run, "holder", None) is not None:
            run.holder.wait(60)
    assert {SNAPSHOT, PRE_DATA, DATA, POST_DATA} <= set(run.ran), run.ran
    with tls_pair.source_su() as src, tls_pair.target_su() as tgt:
        assert_equal_data(src, tgt)
