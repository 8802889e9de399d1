"""Mamba-2 SSD, chunkwise algorithm (the training path; Dao & Gu, 2024, "minimal SSD").

1. intra-chunk (diagonal blocks): the quadratic masked form inside each chunk, with the
   decay mask from a stable segment sum (no differences of large cumulative sums);
2. each chunk's own end state: ``sum_s exp(sum_{s<r<=end} dt A) dt_s x_s ⊗ B_s``;
3. inter-chunk recurrence of the states (a loop over the L/C chunks, decay exp(chunk log-
   decay));
4. state -> output (off-diagonal blocks): ``C_t exp(A_cum_t) h_start``.

Every decay is ``exp`` of a sum of ``dt A <= 0``. Chunk sizes need not divide L: the tail is
padded with ``dt = 0`` (decay 1, no input), which leaves the state unchanged.
"""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import (
    check_chunk_size,
    compute_dtype,
    pad_to_chunks,
    segsum,
)
from seedbed.sequence_models.mixers.mamba2.naive import expand_groups

__all__ = ["chunk_ssd"]


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
    """Chunkwise SSD. Same arguments and results as :func:`naive_ssd`, plus ``chunk_size``."""
    check_chunk_size(chunk_size)
    dtype = compute_dtype(x.dtype)
    bsz, length, h, p = x.shape
    c = min(chunk_size, length)
    xf, dtf, A = x.to(dtype), dt.to(dtype), A.to(dtype)
    Bf, Cf = expand_groups(B.to(dtype), h), expand_groups(C.to(dtype), h)  # (B, L, H, N)
    X = pad_to_chunks(xf * dtf[..., None], c)  # (B, n, C, H, P)
    Bc, Cc = pad_to_chunks(Bf, c), pad_to_chunks(Cf, c)  # (B, n, C, H, N)
    log_a = pad_to_chunks(dtf * A, c).permute(0, 3, 1, 2)  # (B, H, n, C), <= 0
    n = X.shape[1]
    acum = torch.cumsum(log_a, dim=-1)  # (B, H, n, C)

    # 1. diagonal blocks
    decay = torch.exp(segsum(log_a))  # (B, H, n, C_t, C_s)
    scores = torch.einsum("bjthn,bjshn->bhjts", Cc, Bc) * decay
    y = torch.einsum("bhjts,bjshp->bjthp", scores, X)  # (B, n, C, H, P)

    # 2. each chunk's end state from a zero start
    local = torch.einsum("bjshn,bhjs,bjshp->bjhpn", Bc, decay[..., -1, :], X)  # (B, n, H, P, N)

    # 3. inter-chunk recurrence
    state = (
        torch.zeros(bsz, h, p, Bf.shape[-1], device=x.device, dtype=dtype)
        if initial_state is None
        else initial_state.to(dtype)
    )
    chunk_decay = torch.exp(acum[..., -1])  # (B, H, n)
    starts = []
    for decay_j, local_j in zip(chunk_decay.unbind(2), local.unbind(1)):  # unbind: cheap backward
        starts.append(state)
        state = decay_j[..., None, None] * state + local_j
    s_in = torch.stack(starts, dim=1)  # (B, n, H, P, N)

    # 4. off-diagonal blocks: the carried state read out by C, decayed from the chunk start
    y = y + torch.einsum("bjthn,bjhpn,bhjt->bjthp", Cc, s_in, torch.exp(acum))
    y = y.reshape(bsz, n * c, h, p)[:, :length]
    return y.to(x.dtype), (state if output_final_state else None)
