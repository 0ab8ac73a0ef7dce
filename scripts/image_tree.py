"""A daemon-less local build of the worker image's tree, from the manifest (include/aws/image.toml).

    .venv/bin/python scripts/image_tree.py build     # build (or reuse) the tree; prints its path
    .venv/bin/python scripts/image_tree.py path      # where the tree of this manifest lives

No container registry is reachable here, so ``FROM postgres:...`` cannot be pulled: the tree is assembled
from Debian's packages with ``mmdebstrap`` (the manifest's suite; ``postgresql-client-<major>`` for the
PostgreSQL client, bookworm has 15; the manifest's Debian Python packages), then the manifest's venv
and pinned Python packages (installed into it by this host's pip, binary wheels only: the host must
have the manifest's Python version and architecture), and the ``postgres`` user the Dockerfile's
``USER`` names. It is cached
outside the work tree, under ``/var/tmp/pg-migration-image/<manifest hash>/rootfs`` (a fresh clone
reuses it); :func:`install_files` copies the manifest's files and a CA bundle into it (what the
Dockerfile's COPY lines do), cheap enough for every run. Needs root (``apt-get install mmdebstrap``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import image  # noqa: E402

CACHE = Path(os.environ.get("PG_MIGRATION_IMAGE_CACHE", "/var/tmp/pg-migration-image"))
HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")


def tree_path(manifest: dict | None = None) -> Path:
    return CACHE / image.manifest_hash() / "rootfs"


def _packages(m: dict) -> list[str]:
    return [f"postgresql-client-{m['postgresql']['client_major']}", *m["python"]["debian_packages"], "passwd"]


def build(force: bool = False) -> tuple[Path, float | None]:
    """The tree of the current manifest: reused when complete, else built (returns path, seconds)."""
    m = image.load()
    root = tree_path(m)
    done = root.parent / "complete"
    if done.exists() and not force:
        return root, None
    shutil.rmtree(root.parent, ignore_errors=True)
    root.parent.mkdir(parents=True)
    started = time.monotonic()
    py = m["python"]
    hooks = [
        # the Dockerfile's USER (the official postgres image has it: uid 999)
        'chroot "$1" useradd --system --uid 999 --user-group --home-dir /var/lib/postgresql --create-home postgres',
        f'chroot "$1" python{py["version"]} -m venv {py["venv"]}',
        # the pinned packages by this host's pip (its index and proxy settings; same Python, same arch)
        f'"{sys.executable}" -m pip install --quiet --no-cache-dir --disable-pip-version-check --only-binary=:all: '
        f'--target "$1{py["venv"]}/lib/python{py["version"]}/site-packages" '
        + " ".join(repr(p) for p in py["packages"]),
        f'mkdir -p "$1{m["image"]["workdir"]}"',
    ]
    cmd = ["mmdebstrap", "--variant=apt", "--mode=root", f"--include={','.join(_packages(m))}"]
    cmd += [f"--customize-hook={h}" for h in hooks]
    mirror = [str(HOST_SOURCES)] if HOST_SOURCES.exists() else []
    cmd += [m["base"]["suite"], str(root), *mirror]
    subprocess.run(cmd, check=True)
    seconds = time.monotonic() - started
    done.write_text(f"{seconds:.1f}\n")
    return root, seconds


def install_files(root: Path, ca_bundle: Path) -> None:
    """The manifest's files and the CA bundle into the tree (the Dockerfile's COPY lines)."""
    m = image.load()
    for f in m["files"]:
        dest = root / f["dest"].lstrip("/")
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(image.REPO / f["source"], dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "demo"))
    ca = root / m["ca_bundle"]["path"].lstrip("/")
    ca.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca_bundle, ca)
    ca.chmod(0o644)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("build", "path"))
    ap.add_argument("--force", action="store_true", help="rebuild even when cached")
    args = ap.parse_args(argv)
    if args.command == "path":
        print(tree_path())
        return 0
    root, seconds = build(args.force)
    print(f"{root} ({f'built in {seconds:.0f} s' if seconds is not None else 'cached'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
