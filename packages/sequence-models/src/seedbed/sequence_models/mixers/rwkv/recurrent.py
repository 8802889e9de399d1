"""RWKV-4 WKV, recurrent form: constant memory per token, the decoding path.

The numerically stable recurrence of RWKV-4 (and of HF transformers' CPU path): the numerator
and denominator are kept scaled by ``e^{-max}`` where ``max`` is the running maximum of the
exponents, so neither overflows however large the keys or long the sequence.
"""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import compute_dtype
from seedbed.sequence_models.mixers.rwkv._checks import check_wkv_inputs
from seedbed.sequence_models.mixers.rwkv.naive import empty_wkv_state

__all__ = ["recurrent_wkv", "wkv_step"]


def wkv_step(
    w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token. k, v: (B, D); state: (B, 3, D). Returns (wkv (B, D), new state)."""
    num, den, mx = state.unbind(1)  # (B, D) each
    # output: the carried past plus the current token with its bonus u
    m_out = torch.maximum(mx, u + k)
    e1, e2 = torch.exp(mx - m_out), torch.exp(u + k - m_out)
    o = (e1 * num + e2 * v) / (e1 * den + e2)
    # state: decay the past by e^{-w}, add the current token without bonus
    m_new = torch.maximum(mx - w, k)
    e1, e2 = torch.exp(mx - w - m_new), torch.exp(k - m_new)
    new_state = torch.stack([e1 * num + e2 * v, e1 * den + e2, m_new], dim=1)
    return o, new_state


def recurrent_wkv(
    w: torch.Tensor,
    u: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token-by-token WKV. Same arguments, results and errors as :func:`naive_wkv`."""
    check_wkv_inputs("recurrent_wkv", w, u, k, v, initial_state)
    dtype = compute_dtype(k.dtype)
    bsz, length, dim = k.shape
    kc, vc, w, u = k.to(dtype), v.to(dtype), w.to(dtype), u.to(dtype)
    state = (
        empty_wkv_state(bsz, dim, device=k.device, dtype=dtype)
        if initial_state is None
        else initial_state.to(dtype)
    )
    outs = []
    for k_t, v_t in zip(kc.unbind(1), vc.unbind(1)):
        o, state = wkv_step(w, u, k_t, v_t, state)
        outs.append(o)
    o = torch.stack(outs, dim=1) if length else v.new_empty(bsz, 0, dim)
    return o.to(v.dtype), (state if output_final_state else None)
