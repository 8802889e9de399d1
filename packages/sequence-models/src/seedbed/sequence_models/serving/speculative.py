"""Speculative decoding (Leviathan et al. 2023; Chen et al. 2023) with a draft model.

Each round the draft proposes up to ``k`` tokens one at a time; the target scores all of them in
one forward pass; the longest acceptable prefix is kept plus one token from the target. Both
models keep their K/V in a :class:`PagedKVCache`, so rejected tokens are rolled back per
sequence by truncating its block table.

* Greedy (temperature 0): a proposal is accepted iff it equals the target's argmax, so the
  output is exactly the target's own greedy output.
* Sampling: proposal ``x ~ q`` is accepted with probability ``min(1, p(x) / q(x))``, and on
  rejection a token is drawn from ``normalize(max(p - q, 0))``; the output is distributed
  exactly as sampling from the target (with the same temperature / top-k / top-p).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from seedbed.sequence_models.generation.generate import StopStringMatcher, normalize_prompts
from seedbed.sequence_models.generation.sampling import (
    SamplingParams,
    make_generator,
    process_logits,
)
from seedbed.sequence_models.qwen2.model import Qwen2Model
from seedbed.sequence_models.qwen2.tokenizer import Tokenizer
from seedbed.sequence_models.serving.engine import paged_forward
from seedbed.sequence_models.serving.paged_cache import PagedKVCache

__all__ = ["SpeculativeDecoder", "SpeculativeOutput", "speculative_accept"]


@dataclass
class SpeculativeOutput:
    """Result of :meth:`SpeculativeDecoder.generate`."""

    sequences: list[list[int]]  # generated ids per prompt
    finish_reasons: list[str]  # "stop" or "length"
    texts: list[str] | None  # with a tokenizer
    num_proposed: int  # draft tokens proposed
    num_accepted: int  # draft tokens accepted
    target_forwards: int  # target forward passes (rounds, plus the prefill)

    @property
    def acceptance_rate(self) -> float:
        return self.num_accepted / self.num_proposed if self.num_proposed else 0.0


def speculative_accept(
    p: torch.Tensor,
    q: torch.Tensor,
    proposals: torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[int, int]:
    """The accept/reject rule of speculative sampling for one sequence.

    Args:
        p: (k + 1, V) target probabilities at the k proposal positions and one past them.
        q: (k, V) draft probabilities the proposals were drawn from.
        proposals: (k,) proposed ids.
        generator: RNG for the uniform draws and the resampling.

    Returns:
        ``(n, token)``: the first n proposals are accepted, then ``token`` is emitted (drawn
        from the residual ``max(p - q, 0)`` at position n, or from ``p[k]`` if all k passed).
    """
    k = proposals.shape[0]
    for i in range(k):
        x = int(proposals[i])
        px, qx = float(p[i, x]), float(q[i, x])
        u = float(torch.rand((), generator=generator, device=p.device))
        if qx > 0 and u < min(1.0, px / qx):
            continue
        residual = (p[i] - q[i]).clamp_min(0)
        total = float(residual.sum())
        dist = residual / total if total > 0 else p[i]
        return i, int(torch.multinomial(dist, 1, generator=generator))
    return k, int(torch.multinomial(p[k], 1, generator=generator))


class _Seq:
    def __init__(
        self, idx: int, prompt: list[int], tokenizer: Tokenizer | None, params: SamplingParams
    ) -> None:
        self.idx = idx
        self.tokens = list(prompt)
        self.num_prompt = len(prompt)
        self.t_cached = 0  # tokens in the target's cache
        self.d_cached = 0  # tokens in the draft's cache
        self.finish_reason: str | None = None
        self.matcher = (
            StopStringMatcher(tokenizer, params.stop_strings) if tokenizer is not None else None
        )

    @property
    def output(self) -> list[int]:
        return self.tokens[self.num_prompt :]


class SpeculativeDecoder:
    """Generate with ``target``, proposing tokens with the cheaper ``draft``.

    Args:
        target: the model whose output distribution is kept.
        draft: a smaller model over the same vocabulary.
        num_speculative_tokens: k, proposals per round.
        block_size: tokens per KV block of the paged caches.
        tokenizer: for text prompts, stop strings and text output.
    """

    def __init__(
        self,
        target: Qwen2Model,
        draft: Qwen2Model,
        num_speculative_tokens: int = 4,
        *,
        block_size: int = 16,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        if not isinstance(target, Qwen2Model) or not isinstance(draft, Qwen2Model):
            raise TypeError(
                f"target and draft must be Qwen2Model, got {type(target).__name__} and {type(draft).__name__}"
            )
        if target.config.vocab_size != draft.config.vocab_size:
            raise ValueError(
                "target and draft must share a vocabulary, got vocab_size "
                f"{target.config.vocab_size} and {draft.config.vocab_size}"
            )
        k = num_speculative_tokens
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"num_speculative_tokens must be an int >= 1, got {k!r}")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive int, got {block_size!r}")
        self.target, self.draft = target.eval(), draft.eval()
        self.k, self.block_size, self.tokenizer = k, block_size, tokenizer

    def _cache(self, model: Qwen2Model, num_blocks: int) -> PagedKVCache:
        c = model.config
        assert c.head_dim is not None
        return PagedKVCache(
            c.num_hidden_layers,
            num_blocks,
            self.block_size,
            c.num_key_value_heads,
            c.head_dim,
            dtype=model.dtype,
            device=model.device,
        )

    def _choose(
        self, logits: torch.Tensor, params: SamplingParams, gen: torch.Generator | None
    ) -> tuple[int, torch.Tensor | None]:
        """Pick a draft token from (V,) logits; return it and the distribution it came from."""
        if params.greedy:
            return int(logits.argmax()), None
        probs = process_logits(logits[None].float(), params)[0].softmax(-1)
        return int(torch.multinomial(probs, 1, generator=gen)), probs

    @torch.no_grad()
    def generate(
        self,
        prompts: Any,
        params: SamplingParams | None = None,
        **sampling: Any,
    ) -> SpeculativeOutput:
        """Generate for one or several prompts (same accepted forms as ``generate``).

        Args:
            prompts: str / list of str (with a tokenizer), id list(s) or a (B, P) tensor.
            params: :class:`SamplingParams` or its fields as keywords. Repetition penalty is
                not supported (it would make the target distribution depend on the proposals).
        """
        if params is None:
            params = SamplingParams(**sampling)
        elif sampling:
            raise TypeError(
                f"pass either params or sampling keywords, not both (got {sorted(sampling)})"
            )
        if params.repetition_penalty != 1.0:
            raise ValueError(
                f"speculative decoding needs repetition_penalty == 1, got {params.repetition_penalty}"
            )
        if params.stop_strings and self.tokenizer is None:
            raise ValueError("stop_strings need a tokenizer")
        rows = normalize_prompts(prompts, tokenizer=self.tokenizer)
        vocab = self.target.config.vocab_size
        for r in rows:
            if max(r) >= vocab or min(r) < 0:
                raise ValueError(
                    f"prompt token ids must be in [0, {vocab}), got {min(r)}..{max(r)}"
                )
        limit = min(
            self.target.config.max_position_embeddings, self.draft.config.max_position_embeddings
        )
        longest = max(len(r) for r in rows) + params.max_new_tokens + self.k + 1
        if longest > limit:
            raise ValueError(
                f"prompt + max_new_tokens + k + 1 = {longest} exceeds max positions {limit}"
            )
        stop_ids = set(params.stop_token_ids)
        if not params.ignore_eos:
            stop_ids.update(self.target.config.eos_token_ids)
            if self.tokenizer is not None:
                stop_ids.update(self.tokenizer.stop_token_ids)

        blocks = sum(
            -(-(len(r) + params.max_new_tokens + self.k + 1) // self.block_size) for r in rows
        )
        tcache, dcache = self._cache(self.target, blocks), self._cache(self.draft, blocks)
        dev = self.target.device
        gen = None if params.greedy else make_generator(params.seed, dev)
        seqs = [_Seq(i, r, self.tokenizer, params) for i, r in enumerate(rows)]
        for s in seqs:
            tcache.add_sequence(s.idx)
            dcache.add_sequence(s.idx)
        texts = [""] * len(seqs)
        proposed = accepted = target_forwards = 0

        # Prefill both models on all but the last prompt token (it is fed with the proposals).
        need = [s for s in seqs if len(s.tokens) > 1]
        if need:
            for model, cache in ((self.target, tcache), (self.draft, dcache)):
                paged_forward(
                    model,
                    cache,
                    [s.idx for s in need],
                    [s.tokens[:-1] for s in need],
                    last_only=True,
                )
            for s in need:
                s.t_cached = s.d_cached = len(s.tokens) - 1
            target_forwards += 1

        active = list(seqs)
        while active:
            # ---- draft: k_i proposals per sequence (fewer near max_new_tokens)
            ks = [min(self.k, params.max_new_tokens - len(s.output) - 1) for s in active]
            props: list[list[int]] = [[] for _ in active]
            qs: list[list[torch.Tensor]] = [[] for _ in active]
            for j in range(max(ks)):
                part = [i for i, s in enumerate(active) if ks[i] > j]
                feed = [(active[i].tokens + props[i])[active[i].d_cached :] for i in part]
                logits = paged_forward(
                    self.draft, dcache, [active[i].idx for i in part], feed, last_only=True
                )
                for row, i in enumerate(part):
                    active[i].d_cached += len(feed[row])
                    tok, q = self._choose(logits[row, 0], params, gen)
                    props[i].append(tok)
                    if q is not None:
                        qs[i].append(q)
            # ---- target: score pending tokens + proposals in one pass
            feed = [s.tokens[s.t_cached :] + props[i] for i, s in enumerate(active)]
            logits = paged_forward(self.target, tcache, [s.idx for s in active], feed)  # (B, S, V)
            target_forwards += 1
            still: list[_Seq] = []
            for i, s in enumerate(active):
                n_pend, k_i = len(feed[i]) - ks[i], ks[i]
                tl = logits[i, n_pend - 1 : n_pend + k_i].float()  # (k_i + 1, V)
                if params.greedy:
                    best = tl.argmax(-1).tolist()
                    n = 0
                    while n < k_i and props[i][n] == best[n]:
                        n += 1
                    new = [*props[i][:n], best[n]]
                else:
                    p = process_logits(tl, params).softmax(-1)
                    q = torch.stack(qs[i]) if k_i else p[:0]
                    n, tok = speculative_accept(p, q, torch.tensor(props[i][:k_i]), gen)
                    new = [*props[i][:n], tok]
                proposed += k_i
                accepted += n
                base = len(s.tokens)
                # roll back both caches to the accepted prefix
                tcache.truncate(s.idx, base + n)
                s.t_cached = base + n
                keep = min(s.d_cached, base + n)
                dcache.truncate(s.idx, keep)
                s.d_cached = keep
                for tok in new:
                    s.tokens.append(tok)
                    stopped = False
                    if s.matcher is not None:
                        delta, stopped = s.matcher.push(tok)
                        texts[s.idx] += delta
                    if stopped or tok in stop_ids:
                        s.finish_reason = "stop"
                    elif len(s.output) >= params.max_new_tokens:
                        s.finish_reason = "length"
                    if s.finish_reason is not None:
                        break
                if s.finish_reason is None:
                    still.append(s)
                else:
                    if s.matcher is not None and not s.matcher.stopped:
                        texts[s.idx] += s.matcher.finish()
                    tcache.free_sequence(s.idx)
                    dcache.free_sequence(s.idx)
            active = still
        return SpeculativeOutput(
            [s.output for s in seqs],
            [s.finish_reason or "length" for s in seqs],
            texts if self.tokenizer is not None else None,
            proposed,
            accepted,
            target_forwards,
        )
