"""RWKV-4 WKV, chunkwise-parallel form: the training path.

The sequence is cut into L/C chunks of C tokens, and every chunk runs at once: C vectorised
steps over (B * L/C, D) slices instead of L steps over (B, D).

1. inside each chunk, from the empty state, the stable recurrence of :mod:`.recurrent` gives
   each chunk's own end state ``(num, den, max)`` (true value ``num * e^max``);
2. across chunks, the state entering each chunk is a log-space scan over the L/C chunk states
   (``logcumsumexp`` in float64, no Python loop);
3. inside each chunk again, the same recurrence reruns from the true entering state and gives
   the outputs.

Every step is the running-max recurrence of RWKV-4 and the cross-chunk scan works in log
space, so nothing overflows however large the keys. Chunk sizes need not divide L: only the
last chunk is padded, and its padded steps are never read (the final state is taken at the
last real token).
"""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import check_chunk_size, compute_dtype, pad_to_chunks
from seedbed.sequence_models.mixers.rwkv._checks import check_wkv_inputs
from seedbed.sequence_models.mixers.rwkv.naive import empty_wkv_state
from seedbed.sequence_models.mixers.rwkv.recurrent import wkv_step

__all__ = ["chunk_wkv"]


def _safe_log(x: torch.Tensor) -> torch.Tensor:
    """log(x) where x > 0, a huge negative number elsewhere (finite, so no NaN gradients)."""
    pos = x > 0
    return torch.where(
        pos, torch.log(torch.where(pos, x, torch.ones_like(x))), torch.full_like(x, -1e30)
    )


def _carry(
    chunk_states: torch.Tensor, initial: torch.Tensor, w: torch.Tensor, c: int
) -> torch.Tensor:
    """States entering each chunk from the chunks' own end states, in log space.

    chunk_states: (B, n, 3, D) each chunk's end state from the empty state; initial: (B, 3, D)
    the state before the first chunk; w: (D,) decay. Returns (B, n, 3, D).

    The true state after chunk j is ``e^{-P_j w} sum_{i<=j} e^{a_i} x_i`` with
    ``a_i = max_i + P_i w`` (P_i: tokens up to the end of chunk i) and item 0 the carried-in
    state (P = 0). Float64, since the exponents grow like position * w; signed numerators are
    split into positive and negative parts.
    """
    n = chunk_states.shape[1]
    f64 = torch.float64
    w64 = w.to(f64)
    ends = torch.arange(n + 1, device=w.device, dtype=f64) * c  # (n+1,): P
    states = torch.cat([initial[:, None], chunk_states], dim=1).to(f64)  # (B, n+1, 3, D)
    nums, dens, maxs = states.unbind(2)  # (B, n+1, D) each
    a = maxs + ends[None, :, None] * w64
    a_max = torch.cummax(a, dim=1).values.detach()  # the recurrence's running max, shifted
    l_pos = torch.logcumsumexp(_safe_log(nums) + a, dim=1)
    l_neg = torch.logcumsumexp(_safe_log(-nums) + a, dim=1)
    l_den = torch.logcumsumexp(_safe_log(dens) + a, dim=1)
    num_all = torch.exp(l_pos - a_max) - torch.exp(l_neg - a_max)  # scaled by e^-max
    den_all = torch.exp(l_den - a_max)
    max_all = a_max - ends[None, :, None] * w64
    return torch.stack([num_all, den_all, max_all], dim=2)[:, :-1].to(chunk_states.dtype)


def chunk_wkv(
    w: torch.Tensor,
    u: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 32,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunkwise WKV. Same arguments, results and errors as :func:`naive_wkv`, plus
    ``chunk_size`` (a bad one raises ``ValueError``)."""
    check_chunk_size(chunk_size)
    check_wkv_inputs("chunk_wkv", w, u, k, v, initial_state)
    dtype = compute_dtype(k.dtype)
    bsz, length, dim = k.shape
    initial = (
        empty_wkv_state(bsz, dim, device=k.device, dtype=dtype)
        if initial_state is None
        else initial_state.to(dtype)
    )
    if length == 0:
        return v.new_empty(bsz, 0, dim), (initial if output_final_state else None)
    c = min(chunk_size, length)
    kf, vf, w, u = k.to(dtype), v.to(dtype), w.to(dtype), u.to(dtype)
    kc, vc = pad_to_chunks(kf, c), pad_to_chunks(vf, c)  # (B, n, C, D)
    n = kc.shape[1]
    k_steps = kc.reshape(bsz * n, c, dim).unbind(1)  # C slices of (B * n, D)
    v_steps = vc.reshape(bsz * n, c, dim).unbind(1)

    # 1. each chunk's own end state, from the empty state (only chunks 0..n-2 are read)
    state = empty_wkv_state(bsz * n, dim, device=k.device, dtype=dtype)  # (B * n, 3, D)
    if n > 1:
        for k_s, v_s in zip(k_steps, v_steps):
            _, state = wkv_step(w, u, k_s, v_s, state)

    # 2. the true state entering each chunk
    start = _carry(state.reshape(bsz, n, 3, dim), initial, w, c)  # (B, n, 3, D)

    # 3. rerun every chunk from its entering state, keeping the outputs
    state = start.reshape(bsz * n, 3, dim)
    last = length - 1 - (n - 1) * c  # the last real token's step in the last chunk
    outs, final = [], None
    for s, (k_s, v_s) in enumerate(zip(k_steps, v_steps)):
        o, state = wkv_step(w, u, k_s, v_s, state)
        outs.append(o)
        if s == last and output_final_state:
            final = state.reshape(bsz, n, 3, dim)[:, -1]
    o = torch.stack(outs, dim=1).reshape(bsz, n * c, dim)[:, :length]  # (B, L, D)
    return o.to(v.dtype), final
