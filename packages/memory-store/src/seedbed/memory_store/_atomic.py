"""Crash-safe file writes: temp file + fsync + ``os.replace`` + fsync of the directory.

Two building blocks:

* :func:`atomic_write_bytes` replaces one file so that a reader (or a process restarted after
  ``kill -9``) sees either the old bytes or the new bytes, never a mix.
* :func:`commit_version` writes a *set* of files that must agree with each other (a FAISS
  index and its metadata sidecar) into a fresh version directory, then flips a one-line
  ``CURRENT`` pointer with :func:`atomic_write_bytes`. The flip is the single commit point:
  until it lands, ``CURRENT`` names the old complete version; after it, the new one.
  Leftovers of an interrupted save are removed by the next successful save.

Only ``os`` level calls are used so that the byte stream is written exactly as shown here.
One writer per path at a time (concurrent savers of the same path must serialise).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

CURRENT = "CURRENT"
_VERSION = re.compile(r"^v(\d{8})$")
_CHUNK = 1 << 20  # write in 1 MiB pieces


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so that a rename inside it is durable."""
    fd = os.open(os.fspath(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_durable(path: str | os.PathLike[str], data: bytes | memoryview) -> None:
    """Create ``path`` (must not exist), write ``data`` and fsync it. Not atomic by itself."""
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data).cast("B")
        pos = 0
        while pos < len(view):
            pos += os.write(fd, view[pos : pos + _CHUNK])
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | memoryview) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    Writes ``<path>.tmp-<random>`` in the same directory, fsyncs it, ``os.replace``s it over
    ``path`` and fsyncs the directory. On any error the temp file is removed and ``path`` is
    left as it was.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    tmp = parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    try:
        write_file_durable(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(parent)
    prefix = f".{path.name}.tmp-"
    for stale in parent.iterdir():  # temp files of writers killed mid-write
        if stale.name.startswith(prefix):
            stale.unlink(missing_ok=True)


def _versions(root: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in root.iterdir() if (m := _VERSION.match(p.name)))


def current_version_dir(root: str | os.PathLike[str]) -> Path:
    """The committed version directory of a store saved with :func:`commit_version`."""
    root = Path(root)
    pointer = root / CURRENT
    if not pointer.is_file():
        raise FileNotFoundError(f"no committed store at {root} (missing {CURRENT})")
    name = pointer.read_text().strip()
    if not _VERSION.match(name) or not (root / name).is_dir():
        raise FileNotFoundError(f"{pointer} names {name!r}, which is not a version directory")
    return root / name


def commit_version(root: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Write a new version of a multi-file store under ``root`` and commit it atomically.

    Args:
        root: the store directory (created if missing).
        write: ``write(tmp_dir)`` creates every file of the new version inside ``tmp_dir``
            (use :func:`write_file_durable` so each file is fsynced).

    Returns:
        The committed version directory.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"store path must be a directory, got an existing file {root}")
    if not root.exists():
        root.mkdir(parents=True)
        fsync_dir(root.parent if str(root.parent) else ".")
    try:
        committed: str | None = (root / CURRENT).read_text().strip()
    except FileNotFoundError:
        committed = None
    existing = _versions(root)
    number = max([0, *existing]) + 1
    name = f"v{number:08d}"
    tmp = root / f".tmp-{name}-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        write(tmp)
        fsync_dir(tmp)
        os.replace(tmp, root / name)  # the new version directory appears complete
        fsync_dir(root)
        atomic_write_bytes(root / CURRENT, (name + "\n").encode())  # the commit point
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if committed != name:
            shutil.rmtree(root / name, ignore_errors=True)
        raise
    # Garbage: older versions and temp directories of interrupted saves.
    for p in root.iterdir():
        if p.name != name and (_VERSION.match(p.name) or p.name.startswith(".tmp-")):
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.startswith(f".{CURRENT}.tmp-"):
            p.unlink(missing_ok=True)
    return root / name
