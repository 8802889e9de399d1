"""Mamba-1 selective scan, chunked form (the training path), decays in log space.

The sequence is cut into L/C chunks of C tokens, and every chunk is scanned at once: C
vectorised steps over (B, L/C, E, N) slices instead of L steps over (B, E, N).

1. inside each chunk, from a zero state, keeping each step's decay ``exp(delta_t A)`` (a
   tensor autograd would keep anyway);
2. across chunks, the state entering each chunk is carried by a loop over the L/C chunks,
   with the chunk's total decay ``exp(A sum_t delta_t)`` (a sum of log-decays <= 0);
3. inside each chunk again, the same steps rerun from the true entering state, reading out
   ``y_t = C_t · h_t`` as they go (no (L, E, N) state tensor is kept).

Decays are only ever ``exp`` of sums of ``delta A <= 0`` (never their reciprocals, as the
``exp(-cumsum)`` trick would need), so strong decay underflows to 0 instead of overflowing.
Chunk sizes need not divide L: the tail is padded with ``delta = 0`` (decay 1, no input),
which leaves the state unchanged.

Speed note (CPU): both this form and the recurrent loop must compute one ``exp`` and a few
multiply-adds per (token, channel, state); this form removes the per-token Python and
dispatch overhead, but writes its (B, n, E, N) decays and states to memory at every step, so
on a CPU memory traffic bounds it (3-6x the recurrent loop at L = 4096, E = 128, N = 16).
``MambaBlock`` therefore runs the fused kernel of ``fused.py`` on CPU tensors (20x);
``mixer_benchmarks.bench_chunked_vs_recurrent`` measures both.
"""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import check_chunk_size, compute_dtype, pad_to_chunks

__all__ = ["chunk_selective_scan"]


def chunk_selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 32,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunked selective scan. Same arguments and results as :func:`naive_selective_scan`,
    plus ``chunk_size``."""
    check_chunk_size(chunk_size)
    dtype = compute_dtype(u.dtype)
    bsz, length, e = u.shape
    c = min(chunk_size, length)
    uf, df, A, Bf, Cf = u.to(dtype), delta.to(dtype), A.to(dtype), B.to(dtype), C.to(dtype)

    def steps(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, L, K) -> C step slices of shape (B, n, K): slice s holds token s of each chunk."""
        return tuple(pad_to_chunks(x, c).unbind(2))

    d_chunks = pad_to_chunks(df, c)  # (B, n, C, E)
    d_steps, du_steps, b_steps, c_steps = d_chunks.unbind(2), steps(df * uf), steps(Bf), steps(Cf)
    n = d_chunks.shape[1]

    # 1. each chunk's end state from a zero start, all chunks at once; the decays are kept
    #    for step 3 (the inputs are cheaper to recompute than to keep in memory)
    decays = []
    h: torch.Tensor | None = None
    for d_s, du_s, b_s in zip(d_steps, du_steps, b_steps):
        # in-place ops on fresh intermediates only (autograd-safe: neither mul's nor exp's
        # backward needs the overwritten tensor), which halves the allocations per step
        a_s = (d_s[..., None] * A).exp_()  # (B, n, E, N), in (0, 1]
        decays.append(a_s)
        du_b = du_s[..., None], b_s[..., None, :]  # (B, n, E, 1), (B, n, 1, N)
        h = torch.mul(*du_b) if h is None else (a_s * h).addcmul_(*du_b)
    assert h is not None  # c >= 1
    chunk_decay = torch.exp(d_chunks.sum(dim=2)[..., None] * A)  # (B, n, E, N)

    # 2. carry the state across chunks
    state = (
        torch.zeros(bsz, e, A.shape[1], device=u.device, dtype=dtype)
        if initial_state is None
        else initial_state.to(dtype)
    )
    starts = []
    for decay_j, h_j in zip(chunk_decay.unbind(1), h.unbind(1)):
        starts.append(state)
        state = torch.addcmul(h_j, decay_j, state)

    # 3. rerun every chunk from its true start state and read out y_t = C_t . h_t
    h = torch.stack(starts, dim=1)  # (B, n, E, N)
    ys = []
    for a_s, du_s, b_s, c_s in zip(decays, du_steps, b_steps, c_steps):
        h = (a_s * h).addcmul_(du_s[..., None], b_s[..., None, :])
        ys.append(torch.einsum("bjen,bjn->bje", h, c_s))  # (B, n, E)
    y = torch.stack(ys, dim=2).reshape(bsz, n * c, e)[:, :length]  # (B, L, E)
    return y.to(u.dtype), (state if output_final_state else None)
