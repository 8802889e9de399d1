"""Autoregressive generation with a contiguous KV cache: batched, padded, streamed.

``generate`` returns the generated ids (and text when a tokenizer is given); ``stream_generate``
yields one :class:`StreamEvent` per generated token as soon as it is chosen. Prompts of
different lengths are left-padded; the attention mask hides the padding and RoPE positions
count real tokens only, so every row gives what it would give alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from seedbed.sequence_models.generation.sampling import SamplingParams, make_generator, sample_next
from seedbed.sequence_models.qwen2.tokenizer import StreamDecoder, Tokenizer

if TYPE_CHECKING:
    from seedbed.sequence_models.qwen2.model import Qwen2Model

__all__ = [
    "GenerationOutput",
    "StopStringMatcher",
    "StreamEvent",
    "generate",
    "normalize_prompts",
    "stream_generate",
]


@dataclass
class StreamEvent:
    """One generated token of one prompt."""

    index: int  # which prompt
    token_id: int
    text: str  # newly completed text ('' without a tokenizer, or while held back)
    finished: bool
    finish_reason: str | None  # "stop" (EOS, stop id or stop string) or "length"


@dataclass
class GenerationOutput:
    """Result of :func:`generate`."""

    sequences: list[list[int]]  # generated ids per prompt (prompt excluded; a stop id is kept)
    finish_reasons: list[str]  # "stop" or "length" per prompt
    texts: list[str] | None = None  # decoded output, cut before a stop string (with a tokenizer)
    prompt_lengths: list[int] = field(default_factory=list)


class StopStringMatcher:
    """Streams the text of one sequence, holding back what might start a stop string.

    ``push(token_id)`` returns ``(delta, stopped)``: the text safe to show now and whether a
    stop string has appeared (the text is then cut just before it).
    """

    def __init__(self, tokenizer: Tokenizer, stop_strings: Sequence[str] = ()) -> None:
        self.decoder = StreamDecoder(tokenizer)
        self.stops = [s for s in stop_strings if s]
        self.emitted = 0  # characters of decoder.text already returned
        self.stopped = False
        self.text = ""  # final text (cut at a stop string) once finished

    def _held_back(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        best = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best

    def push(self, token_id: int) -> tuple[str, bool]:
        if self.stopped:
            return "", True
        self.decoder.push(token_id)
        text = self.decoder.text
        if self.stops:
            start = max(0, self.emitted - max(len(s) for s in self.stops))
            hits = [i for s in self.stops if (i := text.find(s, start)) >= 0]
            if hits:
                cut = min(hits)
                self.stopped = True
                self.text = text[:cut]
                delta = text[self.emitted : cut]
                self.emitted = cut
                return delta, True
        end = len(text) - self._held_back(text)
        delta = text[self.emitted : end] if end > self.emitted else ""
        self.emitted = max(self.emitted, end)
        return delta, False

    def finish(self) -> str:
        """End of generation without a stop string: release everything held back."""
        if self.stopped:
            return ""
        self.decoder.flush()
        text = self.decoder.text
        delta = text[self.emitted :]
        self.emitted = len(text)
        self.text = text
        return delta


def normalize_prompts(
    prompts: Any,
    *,
    tokenizer: Tokenizer | None = None,
    attention_mask: torch.Tensor | None = None,
) -> list[list[int]]:
    """Turn the accepted prompt forms into a list of id lists.

    Accepted: a str or list of str (needs ``tokenizer``); a list of ints; a list of int lists;
    a (B, P) or (P,) integer tensor, with an optional (B, P) ``attention_mask`` marking the
    real tokens (left or right padding).
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    if isinstance(prompts, torch.Tensor):
        if prompts.dtype.is_floating_point or prompts.dtype == torch.bool:
            raise TypeError(f"prompt tensor must hold integer ids, got {prompts.dtype}")
        t = prompts if prompts.ndim == 2 else prompts[None]
        if t.ndim != 2:
            raise ValueError(
                f"prompt tensor must be (B, P) or (P,), got shape {tuple(prompts.shape)}"
            )
        if attention_mask is not None:
            if attention_mask.shape != t.shape:
                raise ValueError(
                    f"attention_mask must match the prompts' shape {tuple(t.shape)}, got {tuple(attention_mask.shape)}"
                )
            m = attention_mask.bool()
            rows = [t[i][m[i]].tolist() for i in range(t.shape[0])]
        else:
            rows = t.tolist()
    elif (
        isinstance(prompts, (list, tuple)) and prompts and all(isinstance(p, str) for p in prompts)
    ):
        if tokenizer is None:
            raise ValueError("text prompts need a tokenizer")
        rows = [tokenizer.encode(p) for p in prompts]
    elif (
        isinstance(prompts, (list, tuple)) and prompts and all(isinstance(p, int) for p in prompts)
    ):
        rows = [list(prompts)]
    elif (
        isinstance(prompts, (list, tuple))
        and prompts
        and all(isinstance(p, (list, tuple)) for p in prompts)
    ):
        rows = [list(p) for p in prompts]
    else:
        raise TypeError(
            "prompts must be a str, a list of str, a list of ints, a list of int lists or an "
            f"integer tensor, got {type(prompts).__name__}"
        )
    for i, r in enumerate(rows):
        if not r:
            raise ValueError(f"prompt {i} is empty; every prompt needs at least one token")
        if any(isinstance(x, bool) or not isinstance(x, int) for x in r):
            raise TypeError(f"prompt {i} must hold ints, got {r[:8]!r}")
    return rows


def _stop_ids(model: Qwen2Model, params: SamplingParams, tokenizer: Tokenizer | None) -> set[int]:
    ids = set(params.stop_token_ids)
    if not params.ignore_eos:
        ids.update(model.config.eos_token_ids)
        if tokenizer is not None:
            ids.update(tokenizer.stop_token_ids)
    return ids


def _make_params(params: SamplingParams | None, kwargs: dict[str, Any]) -> SamplingParams:
    if params is not None:
        if kwargs:
            raise TypeError(
                f"pass either params or sampling keywords, not both (got {sorted(kwargs)})"
            )
        if not isinstance(params, SamplingParams):
            raise TypeError(f"params must be a SamplingParams, got {type(params).__name__}")
        return params
    return SamplingParams(**kwargs)


def stream_generate(
    model: Qwen2Model,
    prompts: Any,
    *,
    params: SamplingParams | None = None,
    tokenizer: Tokenizer | None = None,
    attention_mask: torch.Tensor | None = None,
    seeds: Sequence[int] | None = None,
    use_cache: bool = True,
    **sampling: Any,
) -> Iterator[StreamEvent]:
    """Yield tokens as they are generated.

    Args:
        model: a :class:`Qwen2Model`.
        prompts: see :func:`normalize_prompts`.
        params: a :class:`SamplingParams`, or pass its fields as keywords
            (``max_new_tokens=``, ``temperature=``, ``top_k=``, ``top_p=``,
            ``repetition_penalty=``, ``stop_token_ids=``, ``stop_strings=``, ``seed=``,
            ``ignore_eos=``).
        tokenizer: needed for text prompts, text output and stop strings.
        attention_mask: (B, P) for a padded prompt tensor.
        seeds: per-prompt sampling seeds (default: ``seed + i`` for prompt i when a seed is set).
        use_cache: False recomputes the whole sequence every step (for benchmarks).

    Yields:
        :class:`StreamEvent` per prompt and step, in prompt order within a step.
    """
    p = _make_params(params, sampling)
    rows = normalize_prompts(prompts, tokenizer=tokenizer, attention_mask=attention_mask)
    if p.stop_strings and tokenizer is None:
        raise ValueError("stop_strings need a tokenizer")
    b = len(rows)
    if seeds is not None and len(seeds) != b:
        raise ValueError(f"seeds must have one entry per prompt ({b}), got {len(seeds)}")
    lengths = [len(r) for r in rows]
    plen = max(lengths)
    total = plen + p.max_new_tokens
    cfg = model.config
    if total > cfg.max_position_embeddings:
        raise ValueError(
            f"prompt ({plen}) + max_new_tokens ({p.max_new_tokens}) = {total} exceeds "
            f"max_position_embeddings={cfg.max_position_embeddings}"
        )
    vmax = max(max(r) for r in rows)
    if vmax >= cfg.vocab_size or min(min(r) for r in rows) < 0:
        raise ValueError(f"prompt token ids must be in [0, {cfg.vocab_size}), got max {vmax}")
    # Arguments are checked above, when stream_generate is called; tokens come lazily.
    return _stream(model, rows, p, tokenizer, seeds, use_cache)


@torch.no_grad()
def _stream(
    model: Qwen2Model,
    rows: list[list[int]],
    p: SamplingParams,
    tokenizer: Tokenizer | None,
    seeds: Sequence[int] | None,
    use_cache: bool,
) -> Iterator[StreamEvent]:
    cfg = model.config
    b = len(rows)
    lengths = [len(r) for r in rows]
    plen = max(lengths)
    total = plen + p.max_new_tokens
    dev = model.device
    pad_id = cfg.pad_token_id if cfg.pad_token_id is not None else 0
    ids = torch.full((b, plen), pad_id, dtype=torch.long, device=dev)
    full_mask = torch.ones(b, total, dtype=torch.bool, device=dev)  # (B, P + max_new_tokens)
    for i, r in enumerate(rows):
        ids[i, plen - len(r) :] = torch.tensor(r, dtype=torch.long)
        full_mask[i, : plen - len(r)] = False  # left padding; generated tokens are all real
    mask = full_mask[:, :plen]
    padded = any(n != plen for n in lengths)

    stop_ids = _stop_ids(model, p, tokenizer)
    gens: list[torch.Generator | None] = [None] * b
    if not p.greedy:
        base = (
            [None if p.seed is None else p.seed + i for i in range(b)]
            if seeds is None
            else list(seeds)
        )
        gens = [make_generator(s, dev) for s in base]
    seen = None
    if p.repetition_penalty != 1.0:
        seen = torch.zeros(b, cfg.vocab_size, dtype=torch.bool, device=dev)
        seen.scatter_(1, ids, mask)
    matchers = (
        [StopStringMatcher(tokenizer, p.stop_strings) for _ in range(b)]
        if tokenizer is not None
        else None
    )

    caches = model.make_caches(b, total) if use_cache else None
    seq = ids  # (B, T) everything so far (used without a cache)
    logits = model(ids, attention_mask=mask if padded else None, caches=caches, logits_to_keep=1)[
        :, -1
    ]
    pos = torch.tensor(lengths, dtype=torch.long, device=dev)  # next position per row
    finished = [False] * b
    argmax_only = p.greedy and p.repetition_penalty == 1.0  # no processing, no softmax
    for step in range(p.max_new_tokens):
        if argmax_only:
            nxt = logits.argmax(dim=-1)  # (B,)
        else:
            nxt = sample_next(logits, p, seen=seen, generators=gens)  # (B,)
        nxt_list = nxt.tolist()
        last = step == p.max_new_tokens - 1
        for i in range(b):
            if finished[i]:
                continue
            tok = nxt_list[i]
            text, stopped = "", False
            if matchers is not None:
                text, stopped = matchers[i].push(tok)
            reason = None
            if stopped or tok in stop_ids:
                reason = "stop"
            elif last:
                reason = "length"
            if reason is not None:
                finished[i] = True
                if matchers is not None and not stopped:
                    text += matchers[i].finish()
            yield StreamEvent(i, tok, text, reason is not None, reason)
        if all(finished):
            return
        if seen is not None:
            seen[torch.arange(b, device=dev), nxt] = True
        step_ids = nxt[:, None]  # (B, 1)
        if padded:
            mask = full_mask[:, : plen + step + 1]  # (B, T): a view, nothing rebuilt
        if caches is not None:
            logits = model(
                step_ids,
                attention_mask=mask if padded else None,
                positions=pos[:, None] if padded else None,
                caches=caches,
            )[:, -1]
        else:
            seq = torch.cat([seq, step_ids], dim=1)
            logits = model(seq, attention_mask=mask if padded else None, logits_to_keep=1)[:, -1]
        pos += 1


def generate(
    model: Qwen2Model,
    prompts: Any,
    *,
    params: SamplingParams | None = None,
    tokenizer: Tokenizer | None = None,
    attention_mask: torch.Tensor | None = None,
    seeds: Sequence[int] | None = None,
    use_cache: bool = True,
    **sampling: Any,
) -> GenerationOutput:
    """Generate continuations of one or several prompts (see :func:`stream_generate`).

    Example:
        >>> out = generate(model, [[1, 2, 3], [4, 5]], max_new_tokens=8)        # greedy
        >>> out = generate(model, "Hello", tokenizer=tok, temperature=0.8, top_p=0.9, seed=0)
        >>> out.sequences, out.texts, out.finish_reasons
    """
    rows = normalize_prompts(prompts, tokenizer=tokenizer, attention_mask=attention_mask)
    seqs: list[list[int]] = [[] for _ in rows]
    reasons = ["length"] * len(rows)
    texts = [""] * len(rows)
    for ev in stream_generate(
        model,
        rows,
        params=params,
        tokenizer=tokenizer,
        seeds=seeds,
        use_cache=use_cache,
        **sampling,
    ):
        seqs[ev.index].append(ev.token_id)
        texts[ev.index] += ev.text
        if ev.finish_reason is not None:
            reasons[ev.index] = ev.finish_reason
    return GenerationOutput(
        seqs, reasons, texts if tokenizer is not None else None, [len(r) for r in rows]
    )
