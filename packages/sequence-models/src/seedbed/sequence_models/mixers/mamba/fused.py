"""Mamba-1 selective scan, fused CPU kernel (``selective_scan.c``), with its backward.

The pure-PyTorch chunked form (``chunk.py``) runs two passes of separate elementwise ops
over (B, n_chunks, N, E) tiles, each op a trip through memory. This kernel walks the
sequence once per channel with the N-wide state held in registers, computing one ``exp``
and a few multiply-adds per (token, channel, state), as mamba-ssm's CUDA kernel does on a
GPU:

* forward: the state entering every ``chunk_size``-th token is saved (only when a gradient
  is needed), O(B L E N / chunk_size) memory;
* backward: per chunk, from the last, recompute the chunk's states from its checkpoint,
  then run it in reverse for the gradients of u, delta, A, B, C and the initial state.

Channels are split across ``torch.get_num_threads()`` Python threads (the kernel runs
without the GIL). Decays are ``exp(delta A)`` of each step only, so strong decay underflows
to 0 and never overflows. The kernel is compiled at first use (``mixers/_native.py``);
:func:`fused_scan_available` says whether that worked here.
"""

from __future__ import annotations

import ctypes
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from seedbed.sequence_models.mixers._native import NativeUnavailable, load_c_library
from seedbed.sequence_models.mixers._utils import check_chunk_size, compute_dtype
from seedbed.sequence_models.mixers.mamba._checks import check_scan_inputs

__all__ = ["fused_scan_available", "fused_selective_scan"]

_SOURCE = Path(__file__).with_name("selective_scan.c")
_MIN_CHANNELS_PER_THREAD = 16
_FWD_PTRS, _BWD_PTRS, _N_LONGS = 9, 15, 7


def _library(dtype: torch.dtype) -> ctypes.CDLL:
    """The kernel built for float32 or float64 (raises NativeUnavailable)."""
    lib = load_c_library(_SOURCE, {"SCAN_DOUBLE": "1" if dtype == torch.float64 else "0"})
    ptr, lng = ctypes.c_void_p, ctypes.c_long
    lib.scan_forward.argtypes = [ptr] * _FWD_PTRS + [lng] * _N_LONGS
    lib.scan_backward.argtypes = [ptr] * _BWD_PTRS + [lng] * _N_LONGS
    lib.scan_forward.restype = lib.scan_backward.restype = None
    return lib


def fused_scan_available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether the fused kernel can be used here (it builds on first call; float32/64)."""
    if dtype not in (torch.float32, torch.float64):
        return False
    try:
        _library(dtype)
    except NativeUnavailable:
        return False
    return True


def _ptr(t: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(None if t is None else t.data_ptr())


def _channel_blocks(e: int) -> list[tuple[int, int]]:
    """Split E channels into contiguous blocks, one per worker thread."""
    k = max(1, min(torch.get_num_threads(), e // _MIN_CHANNELS_PER_THREAD))
    step = math.ceil(e / k)
    return [(lo, min(e, lo + step)) for lo in range(0, e, step)]


def _run_blocks(fn, blocks: list[tuple[int, int]], make_args) -> None:  # type: ignore[no-untyped-def]
    """Call the kernel once per channel block, on threads when there are several."""
    if len(blocks) == 1:
        fn(*make_args(0, *blocks[0]))
        return
    with ThreadPoolExecutor(len(blocks)) as pool:
        for f in [pool.submit(fn, *make_args(i, lo, hi)) for i, (lo, hi) in enumerate(blocks)]:
            f.result()


def _forward(
    inputs: tuple[torch.Tensor, ...], h0: torch.Tensor | None, chunk: int, keep_checkpoints: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """inputs = (u, delta, A, B, C), contiguous, one dtype -> y (B, L, E), h_last (B, E, N),
    checkpoints (B, ceil(L / chunk), E, N) or None."""
    u, A = inputs[0], inputs[2]
    bsz, length, e = u.shape
    n = A.shape[1]
    y = torch.empty_like(u)
    h_last = u.new_empty(bsz, e, n)
    ck = u.new_empty(bsz, math.ceil(length / chunk), e, n) if keep_checkpoints else None
    ptrs = [_ptr(t) for t in (*inputs, h0, y, h_last, ck)]
    _run_blocks(
        _library(u.dtype).scan_forward,
        _channel_blocks(e),
        lambda i, lo, hi: (*ptrs, bsz, length, e, n, chunk, lo, hi),
    )
    return y, h_last, ck


class _FusedScan(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx, chunk: int, h0: torch.Tensor | None, *inputs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        y, h_last, ck = _forward(inputs, h0, chunk, keep_checkpoints=True)
        ctx.save_for_backward(*inputs, ck)
        ctx.chunk, ctx.has_h0 = chunk, h0 is not None
        return y, h_last

    @staticmethod
    def backward(ctx, dy: torch.Tensor, dh_last: torch.Tensor):  # type: ignore[no-untyped-def, override]
        u, delta, A, B, C, ck = ctx.saved_tensors
        bsz, length, e = u.shape
        n, chunk = A.shape[1], ctx.chunk
        dy, dh_last = dy.contiguous(), dh_last.contiguous()
        du, ddelta = torch.empty_like(u), torch.empty_like(delta)
        dA, dh0 = torch.zeros_like(A), u.new_empty(bsz, e, n)
        work = u.new_empty(min(chunk, length), e, n)
        blocks = _channel_blocks(e)
        # dB and dC sum over channels: one buffer per block, added up after
        dBs = torch.zeros(len(blocks), *B.shape, dtype=B.dtype)
        dCs = torch.zeros(len(blocks), *C.shape, dtype=C.dtype)
        head = [_ptr(t) for t in (u, delta, A, B, C, ck, dy, dh_last, du, ddelta, dA)]
        tail = (_ptr(dh0), _ptr(work), bsz, length, e, n, chunk)
        _run_blocks(
            _library(u.dtype).scan_backward,
            blocks,
            lambda i, lo, hi: (*head, _ptr(dBs[i]), _ptr(dCs[i]), *tail, lo, hi),
        )
        return None, (dh0 if ctx.has_h0 else None), du, ddelta, dA, dBs.sum(0), dCs.sum(0)


def fused_selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Fused selective scan. Same arguments and results as :func:`naive_selective_scan`
    (u, delta (B, L, E); A (E, N); B, C (B, L, N); initial_state (B, E, N)), plus
    ``chunk_size``, the checkpoint interval of the backward pass (memory only).

    Runs on CPU tensors, in float32 (float64 stays float64; lower precisions are computed in
    float32).

    Raises:
        NativeUnavailable: the kernel could not be built here (see
            :func:`fused_scan_available`).
        ValueError, TypeError: shapes or devices that do not fit.
    """
    check_chunk_size(chunk_size)
    check_scan_inputs("fused_selective_scan", u, delta, A, B, C, initial_state)
    if u.device.type != "cpu":
        raise ValueError(f"fused_selective_scan runs on the CPU; the inputs are on {u.device}")
    dtype = compute_dtype(u.dtype)
    _library(dtype)  # raise NativeUnavailable before any work
    bsz, length, e = u.shape
    h0 = None if initial_state is None else initial_state.to(dtype).contiguous()
    if length == 0:
        state = h0 if h0 is not None else u.new_zeros(bsz, e, A.shape[1], dtype=dtype)
        return u.new_empty(bsz, 0, e), (state if output_final_state else None)
    inputs = tuple(t.to(dtype).contiguous() for t in (u, delta, A, B, C))
    leaves = inputs if h0 is None else (*inputs, h0)
    if torch.is_grad_enabled() and any(t.requires_grad for t in leaves):
        y, h_last = _FusedScan.apply(chunk_size, h0, *inputs)
    else:
        y, h_last, _ = _forward(inputs, h0, chunk_size, keep_checkpoints=False)
    return y.to(u.dtype), (h_last if output_final_state else None)
