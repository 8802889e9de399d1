"""Reference MoE feed-forward: a plain Python loop over experts (HF Mixtral style).

Used by the tests as ground truth and by the benchmarks as the baseline the grouped dispatch in
:mod:`seedbed.core_layers.moe.dispatch` is compared against. Not used on any hot path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["naive_moe"]


def naive_moe(
    x: torch.Tensor,
    expert_index: torch.Tensor,
    gates: torch.Tensor,
    keep: torch.Tensor | None,
    gate_up_proj: torch.Tensor,
    down_proj: torch.Tensor,
) -> torch.Tensor:
    """Σ_slots gate · SwiGLU_expert(x), one expert at a time.

    Args:
        x: (T, D) tokens.
        expert_index: (T, k) expert ids.
        gates: (T, k) combine weights.
        keep: (T, k) bool, or None for all kept; dropped assignments contribute nothing.
        gate_up_proj: (E, 2F, D) fused gate/up weights (gate rows first).
        down_proj: (E, D, F) down weights.

    Returns:
        (T, D).
    """
    out = torch.zeros_like(x)
    mask = keep if keep is not None else torch.ones_like(expert_index, dtype=torch.bool)
    for e in range(gate_up_proj.shape[0]):
        token, slot = torch.where((expert_index == e) & mask)
        if token.numel() == 0:
            continue
        gate, up = F.linear(x[token], gate_up_proj[e]).chunk(2, dim=-1)  # (n, F) each
        y = F.linear(F.silu(gate) * up, down_proj[e])  # (n, D)
        out.index_add_(0, token, y * gates[token, slot, None].to(y.dtype))
    return out
