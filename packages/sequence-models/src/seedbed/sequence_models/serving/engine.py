"""Serving engine: paged KV cache, continuous batching and chunked prefill.

Each :meth:`LLMEngine.step` schedules one forward pass worth of work:

1. every running sequence whose prompt is fully cached decodes one token (one batched
   forward over all of them);
2. sequences still prefilling get their next prompt chunk (at most ``prefill_chunk_size``
   tokens each, ``max_num_batched_tokens`` in all), and waiting requests are admitted while
   there is room in the batch and in the block pool.

Requests join and leave the running batch between steps. When the pool runs out of blocks the
most recently admitted sequence is preempted: its blocks are freed and it is recomputed later
from its prompt and the tokens it already generated (so its output does not change).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from seedbed.sequence_models.generation.generate import StopStringMatcher, normalize_prompts
from seedbed.sequence_models.generation.sampling import SamplingParams, make_generator, sample_next
from seedbed.sequence_models.qwen2.model import Qwen2Model
from seedbed.sequence_models.qwen2.tokenizer import Tokenizer
from seedbed.sequence_models.serving.paged_cache import PagedKVCache

__all__ = ["EngineConfig", "LLMEngine", "Request", "RequestOutput", "paged_forward"]


@dataclass
class EngineConfig:
    """Capacity and scheduling knobs of :class:`LLMEngine`."""

    num_blocks: int = 256  # KV blocks in the pool (per layer)
    block_size: int = 16  # tokens per block
    max_batch_size: int = 32  # running sequences at most
    max_num_batched_tokens: int = 512  # tokens per step (decode + prefill chunks)
    prefill_chunk_size: int = 128  # largest prompt piece one sequence prefills in a step
    max_model_len: int | None = None  # prompt + output cap; None -> the model's max positions
    quantization: str | None = None  # None, "int8" or "nf4" (weight-only, applied at start)

    def __post_init__(self) -> None:
        for name in (
            "num_blocks",
            "block_size",
            "max_batch_size",
            "max_num_batched_tokens",
            "prefill_chunk_size",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"EngineConfig.{name} must be a positive int, got {v!r}")
        if self.max_num_batched_tokens < self.max_batch_size:
            raise ValueError(
                "EngineConfig.max_num_batched_tokens must be >= max_batch_size (one decode token "
                f"per running sequence), got {self.max_num_batched_tokens} < {self.max_batch_size}"
            )
        if self.max_model_len is not None and (
            isinstance(self.max_model_len, bool)
            or not isinstance(self.max_model_len, int)
            or self.max_model_len < 2
        ):
            raise ValueError(
                f"EngineConfig.max_model_len must be an int >= 2 or None, got {self.max_model_len!r}"
            )
        if self.quantization not in (None, "int8", "nf4"):
            raise ValueError(
                f"EngineConfig.quantization must be None, 'int8' or 'nf4', got {self.quantization!r}"
            )


@dataclass
class Request:
    """A request's state inside the engine."""

    request_id: Hashable
    prompt_ids: list[int]
    params: SamplingParams
    arrival: int  # admission order (preemption takes the latest first)
    output_ids: list[int] = field(default_factory=list)
    num_cached: int = 0  # tokens of prompt + output whose K/V is in the cache
    finished: bool = False
    finish_reason: str | None = None
    generator: torch.Generator | None = None
    seen: torch.Tensor | None = None  # (V,) bool, for repetition penalty
    matcher: StopStringMatcher | None = None
    stop_ids: frozenset[int] = frozenset()

    @property
    def tokens(self) -> list[int]:
        return self.prompt_ids + self.output_ids

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def num_pending(self) -> int:
        """Tokens whose K/V still has to be computed (1 while decoding)."""
        return self.num_tokens - self.num_cached


@dataclass
class RequestOutput:
    """What one step produced for one request."""

    request_id: Hashable
    new_token_ids: list[int]  # tokens generated in this step (0 or 1)
    new_text: str  # text completed in this step ('' without a tokenizer)
    finished: bool
    finish_reason: str | None  # "stop", "length" or "abort"
    output_ids: list[int]  # every generated token so far
    num_prompt_tokens: int

    @property
    def num_output_tokens(self) -> int:
        return len(self.output_ids)


def paged_forward(
    model: Qwen2Model,
    cache: PagedKVCache,
    seq_ids: Sequence[Hashable],
    rows: Sequence[Sequence[int]],
    *,
    last_only: bool = False,
) -> torch.Tensor:
    """Append ``rows[i]`` (the next tokens of sequence ``seq_ids[i]``) to the paged cache and
    return their logits.

    Args:
        model: the model whose layers ``cache`` belongs to.
        cache: a :class:`PagedKVCache` holding every ``seq_ids`` sequence.
        seq_ids: B sequences.
        rows: B non-empty token lists (lengths may differ; the batch is padded).
        last_only: return only each row's last-token logits.

    Returns:
        (B, S, V) logits (S = longest row; positions past a row's length are padding), or
        (B, 1, V) with ``last_only``.
    """
    n_new = [len(r) for r in rows]
    batch = cache.batch(seq_ids, n_new, windows=list(dict.fromkeys(model.windows)))
    s = batch.seq_len
    padded = [list(r) + [r[-1]] * (s - len(r)) for r in rows]
    dev = model.device
    input_ids = torch.tensor(padded, dtype=torch.long, device=dev)  # (B, S)
    caches = [batch.layer(i) for i in range(len(model.layers))]
    if last_only:
        hidden = model(
            input_ids,
            positions=batch.positions,
            caches=caches,
            attn_masks=batch.masks,
            return_hidden=True,
        )
        last = torch.tensor([n - 1 for n in n_new], device=dev)
        h = hidden[torch.arange(len(rows), device=dev), last][:, None]  # (B, 1, d)
        return model.lm_head_logits(h)
    return model(input_ids, positions=batch.positions, caches=caches, attn_masks=batch.masks)


class LLMEngine:
    """Continuous-batching inference over a paged KV cache.

    Args:
        model: a :class:`Qwen2Model` (put in eval mode; quantized in place if asked).
        tokenizer: enables text prompts, text deltas and stop strings.
        config: :class:`EngineConfig`.

    Example:
        >>> eng = LLMEngine(model, tok, EngineConfig(num_blocks=128))
        >>> rid = eng.add_request("Hello", SamplingParams(max_new_tokens=16))
        >>> while eng.has_unfinished():
        ...     for out in eng.step():
        ...         print(out.request_id, out.new_text, out.finished)
    """

    def __init__(
        self,
        model: Qwen2Model,
        tokenizer: Tokenizer | None = None,
        config: EngineConfig | None = None,
    ) -> None:
        if not isinstance(model, Qwen2Model):
            raise TypeError(f"model must be a Qwen2Model, got {type(model).__name__}")
        self.config = config or EngineConfig()
        if self.config.quantization is not None:
            from seedbed.sequence_models.serving.quantize import quantize_model

            quantize_model(model, self.config.quantization)
        self.model = model.eval()
        self.tokenizer = tokenizer
        mc = model.config
        assert mc.head_dim is not None
        self.max_model_len = min(
            self.config.max_model_len or mc.max_position_embeddings, mc.max_position_embeddings
        )
        self.cache = PagedKVCache(
            mc.num_hidden_layers,
            self.config.num_blocks,
            self.config.block_size,
            mc.num_key_value_heads,
            mc.head_dim,
            dtype=model.dtype,
            device=model.device,
        )
        self.windows = list(dict.fromkeys(model.windows))
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.requests: dict[Hashable, Request] = {}
        self._arrivals = itertools.count()
        self._ids = itertools.count()
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "steps",
                "prefill_tokens",
                "decode_tokens",
                "generated_tokens",
                "preemptions",
                "finished",
                "aborted",
            ),
            0,
        )

    # ------------------------------------------------------------------ public API
    @property
    def num_free_blocks(self) -> int:
        return self.cache.num_free_blocks

    @property
    def num_used_blocks(self) -> int:
        return self.cache.num_used_blocks

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def stats(self) -> dict[str, int]:
        """Counters plus the current queue and pool occupancy."""
        return {
            **self.counters,
            "waiting": self.num_waiting,
            "running": self.num_running,
            "free_blocks": self.num_free_blocks,
            "used_blocks": self.num_used_blocks,
        }

    def add_request(
        self,
        prompt: str | Sequence[int],
        params: SamplingParams | None = None,
        request_id: Hashable | None = None,
    ) -> Hashable:
        """Queue a request; returns its id.

        Raises:
            ValueError: empty prompt, ids out of range, a duplicate id, or a request that can
                never fit (prompt + max_new_tokens over ``max_model_len`` or the whole pool).
        """
        params = params or SamplingParams()
        ids = self.check_request(prompt, params)
        if request_id is None:
            request_id = f"req-{next(self._ids)}"
        if request_id in self.requests:
            raise ValueError(f"request id {request_id!r} is already in use")
        stop = set(params.stop_token_ids)
        if not params.ignore_eos:
            stop.update(self.model.config.eos_token_ids)
            if self.tokenizer is not None:
                stop.update(self.tokenizer.stop_token_ids)
        req = Request(request_id, ids, params, next(self._arrivals), stop_ids=frozenset(stop))
        dev = self.model.device
        if not params.greedy:
            req.generator = make_generator(params.seed, dev)
        if params.repetition_penalty != 1.0:
            req.seen = torch.zeros(self.model.config.vocab_size, dtype=torch.bool, device=dev)
            req.seen[torch.tensor(ids, device=dev)] = True
        if self.tokenizer is not None:
            req.matcher = StopStringMatcher(self.tokenizer, params.stop_strings)
        self.requests[request_id] = req
        self.waiting.append(req)
        return request_id

    def check_request(self, prompt: str | Sequence[int], params: SamplingParams) -> list[int]:
        """Validate a request without queueing it (changes no state); returns the prompt ids.

        Raises:
            TypeError, ValueError: as :meth:`add_request`.
        """
        if not isinstance(params, SamplingParams):
            raise TypeError(f"params must be a SamplingParams, got {type(params).__name__}")
        if isinstance(prompt, str):
            rows = normalize_prompts(prompt, tokenizer=self.tokenizer)
        else:
            rows = normalize_prompts([list(prompt)])
        ids = rows[0]
        vocab = self.model.config.vocab_size
        if max(ids) >= vocab or min(ids) < 0:
            raise ValueError(
                f"prompt token ids must be in [0, {vocab}), got {min(ids)}..{max(ids)}"
            )
        total = len(ids) + params.max_new_tokens
        if total > self.max_model_len:
            raise ValueError(
                f"prompt ({len(ids)} tokens) + max_new_tokens ({params.max_new_tokens}) = {total} "
                f"exceeds max_model_len={self.max_model_len}"
            )
        capacity = self.cache.num_blocks * self.cache.block_size
        if total > capacity:
            raise ValueError(
                f"request needs {total} cached tokens, the block pool holds {capacity}"
            )
        if params.stop_strings and self.tokenizer is None:
            raise ValueError("stop_strings need an engine with a tokenizer")
        return ids

    def abort(self, request_id: Hashable) -> bool:
        """Drop a request and free its blocks; False if it is unknown or already finished."""
        req = self.requests.pop(request_id, None)
        if req is None:
            return False
        if req in self.running:
            self.running.remove(req)
        elif req in self.waiting:
            self.waiting.remove(req)
        self.cache.free_sequence(request_id)
        req.finished, req.finish_reason = True, "abort"
        self.counters["aborted"] += 1
        return True

    def generate(
        self,
        prompts: Sequence[str | Sequence[int]],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
    ) -> list[RequestOutput]:
        """Run ``prompts`` to completion together; outputs in prompt order."""
        plist: list[SamplingParams | None] = (
            list(params) if isinstance(params, (list, tuple)) else [params] * len(prompts)  # type: ignore[list-item]
        )
        if len(plist) != len(prompts):
            raise ValueError(
                f"need one SamplingParams per prompt ({len(prompts)}), got {len(plist)}"
            )
        for p, sp in zip(prompts, plist):  # validate all first: a failed call queues nothing
            self.check_request(p, sp or SamplingParams())
        ids = [self.add_request(p, sp) for p, sp in zip(prompts, plist)]
        final: dict[Hashable, RequestOutput] = {}
        while any(i not in final for i in ids):
            for out in self.step():
                if out.finished:
                    final[out.request_id] = out
        return [final[i] for i in ids]

    # ------------------------------------------------------------------ scheduling
    def _preempt(self, req: Request) -> None:
        self.running.remove(req)
        self.cache.free_sequence(req.request_id)
        req.num_cached = 0
        self.waiting.appendleft(req)
        self.counters["preemptions"] += 1

    def _schedule(self) -> tuple[list[Request], list[tuple[Request, int]]]:
        """Pick the decode batch and the prefill chunks of this step."""
        cfg = self.config
        # 1. decodes: one token each; preempt the latest arrivals while blocks run short.
        decodes = [r for r in self.running if r.num_pending == 1]
        while decodes:
            need = sum(self.cache.extra_blocks_for(r.request_id, 1) for r in decodes)
            if need <= self.cache.num_free_blocks:
                break
            victim = max(self.running, key=lambda r: r.arrival)
            self._preempt(victim)
            if victim in decodes:
                decodes.remove(victim)
        budget = cfg.max_num_batched_tokens - len(decodes)
        free = self.cache.num_free_blocks - sum(
            self.cache.extra_blocks_for(r.request_id, 1) for r in decodes
        )
        # 2. prefill chunks of running sequences, then admit waiting ones.
        prefills: list[tuple[Request, int]] = []

        def try_chunk(r: Request) -> bool:
            nonlocal budget, free
            n = min(r.num_pending, cfg.prefill_chunk_size, budget)
            if n < 1:
                return False
            extra = self.cache.extra_blocks_for(r.request_id, n)
            if extra > free:
                return False
            prefills.append((r, n))
            budget -= n
            free -= extra
            return True

        for r in self.running:
            if r.num_pending > 1 and budget > 0:
                try_chunk(r)
        while self.waiting and budget > 0 and len(self.running) < cfg.max_batch_size:
            r = self.waiting[0]
            self.cache.add_sequence(r.request_id)
            if not try_chunk(r):
                self.cache.free_sequence(r.request_id)
                break
            self.waiting.popleft()
            self.running.append(r)
        return decodes, prefills

    # ------------------------------------------------------------------ execution
    def _forward(self, reqs: Sequence[Request], n_new: Sequence[int]) -> torch.Tensor:
        """Run the model on the next ``n_new[i]`` pending tokens of each request.

        Returns:
            (B, V) logits at each request's last new token.
        """
        rows = [r.tokens[r.num_cached : r.num_cached + n] for r, n in zip(reqs, n_new)]
        logits = paged_forward(
            self.model, self.cache, [r.request_id for r in reqs], rows, last_only=True
        )
        for r, n in zip(reqs, n_new):
            r.num_cached += n
        return logits[:, 0]  # (B, V)

    def _finish(self, req: Request, reason: str) -> None:
        req.finished, req.finish_reason = True, reason
        if req in self.running:
            self.running.remove(req)
        self.cache.free_sequence(req.request_id)
        self.requests.pop(req.request_id, None)
        self.counters["finished"] += 1

    @torch.no_grad()
    def step(self) -> list[RequestOutput]:
        """One scheduling round and its forward passes; returns per-request outputs."""
        decodes, prefills = self._schedule()
        while not decodes and not prefills and len(self.running) > 1:
            # Every running sequence is stuck mid-prefill on a full pool: recompute the latest.
            self._preempt(max(self.running, key=lambda r: r.arrival))
            decodes, prefills = self._schedule()
        if not decodes and not prefills:
            return []
        self.counters["steps"] += 1
        to_sample: list[Request] = []
        logit_rows: list[torch.Tensor] = []
        if decodes:
            logit_rows.append(self._forward(decodes, [1] * len(decodes)))
            to_sample.extend(decodes)
            self.counters["decode_tokens"] += len(decodes)
        if prefills:
            reqs = [r for r, _ in prefills]
            logits = self._forward(reqs, [n for _, n in prefills])
            self.counters["prefill_tokens"] += sum(n for _, n in prefills)
            done = [i for i, r in enumerate(reqs) if r.num_pending == 0]  # prompt fully cached
            if done:
                logit_rows.append(logits[done])
                to_sample.extend(reqs[i] for i in done)
        outputs: list[RequestOutput] = []
        if to_sample:
            logits = torch.cat(logit_rows, dim=0)
            seen = None
            if any(r.seen is not None for r in to_sample):
                seen = torch.stack(
                    [
                        r.seen
                        if r.seen is not None
                        else torch.zeros_like(logits[0], dtype=torch.bool)
                        for r in to_sample
                    ]
                )
            toks = sample_next(
                logits,
                [r.params for r in to_sample],
                seen=seen,
                generators=[r.generator for r in to_sample],
            ).tolist()
            for r, tok in zip(to_sample, toks):
                outputs.append(self._append(r, tok))
        return outputs

    def _append(self, r: Request, tok: int) -> RequestOutput:
        r.output_ids.append(tok)
        self.counters["generated_tokens"] += 1
        if r.seen is not None:
            r.seen[tok] = True
        text, stopped = ("", False) if r.matcher is None else r.matcher.push(tok)
        reason = None
        if stopped or tok in r.stop_ids:
            reason = "stop"
        elif len(r.output_ids) >= r.params.max_new_tokens or r.num_tokens >= self.max_model_len:
            reason = "length"
        if reason is not None:
            if r.matcher is not None and not stopped:
                text += r.matcher.finish()
            self._finish(r, reason)
        return RequestOutput(
            r.request_id,
            [tok],
            text,
            reason is not None,
            reason,
            list(r.output_ids),
            len(r.prompt_ids),
        )

    def info(self) -> dict[str, Any]:
        """Static description (for /health and logs)."""
        return {
            "num_blocks": self.cache.num_blocks,
            "block_size": self.cache.block_size,
            "max_batch_size": self.config.max_batch_size,
            "max_model_len": self.max_model_len,
            "quantization": self.config.quantization,
        }
