"""Mamba-1 selective scan, chunked form (the PyTorch training path), decays in log space.

    h_t = exp(delta_t A) ⊙ h_{t-1} + delta_t u_t B_t,      y_t = C_t · h_t

The sequence is cut into n = L/C chunks of C tokens, and all chunks are scanned at once: C
vectorised steps over (B, n, N, E) tiles instead of L steps over (B, E, N). The tiles keep
the channels innermost, so every broadcast op runs along rows of E and the read-outs are
row-vector matmuls (``C_s (1, N) @ h_s (N, E)``).

Forward:

1. each chunk's end state from a zero start, all chunks at once;
2. the state entering each chunk, carried across the chunks with each chunk's total decay
   ``exp(A sum_t delta_t)``: first within groups of ~sqrt(n / 2) chunks, all groups at
   once, then across the groups, so that ~2 sqrt(2 n) small ops run in sequence, not n;
3. every chunk rerun from its true entering state, reading out ``y_t = C_t · h_t``.

Backward (a custom autograd function; only the (B, n, N, E) entering states are saved):

1. each chunk's adjoint at its start from a zero adjoint at its end (a reverse scan);
2. the adjoint entering each chunk from the right, carried across the chunks the same way;
3. every chunk run in reverse from its true adjoint, giving the gradients of u, delta, A, B,
   C and the initial state. The states it needs are recomputed from the saved entering
   states one segment of ~sqrt(C) steps at a time (from the last), each segment from its
   own entering state kept by one more forward sweep: ~3 sqrt(C) state tiles are held
   rather than C (B L E N values).

Decays are only ever ``exp`` of ``delta A <= 0`` or of sums of such terms (never their
reciprocals, as the ``exp(-cumsum)`` trick would need), so strong decay underflows to 0
instead of overflowing. Chunk sizes need not divide L: the tail is padded with ``delta = 0``
(decay 1, no input), which leaves the state and the adjoint unchanged.

Speed (CPU): every step is a few in-place elementwise ops on reused tiles, and passes 1
and 3 sweep the chunks in blocks whose state tile is a quarter of the L2 cache, so that the
state and decay tiles stay there through a block's C steps. Decays use ``torch.exp`` or
``torch.exp2``, whichever is faster on the CPU at hand (MKL's ``exp`` on Intel, Sleef's
``exp2`` on AMD: :func:`_cpu_exp`). Exponents are clamped at log(sqrt(tiny)) at the steps
that can reach below it, and the carry across chunks flushes decays too small to matter to
0, so that no exp underflows (MKL's is ~100x slower there) and no product is subnormal. Both this form and the recurrent
loop still do one exponential and a few multiply-adds per (token, channel, state), twice
here (passes 1 and 3), so on one thread this form is ~10x the loop at L = 4096, E = 128,
N = 16 (10.2-10.7x on a 2-core Intel VM, ~18x on its two threads), and 50-156x on an H100
(by chunk size; BENCHMARKS.md). The fused kernel of ``fused.py``, which ``MambaBlock`` runs
on CPU tensors, does that work once per element with the state in registers.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.autograd.function import once_differentiable

from seedbed.sequence_models.mixers._utils import (
    check_chunk_size,
    compute_dtype,
    log_decay_floor,
    pad_to_chunks,
)
from seedbed.sequence_models.mixers.mamba._checks import check_scan_inputs

__all__ = ["chunk_selective_scan"]

_LOG2E = 1.0 / math.log(2.0)

Exp = Callable[..., torch.Tensor]


@functools.cache
def _cpu_exp() -> tuple[Exp, float]:
    """``(torch.exp, 1)`` or ``(torch.exp2, log2 e)``: whichever exponential is faster on this
    CPU, timed once per process on a 256 KiB tile, with the scale that turns ``delta A`` into
    its argument. ``torch.exp`` runs MKL's vector exp, which is ~1.5x Sleef's ``exp2`` on Intel
    CPUs but ~3x slower than it on AMD ones (measured); exp2 is kept unless exp is 1.2x faster.
    The two differ by rounding only (a few ulp per decay)."""
    with torch.no_grad():
        t = torch.linspace(-20.0, 0.0, 1 << 16)
        out = torch.empty_like(t)
        best = {torch.exp: math.inf, torch.exp2: math.inf}
        for _ in range(7):  # interleaved, so that a change of clock speed hits both
            for fn in best:
                t0 = time.perf_counter()
                fn(t, out=out)
                best[fn] = min(best[fn], time.perf_counter() - t0)
    return _faster_exp(best[torch.exp], best[torch.exp2])


def _faster_exp(t_exp: float, t_exp2: float) -> tuple[Exp, float]:
    """The pair of :func:`_cpu_exp` for these timings: exp only where it is 1.2x faster."""
    return (torch.exp, 1.0) if 1.2 * t_exp < t_exp2 else (torch.exp2, _LOG2E)


@functools.cache
def _cpu_l2_bytes(sysfs: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int:
    """Per-core L2 cache size, read from Linux's sysfs; 1 MiB where it cannot be read."""
    try:
        for index in sorted(sysfs.glob("index*")):
            if (index / "level").read_text().strip() == "2":
                size = (index / "size").read_text().strip().upper()
                unit = {"K": 1 << 10, "M": 1 << 20}.get(size[-1:], 1)
                return int(size.rstrip("KM")) * unit
    except (OSError, ValueError):
        pass
    return 1 << 20


def _steps(x: torch.Tensor, chunk: int) -> torch.Tensor:
    """(B, L, K) -> (C, B, n, K): step s of every chunk, a view of ``x`` right-padded with
    zeros to n * C tokens."""
    return pad_to_chunks(x, chunk).permute(2, 0, 1, 3)


class _Block(NamedTuple):
    """Per-step views of one block of R chunks (of the B n): C of each."""

    d: tuple[torch.Tensor, ...]  # delta rows (R, 1, E)
    x: tuple[torch.Tensor, ...]  # x = delta u rows (R, 1, E)
    b: tuple[torch.Tensor, ...]  # B columns (R, N, 1)
    c: tuple[torch.Tensor, ...]  # C rows (R, 1, N)
    low: tuple[bool, ...]  # whether the step has an exponent below the floor here


class _Chunks:
    """The scan's inputs, step-major, for (B, n, N, E) tiles (channels innermost: the
    broadcast ops and the read-out matmuls run on rows of E).

    Attributes:
        d, x: (C, B, n, E) delta and x = delta * u of step s of every chunk, contiguous.
        b, c: (C, B, n, N) B and C of step s of every chunk, contiguous.
        at: (N, E) A^T.
        exp, a_exp: exp(delta A) = exp(delta * a_exp), where ``exp`` is torch.exp or
            torch.exp2 (:func:`_cpu_exp`) and a_exp is A^T scaled to match.
        floor: the lowest exponent used on a CPU, log(sqrt(tiny)) in exp's units (-inf
            elsewhere).
    """

    def __init__(self, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                 C: torch.Tensor, chunk: int) -> None:  # fmt: skip
        self.d = _steps(delta, chunk).contiguous()
        self.x = torch.mul(self.d, _steps(u, chunk))
        # contiguous copies (L N values each): with strided views the per-step addcmul_ and
        # read-out bmm measured ~1.45x slower (one thread, L = 4096, E = 128, N = 16)
        self.b, self.c = _steps(B, chunk).contiguous(), _steps(C, chunk).contiguous()
        self.at = A.t().contiguous()
        # exp2 elsewhere: the form measured on an H100 (memory-bound there either way)
        cpu = u.device.type == "cpu"
        exp_scale: tuple[Exp, float] = _cpu_exp() if cpu else (torch.exp2, _LOG2E)
        self.exp, scale = exp_scale
        self.a_exp = self.at * scale
        # On a CPU, exponents are floored at log(sqrt(tiny)): below about -87 (in exp's
        # units) exp gives subnormal numbers or 0, and MKL's exp took 1.3-4.4 ms for 131K
        # such values against 19 us for ordinary ones (Sleef's exp2 0.11-0.42 ms); products
        # with subnormal decays are slow too. A decay of 1.1e-19 (fp32) in place of a
        # smaller one changes the state by 1e-19 of its previous value.
        self.floor = log_decay_floor(self.d.dtype) * scale if cpu else -math.inf

    # per-step broadcast views of whole tiles (the backward's), made once on first use:
    # indexing a tuple costs less than indexing a tensor
    @functools.cached_property
    def d_rows(self) -> tuple[torch.Tensor, ...]:  # C x (B, n, 1, E)
        return self.d[:, :, :, None].unbind(0)

    @functools.cached_property
    def x_rows(self) -> tuple[torch.Tensor, ...]:  # C x (B, n, 1, E)
        return self.x[:, :, :, None].unbind(0)

    @functools.cached_property
    def b_cols(self) -> tuple[torch.Tensor, ...]:  # C x (B, n, N, 1)
        return self.b[..., None].unbind(0)

    @functools.cached_property
    def sums(self) -> torch.Tensor:
        """(B, n, E) each chunk's sum of delta."""
        return self.d.sum(0)

    @functools.cached_property
    def lowest_chunk_exponent(self) -> float:
        """A bound on every chunk's total exponent A sum_t delta_t: over chunks and channels
        e, the chunk's delta sum times e's most negative A. No step's exponent is below it
        (with delta >= 0 and A <= 0, as decays have; other signs may leave an exponent
        unclamped, which costs speed only). inf off a CPU, where nothing is clamped."""
        if self.floor == -math.inf:
            return math.inf
        return float(torch.mul(self.sums, self.a_exp.amin(0)).amin())

    def low_steps(self, rows: int) -> list[tuple[bool, ...]]:
        """For each block of ``rows`` chunks, whether a step may have an exponent delta A
        below the floor, so that :func:`_sweep` clamps only there: the bound is the step's
        largest delta in the block times the most negative A. All False off a CPU, or where
        no chunk's total exponent is below the floor (the usual case)."""
        steps, bsz, n, e = self.d.shape
        if self.lowest_chunk_exponent >= self.floor:
            return [(False,) * steps] * -(-bsz * n // rows)
        lowest = self.d.view(steps, bsz * n, e).amax(-1) * float(self.a_exp.amin())  # (C, B n)
        return [tuple((t.amin(1) < self.floor).tolist()) for t in lowest.split(rows, 1)]

    @functools.cached_property
    def low_whole(self) -> tuple[bool, ...]:
        """:meth:`low_steps` for whole (B, n, N, E) tiles (the backward's)."""
        return self.low_steps(self.d.shape[1] * self.d.shape[2])[0]

    def blocks(self, rows: int) -> list[_Block]:
        """The per-step views of each block of ``rows`` chunks (of the B n)."""
        steps, bsz, n, e = self.d.shape
        flat = (self.d.view(steps, bsz * n, 1, e), self.x.view(steps, bsz * n, 1, e),
                self.b.view(steps, bsz * n, -1, 1), self.c.view(steps, bsz * n, 1, -1))  # fmt: skip
        parts = zip(*(t.split(rows, 1) for t in flat), self.low_steps(rows), strict=True)
        return [_Block(d.unbind(0), x.unbind(0), b.unbind(0), c.unbind(0), low)
                for d, x, b, c, low in parts]  # fmt: skip

    def exponent(self, d: torch.Tensor, out: torch.Tensor, floor: float | None = None
                 ) -> torch.Tensor:  # fmt: skip
        """exp(delta A) for delta rows ``d`` (..., 1, E), written into ``out`` (..., N, E),
        with the exponents clamped at ``floor`` if one is given."""
        torch.mul(d, self.a_exp, out=out)
        return self.exp(out if floor is None else out.clamp_(min=floor), out=out)

    def decay(self, s: int, out: torch.Tensor) -> torch.Tensor:
        """exp(delta A) of step s of every chunk, written into ``out`` (B, n, N, E)."""
        return self.exponent(self.d_rows[s], out, self.floor if self.low_whole[s] else None)

    def chunk_decay(self, out: torch.Tensor) -> torch.Tensor:
        """Each chunk's total decay exp(A sum_t delta_t), written into ``out`` (B, n, N, E)."""
        # floored lower than the steps, at 1.5x their floor (3.5e-29 in fp32): the carry
        # sets decays below sqrt(tiny) to 0, so these need only stay well inside the normal
        # numbers (MKL's exp was slow again at exactly log(tiny))
        floor = 1.5 * self.floor
        return self.exponent(self.sums[:, :, None], out,
                             floor if self.lowest_chunk_exponent < floor else None)  # fmt: skip

    def add_input(self, s: int, h: torch.Tensor) -> torch.Tensor:
        """h <- h + x_s B_s, in place. h: (B, n, N, E)."""
        return h.addcmul_(self.x_rows[s], self.b_cols[s])

    def step(self, s: int, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """h <- a ⊙ h + x_s B_s, in place. h, a: (B, n, N, E)."""
        return self.add_input(s, h.mul_(a))


def _block_rows(k: _Chunks) -> int:
    """Chunks per block of the forward's two sweeps. On a CPU, a block's state tile is a
    quarter of the L2 cache per intra-op thread, so that each thread's share of the state
    and decay tiles stays in its L2 across the block's C steps (at L = 4096, E = 128,
    N = 16 on an Intel VM with 2 MiB of L2: 10.9 against 12.6 ms for whole tiles on one
    thread; BENCHMARKS.md). Elsewhere one block holds every chunk."""
    _, bsz, n, e = k.d.shape
    if k.d.device.type != "cpu":
        return bsz * n
    tile_row = k.b.shape[-1] * e * k.d.element_size()  # bytes of one chunk's (N, E) state
    return max(1, torch.get_num_threads() * _cpu_l2_bytes() // 4 // tile_row)


def _rows(t: torch.Tensor, view: bool = False) -> torch.Tensor:
    """(C, B, n, K) -> (C, B n, 1, K): each step as matmul rows. A view where ``t`` allows,
    else a copy; ``view=True`` (for ``out=`` buffers) raises instead of copying."""
    shape = (t.shape[0], -1, 1, t.shape[-1])
    return t.view(shape) if view else t.reshape(shape)


def _group_size(n: int) -> int:
    """Chunks per group in :func:`_carry`: near sqrt(n / 2), which balances its two loops
    (2 (G - 1) ops in the first, n / G in the second); a divisor of n when one is close."""
    target = math.sqrt(n / 2)
    near = [g for g in range(math.ceil(target / 2), math.floor(2 * target) + 1) if n % g == 0]
    return min(near, key=lambda g: abs(g - target)) if near else max(1, round(target))


def _flusher(t: torch.Tensor) -> Callable[[torch.Tensor], object]:
    """In-place: values of ``t``'s dtype below sqrt(tiny) set to 0 on a CPU; elsewhere none."""
    if t.device.type != "cpu":
        return lambda _: None
    tiny = math.exp(log_decay_floor(t.dtype))
    return lambda x: torch.threshold_(x, tiny, 0.0)


def _carry(v: torch.Tensor, decay: torch.Tensor, first: torch.Tensor,
           reverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Carry a value across chunks. v, decay: (B, n, N, E); first: (B, N, E).

    ``v[:, j]`` is chunk j's local value. Returns the value carried into each chunk
    (B, n, N, E): ``w = first`` into the first chunk visited (chunk 0, or chunk n-1 with
    ``reverse``), then ``w <- v_j + decay_j ⊙ w`` after each; and the value after the last
    chunk (B, N, E). ``decay`` is used as scratch: its contents are lost.

    On a CPU, decays and their running products below sqrt(tiny) of the dtype (1.1e-19 in
    fp32) are set to 0. Their products with values of ordinary size are then never subnormal
    numbers, which x86 CPUs process ~30x slower than normal ones (a product of chunk decays
    over a group reaches them whenever A sum delta < -88; measured: the carry took 1.9
    against 0.6 ms at L = 4096). What is dropped is a contribution 1e-19 times the carried
    value. GPUs run subnormals at full speed and skip these ops.

    Two levels, so that ~2 sqrt(2 n) small ops run one after another instead of n:

    1. within groups of G consecutive chunks, all groups at once, the value carried from
       a zero start, and the running product of the decays since the group's start;
    2. across the groups, the value entering each, from the groups' end values and total
       decays;
    3. each group's entering value, decayed, added to all its chunks in one op.
    """
    bsz, n = v.shape[:2]
    flush = _flusher(v)
    flush(decay)
    size = _group_size(n)
    groups = -(-n // size)
    pad = groups * size - n
    if pad:  # extra chunks that carry the value through unchanged: v = 0, decay = 1
        zeros, ones = v.new_zeros(bsz, pad, *v.shape[2:]), v.new_ones(bsz, pad, *v.shape[2:])
        v = torch.cat((zeros, v) if reverse else (v, zeros), 1)
        decay = torch.cat((ones, decay) if reverse else (decay, ones), 1)
    out = torch.empty_like(v)
    tiles = (bsz, groups, size, *v.shape[2:])  # (B, groups, G, N, E)
    vg, dg, og = (t.view(tiles).unbind(2) for t in (v, decay, out))  # each (B, groups, N, E)
    order = list(range(size))[:: -1 if reverse else 1]
    og[order[0]].zero_()
    for pos, (i, nxt) in enumerate(itertools.pairwise(order)):  # 1.
        torch.addcmul(vg[i], dg[i], og[i], out=og[nxt])
        if pos:
            # the decay from the group's start through i
            flush(dg[i].mul_(dg[order[pos - 1]]))
    ends = torch.addcmul(vg[order[-1]], dg[order[-1]], og[order[-1]])  # (B, groups, N, E)
    if size > 1:
        flush(dg[order[-1]].mul_(dg[order[-2]]))  # each group's total decay
    # dg[order[k]] now holds the decay from the group's start to the start of order[k + 1]
    enter = torch.empty_like(ends)  # 2.
    e_list, t_list, w_list = ends.unbind(1), dg[order[-1]].unbind(1), enter.unbind(1)
    g_order = list(range(groups))[:: -1 if reverse else 1]
    w_list[g_order[0]].copy_(first)
    for g, nxt in itertools.pairwise(g_order):
        torch.addcmul(e_list[g], t_list[g], w_list[g], out=w_list[nxt])
    last = torch.addcmul(e_list[g_order[-1]], t_list[g_order[-1]], w_list[g_order[-1]])
    o5, d5, w5 = out.view(tiles), decay.view(tiles), enter[:, :, None]  # 3.
    if reverse:
        o5[:, :, :-1].addcmul_(d5[:, :, 1:], w5)
        o5[:, :, -1].copy_(enter)
    else:
        o5[:, :, 1:].addcmul_(d5[:, :, :-1], w5)
        o5[:, :, 0].copy_(enter)
    if pad:
        out = (out[:, pad:] if reverse else out[:, :n]).contiguous()
    return out, last


def _unsteps(t: torch.Tensor) -> torch.Tensor:
    """(C, B, n, K) -> (B, n C, K)."""
    steps, bsz, n, k = t.shape
    return t.permute(1, 2, 0, 3).reshape(bsz, n * steps, k)


def _sweep(k: _Chunks, block: _Block, h: torch.Tensor, a: torch.Tensor,
           y: tuple[torch.Tensor, ...] | None = None) -> None:  # fmt: skip
    """Run one block's chunks through their C steps, in place: h <- exp(delta_s A) ⊙ h
    + x_s B_s, and with ``y`` also read out y[s] = C_s · h. Without ``y``, h starts from
    zero (its contents are ignored). h, a (scratch): (R, N, E); y: C x (R, 1, E)."""
    d, x, b, c, low = block
    if y is None:
        torch.mul(x[0], b[0], out=h)  # h_0 = x_0 B_0
    for s in range(0 if y is not None else 1, len(d)):
        h.mul_(k.exponent(d[s], a, k.floor if low[s] else None)).addcmul_(x[s], b[s])
        if y is not None:
            torch.bmm(c[s], h, out=y[s])


def _forward(k: _Chunks, h0: torch.Tensor, keep_starts: bool
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """h0: (B, N, E). Returns y (B, n C, E), the final state (B, N, E) and, with
    ``keep_starts``, the states entering each chunk (B, n, N, E)."""
    steps, bsz, n, e = k.d.shape
    rows = _block_rows(k)
    blocks = k.blocks(rows)
    h = h0.new_empty(bsz, n, h0.shape[1], e)  # 1. chunk end states from zero
    a = h0.new_empty(min(rows, bsz * n), h0.shape[1], e)  # decay scratch, reused by every step
    for block, hb in zip(blocks, h.view(bsz * n, -1, e).split(rows), strict=True):
        _sweep(k, block, hb, a[: len(hb)])
    starts, last = _carry(h, k.chunk_decay(torch.empty_like(h)), h0)  # 2. the entering states
    if keep_starts:
        h.copy_(starts)
    else:
        h = starts
    y = h0.new_empty(steps, bsz * n, 1, e)  # step-major
    # 3. rerun from the true entering states and read out
    for block, hb, yb in zip(blocks, h.view(bsz * n, -1, e).split(rows), y.split(rows, 1),
                             strict=True):  # fmt: skip
        _sweep(k, block, hb, a[: len(hb)], yb.unbind(0))
    return _unsteps(y.view(steps, bsz, n, e)), last, (starts if keep_starts else None)


def _backward(k: _Chunks, starts: torch.Tensor, dy: torch.Tensor, dh_last: torch.Tensor
              ) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """dy: (C, B, n, E); dh_last: (B, N, E). Returns, step-major, d(delta u) and d(delta)
    through the decays (C, B, n, E), dA^T (N, E), dB, dC (C, B, n, N), and d(initial state)
    (B, N, E). Its buffers are freed on return, before the caller lays the gradients out."""
    steps, bsz, n, e = k.d.shape
    a = torch.empty_like(starts)  # (B, n, N, E)
    dy_rows = dy[:, :, :, None]  # (C, B, n, 1, E)
    c_cols = k.c[..., None]  # (C, B, n, N, 1)
    # g holds a_{t+1} ⊙ dL/dh_{t+1}: the adjoint reaching h_t from later tokens
    g = torch.mul(dy_rows[-1], c_cols[-1]).mul_(k.decay(steps - 1, a))  # 1. chunk start
    for s in range(steps - 2, -1, -1):  # adjoints from a zero end adjoint
        g.addcmul_(dy_rows[s], c_cols[s]).mul_(k.decay(s, a))
    g, dh0 = _carry(g, k.chunk_decay(a), dh_last, reverse=True)  # 2. adjoints from the right
    gm = g.view(bsz * n, -1, e)  # (B n, N, E)
    b_rows, x_rows, dy_mrows = _rows(k.b), _rows(k.x), _rows(dy)
    # 3. the reverse pass with the true adjoints, segment by segment from the last: each
    # segment's states (and decays) are recomputed from the state entering it, so that only
    # ~2 sqrt(C) + C / sqrt(C) state tiles are held rather than C.
    seg = math.isqrt(steps - 1) + 1  # ceil(sqrt(C))
    marks, h = [starts], starts.clone()  # marks[i]: the state entering step i * seg
    for s in range(seg * ((steps - 1) // seg)):
        k.step(s, h, k.decay(s, a))
        if (s + 1) % seg == 0:
            marks.append(h.clone())
    del h
    hs, decays = starts.new_empty(seg, *starts.shape), starts.new_empty(seg, *starts.shape)
    dx, dlog = torch.empty_like(k.d), torch.empty_like(k.d)  # (C, B, n, E)
    db, dc = k.b.new_empty(k.b.shape), k.c.new_empty(k.c.shape)  # (C, B, n, N)
    dx_rows, db_rows, dc_rows = (_rows(t, view=True) for t in (dx, db, dc))
    da_sum, z = torch.zeros_like(starts), torch.empty_like(starts)
    for first in reversed(range(0, steps, seg)):
        span = range(first, min(first + seg, steps))
        entering = marks[first // seg]
        for i, s in enumerate(span):  # 3a. this segment's decays and states (B, n, N, E)
            torch.mul(hs[i - 1] if i else entering, k.decay(s, decays[i]), out=hs[i])
            k.add_input(s, hs[i])
        for i, s in reversed(list(enumerate(span))):  # 3b. its steps in reverse
            g.addcmul_(dy_rows[s], c_cols[s])  # dL/dh_s
            # dL/dx_s = B_s · g; dL/dB_s = g x_s and dL/dC_s = h_s dy_s, each summed over E, as
            # row-vector products (a batched product with a column measured 8x slower on CPU)
            torch.bmm(b_rows[s], gm, out=dx_rows[s])
            torch.bmm(x_rows[s], gm.transpose(1, 2), out=db_rows[s])
            torch.bmm(dy_mrows[s], hs[i].view(bsz * n, -1, e).transpose(1, 2), out=dc_rows[s])
            g.mul_(decays[i])
            # dL/d(delta_s A) per (n, e): a_s ⊙ dL/dh_s ⊙ h_{s-1}
            torch.mul(g, hs[i - 1] if i else entering, out=z)
            da_sum.addcmul_(z, k.d_rows[s])
            torch.sum(z.mul_(k.at), 2, out=dlog[s])
    return dx, dlog, da_sum.sum((0, 1)), db, dc, dh0


class _ChunkScan(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, chunk: int, needs_grad: bool, u: torch.Tensor, delta: torch.Tensor,
        A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, h0: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        k = _Chunks(u, delta, A, B, C, chunk)
        y, last, starts = _forward(k, h0.transpose(1, 2), needs_grad)
        if needs_grad:
            ctx.save_for_backward(u, delta, A, B, C, starts)
            ctx.chunk = chunk
        return y[:, : u.shape[1]], last.transpose(1, 2).contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: torch.Tensor, dh_last: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        u, delta, A, B, C, starts = ctx.saved_tensors
        k = _Chunks(u, delta, A, B, C, ctx.chunk)
        dy = _steps(dy, ctx.chunk).contiguous()  # (C, B, n, E)
        dx, dlog, dat, db, dc, dh0 = _backward(k, starts, dy, dh_last.transpose(1, 2))
        del k, dy
        length = u.shape[1]
        dx, dlog, db, dc = (_unsteps(t)[:, :length] for t in (dx, dlog, db, dc))
        du, ddelta = dx * delta, dlog.addcmul_(dx, u)  # through x = delta * u
        return None, None, du, ddelta, dat.t(), db, dc, dh0.transpose(1, 2).contiguous()


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
