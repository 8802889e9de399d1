"""Small helpers shared by the mixer ops (chunk padding, compute dtype)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "check_chunk_size",
    "check_floating_on_one_device",
    "check_shapes",
    "compute_dtype",
    "decay_exp",
    "log_decay_floor",
    "pad_to_chunks",
    "segsum",
]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulate in at least float32 (float64 stays float64)."""
    return torch.promote_types(dtype, torch.float32)


def check_chunk_size(chunk_size: int) -> int:
    """A chunk size must be a positive int."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    return chunk_size


def pad_to_chunks(
    x: torch.Tensor, chunk_size: int, dim: int = 1, value: float = 0.0
) -> torch.Tensor:
    """Right-pad ``x`` along ``dim`` to a multiple of ``chunk_size`` and split that dim into
    (n_chunks, chunk_size). x: (..., L, ...) -> (..., n, C, ...)."""
    length = x.shape[dim]
    n = math.ceil(length / chunk_size)
    pad = n * chunk_size - length
    if pad:
        d = dim % x.ndim
        spec = [0, 0] * (x.ndim - 1 - d) + [0, pad]
        x = F.pad(x, spec, value=value)
    shape = list(x.shape)
    d = dim % x.ndim
    return x.reshape(*shape[:d], n, chunk_size, *shape[d + 1 :])


def segsum(x: torch.Tensor) -> torch.Tensor:
    """Stable segment sums along the last dim: ``out[..., i, j] = sum_{j < r <= i} x[..., r]``
    for ``j <= i`` and ``-inf`` above the diagonal.

    Computed as a masked cumulative sum of the repeated input rather than as differences of
    one cumulative sum, so no large partial sums cancel (the "stable segsum" of Mamba-2).
    x: (..., T) -> (..., T, T).
    """
    t = x.shape[-1]
    xr = x[..., None].expand(*x.shape, t)  # (..., T_i, T_j): xr[..., r, j] = x[..., r]
    strict = torch.tril(torch.ones(t, t, dtype=torch.bool, device=x.device), diagonal=-1)
    xr = xr.masked_fill(~strict, 0)  # keep r > j
    out = torch.cumsum(xr, dim=-2)  # (..., i, j) = sum_{j < r <= i} x[r]
    lower = torch.tril(torch.ones(t, t, dtype=torch.bool, device=x.device))
    return out.masked_fill_(~lower, float("-inf"))  # in place: cumsum's backward needs no output


def log_decay_floor(dtype: torch.dtype) -> float:
    """log(sqrt(tiny)) of ``dtype`` (-43.7 in fp32, -354 in fp64): the lowest log-decay the
    CPU paths compute with. A decay of at least sqrt(tiny) times a value of ordinary size is
    a normal number, never a subnormal one (x86 runs those through slow microcode)."""
    return 0.5 * math.log(torch.finfo(dtype).tiny)


def decay_exp(log_decay: torch.Tensor) -> torch.Tensor:
    """``exp`` of log-decays (<= 0; -inf allowed), where on a CPU every exponent below
    log(sqrt(tiny)) of the dtype (-43.7 in fp32) gives exactly 0.

    On a CPU, PyTorch's ``exp`` (MKL's where PyTorch has it) is slow on the very negative:
    0.46 ms for 131K -inf and 1.3-4.4 ms for 131K values below -87, whose results are 0 or
    subnormal, against 19 us for ordinary values (one thread, Intel VM); products with
    subnormal results are slow again. Dropped decays are below 1.1e-19 (fp32). Elsewhere a
    plain ``exp``. Differentiable (the gradient is 0 where the decay is set to 0).
    """
    if log_decay.device.type != "cpu":
        return torch.exp(log_decay)
    floor = log_decay_floor(log_decay.dtype)
    return torch.exp(log_decay.clamp(min=floor)) * (log_decay >= floor)


def check_floating_on_one_device(
    fn: str, args: Mapping[str, Any], optional: tuple[str, ...] = ()
) -> dict[str, torch.Tensor]:
    """Raise ``TypeError`` unless every value of ``args`` (name -> argument) is a floating
    tensor, and ``ValueError`` unless all are on the first one's device. Arguments named in
    ``optional`` may also be None. ``fn`` names the caller in the message.

    Returns:
        ``args`` without the optional arguments that are None.
    """
    given = {k: t for k, t in args.items() if not (t is None and k in optional)}
    first, ref = next(iter(given.items()))
    for name, t in given.items():
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"{fn}: {name} must be a floating tensor, got {t!r:.60}")
        if t.device != ref.device:
            raise ValueError(f"{fn}: {name} is on {t.device}, {first} on {ref.device}")
    return given


def check_shapes(
    fn: str, args: Mapping[str, torch.Tensor], want: Mapping[str, tuple[int, ...]]
) -> None:
    """Raise ``ValueError`` unless each argument named in both ``args`` and ``want`` has the
    shape ``want`` gives it. ``fn`` names the caller in the message."""
    for name, shape in want.items():
        if name in args and tuple(args[name].shape) != shape:
            raise ValueError(f"{fn}: {name} must have shape {shape}, got {tuple(args[name].shape)}")
