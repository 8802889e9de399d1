"""Multi-query associative recall (MQAR) data, following Zoology's generator exactly.

Zoology (Arora, Eyuboglu et al., 2023), ``zoology/data/multiquery_ar.py``: each example is
``num_kv_pairs`` key-value pairs (keys drawn without replacement from the lower half of the
vocabulary ``[1, V/2)``, values from the upper half ``[V/2, V)``), followed by the keys again
as queries, placed in the remaining positions at gaps drawn from the power law
``p(g) ∝ g^(power_a - 1)`` (``power_a = 0.01``: most queries come soon after the context).
Inputs are the sequence shifted for next-token prediction; only the token after each query
(its value) is labelled, every other label is -100.

The random stream equals Zoology's (same draws in the same order from NumPy's legacy
``RandomState(seed)``, which is what ``np.random.seed`` seeds); the non-query filler tokens
(``random_non_queries=True``) come from a ``torch.Generator`` seeded with ``seed`` instead
of torch's unseeded global generator, so a seed fixes the whole example.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["MQARConfig", "MQARData", "multiquery_ar"]

IGNORE_INDEX = -100


def multiquery_ar(
    vocab_size: int,
    num_examples: int,
    input_seq_len: int,
    seed: int,
    power_a: float = 0.01,
    num_kv_pairs: int = 8,
    random_non_queries: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate ``num_examples`` MQAR sequences.

    Args:
        vocab_size: V; keys from [1, V/2), values from [V/2, V). Must exceed input_seq_len.
        num_examples: number of sequences N.
        input_seq_len: L (even).
        seed: seed of the whole example set.
        power_a: power-law exponent of the query gaps (Zoology: 0.01).
        num_kv_pairs: key-value pairs per sequence; needs 4 * pairs <= L.
        random_non_queries: fill the non-key/value/query positions with random tokens
            (else 0).

    Returns:
        inputs (N, L) int64 and labels (N, L) int64 (-100 except at the answer positions).
    """
    for name, val in (
        ("vocab_size", vocab_size),
        ("num_examples", num_examples),
        ("input_seq_len", input_seq_len),
        ("num_kv_pairs", num_kv_pairs),
    ):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"{name} must be a positive int, got {val!r}")
    if input_seq_len % 2:
        raise ValueError(f"input_seq_len must be even, got {input_seq_len}")
    if vocab_size <= input_seq_len:
        raise ValueError(f"vocab_size must exceed input_seq_len={input_seq_len}, got {vocab_size}")
    if 4 * num_kv_pairs > input_seq_len:
        raise ValueError(
            f"need 4 * num_kv_pairs <= input_seq_len, got {num_kv_pairs} pairs for L={input_seq_len}"
        )
    if num_kv_pairs >= vocab_size // 2 - 1:
        raise ValueError(
            f"num_kv_pairs={num_kv_pairs} needs more than {num_kv_pairs} keys in [1, V/2), V={vocab_size}"
        )
    if not power_a > 0:
        raise ValueError(f"power_a must be > 0, got {power_a}")
    rng = np.random.RandomState(seed)
    context_size = num_kv_pairs * 2

    # keys from the lower half of the vocabulary, values from the upper half, no repeats
    key_choices = np.arange(1, vocab_size // 2)
    value_choices = np.arange(vocab_size // 2, vocab_size)
    keys = np.stack(
        [rng.choice(key_choices, size=num_kv_pairs, replace=False) for _ in range(num_examples)]
    )
    values = np.stack(
        [rng.choice(value_choices, size=num_kv_pairs, replace=False) for _ in range(num_examples)]
    )
    kvs = np.zeros((num_examples, context_size), dtype=np.int64)
    kvs[:, 0::2], kvs[:, 1::2] = keys, values

    # query gaps from the power law over the (L - context) / 2 even slots
    space = (input_seq_len - context_size) // 2
    p = power_a * np.arange(1, space + 1) ** (power_a - 1)
    p = p / p.sum()
    slots = np.arange(space)
    gaps = np.stack(
        [rng.choice(slots, size=num_kv_pairs, replace=False, p=p) for _ in range(num_examples)]
    )

    queries = np.zeros((num_examples, input_seq_len - context_size + 1), dtype=np.int64)
    np.put_along_axis(queries, gaps * 2, keys, axis=1)
    examples = np.concatenate([kvs, queries], axis=1)  # (N, L + 1)
    labels = np.full((num_examples, input_seq_len + 1), IGNORE_INDEX, dtype=np.int64)
    np.put_along_axis(labels, gaps * 2 + context_size + 1, values, axis=1)

    inputs, targets = torch.tensor(examples[:, :-1]), torch.tensor(labels[:, 1:])  # shift by one
    if random_non_queries:
        g = torch.Generator().manual_seed(seed)
        fill = torch.randint(vocab_size, inputs.shape, generator=g)
        inputs = torch.where(inputs == 0, fill, inputs)
    return inputs, targets


@dataclass
class MQARConfig:
    """One MQAR setting (Zoology Figure 2 uses V=8192, 100k train / 3k test examples)."""

    seq_len: int = 64  # L
    num_kv_pairs: int = 4  # key-value pairs per sequence
    vocab_size: int = 8192  # V
    num_train: int = 100_000  # training sequences
    num_test: int = 3_000  # test sequences
    power_a: float = 0.01  # query-gap power law
    random_non_queries: bool = False  # Zoology's Figure-2 sweep sets this False
    seed: int = 0  # train seed; the test set uses seed + 10 (as Zoology)

    def __post_init__(self) -> None:
        for name in ("seq_len", "num_kv_pairs", "vocab_size", "num_train", "num_test"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"MQARConfig.{name} must be a positive int, got {val!r}")
        if (
            self.seq_len % 2
            or 4 * self.num_kv_pairs > self.seq_len
            or self.vocab_size <= self.seq_len
        ):
            raise ValueError(
                "MQARConfig needs an even seq_len >= 4 * num_kv_pairs and vocab_size > seq_len, got "
                f"seq_len={self.seq_len}, num_kv_pairs={self.num_kv_pairs}, vocab_size={self.vocab_size}"
            )


@dataclass
class MQARData:
    """Train and test tensors of one setting."""

    config: MQARConfig
    train_inputs: torch.Tensor  # (N_train, L)
    train_labels: torch.Tensor
    test_inputs: torch.Tensor  # (N_test, L)
    test_labels: torch.Tensor

    @classmethod
    def build(cls, config: MQARConfig) -> MQARData:
        """Generate the train (seed) and test (seed + 10) sets, as Zoology does."""
        kw = dict(
            vocab_size=config.vocab_size, input_seq_len=config.seq_len, power_a=config.power_a,
            num_kv_pairs=config.num_kv_pairs, random_non_queries=config.random_non_queries,
        )  # fmt: skip
        tr_x, tr_y = multiquery_ar(num_examples=config.num_train, seed=config.seed, **kw)  # type: ignore[arg-type]
        te_x, te_y = multiquery_ar(num_examples=config.num_test, seed=config.seed + 10, **kw)  # type: ignore[arg-type]
        return cls(config, tr_x, tr_y, te_x, te_y)
