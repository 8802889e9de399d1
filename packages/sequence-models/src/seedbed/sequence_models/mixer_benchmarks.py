"""Benchmarks of the sequence mixers (registered through ``benchmarks.BENCHMARKS``).

* :func:`bench_chunked_vs_recurrent`: each mixer's chunkwise-parallel form against its own
  recurrent loop at L = 4096, timed side by side in one run (target: >= 10x). For Mamba-1
  the training form on a CPU is the fused scan kernel (``mixers/mamba/fused.py``), and the
  pure-PyTorch chunked scan is reported beside it, with both forms' training step
  (forward + backward).
* :func:`bench_mixer_throughput`: forward tokens/s of each mixer against SDPA attention at
  L = 1k, 4k (and 16k with ``full``), and decode time per token against context length
  (flat for the recurrent mixers, growing for attention with a KV cache and for Hyena's
  cached convolution).
* :func:`bench_mqar`: MQAR test accuracy of attention on one small setting (quick), or the
  acceptance settings (full).

All timings are CPU wall-clock, on one intra-op thread unless a metric's name says otherwise,
compared side by side in one run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from seedbed.core_layers import KVCache, MultiHeadAttention, RotaryEmbedding
from seedbed.core_layers.benchmarking import Metric, Series, time_call, timed_ratio
from seedbed.sequence_models.mixers import build_mixer
from seedbed.sequence_models.mixers.hyena import fft_causal_conv, recurrent_causal_conv
from seedbed.sequence_models.mixers.mamba import (
    chunk_selective_scan,
    fused_scan_available,
    fused_selective_scan,
    recurrent_selective_scan,
)
from seedbed.sequence_models.mixers.mamba2 import chunk_ssd, recurrent_ssd
from seedbed.sequence_models.mixers.retnet import chunk_retention, recurrent_retention
from seedbed.sequence_models.mixers.rwkv import chunk_wkv, recurrent_wkv

__all__ = ["bench_chunked_vs_recurrent", "bench_mixer_throughput", "bench_mqar"]

RECURRENT_MIXERS = ("retnet", "mamba", "mamba2", "rwkv")


@contextmanager
def _threads(n: int) -> Iterator[None]:
    """Run the timed section on ``n`` intra-op threads (restored afterwards). Batch-1 mixer
    ops are small: on a shared 2-core box, two threads mostly wait on each other."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _device_note(threads: int = 1) -> str:
    return f"CPU, {threads} thread{'s' if threads > 1 else ''}"  # every tensor here is on the CPU


def _op_cases(
    length: int, g: torch.Generator
) -> dict[str, tuple[Callable[[], Any], Callable[[], Any], str]]:
    """(recurrent, chunked, size note) per mixer op at sequence length ``length``, batch 1,
    sizes of a d_model = 64 layer. "mamba" is the pure-PyTorch chunked scan and
    "mamba_fused" the fused CPU kernel (present when it builds here)."""
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    d = 64
    # RWKV-4 WKV, D_att = 64
    w, u, k, v = torch.rand(d, generator=g) + 0.1, r(d), r(1, length, d), r(1, length, d)
    # retention, H = 4 heads of D_k = 16, D_v = 32 (expand_v = 2)
    q4, k4, v4 = r(1, length, 4, 16), r(1, length, 4, 16), r(1, length, 4, 32)
    # Mamba-1 scan, E = 2 d = 128 channels, N = 16
    e, n = 2 * d, 16
    xs, delta = r(1, length, e), F.softplus(r(1, length, e) - 2)
    A, B, C = -torch.rand(e, n, generator=g) * 4, r(1, length, n), r(1, length, n)
    # Mamba-2 SSD, E = 128 as H = 2 heads of P = 64, N = 64
    x2, dt2 = r(1, length, 2, 64), F.softplus(r(1, length, 2) - 2)
    A2, B2, C2 = -torch.rand(2, generator=g) * 4, r(1, length, 1, 64), r(1, length, 1, 64)
    # Hyena long convolution, 64 channels
    uh, kh = r(1, d, length), r(d, length) / math.sqrt(length)
    cases = {
        "rwkv": (
            lambda: recurrent_wkv(w, u, k, v),
            lambda: chunk_wkv(w, u, k, v, chunk_size=32),
            "D=64",
        ),
        "retnet": (
            lambda: recurrent_retention(q4, k4, v4),
            lambda: chunk_retention(q4, k4, v4, chunk_size=64),
            "H=4 Dk=16 Dv=32",
        ),
        "mamba": (
            lambda: recurrent_selective_scan(xs, delta, A, B, C),
            lambda: chunk_selective_scan(xs, delta, A, B, C, chunk_size=32),
            "E=128 N=16",
        ),
        "mamba2": (
            lambda: recurrent_ssd(x2, dt2, A2, B2, C2),
            lambda: chunk_ssd(x2, dt2, A2, B2, C2, chunk_size=64),
            "H=2 P=64 N=64",
        ),
        "hyena": (
            lambda: recurrent_causal_conv(uh, kh),
            lambda: fft_causal_conv(uh, kh),
            "C=64 (cached decode vs FFT)",
        ),
    }
    if fused_scan_available():
        cases["mamba_fused"] = (
            cases["mamba"][0],
            lambda: fused_selective_scan(xs, delta, A, B, C),
            "E=128 N=16",
        )
    return cases


def _mamba_training_ratio(length: int, g: torch.Generator, repeats: int) -> Metric:
    """Forward + backward of the Mamba-1 scan: pure-PyTorch chunked form vs fused kernel."""
    e, n = 128, 16
    leaves = [torch.randn(1, length, e, generator=g), F.softplus(torch.randn(1, length, e, generator=g) - 2),
              -torch.rand(e, n, generator=g) * 4, torch.randn(1, length, n, generator=g),
              torch.randn(1, length, n, generator=g)]  # fmt: skip
    leaves = [t.requires_grad_() for t in leaves]

    def train_step(fn: Callable[..., Any]) -> Callable[[], None]:
        def run() -> None:
            y, _ = fn(*leaves)
            y.square().mean().backward()

        return run

    t_chunk, t_fused, speedup = timed_ratio(
        train_step(chunk_selective_scan), train_step(fused_selective_scan), repeats=repeats
    )
    note = (f"Mamba-1 scan forward + backward, B=1 L={length} E={e} N={n}, fp32, PyTorch chunked "
            f"{t_chunk * 1e3:.0f} ms vs fused {t_fused * 1e3:.1f} ms, {_device_note()}")  # fmt: skip
    return Metric("mamba_fused_training_speedup_vs_chunked", speedup, "x", None, True, note=note)


def bench_chunked_vs_recurrent(full: bool = False) -> list[dict[str, Any]]:
    """Chunked/parallel form vs the same mixer's recurrent loop at L = 4096, batch 1.

    Timed on one intra-op thread, and again on all of this machine's threads when it has
    more than one (metric names end in ``_{k}threads``): the recurrent loop's per-token ops
    are too small to spread over cores, so the second run shows what the parallel forms gain
    from them. Mamba-1 has two training forms, both held to the 10x: the pure-PyTorch chunked
    scan (any device, ``mixers/mamba/chunk.py``) and the fused CPU kernel that
    ``MambaBlock`` uses on a CPU (``mixers/mamba/fused.py``).
    """
    length = 4096
    out = []
    all_threads = torch.get_num_threads()
    for threads in sorted({1, all_threads}):
        g = torch.Generator().manual_seed(0)
        suffix = "" if threads == 1 else f"_{threads}threads"
        with torch.no_grad(), _threads(threads):
            for name, (rec, chunk, size) in _op_cases(length, g).items():
                t_rec, t_chunk, speedup = timed_ratio(rec, chunk, repeats=7 if full else 3)
                form = "fused" if name == "mamba_fused" else "chunked"
                note = (f"{name} op, B=1 L={length} {size}, fp32, recurrent {t_rec * 1e3:.0f} ms "
                        f"vs {form} {t_chunk * 1e3:.1f} ms, {_device_note(threads)}")  # fmt: skip
                metric = Metric(
                    (f"{name}_speedup_vs_recurrent" if name == "mamba_fused"
                     else f"{name}_chunked_speedup_vs_recurrent") + suffix,
                    speedup, "x", 10.0, True, note=note,
                )  # fmt: skip
                out.append(metric.as_dict())
    if fused_scan_available():
        with _threads(1):
            out.append(_mamba_training_ratio(length, g, repeats=5 if full else 2).as_dict())
    return out


def _attention_decode_time(d_model: int, context: int, n_tokens: int) -> float:
    """Per-token decode time of MHA with a preallocated core-layers KVCache at ``context``
    (each timed repeat appends ``n_tokens`` more, a few percent of the context at most)."""
    repeats, warmup = 5, 1
    mha = MultiHeadAttention(d_model, 4, rope=RotaryEmbedding(d_model // 4)).eval()
    cache = KVCache(1, context + n_tokens * (repeats + warmup), 4, d_model // 4)
    with torch.no_grad():
        mha(torch.randn(1, context, d_model), cache=cache)  # prefill
        x = torch.randn(1, 1, d_model)

        def run() -> None:
            for _ in range(n_tokens):
                mha(x, cache=cache)

        return time_call(run, repeats=repeats, warmup=warmup) / n_tokens


def _mixer_decode_time(name: str, d_model: int, context: int, n_tokens: int) -> float:
    kwargs = {"l_max": context} if name == "hyena" else {}
    m = build_mixer(name, d_model, **kwargs).eval()
    with torch.no_grad():
        _, state = m.stream(torch.randn(1, context, d_model))  # prefill with the chunked form
        x = torch.randn(1, d_model)

        def run() -> None:
            s = state
            for _ in range(n_tokens):
                _, s = m.step(x, s)

        return time_call(run, repeats=5, warmup=1) / n_tokens


def bench_mixer_throughput(full: bool = False) -> list[dict[str, Any]]:
    """Forward tokens/s against SDPA attention, and decode time per token against context."""
    d_model = 64
    lengths = (1024, 4096, 16384) if full else (1024, 4096)
    contexts = (256, 1024, 4096, 16384) if full else (256, 1024, 4096)
    names = ("attention", "retnet", "mamba", "mamba2", "hyena", "rwkv")
    out: list[dict[str, Any]] = []
    tps: dict[str, list[float]] = {}
    with torch.no_grad(), _threads(1):
        for name in names:
            tps[name] = []
            for length in lengths:
                kwargs = {"l_max": length} if name == "hyena" else {}
                m = build_mixer(name, d_model, **kwargs).eval()
                x = torch.randn(1, length, d_model)
                t = time_call(partial(m, x), repeats=2 if full else 1, warmup=1)
                tps[name].append(length / t)
    dev = _device_note()
    series = [
        Series(list(lengths), tps[n], "sequence length", "tokens/s", n, logx=True, logy=True)
        for n in names
    ]
    for name in names:
        note = (
            f"forward, B=1 D={d_model}, fp32, L={lengths[-1]}; attention = core-layers SDPA; {dev}"
        )
        out.append(Metric(f"{name}_forward_tokens_per_s_L{lengths[-1]}", tps[name][-1], "tokens/s", None, True,
                          series=series if name == names[0] else [], note=note).as_dict())  # fmt: skip
        if name != "attention":
            ratio = tps[name][-1] / tps["attention"][-1]
            out.append(
                Metric(
                    f"{name}_forward_speed_vs_attention_L{lengths[-1]}",
                    ratio,
                    "x",
                    None,
                    True,
                    note=note,
                ).as_dict()
            )

    n_tokens = 48  # per timed repeat: long enough that one scheduler hiccup does not swing it
    decode: dict[str, list[float]] = {
        "attention": [_attention_decode_time(d_model, c, n_tokens) for c in contexts]
    }
    for name in names[1:]:
        decode[name] = [_mixer_decode_time(name, d_model, c, n_tokens) for c in contexts]
    dseries = [Series(list(contexts), [t * 1e3 for t in decode[n]], "context length", "ms / token", n, logx=True)
               for n in names]  # fmt: skip
    for name in names:
        growth = decode[name][-1] / decode[name][0]
        # recurrent mixers: constant-size state, the time per token must stay flat
        target = 1.5 if name in RECURRENT_MIXERS else None
        note = (f"decode ms/token at context {contexts[0]}..{contexts[-1]}: "
                + ", ".join(f"{t * 1e3:.3f}" for t in decode[name]) + f"; B=1 D={d_model}; {dev}")  # fmt: skip
        out.append(Metric(f"{name}_decode_time_growth_{contexts[0]}_to_{contexts[-1]}", growth, "x", target, False,
                          series=dseries if name == names[0] else [], note=note).as_dict())  # fmt: skip
    return out


def bench_mqar(full: bool = False) -> list[dict[str, Any]]:
    """MQAR test accuracy of attention: one small setting (quick) or the acceptance ones (full).

    Quick: L = 64, 4 pairs, V = 8192, D = 128, 2 layers, one epoch of 8192 sequences (256
    steps of 32) or 45 s of training, whichever ends first, on one thread (~30 s in all); it
    reports the accuracy reached and the training throughput, with no target (a CPU minute is
    far from the thousands of steps attention needs to leave the 1/pairs plateau there).
    Full: the acceptance chain of BENCHMARKS.md ("MQAR"): (64, 16) from scratch for 6000
    steps of 64 sequences, then (64, 4) for 1000 steps of 64 and (256, 16) for up to 10000
    steps of 32 (each run capped at 2400 s of training), each started from the previous
    model; 100k training and 3000 test sequences per setting, bf16 autocast, attention with
    learned absolute positions (Zoology's baseline), AdamW lr 3e-3, 5% warm-up then cosine;
    target >= 0.99 (the acceptance value) at (64, 4) and (256, 16). Measured on this CPU:
    1.000, 0.9998 and 1.000 (0.99996) in 62 minutes of training. On a GPU when one is present.
    """
    from seedbed.sequence_models.mqar.cli import run_grid

    if full:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        results = run_grid(
            ["attention"], [(64, 16), (64, 4), (256, 16)], d_models=[128], lrs=[3e-3],
            quick=False, max_steps=[6_000, 1_000, 10_000], time_budget_s=2400.0,
            num_train=100_000, num_test=3_000, batch_size=[64, 64, 32], curriculum=True,
            precision="bf16", device=device, num_threads=1 if device == "cpu" else None,
            progress=False,
        )  # fmt: skip
    else:
        device = "cpu"
        results = run_grid(
            ["attention"], [(64, 4)], d_models=[128], lrs=[3e-3], quick=True, time_budget_s=45.0,
            num_train=8192, num_test=500, num_threads=1, progress=False,
        )  # fmt: skip
    out = []
    for r in results:
        init = f", started from the L={r.init_from[1:]} model" if r.init_from else ""
        note = f"attention, L={r.seq_len} pairs={r.num_kv_pairs} D={r.d_model}, {r.steps} steps in {r.train_seconds:.0f}s{init}, device={device}"
        target = 0.99 if full and (r.seq_len, r.num_kv_pairs) != (64, 16) else None
        out.append(
            Metric(
                f"mqar_attention_acc_L{r.seq_len}_kv{r.num_kv_pairs}",
                r.test_accuracy,
                "",
                target,
                True,
                note=note,
            ).as_dict()
        )
        out.append(
            Metric(
                f"mqar_attention_train_tokens_per_s_L{r.seq_len}_kv{r.num_kv_pairs}",
                r.train_tokens_per_s,
                "tokens/s",
                None,
                True,
                note=note,
            ).as_dict()
        )
    return out
