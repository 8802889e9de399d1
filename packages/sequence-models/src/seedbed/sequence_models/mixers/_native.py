"""Build and load small C kernels at first use (no build step at install time).

A kernel is one self-contained C file next to the Python module that calls it. On first use
it is compiled with the machine's C compiler (``$CC``, else ``cc``/``gcc``/``clang``) for the
host CPU, and the shared library is cached under ``$SEEDBED_CACHE_DIR/native`` (default
``~/.cache/seedbed/native``), keyed by the source, the flags, the compiler and the host, so
an edit or another machine gets a fresh build. Builds are atomic (compile to a temporary
file, then rename), so concurrent processes are safe.

Without a compiler, or with ``SEEDBED_NATIVE=0``, :func:`load_c_library` raises
:class:`NativeUnavailable`, and callers fall back to their pure-PyTorch forms.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

__all__ = ["NativeUnavailable", "load_c_library", "native_cache_dir"]

# -O3 and the host's vector units; the reassociation flags let the compiler vectorise the
# reductions over the state dimension (the result changes in the last bits only)
_FLAGS = ("-O3", "-fno-math-errno", "-fassociative-math", "-fno-signed-zeros",
          "-fno-trapping-math", "-shared", "-fPIC")  # fmt: skip
_ARCH_FLAGS = ("-march=native",)

_loaded: dict[tuple[str, tuple[tuple[str, str], ...]], ctypes.CDLL | NativeUnavailable] = {}


class NativeUnavailable(RuntimeError):
    """A C kernel could not be built or loaded here (the message says why)."""


def native_cache_dir() -> Path:
    """Where built kernels are kept: ``$SEEDBED_CACHE_DIR/native`` or
    ``~/.cache/seedbed/native``."""
    root = os.environ.get("SEEDBED_CACHE_DIR")
    base = (
        Path(root)
        if root
        else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "seedbed"
    )
    return base / "native"


def _compiler() -> str:
    cc = os.environ.get("CC")
    if cc:
        return cc
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    raise NativeUnavailable("no C compiler found (set $CC, or install gcc or clang)")


def _build(source: Path, defines: Mapping[str, str]) -> ctypes.CDLL:
    if os.environ.get("SEEDBED_NATIVE", "1") == "0":
        raise NativeUnavailable("native kernels are disabled by SEEDBED_NATIVE=0")
    cc = _compiler()
    dflags = tuple(f"-D{k}={v}" for k, v in sorted(defines.items()))
    text = source.read_bytes()
    out_dir = native_cache_dir()
    errors = []
    for arch in (_ARCH_FLAGS, ()):  # -march=native first; some compilers lack it
        flags = (*_FLAGS, *arch, *dflags)
        key = hashlib.sha256(
            b"\0".join([text, " ".join(flags).encode(), cc.encode(), platform.node().encode(),
                        platform.machine().encode()])
        ).hexdigest()[:16]  # fmt: skip
        target = out_dir / f"{source.stem}-{key}.so"
        if not target.exists():
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
                os.close(fd)
                proc = subprocess.run(
                    [cc, *flags, str(source), "-o", tmp, "-lm"],
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                errors.append(f"{cc}: {exc}")
                continue
            if proc.returncode != 0:
                Path(tmp).unlink(missing_ok=True)
                errors.append(f"{cc} {' '.join(arch)} failed: {proc.stderr.strip()[-400:]}")
                continue
            os.replace(tmp, target)
        try:
            return ctypes.CDLL(str(target))
        except OSError as exc:
            errors.append(f"loading {target}: {exc}")
    raise NativeUnavailable(f"could not build {source.name}: " + "; ".join(errors))


def load_c_library(source: Path, defines: Mapping[str, str] | None = None) -> ctypes.CDLL:
    """Compile (once, cached on disk) and load the C file ``source`` with ``-D`` defines.

    The outcome, success or failure, is remembered for the process.

    Raises:
        NativeUnavailable: no compiler, the build failed, or ``SEEDBED_NATIVE=0``.
    """
    key = (str(source), tuple(sorted((defines or {}).items())))
    if key not in _loaded:
        try:
            _loaded[key] = _build(source, defines or {})
        except NativeUnavailable as exc:
            _loaded[key] = exc
    outcome = _loaded[key]
    if isinstance(outcome, NativeUnavailable):
        raise outcome
    return outcome
