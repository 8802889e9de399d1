"""Training checkpoints written atomically: weights in safetensors, the rest ``weights_only``.

Layout of ``<dir>/step_00000123/``: ``model.safetensors`` (the model's tensors) and
``trainer_state.pt`` (optimizer, scaler, RNG and trainer counters; tensors and plain Python
data only, so it loads with ``torch.load(..., weights_only=True)``).

A checkpoint is first written to a hidden temporary directory next to it; every file and the
directory are fsync'ed, and only then is it renamed to its final name, so a crash at any point
leaves either no checkpoint or a complete one, never a torn one. Stale temporary directories
are removed by the next save.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

__all__ = [
    "MODEL_FILE",
    "STATE_FILE",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "save_checkpoint",
]

MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"
_STEP_DIR = re.compile(r"^step_(\d{8,})$")
_TMP_PREFIX = ".tmp-"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoints under ``directory``, oldest step first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in d.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The checkpoint with the highest step, or None."""
    ckpts = list_checkpoints(directory)
    return ckpts[-1] if ckpts else None


def save_checkpoint(
    directory: str | os.PathLike[str],
    step: int,
    model: nn.Module,
    state: dict[str, Any],
    *,
    keep_last: int | None = None,
) -> Path:
    """Write ``model``'s weights and ``state`` as ``<directory>/step_<step>`` atomically.

    Args:
        keep_last: if set, delete all but the newest ``keep_last`` checkpoints afterwards.

    Returns:
        The checkpoint directory.
    """
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last must be >= 1 or None, got {keep_last}")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f"{_TMP_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    final = root / f"step_{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{final.name}-", dir=root))
    try:
        save_model(model, str(tmp / MODEL_FILE))
        with (tmp / STATE_FILE).open("wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_path(tmp / MODEL_FILE)
        _fsync_path(tmp)
        old = None
        if final.exists():  # re-saving a step: move the old one aside, then swap
            old = root / f"{_TMP_PREFIX}old-{final.name}"
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_path(root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep_last is not None:
        for p in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(p, ignore_errors=True)
    return final


def load_checkpoint(path: str | os.PathLike[str], model: nn.Module) -> dict[str, Any]:
    """Load weights into ``model`` (strict) and return the trainer state.

    Raises:
        FileNotFoundError: if ``path`` is not a complete checkpoint directory.
    """
    p = Path(path)
    for name in (MODEL_FILE, STATE_FILE):
        if not (p / name).is_file():
            raise FileNotFoundError(f"checkpoint {p} is missing {name}")
    load_model(model, str(p / MODEL_FILE), strict=True)
    state: dict[str, Any] = torch.load(p / STATE_FILE, map_location="cpu", weights_only=True)
    return state
