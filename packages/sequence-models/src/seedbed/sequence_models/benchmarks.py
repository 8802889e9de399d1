"""Benchmarks that sequence-models registers under ``seedbed.benchmarks``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from seedbed.core_layers.benchmarking import Metric, timed_ratio

__all__ = ["BENCHMARKS", "fft_vs_direct_long_conv"]


def _fft_causal_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    # u: (B, D, L), k: (D, L) -> (B, D, L), y[t] = sum_{s<=t} k[s] u[t-s]
    n = 2 * u.shape[-1]
    y = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k, n=n), n=n)
    return y[..., : u.shape[-1]]


def _direct_causal_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    # depthwise conv1d with left padding; conv1d is cross-correlation, so flip the kernel
    d, length = k.shape
    return F.conv1d(F.pad(u, (length - 1, 0)), k.flip(-1).unsqueeze(1), groups=d)


def fft_vs_direct_long_conv(full: bool = False) -> list[dict[str, Any]]:
    """Long (filter length = sequence length) causal convolution: FFT against direct."""
    b, d, length = (4, 256, 16384) if full else (2, 64, 4096)
    g = torch.Generator().manual_seed(0)
    u = torch.randn(b, d, length, generator=g)
    k = torch.randn(d, length, generator=g) / length
    err = (_fft_causal_conv(u, k) - _direct_causal_conv(u, k)).abs().max().item()
    _t_direct, _t_fft, speedup = timed_ratio(
        lambda: _direct_causal_conv(u, k), lambda: _fft_causal_conv(u, k), repeats=3
    )
    note = f"B={b} D={d} L={length} fp32 CPU"
    return [
        Metric("fft_conv_speedup_vs_direct", speedup, "x", 1.0, True, note=note).as_dict(),
        Metric("fft_conv_max_abs_err", err, "", 1e-3, False, note=note).as_dict(),
    ]


BENCHMARKS: list[Callable[..., list[dict[str, Any]]]] = [fft_vs_direct_long_conv]
