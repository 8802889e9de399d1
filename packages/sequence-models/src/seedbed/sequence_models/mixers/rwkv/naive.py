"""RWKV-4 WKV, naive form: every output is an explicit weighted average over the past.

    wkv_t = (e^{-t w} a_0 + sum_{s<t} e^{-(t-1-s) w + k_s} v_s + e^{u + k_t} v_t)
            / (e^{-t w} b_0 + sum_{s<t} e^{-(t-1-s) w + k_s}   + e^{u + k_t})

The (L, L) weight matrix is materialised, with the running maximum of the exponents
subtracted (a softmax-style stabiliser), so it is O(L^2) in time and memory: a reference.

State layout (shared by the three forms): ``(B, 3, D)`` holding ``[num, den, max]``, the
past sums scaled by ``e^{-max}``: the true numerator is ``num * e^{max}``. The empty state
is ``[0, 0, -1e38]`` (the convention of HF transformers' RWKV).
"""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import compute_dtype
from seedbed.sequence_models.mixers.rwkv._checks import check_wkv_inputs

__all__ = ["empty_wkv_state", "naive_wkv"]

NEG_BIG = -1e38  # "log of zero" used for the max of the empty state


def empty_wkv_state(batch_size: int, dim: int, *, device=None, dtype=torch.float32) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The state before the first token: (B, 3, D) = [0, 0, -1e38]."""
    s = torch.zeros(batch_size, 3, dim, device=device, dtype=dtype)
    s[:, 2] = NEG_BIG
    return s


def naive_wkv(
    w: torch.Tensor,
    u: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Quadratic reference WKV.

    Args:
        w: (D,) decay rate, > 0: the past is multiplied by ``e^{-w}`` per step
            (``w = exp(time_decay)`` in RWKV-4 checkpoints).
        u: (D,) bonus added to the current token's key (``time_first``).
        k, v: (B, L, D) keys and values.
        initial_state: (B, 3, D) ``[num, den, max]`` or None for the empty state.
        output_final_state: also return the state after the last token.

    Returns:
        o: (B, L, D) in k's dtype; final state (B, 3, D) or None. At L = 0, an empty o and
        the initial state (the empty state if None).

    Raises:
        ValueError, TypeError: shapes, dtypes or devices that do not fit.
    """
    check_wkv_inputs("naive_wkv", w, u, k, v, initial_state)
    dtype = compute_dtype(k.dtype)
    bsz, length, dim = k.shape
    k, v, w, u = k.to(dtype), v.to(dtype), w.to(dtype), u.to(dtype)
    if initial_state is None:
        initial_state = empty_wkv_state(bsz, dim, device=k.device, dtype=dtype)
    if length == 0:
        return v.new_empty(bsz, 0, dim), (initial_state.to(dtype) if output_final_state else None)
    num0, den0, max0 = initial_state.to(dtype).unbind(1)  # (B, D) each

    t = torch.arange(length, device=k.device, dtype=dtype)
    rel = t[:, None] - 1 - t[None, :]  # (L, L): t - 1 - s
    logits = k[:, None, :, :] - rel[None, :, :, None] * w  # (B, L_t, L_s, D)
    diag = (u + k)[:, :, None, :]  # (B, L, 1, D)
    eye = torch.eye(length, dtype=torch.bool, device=k.device)[None, :, :, None]
    past = (rel >= 0)[None, :, :, None]
    logits = torch.where(
        eye, diag, torch.where(past, logits, torch.full_like(logits, float("-inf")))
    )
    init = max0[:, None, :] - t[None, :, None] * w  # (B, L, D) exponent of the carried state

    m = torch.maximum(init, logits.amax(dim=2)).detach()  # (B, L, D)
    e_init = torch.exp(init - m)
    e = torch.exp(logits - m[:, :, None, :])  # (B, L, L, D)
    num = e_init * num0[:, None, :] + (e * v[:, None, :, :]).sum(2)
    den = e_init * den0[:, None, :] + e.sum(2)
    o = (num / den).to(v.dtype)

    final = None
    if output_final_state:
        lf = k - (length - 1 - t)[None, :, None] * w  # (B, L, D)
        init_f = max0 - length * w  # (B, D)
        mf = torch.maximum(init_f, lf.amax(dim=1)).detach()
        ef_init = torch.exp(init_f - mf)
        ef = torch.exp(lf - mf[:, None, :])
        numf = ef_init * num0 + (ef * v).sum(1)
        denf = ef_init * den0 + ef.sum(1)
        final = torch.stack([numf, denf, mf], dim=1)
    return o, final
