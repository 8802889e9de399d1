"""Retention, recurrent form: ``S_t = gamma S_{t-1} + k_t^T v_t``, ``o_t = scale q_t S_t``.

O(1) memory per token (the (H, D_k, D_v) state): the decoding path.
"""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import compute_dtype
from seedbed.sequence_models.mixers.retnet._checks import check_retention_inputs
from seedbed.sequence_models.mixers.retnet.naive import retention_log_decay

__all__ = ["recurrent_retention", "retention_step"]


def retention_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    state: torch.Tensor,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token. q, k: (B, H, D_k); v: (B, H, D_v); state: (B, H, D_k, D_v).

    Returns (o (B, H, D_v), new state)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    gamma = torch.exp(retention_log_decay(q.shape[1], device=q.device, dtype=state.dtype))  # (H,)
    state = gamma[None, :, None, None] * state + k[..., :, None] * v[..., None, :]
    o = torch.einsum("bhk,bhkv->bhv", q * scale, state)
    return o, state


def recurrent_retention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token-by-token retention. Same arguments, results and errors as
    :func:`naive_retention`."""
    check_retention_inputs("recurrent_retention", q, k, v, initial_state)
    dtype = compute_dtype(q.dtype)
    bsz, length, n_heads, dk = q.shape
    qc, kc, vc = q.to(dtype), k.to(dtype), v.to(dtype)
    state = (
        torch.zeros(bsz, n_heads, dk, v.shape[-1], device=q.device, dtype=dtype)
        if initial_state is None
        else initial_state.to(dtype)
    )
    outs = []
    for q_t, k_t, v_t in zip(qc.unbind(1), kc.unbind(1), vc.unbind(1)):
        o, state = retention_step(q_t, k_t, v_t, state, scale)
        outs.append(o)
    o = torch.stack(outs, dim=1) if length else v.new_empty(bsz, 0, n_heads, v.shape[-1])
    return o.to(v.dtype), (state if output_final_state else None)
