"""Mamba-1 selective scan, chunked form (the PyTorch training path), decays in log space.

    h_t = exp(delta_t A) ⊙ h_{t-1} + delta_t u_t B_t,      y_t = C_t · h_t

The sequence is cut into n = L/C chunks of C tokens, and all chunks are scanned at once: C
vectorised steps over (B, n, E, N) tiles instead of L steps over (B, E, N).

Forward:

1. each chunk's end state from a zero start, all chunks at once;
2. the state entering each chunk, carried by a loop over the n chunks with the chunk's total
   decay ``exp(A sum_t delta_t)``;
3. every chunk rerun from its true entering state, reading out ``y_t = C_t · h_t``.

Backward (a custom autograd function; only the (B, n, E, N) entering states are saved):

1. each chunk's adjoint at its start from a zero adjoint at its end (a reverse scan);
2. the adjoint entering each chunk from the right, carried by a loop over the chunks;
3. the states recomputed from the saved entering states, then every chunk run in reverse
   from its true adjoint, giving the gradients of u, delta, A, B, C and the initial state.

Decays are only ever ``exp`` of ``delta A <= 0`` or of sums of such terms (never their
reciprocals, as the ``exp(-cumsum)`` trick would need), so strong decay underflows to 0
instead of overflowing. Chunk sizes need not divide L: the tail is padded with ``delta = 0``
(decay 1, no input), which leaves the state and the adjoint unchanged.

Speed (CPU): every step is a few in-place elementwise ops on preallocated tiles, and the
decays are computed as ``exp2(delta (A log2 e))`` (PyTorch's CPU ``exp2`` is ~3x its
``exp``). Both this form and the recurrent loop must still do one exponential and a few
multiply-adds per (token, channel, state), so with one thread this form is ~8x the loop at
L = 4096, E = 128, N = 16 (BENCHMARKS.md); the fused kernel of ``fused.py``, which
``MambaBlock`` runs on CPU tensors, does that work once with the state in registers.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from seedbed.sequence_models.mixers._utils import check_chunk_size, compute_dtype, pad_to_chunks

__all__ = ["chunk_selective_scan"]

_LOG2E = 1.0 / math.log(2.0)


def _steps(x: torch.Tensor, c: int) -> torch.Tensor:
    """(B, L, K) -> (C, B, n, K), contiguous: slice s holds token s of every chunk."""
    return pad_to_chunks(x, c).permute(2, 0, 1, 3).contiguous()


def _unsteps(x: torch.Tensor, length: int) -> torch.Tensor:
    """(C, B, n, K) -> (B, L, K), the inverse of :func:`_steps` (padding dropped)."""
    c, bsz, n, k = x.shape
    return x.permute(1, 2, 0, 3).reshape(bsz, n * c, k)[:, :length]


class _Chunks:
    """The scan's inputs cut into chunk steps, and its decays.

    Attributes:
        d: (C, B, n, E) delta.   x: (C, B, n, E) delta * u.
        b, c: (C, B, n, N) B and C.   a2: (E, N) A * log2(e).
        chunk_decay: (B, n, E, N) each chunk's total decay exp(A sum_t delta_t).
    """

    def __init__(self, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                 C: torch.Tensor, chunk: int) -> None:  # fmt: skip
        self.d, self.x = _steps(delta, chunk), _steps(delta * u, chunk)
        self.b, self.c = _steps(B, chunk), _steps(C, chunk)
        self.a2 = A * _LOG2E
        self.chunk_decay = torch.exp2(self.d.sum(0)[..., None] * self.a2)
        # per-step views, broadcastable against (B, n, E, N), made once (the loops are hot)
        self._d = self.d[..., None].unbind(0)  # (B, n, E, 1) each
        self._x = self.x[..., None].unbind(0)  # (B, n, E, 1)
        self._b = self.b[..., None, :].unbind(0)  # (B, n, 1, N)

    def decay(self, s: int, out: torch.Tensor) -> torch.Tensor:
        """exp(delta A) of step s of every chunk, written into ``out`` (B, n, E, N)."""
        return torch.exp2(torch.mul(self._d[s], self.a2, out=out), out=out)

    def step(self, s: int, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """h <- a ⊙ h + x_s B_s, in place. h, a: (B, n, E, N)."""
        return h.mul_(a).addcmul_(self._x[s], self._b[s])


def _carry(local: torch.Tensor, decay: torch.Tensor, first: torch.Tensor,
           reverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Carry a value across chunks: ``v_j = first`` for the first chunk visited and
    ``v_next = local_j + decay_j ⊙ v_j`` after each. local, decay: (B, n, E, N); first:
    (B, E, N). Returns (v (B, n, E, N), the value after the last chunk (B, E, N))."""
    out = torch.empty_like(local)
    order = list(range(local.shape[1]))
    if reverse:
        order.reverse()
    out[:, order[0]] = first
    for j, nxt in itertools.pairwise(order):
        torch.addcmul(local[:, j], decay[:, j], out[:, j], out=out[:, nxt])
    j = order[-1]
    return out, torch.addcmul(local[:, j], decay[:, j], out[:, j])


def _forward(k: _Chunks, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns y (C, B, n, E), the final state (B, E, N) and the entering states (B, n, E, N)."""
    steps, bsz, n, e = k.x.shape
    a = h0.new_empty(bsz, n, e, h0.shape[-1])  # (B, n, E, N), reused by every step
    h = torch.zeros_like(a)
    for s in range(steps):  # 1. chunk end states from zero
        k.step(s, h, k.decay(s, a))
    starts, last = _carry(h, k.chunk_decay, h0)  # 2.
    h.copy_(starts)
    y = h0.new_empty(steps, bsz, n, e)
    for s in range(steps):  # 3. rerun from the true entering states and read out
        k.step(s, h, k.decay(s, a))
        y[s] = torch.einsum("bjen,bjn->bje", h, k.c[s])
    return y, last, starts


def _backward(k: _Chunks, A: torch.Tensor, starts: torch.Tensor, dy: torch.Tensor,
              dh_last: torch.Tensor) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """dy: (C, B, n, E) -> d(delta u), d(delta) from the decays (C, B, n, E), dA (E, N),
    dB, dC (C, B, n, N), d(initial state) (B, E, N)."""
    steps = k.x.shape[0]
    a, g = torch.empty_like(starts), torch.zeros_like(starts)  # (B, n, E, N)
    # g holds a_{t+1} ⊙ dL/dh_{t+1}: the adjoint reaching h_t from later tokens
    for s in range(steps - 1, -1, -1):  # 1. chunk start adjoints from a zero end adjoint
        g.addcmul_(dy[s][..., None], k.c[s][..., None, :]).mul_(k.decay(s, a))
    g_in, dh0 = _carry(g, k.chunk_decay, dh_last, reverse=True)  # 2.
    hs = starts.new_empty(steps, *starts.shape)  # (C, B, n, E, N) true states
    h = starts.clone()
    for s in range(steps):  # 3a. recompute the states
        hs[s] = k.step(s, h, k.decay(s, a))
    dx, ddecay = torch.empty_like(k.x), torch.empty_like(k.x)
    db, dc = torch.empty_like(k.b), torch.empty_like(k.c)
    da_sum, z = torch.zeros_like(starts), torch.empty_like(starts)
    g.copy_(g_in)
    for s in range(steps - 1, -1, -1):  # 3b. the reverse pass with the true adjoints
        g.addcmul_(dy[s][..., None], k.c[s][..., None, :])  # dL/dh_s
        dx[s] = torch.einsum("bjen,bjn->bje", g, k.b[s])
        db[s] = torch.einsum("bjen,bje->bjn", g, k.x[s])
        dc[s] = torch.einsum("bje,bjen->bjn", dy[s], hs[s])
        g.mul_(k.decay(s, a))
        torch.mul(g, hs[s - 1] if s else starts, out=z)  # dL/d(delta_s A) ⊙ ... per (e, n)
        ddecay[s] = torch.einsum("bjen,en->bje", z, A)
        da_sum.addcmul_(z, k.d[s][..., None])
    return dx, ddecay, da_sum.sum((0, 1)), db, dc, dh0


class _ChunkScan(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, chunk: int, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor,
        B: torch.Tensor, C: torch.Tensor, h0: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        k = _Chunks(u, delta, A, B, C, chunk)
        y, last, starts = _forward(k, h0)
        ctx.save_for_backward(u, delta, A, B, C, starts)
        ctx.chunk = chunk
        return _unsteps(y, u.shape[1]), last

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: torch.Tensor, dh_last: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        u, delta, A, B, C, starts = ctx.saved_tensors
        k = _Chunks(u, delta, A, B, C, ctx.chunk)
        dx, ddecay, dA, db, dc, dh0 = _backward(k, A, starts, _steps(dy, ctx.chunk), dh_last)
        length = u.shape[1]
        dx = _unsteps(dx, length)  # d(delta u): (B, L, E)
        ddelta = _unsteps(ddecay, length) + dx * u
        return None, dx * delta, ddelta, dA, _unsteps(db, length), _unsteps(dc, length), dh0


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
    """Chunked selective scan. Same arguments and results as :func:`naive_selective_scan`
    (u, delta (B, L, E); A (E, N); B, C (B, L, N); initial_state (B, E, N)), plus
    ``chunk_size``. Differentiable (a custom backward; not twice)."""
    check_chunk_size(chunk_size)
    dtype = compute_dtype(u.dtype)
    bsz, length, e = u.shape
    h0 = (
        torch.zeros(bsz, e, A.shape[1], device=u.device, dtype=dtype)
        if initial_state is None
        else initial_state.to(dtype)
    )
    if length == 0:
        return u.new_empty(bsz, 0, e), (h0 if output_final_state else None)
    inputs = (t.to(dtype) for t in (u, delta, A, B, C))
    y, last = _ChunkScan.apply(min(chunk_size, length), *inputs, h0)
    return y.to(u.dtype), (last if output_final_state else None)
