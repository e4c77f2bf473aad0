"""Where things live: the project root, the user cache, atomic writes, the git commit."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

#: The ``crowdlens`` package folder (this file is ``crowdlens/core/config.py``).
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def project_root() -> Path | None:
    """The source checkout holding this package (``lib/crowdlens``), if any.

    None when crowdlens is installed as a plain wheel outside a checkout.
    """
    candidate = PACKAGE_DIR.parents[1]
    return candidate if (candidate / "pyproject.toml").is_file() else None


def cache_dir() -> Path:
    """``CROWDLENS_CACHE`` or ``~/.cache/crowdlens``; deleting it is always safe."""
    env = os.environ.get("CROWDLENS_CACHE")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "crowdlens"
    return path


def checkpoint_folder(task: str, **settings) -> Path:
    """A folder for one training run's checkpoints, named by ``task`` and a hash of the
    ``settings`` that make the run what it is: rerunning the same cell resumes (or finds
    finished) the same run, and a run with other settings never picks it up.
    Used in the weibo_crowds chapter."""
    import json

    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return cache_dir() / "checkpoints" / f"{task}-{key}"


def _umask() -> int:
    current = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(current)
    return current


@contextlib.contextmanager
def atomic_path(target: Path | str, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    Readers never see a half-written file: on any exception the temporary file
    is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600; a class sharing one cache or data folder needs the user's umask
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(target: Path | str) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``; it replaces ``target`` on success.

    A model directory is either the old complete one or the new complete one, never
    half-written; on any exception the staging folder is removed.
    """
    import shutil

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp creates 0700
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def sha256_file(path: Path | str, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def git_commit() -> str:
    """The checkout's commit, ``+dirty`` when tracked files changed; ``unknown`` outside a
    checkout. Recorded in model cards and chapter provenance."""
    root = project_root()
    if root is None:
        return "unknown"
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
