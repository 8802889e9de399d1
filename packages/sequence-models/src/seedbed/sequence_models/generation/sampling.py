"""Next-token selection: greedy, temperature, top-k, top-p and repetition penalty.

The logits processors follow ``transformers``' order and semantics: repetition penalty on the
raw logits, then temperature, top-k and top-p. Sampling draws from a per-sequence
``torch.Generator`` so a seeded request gives the same tokens whatever batch it runs in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

__all__ = [
    "SamplingParams",
    "apply_repetition_penalty",
    "apply_top_k",
    "apply_top_p",
    "make_generator",
    "process_logits",
    "sample_next",
]


@dataclass
class SamplingParams:
    """How to pick tokens for one request."""

    max_new_tokens: int = 64  # tokens to generate at most
    temperature: float = 0.0  # 0 -> greedy (argmax); > 0 -> sample from softmax(logits / T)
    top_k: int = 0  # keep the k most likely tokens (0 = off)
    top_p: float = 1.0  # nucleus: smallest set with cumulative probability >= top_p (1 = off)
    repetition_penalty: float = (
        1.0  # CTRL-style penalty on tokens seen in prompt or output (1 = off)
    )
    stop_token_ids: list[int] = field(
        default_factory=list
    )  # ids that end the request (kept in output)
    stop_strings: list[str] = field(default_factory=list)  # texts that end it (needs a tokenizer)
    seed: int | None = None  # seeds this request's sampling generator
    ignore_eos: bool = False  # do not stop on the model's / tokenizer's EOS ids

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
            raise TypeError(f"max_new_tokens must be an int, got {self.max_new_tokens!r}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)):
            raise TypeError(f"temperature must be a number, got {self.temperature!r}")
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be an int >= 0, got {self.top_k!r}")
        if isinstance(self.top_p, bool) or not isinstance(self.top_p, (int, float)):
            raise TypeError(f"top_p must be a number, got {self.top_p!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if isinstance(self.repetition_penalty, bool) or not isinstance(
            self.repetition_penalty, (int, float)
        ):
            raise TypeError(f"repetition_penalty must be a number, got {self.repetition_penalty!r}")
        if not (self.repetition_penalty > 0 and math.isfinite(self.repetition_penalty)):
            raise ValueError(
                f"repetition_penalty must be a finite number > 0, got {self.repetition_penalty}"
            )
        self.stop_token_ids = list(self.stop_token_ids)
        if any(isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in self.stop_token_ids):
            raise ValueError(
                f"stop_token_ids must be non-negative ints, got {self.stop_token_ids!r}"
            )
        self.stop_strings = list(self.stop_strings)
        if any(not isinstance(s, str) or not s for s in self.stop_strings):
            raise ValueError(f"stop_strings must be non-empty strings, got {self.stop_strings!r}")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise TypeError(f"seed must be an int or None, got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        """True when tokens are chosen by argmax (temperature 0)."""
        return self.temperature == 0


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded with ``seed`` (or from the global RNG when None)."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
    return g


def apply_repetition_penalty(
    logits: torch.Tensor, seen: torch.Tensor, penalty: float
) -> torch.Tensor:
    """CTRL repetition penalty (as in ``transformers``): divide positive logits of seen tokens
    by ``penalty``, multiply negative ones.

    Args:
        logits: (B, V) raw scores.
        seen: (B, V) bool, True where the token occurred in the prompt or output.
        penalty: > 0; 1 is a no-op.

    Returns:
        (B, V) new tensor.
    """
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalised, logits)


def apply_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits per row (ties at the threshold kept), others -> -inf.

    Args:
        logits: (B, V). k: 0 or >= V is a no-op.
    """
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def apply_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering (as in ``transformers``): keep the smallest set of most likely tokens
    whose probability sums to at least ``p`` (always at least one), others -> -inf.

    Args:
        logits: (B, V). p in (0, 1]; 1 is a no-op.
    """
    if p >= 1.0:
        return logits
    sorted_logits, sorted_idx = torch.sort(logits, dim=-1, descending=False)  # ascending
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cum <= (1 - p)
    remove_sorted[..., -1] = False  # keep the most likely token
    remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def process_logits(
    logits: torch.Tensor,
    params: SamplingParams,
    seen: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply repetition penalty, temperature, top-k, top-p in ``transformers``' order.

    Args:
        logits: (B, V) raw scores (fp32 recommended).
        params: the request's sampling settings.
        seen: (B, V) bool tokens seen so far (needed when repetition_penalty != 1).

    Returns:
        (B, V) processed scores; greedy requests skip the temperature/top-k/top-p warpers.
    """
    if params.repetition_penalty != 1.0:
        if seen is None:
            raise ValueError("repetition_penalty != 1 needs the 'seen' token mask")
        logits = apply_repetition_penalty(logits, seen, params.repetition_penalty)
    if params.greedy:
        return logits
    logits = logits / params.temperature
    logits = apply_top_k(logits, params.top_k)
    return apply_top_p(logits, params.top_p)


def sample_next(
    logits: torch.Tensor,
    params: SamplingParams | Sequence[SamplingParams],
    *,
    seen: torch.Tensor | None = None,
    generators: Sequence[torch.Generator | None] | None = None,
) -> torch.Tensor:
    """Pick one token per row.

    Args:
        logits: (B, V) raw next-token scores.
        params: one :class:`SamplingParams` for all rows, or one per row.
        seen: (B, V) bool mask of tokens seen (for repetition penalty).
        generators: per-row generators for sampling rows (None: global RNG).

    Returns:
        (B,) int64 token ids.
    """
    b = logits.shape[0]
    per_row = [params] * b if isinstance(params, SamplingParams) else list(params)
    if len(per_row) != b:
        raise ValueError(f"need one SamplingParams per row: {b} rows, got {len(per_row)}")
    logits = logits.float()
    if all(p.greedy and p.repetition_penalty == 1.0 for p in per_row):
        return logits.argmax(dim=-1)
    out = torch.empty(b, dtype=torch.long, device=logits.device)
    for i, p in enumerate(per_row):
        row = process_logits(logits[i : i + 1], p, None if seen is None else seen[i : i + 1])
        if p.greedy:
            out[i] = row.argmax(dim=-1)[0]
            continue
        probs = row.softmax(dim=-1)
        g = None if generators is None else generators[i]
        out[i] = torch.multinomial(probs, 1, generator=g)[0, 0]
    return out
