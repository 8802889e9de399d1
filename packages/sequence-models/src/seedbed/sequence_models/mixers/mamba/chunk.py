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
3. the states recomputed from the saved entering states (held during the backward only:
   B L E N values), then every chunk run in reverse from its true adjoint, giving the
   gradients of u, delta, A, B, C and the initial state.

Decays are only ever ``exp`` of ``delta A <= 0`` or of sums of such terms (never their
reciprocals, as the ``exp(-cumsum)`` trick would need), so strong decay underflows to 0
instead of overflowing. Chunk sizes need not divide L: the tail is padded with ``delta = 0``
(decay 1, no input), which leaves the state and the adjoint unchanged.

Speed (CPU): every step is a few in-place elementwise ops on one reused (B, n, E, N) tile,
and decays are computed as ``exp2(delta (A log2 e))`` (PyTorch's CPU ``exp2`` is ~3x its
``exp``); little fresh memory is touched per call. Both this form and the recurrent loop
must still do one exponential and a few multiply-adds per (token, channel, state), twice
here (passes 1 and 3), so on one thread this form is ~8x the loop at L = 4096, E = 128,
N = 16, ~12x on two (BENCHMARKS.md). The fused kernel of ``fused.py``, which ``MambaBlock``
runs on CPU tensors, does that work once per element with the state in registers.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from seedbed.sequence_models.mixers._utils import check_chunk_size, compute_dtype, pad_to_chunks
from seedbed.sequence_models.mixers.mamba._checks import check_scan_inputs

__all__ = ["chunk_selective_scan"]

_LOG2E = 1.0 / math.log(2.0)


class _Chunks:
    """The scan's inputs as chunk views, and its decays.

    Attributes:
        d, u: (B, n, C, E) delta and u, right-padded with zeros to n * C tokens.
        b, c: (B, n, C, N) B and C, padded the same way.
        a2: (E, N) A * log2(e), so that exp(delta A) = exp2(delta a2).
    """

    def __init__(self, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                 C: torch.Tensor, chunk: int) -> None:  # fmt: skip
        self.d, self.u = pad_to_chunks(delta, chunk), pad_to_chunks(u, chunk)
        self.b, self.c = pad_to_chunks(B, chunk), pad_to_chunks(C, chunk)
        self.a2 = A * _LOG2E

    def decay(self, s: int, out: torch.Tensor) -> torch.Tensor:
        """exp(delta A) of step s of every chunk, written into ``out`` (B, n, E, N)."""
        return torch.exp2(torch.mul(self.d[:, :, s, :, None], self.a2, out=out), out=out)

    def chunk_decay(self, out: torch.Tensor) -> torch.Tensor:
        """Each chunk's total decay exp(A sum_t delta_t), written into ``out`` (B, n, E, N)."""
        return torch.exp2(torch.mul(self.d.sum(2)[..., None], self.a2, out=out), out=out)

    def x(self, s: int) -> torch.Tensor:
        """delta * u of step s of every chunk: (B, n, E)."""
        return self.d[:, :, s] * self.u[:, :, s]

    def step(self, s: int, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """h <- a ⊙ h + x_s B_s, in place. h, a: (B, n, E, N)."""
        return h.mul_(a).addcmul_(self.x(s)[..., None], self.b[:, :, s, None, :])


def _carry_(v: torch.Tensor, decay: torch.Tensor, first: torch.Tensor,
            reverse: bool = False) -> torch.Tensor:  # fmt: skip
    """Carry a value across chunks, in place. v, decay: (B, n, E, N); first: (B, E, N).

    On entry ``v[:, j]`` holds chunk j's local value; on return the value carried into chunk
    j: ``w = first`` for the first chunk visited, then ``w <- v_j + decay_j ⊙ w`` after
    each. Returns the value after the last chunk (B, E, N)."""
    w = first
    for j in reversed(range(v.shape[1])) if reverse else range(v.shape[1]):
        nxt = torch.addcmul(v[:, j], decay[:, j], w)
        v[:, j] = w
        w = nxt
    return w


def _forward(k: _Chunks, h0: torch.Tensor, keep_starts: bool
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """Returns y (B, n C, E), the final state (B, E, N) and, with ``keep_starts``, the
    states entering each chunk (B, n, E, N)."""
    bsz, n, steps, e = k.d.shape
    a = h0.new_empty(bsz, n, e, h0.shape[-1])  # (B, n, E, N), reused by every step
    h = torch.zeros_like(a)
    for s in range(steps):  # 1. chunk end states from zero
        k.step(s, h, k.decay(s, a))
    last = _carry_(h, k.chunk_decay(a), h0)  # 2. h now holds the entering states
    starts = h.clone() if keep_starts else None
    y = h0.new_empty(bsz, n, steps, e)
    for s in range(steps):  # 3. rerun from the true entering states and read out
        k.step(s, h, k.decay(s, a))
        y[:, :, s] = torch.einsum("bjen,bjn->bje", h, k.c[:, :, s])
    return y.view(bsz, n * steps, e), last, starts


def _backward(k: _Chunks, A: torch.Tensor, starts: torch.Tensor, dy: torch.Tensor,
              dh_last: torch.Tensor) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """dy: (B, n, C, E) -> d(delta u) and d(delta) through the decays (B, n C, E), dA (E, N),
    dB, dC (B, n C, N), d(initial state) (B, E, N)."""
    bsz, n, steps, _ = k.d.shape
    a, g = torch.empty_like(starts), torch.zeros_like(starts)  # (B, n, E, N)
    # g holds a_{t+1} ⊙ dL/dh_{t+1}: the adjoint reaching h_t from later tokens
    for s in range(steps - 1, -1, -1):  # 1. chunk start adjoints from a zero end adjoint
        g.addcmul_(dy[:, :, s, :, None], k.c[:, :, s, None, :]).mul_(k.decay(s, a))
    dh0 = _carry_(g, k.chunk_decay(a), dh_last, reverse=True)  # 2. g: adjoints from the right
    hs = starts.new_empty(steps, *starts.shape)  # (C, B, n, E, N) true states
    for s in range(steps):  # 3a. recompute the states
        torch.mul(hs[s - 1] if s else starts, k.decay(s, a), out=hs[s])
        hs[s].addcmul_(k.x(s)[..., None], k.b[:, :, s, None, :])
    dx, dlog = torch.empty_like(k.d), torch.empty_like(k.d)  # (B, n, C, E)
    db, dc = torch.empty_like(k.b), torch.empty_like(k.c)  # (B, n, C, N)
    da_sum, z = torch.zeros_like(starts), torch.empty_like(starts)
    for s in range(steps - 1, -1, -1):  # 3b. the reverse pass with the true adjoints
        g.addcmul_(dy[:, :, s, :, None], k.c[:, :, s, None, :])  # dL/dh_s
        dx[:, :, s] = torch.einsum("bjen,bjn->bje", g, k.b[:, :, s])
        db[:, :, s] = torch.einsum("bjen,bje->bjn", g, k.x(s))
        dc[:, :, s] = torch.einsum("bje,bjen->bjn", dy[:, :, s], hs[s])
        g.mul_(k.decay(s, a))
        # dL/d(delta_s A) per (e, n): a_s ⊙ dL/dh_s ⊙ h_{s-1}
        torch.mul(g, hs[s - 1] if s else starts, out=z)
        dlog[:, :, s] = torch.einsum("bjen,en->bje", z, A)
        da_sum.addcmul_(z, k.d[:, :, s, :, None])
    flat = lambda t: t.view(bsz, n * steps, t.shape[-1])  # noqa: E731
    return flat(dx), flat(dlog), da_sum.sum((0, 1)), flat(db), flat(dc), dh0


class _ChunkScan(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, chunk: int, needs_grad: bool, u: torch.Tensor, delta: torch.Tensor,
        A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, h0: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        y, last, starts = _forward(_Chunks(u, delta, A, B, C, chunk), h0, needs_grad)
        if needs_grad:
            ctx.save_for_backward(u, delta, A, B, C, starts)
            ctx.chunk = chunk
        return y[:, : u.shape[1]], last

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: torch.Tensor, dh_last: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        u, delta, A, B, C, starts = ctx.saved_tensors
        k = _Chunks(u, delta, A, B, C, ctx.chunk)
        grads = _backward(k, A, starts, pad_to_chunks(dy, ctx.chunk), dh_last)
        length = u.shape[1]
        dx, dlog, dA, db, dc, dh0 = (t[:, :length] if t.ndim == 3 else t for t in grads)
        du, ddelta = dx * delta, dlog + dx * u  # through x = delta * u
        return None, None, du, ddelta, dA, db, dc, dh0


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
    ``chunk_size``. Differentiable (a custom backward; not twice).

    Raises:
        ValueError, TypeError: shapes, dtypes or devices that do not fit, or a bad chunk size.
    """
    check_chunk_size(chunk_size)
    check_scan_inputs("chunk_selective_scan", u, delta, A, B, C, initial_state)
    dtype = compute_dtype(u.dtype)
    bsz, length, e = u.shape
    h0 = (
        torch.zeros(bsz, e, A.shape[1], device=u.device, dtype=dtype)
        if initial_state is None
        else initial_state.to(dtype)
    )
    if length == 0:
        return u.new_empty(bsz, 0, e), (h0 if output_final_state else None)
    inputs = tuple(t.to(dtype) for t in (u, delta, A, B, C))
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (*inputs, h0))
    y, last = _ChunkScan.apply(min(chunk_size, length), needs_grad, *inputs, h0)
    return y.to(u.dtype), (last if output_final_state else None)
