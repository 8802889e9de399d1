"""Mamba-2 SSD, chunkwise algorithm (the training path; Dao & Gu, 2024, "minimal SSD").

1. intra-chunk (diagonal blocks): the quadratic masked form inside each chunk, with the
   decay mask from a stable segment sum (no differences of large cumulative sums);
2. each chunk's own end state: ``sum_s exp(sum_{s<r<=end} dt A) dt_s x_s ⊗ B_s``;
3. inter-chunk recurrence of the states (a loop over the L/C chunks, decay exp(chunk log-
   decay));
4. state -> output (off-diagonal blocks): ``C_t exp(A_cum_t) h_start``.

Every decay is ``exp`` of a sum of ``dt A <= 0``; on a CPU, decays below 1e-19 are set to 0
(:func:`decay_exp`, which keeps MKL's exp off its slow path). Chunk sizes need not divide L:
the tail is padded with ``dt = 0`` (decay 1, no input), which leaves the state unchanged.
"""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import (
    check_chunk_size,
    compute_dtype,
    decay_exp,
    pad_to_chunks,
    segsum,
)
from seedbed.sequence_models.mixers.mamba2._checks import check_ssd_inputs
from seedbed.sequence_models.mixers.mamba2.naive import expand_groups

__all__ = ["chunk_ssd"]


def _heads_first(t: torch.Tensor, chunk: int, heads: int) -> torch.Tensor:
    """(B, L, G, K) -> (B, H, n, C, K), contiguous, each of the G groups repeated for H/G
    consecutive heads (G = H for x): every product below is then one batched matmul over
    (B, H, n) with no hidden copies."""
    return expand_groups(pad_to_chunks(t, chunk).movedim(3, 1), heads, dim=1)  # one copy


def chunk_ssd(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunkwise SSD. Same arguments and results as :func:`naive_ssd`, plus ``chunk_size``.

    Raises:
        ValueError, TypeError: shapes, dtypes or devices that do not fit, or a bad chunk size.
    """
    check_chunk_size(chunk_size)
    check_ssd_inputs("chunk_ssd", x, dt, A, B, C, initial_state)
    dtype = compute_dtype(x.dtype)
    bsz, length, h, p = x.shape
    if length == 0:
        h0 = (
            torch.zeros(bsz, h, p, B.shape[-1], device=x.device, dtype=dtype)
            if initial_state is None
            else initial_state.to(dtype)
        )
        return x.new_empty(bsz, 0, h, p), (h0 if output_final_state else None)
    c = min(chunk_size, length)
    xf, dtf, A = x.to(dtype), dt.to(dtype), A.to(dtype)
    X = _heads_first(xf * dtf[..., None], c, h)  # (B, H, n, C, P)
    Bh = _heads_first(B.to(dtype), c, h)  # (B, H, n, C, N)
    Ch = _heads_first(C.to(dtype), c, h)  # (B, H, n, C, N)
    log_a = pad_to_chunks(dtf * A, c).permute(0, 3, 1, 2)  # (B, H, n, C), <= 0
    n = log_a.shape[2]
    acum = torch.cumsum(log_a, dim=-1)  # (B, H, n, C)

    # 1. diagonal blocks: (C B^T ∘ L) X per chunk
    decay = decay_exp(segsum(log_a))  # (B, H, n, C_t, C_s)
    y = ((Ch @ Bh.transpose(-1, -2)) * decay) @ X  # (B, H, n, C, P)

    # 2. each chunk's end state from a zero start, kept as (N, P): B^T (decay_to_end X)
    local = Bh.transpose(-1, -2) @ (decay[..., -1, :, None] * X)  # (B, H, n, N, P)

    # 3. inter-chunk recurrence
    state = (
        torch.zeros(bsz, h, Bh.shape[-1], p, device=x.device, dtype=dtype)
        if initial_state is None
        else initial_state.to(dtype).transpose(-1, -2)
    )  # (B, H, N, P)
    starts = []
    chunk_decay = decay_exp(acum[..., -1])  # (B, H, n)
    for decay_j, local_j in zip(chunk_decay.unbind(2), local.unbind(2)):  # unbind: cheap backward
        starts.append(state)
        state = decay_j[..., None, None] * state + local_j
    s_in = torch.stack(starts, dim=2)  # (B, H, n, N, P)

    # 4. off-diagonal blocks: the carried state read out by C, decayed from the chunk start
    y = y + (Ch * decay_exp(acum)[..., None]) @ s_in  # (B, H, n, C, P)
    y = y.permute(0, 2, 3, 1, 4).reshape(bsz, n * c, h, p)[:, :length]
    return y.to(x.dtype), (state.transpose(-1, -2) if output_final_state else None)
