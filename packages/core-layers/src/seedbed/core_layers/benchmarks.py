"""Benchmarks that core-layers registers under ``seedbed.benchmarks``.

Each entry of ``BENCHMARKS`` is ``bench(full: bool = False) -> list[dict]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from seedbed.core_layers.benchmarking import Metric, timed_ratio

__all__ = ["BENCHMARKS", "sdpa_vs_math_attention"]


def _math_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # q, k, v: (B, H, S, D)
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, S, S)
    mask = torch.ones(s.shape[-2:], dtype=torch.bool, device=q.device).tril()
    s = s.masked_fill(~mask, float("-inf"))
    return s.softmax(-1) @ v  # (B, H, S, D)


def sdpa_vs_math_attention(full: bool = False) -> list[dict[str, Any]]:
    """Causal attention: torch SDPA against the explicit softmax(QK^T)V, side by side."""
    b, h, s, d = (4, 8, 2048, 64) if full else (2, 4, 512, 64)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b, h, s, d, generator=g) for _ in range(3))
    ref = _math_attention(q, k, v)
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    err = (out - ref).abs().max().item()
    with torch.no_grad():
        _t_math, _t_sdpa, speedup = timed_ratio(
            lambda: _math_attention(q, k, v),
            lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True),
        )
    note = f"B={b} H={h} S={s} D={d} fp32 CPU"
    return [
        Metric("sdpa_speedup_vs_math", speedup, "x", None, True, note=note).as_dict(),
        Metric("sdpa_max_abs_err", err, "", 1e-4, False, note=note).as_dict(),
    ]


BENCHMARKS: list[Callable[..., list[dict[str, Any]]]] = [sdpa_vs_math_attention]
