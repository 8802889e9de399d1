"""Device selection and a description of the machine for logs (seed 000)."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

__all__ = ["get_device", "get_device_info"]


def get_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, or the best one available: CUDA, then MPS, then CPU.

    Raises:
        ValueError: if the requested device string is malformed or its backend is absent.
    """
    if device is not None:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(
                f"device must be like 'cpu', 'cuda', 'cuda:1' or 'mps', got {device!r}"
            ) from e
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        if dev.type == "mps" and not _mps_available():
            raise ValueError(f"device {device!r} requested but MPS is not available")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def get_device_info(device: str | torch.device | None = None) -> dict[str, Any]:
    """Plain-data description of ``device`` (default: :func:`get_device`) for logs and reports.

    Keys: ``device``, ``torch``, ``python``, ``platform``, ``cpu_count``, ``num_threads``,
    ``flash3``, ``flash2``; on CUDA also ``name``, ``capability``, ``total_memory_gb``,
    ``cuda``.
    """
    from seedbed.core_layers.attention.functional import _HAS_FLASH2, _HAS_FLASH3

    dev = get_device(device)
    info: dict[str, Any] = {
        "device": str(dev),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "num_threads": torch.get_num_threads(),
        "flash3": _HAS_FLASH3,
        "flash2": _HAS_FLASH2,
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        info["name"] = props.name
        info["capability"] = f"{props.major}.{props.minor}"
        info["total_memory_gb"] = round(props.total_memory / 1e9, 2)
        info["cuda"] = torch.version.cuda
    return info
