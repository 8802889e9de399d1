"""Benchmarks that core-layers registers under ``seedbed.benchmarks``.

Each entry of ``BENCHMARKS`` is ``bench(full: bool = False) -> list[dict]``; every number is
measured in the run that reports it, and ratios are taken side by side in that run.
Quick mode (the default) keeps all of them to well under a minute on 2 CPU cores.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

from seedbed.core_layers.attention import attention, chunked_attention, last_backend, math_attention
from seedbed.core_layers.attention.module import MultiHeadAttention
from seedbed.core_layers.benchmarking import Metric, Series, timed_ratio
from seedbed.core_layers.device import get_device
from seedbed.core_layers.kv_cache import KVCache
from seedbed.core_layers.memory import peak_memory_bytes
from seedbed.core_layers.mlp import SwiGLU
from seedbed.core_layers.moe_benchmarks import (
    bench_benchmark_moe,
    bench_moe_dispatch,
    bench_moe_vs_dense,
)
from seedbed.core_layers.norms import RMSNorm
from seedbed.core_layers.rope import RotaryEmbedding

__all__ = [
    "BENCHMARKS",
    "attention_backend_speed",
    "chunked_attention_memory",
    "kv_cache_decode_speed",
]

MiB = 2**20


def _qkv(
    b: int,
    s: int,
    h: int,
    h_kv: int,
    d: int,
    seed: int = 0,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    shapes = ((b, s, h, d), (b, s, h_kv, d), (b, s, h_kv, d))
    return tuple(torch.randn(*sh, generator=g).to(device=device, dtype=dtype) for sh in shapes)


def _synced(fn: Callable[[], Any], device: torch.device) -> Callable[[], Any]:
    """``fn`` followed by a CUDA synchronise, so that wall-clock timing covers the kernels."""
    if device.type != "cuda":
        return fn

    def run() -> Any:
        out = fn()
        torch.cuda.synchronize(device)
        return out

    return run


def chunked_attention_memory(full: bool = False) -> list[dict[str, Any]]:
    """Peak memory of ``chunked_attention`` against full (math) attention at S=8192.

    Method: each call runs under ``torch.no_grad()`` inside :func:`peak_memory_bytes`, which
    replays the CPU allocator's allocation/free events recorded by ``torch.profiler``
    (``profile_memory=True``) and reports the largest running total of tensor bytes allocated
    during the call (kernel scratch buffers included; the inputs, allocated before, are not
    counted; the output is). Full attention materialises the (B, H, S, S) scores; chunked
    attention only (B, H, chunk, S) at a time. torch SDPA's fused CPU kernel is reported too.
    In full mode, forward + backward peak memory is also reported (chunked recomputes each
    block in backward).
    """
    b, h, d, chunk = (1, 2, 64, 512) if full else (1, 1, 64, 512)
    lengths = [1024, 2048, 4096, 8192] if full else [2048, 8192]
    dev = get_device()
    mem: dict[str, list[float]] = {"math": [], "chunked": [], "sdpa": []}
    err = 0.0
    with torch.no_grad():
        for s in lengths:
            q, k, v = _qkv(b, s, h, h, d, device=dev)
            calls: dict[str, Callable[[], torch.Tensor]] = {
                "math": partial(math_attention, q, k, v),
                "chunked": partial(chunked_attention, q, k, v, chunk_size=chunk),
                "sdpa": partial(attention, q, k, v, backend="sdpa"),
            }
            for name, fn in calls.items():
                mem[name].append(peak_memory_bytes(fn, dev) / MiB)
            if s == lengths[-1]:
                err = (
                    (chunked_attention(q, k, v, chunk_size=chunk) - math_attention(q, k, v))
                    .abs()
                    .max()
                    .item()
                )
    ratio = mem["chunked"][-1] / mem["math"][-1]
    note = f"B={b} H={h} D={d} S={lengths[-1]} chunk={chunk} fp32 {dev.type}, no grad, non-causal"
    series = [
        Series(lengths, mem[name], "sequence length", "peak MiB", name, logx=True, logy=True)
        for name in mem
    ]
    out = [
        Metric("chunked_attention_peak_memory_ratio", ratio, "x", 0.25, False, series, note),
        Metric("chunked_attention_peak_mib", mem["chunked"][-1], "MiB", None, False, note=note),
        Metric("full_attention_peak_mib", mem["math"][-1], "MiB", None, False, note=note),
        Metric(
            "sdpa_peak_memory_ratio", mem["sdpa"][-1] / mem["math"][-1], "x", None, False, note=note
        ),
        Metric("chunked_attention_max_abs_err", err, "", 1e-4, False, note=note),
    ]
    if full:
        s = 4096
        q, k, v = (t.requires_grad_() for t in _qkv(b, s, h, h, d, device=dev))

        def train(fn: Callable[..., torch.Tensor]) -> Callable[[], None]:
            return lambda: fn(q, k, v).sum().backward()

        m_full = peak_memory_bytes(train(math_attention))
        m_chunk = peak_memory_bytes(
            train(lambda q, k, v: chunked_attention(q, k, v, chunk_size=chunk))
        )
        out.append(
            Metric(
                "chunked_attention_train_peak_memory_ratio",
                m_chunk / m_full,
                "x",
                None,
                False,
                note=f"forward+backward, B={b} H={h} D={d} S={s} chunk={chunk}",
            )
        )
    return [m.as_dict() for m in out]


def attention_backend_speed(full: bool = False) -> list[dict[str, Any]]:
    """``attention()`` with the backend it dispatches to against the math reference.

    fp32 on CPU; bf16 on CUDA (where the flash kernels apply), the math reference computing
    in fp32 from the same bf16 inputs.
    """
    b, h, h_kv, d = (2, 8, 2, 64) if full else (1, 8, 2, 64)
    lengths = [512, 1024, 2048] if full else [1024]
    dev = get_device()
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    speedups, errs = [], []
    backend = "none"
    with torch.no_grad():
        for s in lengths:
            q, k, v = _qkv(b, s, h, h_kv, d, device=dev, dtype=dtype)
            ref = _synced(partial(math_attention, q, k, v, causal=True), dev)
            fast = _synced(partial(attention, q, k, v, causal=True), dev)
            _tb, _tc, speedup = timed_ratio(ref, fast, repeats=5 if full else 3)
            backend = last_backend()
            speedups.append(speedup)
            errs.append((fast() - ref()).abs().max().item())
    tol = 1e-4 if dtype == torch.float32 else 2e-2  # bf16 output rounding
    note = (
        f"causal GQA B={b} H={h} H_kv={h_kv} D={d} S={lengths[-1]} {dtype} {dev.type}; "
        f"backend={backend}"
    )
    series = [Series(lengths, speedups, "sequence length", "speedup vs math", backend, logx=True)]
    out = [
        Metric("attention_speedup_vs_math", speedups[-1], "x", 1.0, True, series, note),
        Metric("attention_max_abs_err_vs_math", max(errs), "", tol, False, note=note),
    ]
    return [m.as_dict() for m in out]


class _Layer(nn.Module):
    """Pre-norm decoder layer: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, d: int, n_heads: int, n_kv: int) -> None:
        super().__init__()
        self.norm1 = RMSNorm(d)
        self.attn = MultiHeadAttention(d, n_heads, n_kv, rope=RotaryEmbedding(d // n_heads))
        self.norm2 = RMSNorm(d)
        self.mlp = SwiGLU(d, 2 * d)

    def forward(self, x: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cache=cache)
        return x + self.mlp(self.norm2(x))


class _TinyDecoder(nn.Module):
    """A small decoder built from this package's blocks (benchmark model only)."""

    def __init__(
        self, vocab: int = 256, d: int = 256, n_layers: int = 2, n_heads: int = 4, n_kv: int = 2
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList([_Layer(d, n_heads, n_kv) for _ in range(n_layers)])
        self.norm = RMSNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.n_kv, self.hd = n_kv, d // n_heads

    def new_caches(self, batch: int, max_len: int) -> list[KVCache]:
        dev = self.head.weight.device
        return [KVCache(batch, max_len, self.n_kv, self.hd, device=dev) for _ in self.layers]

    def forward(self, tokens: torch.Tensor, caches: list[KVCache] | None = None) -> torch.Tensor:
        x = self.embed(tokens)  # (B, S, d)
        for i, layer in enumerate(self.layers):
            x = layer(x, caches[i] if caches is not None else None)
        return self.head(self.norm(x))  # (B, S, vocab)


def _decode_pair(model: _TinyDecoder, context: int, n_new: int) -> tuple[float, float, float]:
    """Greedy decoding of ``n_new`` tokens after ``context`` prompt tokens, with the KV cache and by
    recomputing the whole prefix each step. Returns (cache_s, recompute_s, max logit diff)."""
    g = torch.Generator().manual_seed(0)
    dev = model.head.weight.device
    prompt = torch.randint(0, 256, (1, context), generator=g).to(dev)
    caches = model.new_caches(1, context + n_new)
    first = model(prompt, caches)[:, -1:]  # prefill, not timed
    tok0 = first.argmax(-1)  # (1, 1)
    out: dict[str, torch.Tensor] = {}

    def with_cache() -> None:
        for c in caches:
            c.truncate(context)
        tok, logits = tok0, first
        for _ in range(n_new):
            logits = model(tok, caches)[:, -1:]
            tok = logits.argmax(-1)
        out["cache"] = logits

    def recompute() -> None:
        seq, logits = torch.cat([prompt, tok0], 1), first
        for _ in range(n_new):
            logits = model(seq)[:, -1:]
            seq = torch.cat([seq, logits.argmax(-1)], 1)
        out["recompute"] = logits

    t_re, t_cache, _ = timed_ratio(_synced(recompute, dev), _synced(with_cache, dev), repeats=3)
    diff = (out["cache"] - out["recompute"]).abs().max().item()
    return t_cache, t_re, diff


def kv_cache_decode_speed(full: bool = False) -> list[dict[str, Any]]:
    """Decode tokens/s with the KV cache against recomputing the prefix, at 512 tokens of context.

    Batch-1 greedy decoding of a small decoder built from this package's blocks. Both paths
    run with one intra-op thread (restored afterwards): batch-1 decoding is latency-bound and a
    single thread keeps the side-by-side ratio stable on a shared 2-core machine.
    """
    torch.manual_seed(0)
    dev = get_device()
    model = _TinyDecoder(d=512, n_layers=2, n_heads=8, n_kv=2).to(dev).eval()
    n_new = 32 if full else 8
    contexts = [128, 256, 512, 1024] if full else [512]
    tps_cache, tps_re, ratios = [], [], []
    diff = 0.0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for ctx in contexts:
                t_cache, t_re, d = _decode_pair(model, ctx, n_new)
                tps_cache.append(n_new / t_cache)
                tps_re.append(n_new / t_re)
                ratios.append(t_re / t_cache)
                if ctx == 512:
                    diff = d
                    at512 = (tps_cache[-1], tps_re[-1], ratios[-1])
    finally:
        torch.set_num_threads(threads)
    note = (
        f"2-layer d=512 decoder (H=8, H_kv=2, D=64, RoPE), batch 1, {n_new} greedy tokens after 512 context, "
        f"fp32 {dev.type}, 1 CPU thread"
    )
    series = [
        Series(
            contexts,
            tps_cache,
            "context tokens",
            "decode tokens/s",
            "KV cache",
            logx=True,
            logy=True,
        ),
        Series(
            contexts,
            tps_re,
            "context tokens",
            "decode tokens/s",
            "recompute prefix",
            logx=True,
            logy=True,
        ),
    ]
    out = [
        Metric("kv_cache_decode_speedup", at512[2], "x", 10.0, True, series, note),
        Metric("kv_cache_decode_tokens_per_s", at512[0], "tokens/s", None, True, note=note),
        Metric("recompute_decode_tokens_per_s", at512[1], "tokens/s", None, True, note=note),
        Metric("kv_cache_vs_recompute_max_logit_diff", diff, "", 1e-4, False, note=note),
    ]
    return [m.as_dict() for m in out]


BENCHMARKS: list[Callable[..., list[dict[str, Any]]]] = [
    chunked_attention_memory,
    attention_backend_speed,
    kv_cache_decode_speed,
    bench_moe_dispatch,
    bench_benchmark_moe,
    bench_moe_vs_dense,
]
