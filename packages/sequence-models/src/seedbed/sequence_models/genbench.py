"""Generation and serving benchmarks (registered under ``seedbed.benchmarks``, and ``seedbed-genbench``).

* ``generate_vs_transformers``: tokens/s of :func:`generate` against ``transformers``'
  ``generate`` on the same random-init Qwen2 (about 20M parameters in full mode), same prompts,
  greedy; also checks that the tokens are identical.
* ``kv_cache_vs_no_cache``: generation with the KV cache against recomputing the whole
  sequence every step, at 512 tokens of context.
* ``continuous_batching_vs_sequential``: 8 concurrent requests through the engine with
  continuous batching against the same engine serving them one at a time.
* ``speculative_vs_plain``: speculative decoding (self-draft: the target's first layers with
  its embeddings and head) against plain greedy decoding, with the acceptance rate.

Quick mode uses a small model so that all four fit in about 90 s on 2 CPU cores; ``full=True``
uses the ~20M-parameter :meth:`Qwen2Config.small_20m`. Timings are medians of interleaved runs
(:func:`seedbed.core_layers.timed_ratio`) in one process, so ratios are side by side. Every
benchmark runs on one torch thread unless given ``threads=`` (``--threads``), the same count
for both sides of each ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch

from seedbed.core_layers import KVCache
from seedbed.core_layers.benchmarking import Metric, Series, time_call, timed_ratio
from seedbed.sequence_models.generation.generate import generate
from seedbed.sequence_models.generation.sampling import SamplingParams
from seedbed.sequence_models.qwen2.config import Qwen2Config
from seedbed.sequence_models.qwen2.model import Qwen2Model
from seedbed.sequence_models.serving.engine import EngineConfig, LLMEngine
from seedbed.sequence_models.serving.speculative import SpeculativeDecoder

__all__ = [
    "GENBENCHMARKS",
    "continuous_batching_vs_sequential",
    "generate_vs_transformers",
    "kv_cache_vs_no_cache",
    "main",
    "speculative_vs_plain",
    "torch_threads",
]


def bench_config(full: bool) -> Qwen2Config:
    """The model a benchmark runs: ~20M parameters in full mode, ~4M in quick mode."""
    if full:
        return Qwen2Config.small_20m()
    return Qwen2Config.small_20m(
        vocab_size=4096,
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=4,
    )


def _model(cfg: Qwen2Config, seed: int = 0) -> Qwen2Model:
    torch.manual_seed(seed)
    return Qwen2Model(cfg).eval()


def _prompts(cfg: Qwen2Config, lengths: Sequence[int], seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, cfg.vocab_size, (n,), generator=g).tolist() for n in lengths]


def _note(cfg: Qwen2Config, extra: str) -> str:
    return (
        f"random-init Qwen2 {cfg.num_parameters() / 1e6:.1f}M params (d={cfg.hidden_size}, "
        f"L={cfg.num_hidden_layers}, H={cfg.num_attention_heads}/{cfg.num_key_value_heads}, "
        f"V={cfg.vocab_size}), fp32 CPU, {torch.get_num_threads()} threads; {extra}"
    )


# ------------------------------------------------------------------------------ benchmarks
def run_generate_vs_transformers(
    cfg: Qwen2Config, lengths: Sequence[int], new_tokens: int, repeats: int
) -> list[dict[str, Any]]:
    """Our generate vs transformers' generate on the same checkpoint and prompts (greedy).

    Measured twice: each prompt on its own (batch 1, the headline tokens/s), and all prompts
    as one left-padded batch.
    """
    try:
        import transformers
    except ImportError:
        note = "transformers is not installed (oracles group); nothing measured"
        return [
            Metric(
                "generate_speedup_vs_transformers", math.nan, "x", 1.5, True, note=note
            ).as_dict()
        ]
    model = _model(cfg)
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        hf = transformers.Qwen2ForCausalLM.from_pretrained(d).eval()
    prompts = _prompts(cfg, lengths)
    b, p = len(prompts), max(lengths)
    ids = torch.zeros(b, p, dtype=torch.long)
    mask = torch.zeros(b, p, dtype=torch.long)
    for i, r in enumerate(prompts):  # left padding, as transformers wants for generation
        ids[i, p - len(r) :] = torch.tensor(r)
        mask[i, p - len(r) :] = 1

    def hf_generate(x: torch.Tensor, m: torch.Tensor) -> list[list[int]]:
        # The call a user would make (the checkpoint has no EOS id, so every row runs for
        # ``new_tokens`` steps; an early stop would show in the same-tokens metric).
        with torch.no_grad():
            out = hf.generate(x, attention_mask=m, max_new_tokens=new_tokens, do_sample=False)
        return out[:, x.shape[1] :].tolist()

    def theirs_each() -> list[list[int]]:
        return [
            hf_generate(torch.tensor([r]), torch.ones(1, len(r), dtype=torch.long))[0]
            for r in prompts
        ]

    def ours_each() -> list[list[int]]:
        return [generate(model, [r], max_new_tokens=new_tokens).sequences[0] for r in prompts]

    def theirs_batch() -> list[list[int]]:
        return hf_generate(ids, mask)

    def ours_batch() -> list[list[int]]:
        return generate(model, prompts, max_new_tokens=new_tokens).sequences

    same = float(ours_each() == theirs_each() and ours_batch() == theirs_batch())
    t_hf, t_ours, speedup = timed_ratio(theirs_each, ours_each, repeats=repeats)
    _t_hf_b, _t_ours_b, speedup_b = timed_ratio(theirs_batch, ours_batch, repeats=repeats)
    n = b * new_tokens
    note = _note(
        cfg,
        f"prompts of lengths {list(lengths)}, {new_tokens} new tokens each, greedy, each prompt alone",
    )
    note_b = _note(
        cfg, f"the same {b} prompts as one left-padded batch, {new_tokens} new tokens, greedy"
    )
    return [
        Metric("generate_speedup_vs_transformers", speedup, "x", 1.5, True, note=note).as_dict(),
        Metric("generate_tokens_per_s_ours", n / t_ours, "tokens/s", None, note=note).as_dict(),
        Metric(
            "generate_tokens_per_s_transformers", n / t_hf, "tokens/s", None, note=note
        ).as_dict(),
        Metric(
            "generate_speedup_vs_transformers_batched", speedup_b, "x", None, note=note_b
        ).as_dict(),
        Metric(
            "generate_same_tokens_as_transformers", same, "bool", 1.0, True, note=note
        ).as_dict(),
    ]


def run_kv_cache_vs_no_cache(
    cfg: Qwen2Config, context: int, new_tokens: int, repeats: int
) -> list[dict[str, Any]]:
    """Per-token cost at ``context`` tokens of context, with and without the KV cache.

    Without a cache every new token re-runs the model over the whole sequence (``context``
    tokens); with it, a token is one single-position step against ``context - 1`` cached
    keys. The step cost is measured as (prefill + ``new_tokens`` steps - prefill) /
    ``new_tokens``, all timings interleaved. End-to-end ``generate`` with and without the
    cache (prefill included, ``new_tokens`` tokens) is reported too.
    """
    model = _model(cfg)
    prompt = _prompts(cfg, [context - new_tokens // 2])[0]
    ids = torch.tensor([prompt])

    def prefill() -> list[KVCache]:
        caches = model.make_caches(1, len(prompt) + new_tokens)
        with torch.no_grad():
            model(ids, caches=caches, logits_to_keep=1)
        return caches

    def prefill_and_decode() -> None:
        caches = prefill()
        tok = torch.tensor([[1]])
        with torch.no_grad():
            for _ in range(new_tokens):
                model(tok, caches=caches)

    full_ids = torch.tensor([(prompt * 2)[:context]])

    def uncached_token() -> None:  # what a cache-less generator pays for one token
        with torch.no_grad():
            model(full_ids, logits_to_keep=1)

    t_pre, t_all, _ = timed_ratio(prefill, prefill_and_decode, repeats=repeats + 2)
    t_full = timed_ratio(uncached_token, uncached_token, repeats=repeats + 2)[0]
    t_step = max(t_all - t_pre, 1e-9) / new_tokens
    speedup = t_full / t_step

    def gen(cache: bool) -> list[list[int]]:
        return generate(
            model, [prompt], max_new_tokens=new_tokens, ignore_eos=True, use_cache=cache
        ).sequences

    same = float(gen(True) == gen(False))
    _t_no, _t_yes, e2e = timed_ratio(lambda: gen(False), lambda: gen(True), repeats=1, warmup=0)
    note = _note(
        cfg,
        f"per-token step at {context} tokens of context vs a full forward over {context} tokens; "
        f"end-to-end: prompt {len(prompt)} + {new_tokens} new tokens, greedy, batch 1",
    )
    return [
        Metric("kv_cache_speedup", speedup, "x", 10.0, True, note=note).as_dict(),
        Metric("kv_cache_step_ms", t_step * 1e3, "ms", None, False, note=note).as_dict(),
        Metric("no_cache_step_ms", t_full * 1e3, "ms", None, False, note=note).as_dict(),
        Metric("kv_cache_generate_speedup_end_to_end", e2e, "x", None, note=note).as_dict(),
        Metric("kv_cache_same_tokens", same, "bool", 1.0, True, note=note).as_dict(),
    ]


def run_continuous_batching(
    cfg: Qwen2Config, n_requests: int, new_tokens: int, repeats: int, *, curve: bool = False
) -> list[dict[str, Any]]:
    """``n_requests`` concurrent requests: continuous batching vs one at a time (same engine)."""
    model = _model(cfg)
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(16, 96, (n_requests,), generator=g).tolist()
    prompts = _prompts(cfg, lengths)
    params = SamplingParams(max_new_tokens=new_tokens, ignore_eos=True)
    blocks = sum(-(-(n + new_tokens) // 16) for n in lengths) + n_requests

    def run(batch: int) -> list[list[int]]:
        eng = LLMEngine(
            model, None, EngineConfig(num_blocks=blocks, block_size=16, max_batch_size=batch)
        )
        # all requests queued at once; with batch 1 they are served one after another
        return [o.output_ids for o in eng.generate(prompts, params)]

    same = float(run(1) == run(n_requests))
    t_seq, t_cb, speedup = timed_ratio(
        lambda: run(1), lambda: run(n_requests), repeats=repeats, warmup=0
    )
    total = n_requests * new_tokens
    note = _note(
        cfg,
        f"{n_requests} requests, prompts {min(lengths)}-{max(lengths)} tokens, {new_tokens} new each, greedy",
    )
    series = []
    if curve:
        sizes = [1, 2, 4, n_requests]
        tput = []
        for s in sizes:
            tput.append(total / time_call(partial(run, s), repeats=1, warmup=0))
        series = [Series(sizes, tput, "max batch size", "tokens/s", "continuous batching")]
    return [
        Metric(
            "continuous_batching_speedup", speedup, "x", 3.0, True, series=series, note=note
        ).as_dict(),
        Metric(
            "continuous_batching_tokens_per_s", total / t_cb, "tokens/s", None, note=note
        ).as_dict(),
        Metric("sequential_tokens_per_s", total / t_seq, "tokens/s", None, note=note).as_dict(),
        Metric("continuous_batching_same_tokens", same, "bool", 1.0, True, note=note).as_dict(),
    ]


def self_draft(target: Qwen2Model, num_layers: int) -> Qwen2Model:
    """A draft made of the target's first ``num_layers`` layers, embeddings, final norm and head."""
    cfg = Qwen2Config(
        **{**target.config.__dict__, "num_hidden_layers": num_layers, "layer_types": []}
    )
    draft = Qwen2Model(cfg).to(target.dtype).eval()
    keep = {f"layers.{i}." for i in range(num_layers)}
    draft.load_state_dict(
        {
            k: v
            for k, v in target.state_dict().items()
            if not k.startswith("layers.") or k[: k.index(".", 7) + 1] in keep
        }
    )
    return draft


def run_speculative(
    cfg: Qwen2Config, draft_layers: int, k: int, new_tokens: int, repeats: int
) -> list[dict[str, Any]]:
    """Speculative decoding with a self-draft against plain greedy decoding of the target."""
    target = _model(cfg)
    draft = self_draft(target, draft_layers)
    prompt = _prompts(cfg, [32])
    spec = SpeculativeDecoder(target, draft, k)

    def plain() -> list[list[int]]:
        return generate(target, prompt, max_new_tokens=new_tokens, ignore_eos=True).sequences

    last: dict[str, Any] = {}

    def speculative() -> list[list[int]]:
        out = spec.generate(prompt, max_new_tokens=new_tokens, ignore_eos=True)
        last["out"] = out
        return out.sequences

    same = float(plain() == speculative())
    _t_plain, _t_spec, speedup = timed_ratio(plain, speculative, repeats=repeats, warmup=0)
    out = last["out"]
    note = _note(
        cfg,
        f"draft = first {draft_layers} of {cfg.num_hidden_layers} layers (shared embeddings/head), "
        f"k={k}, {new_tokens} new tokens, greedy, batch 1; random-init weights, so the acceptance "
        "rate says little about trained models",
    )
    return [
        Metric("speculative_speedup", speedup, "x", None, note=note).as_dict(),
        Metric("speculative_acceptance_rate", out.acceptance_rate, "", None, note=note).as_dict(),
        Metric(
            "speculative_tokens_per_target_forward",
            new_tokens / out.target_forwards,
            "",
            None,
            note=note,
        ).as_dict(),
        Metric("speculative_same_tokens_as_target", same, "bool", 1.0, True, note=note).as_dict(),
    ]


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the body with ``torch.set_num_threads(threads)`` and restore the count afterwards
    (None: leave it as it is)."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)):
        raise TypeError(f"threads must be an int or None, got {threads!r}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# The registered benchmarks run on one thread unless told otherwise: decoding a model of this
# size is a chain of small kernels, the targets were measured that way, and on a shared 2-core
# machine a second OpenMP thread that waits for a busy core slowed decoding about tenfold
# (BENCHMARKS.md). Both sides of every ratio always run with the same count.
def generate_vs_transformers(full: bool = False, threads: int | None = 1) -> list[dict[str, Any]]:
    """Our generate vs transformers' (greedy, same random-init Qwen2 and prompts)."""
    with torch_threads(threads):
        if full:
            return run_generate_vs_transformers(bench_config(True), [32, 24, 17, 9], 64, repeats=5)
        return run_generate_vs_transformers(bench_config(False), [24, 17, 9, 5], 32, repeats=3)


def kv_cache_vs_no_cache(full: bool = False, threads: int | None = 1) -> list[dict[str, Any]]:
    """KV cache vs recomputation at 512 tokens of context."""
    with torch_threads(threads):
        if full:
            return run_kv_cache_vs_no_cache(bench_config(True), 512, 64, repeats=3)
        return run_kv_cache_vs_no_cache(bench_config(False), 512, 32, repeats=2)


def continuous_batching_vs_sequential(
    full: bool = False, threads: int | None = 1
) -> list[dict[str, Any]]:
    """8 concurrent requests: continuous batching vs sequential."""
    with torch_threads(threads):
        if full:
            return run_continuous_batching(bench_config(True), 8, 64, repeats=3, curve=True)
        # 32 new tokens: with fewer, the prompts' prefill (the same work in both modes) is
        # most of the batched run's time and the ratio says more about prefill than batching.
        return run_continuous_batching(bench_config(False), 8, 32, repeats=2)


def speculative_vs_plain(full: bool = False, threads: int | None = 1) -> list[dict[str, Any]]:
    """Speculative decoding (self-draft) vs plain greedy decoding, with the acceptance rate."""
    with torch_threads(threads):
        if full:
            return run_speculative(bench_config(True), 2, 4, 64, repeats=3)
        return run_speculative(bench_config(False), 1, 4, 24, repeats=2)


GENBENCHMARKS: list[Callable[..., list[dict[str, Any]]]] = [
    generate_vs_transformers,
    kv_cache_vs_no_cache,
    continuous_batching_vs_sequential,
    speculative_vs_plain,
]


# ------------------------------------------------------------------------------ CLI
def _fmt(m: dict[str, Any]) -> str:
    target = (
        "" if m["target"] is None else f"{'>=' if m['higher_is_better'] else '<='} {m['target']:g}"
    )
    status = {True: "PASS", False: "FAIL", None: ""}[m["passed"]]
    return f"{m['name']:42s} {m['value']:12.3f} {m['unit']:9s} {target:10s} {status}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``seedbed-genbench``: run the generation benchmarks and print a table."""
    p = argparse.ArgumentParser(
        prog="seedbed-genbench", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--full", action="store_true", help="~20M-parameter model and longer runs")
    p.add_argument(
        "--only",
        action="append",
        choices=[f.__name__ for f in GENBENCHMARKS],
        help="run only this benchmark (repeatable)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for both sides of every ratio (default 1, as the targets were measured)",
    )
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    results: dict[str, list[dict[str, Any]]] = {}
    failed = False
    for fn in GENBENCHMARKS:
        if args.only and fn.__name__ not in args.only:
            continue
        print(f"== {fn.__name__} ({'full' if args.full else 'quick'})", flush=True)
        metrics = fn(full=args.full, threads=args.threads)
        results[fn.__name__] = metrics
        for m in metrics:
            print("  " + _fmt(m), flush=True)
            failed |= m["passed"] is False
        if metrics:
            print(f"  note: {metrics[0]['note']}", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
