"""Reference MoE feed-forward: a plain Python loop over experts (HF Mixtral style).

Used by the tests as ground truth and by the benchmarks as the baseline the grouped dispatch in
:mod:`seedbed.core_layers.moe.dispatch` is compared against. Not used on any hot path.

By default each expert's weights are read by indexing the stacked (E, ...) parameters inside the
loop, as HF transformers' ``MixtralExperts`` does; in backward every such index costs a zero
tensor of the full stacked shape. ``unbind_weights=True`` splits the stacks once before the loop
(as if every expert were its own module), the stronger baseline.
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
    *,
    unbind_weights: bool = False,
) -> torch.Tensor:
    """Σ_slots gate · SwiGLU_expert(x), one expert at a time.

    Args:
        x: (T, D) tokens.
        expert_index: (T, k) expert ids.
        gates: (T, k) combine weights.
        keep: (T, k) bool, or None for all kept; dropped assignments contribute nothing.
        gate_up_proj: (E, 2F, D) fused gate/up weights (gate rows first).
        down_proj: (E, D, F) down weights.
        unbind_weights: split the stacked weights once instead of indexing them per expert.

    Returns:
        (T, D).
    """
    out = torch.zeros_like(x)
    mask = keep if keep is not None else torch.ones_like(expert_index, dtype=torch.bool)
    unbound = list(zip(gate_up_proj.unbind(0), down_proj.unbind(0))) if unbind_weights else []
    for e in range(gate_up_proj.shape[0]):
        token, slot = torch.where((expert_index == e) & mask)
        if token.numel() == 0:
            continue
        wgu, wd = (
            unbound[e] if unbind_weights else (gate_up_proj[e], down_proj[e])
        )  # (2F, D), (D, F)
        gate, up = F.linear(x[token], wgu).chunk(2, dim=-1)  # (n, F) each
        y = F.linear(F.silu(gate) * up, wd)  # (n, D)
        out.index_add_(0, token, y * gates[token, slot, None].to(y.dtype))
    return out
