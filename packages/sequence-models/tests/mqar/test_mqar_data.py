"""MQAR data follows Zoology's definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seedbed.sequence_models.mqar import MQARConfig, MQARData, multiquery_ar


def test_structure_matches_zoology_definition() -> None:
    v, n, length, pairs = 64, 200, 32, 4
    x, y = multiquery_ar(v, n, length, seed=3, num_kv_pairs=pairs, random_non_queries=False)
    assert x.shape == y.shape == (n, length)
    ctx = 2 * pairs
    keys, values = x[:, 0:ctx:2], x[:, 1:ctx:2]
    assert ((keys >= 1) & (keys < v // 2)).all(), "keys from the lower half [1, V/2)"
    assert ((values >= v // 2) & (values < v)).all(), "values from the upper half [V/2, V)"
    assert all(len(set(r.tolist())) == pairs for r in keys), "keys distinct in a sequence"
    assert (y[:, :ctx] == -100).all(), "no label inside the key-value context"
    for i in range(n):
        lab = (y[i] != -100).nonzero().flatten()
        assert len(lab) == pairs, "exactly one labelled answer per key"
        for p in lab.tolist():
            k = int(x[i, p])
            j = keys[i].tolist().index(k)  # the query is the key; its label is that key's value
            assert int(y[i, p]) == int(values[i, j])
            assert (p - ctx) % 2 == 0, "queries sit on even slots after the context"
        rest = torch.ones(length, dtype=torch.bool)
        rest[:ctx] = False
        rest[lab] = False
        assert (x[i, rest] == 0).all()


def test_query_gaps_follow_the_power_law() -> None:
    """power_a = 0.01: p(gap g) ∝ g^-0.99, so the first slot is by far the most common."""
    _x, y = multiquery_ar(8192, 3000, 64, seed=0, num_kv_pairs=4, random_non_queries=False)
    slots = ((y != -100).nonzero()[:, 1] - 8) // 2  # 0-based slot of each answer
    counts = np.bincount(slots.numpy(), minlength=28)
    assert counts[0] > counts[1] > counts[5] > counts[20]
    uniform = multiquery_ar(
        8192, 3000, 64, seed=0, num_kv_pairs=4, power_a=1.0, random_non_queries=False
    )[1]
    c_uni = np.bincount((((uniform != -100).nonzero()[:, 1] - 8) // 2).numpy(), minlength=28)
    assert c_uni.max() / c_uni.min() < 2.0


def test_seeded_and_random_filler() -> None:
    a = multiquery_ar(512, 10, 64, seed=7, num_kv_pairs=8)
    b = multiquery_ar(512, 10, 64, seed=7, num_kv_pairs=8)
    assert torch.equal(a[0], b[0])
    assert torch.equal(a[1], b[1])
    assert not torch.equal(a[0], multiquery_ar(512, 10, 64, seed=8, num_kv_pairs=8)[0])
    assert (a[0] != 0).float().mean() > 0.95  # zeros replaced by random tokens


def test_same_draws_as_numpy_global_seed() -> None:
    """Zoology seeds NumPy's global RandomState; ours draws the same stream from a private one."""
    saved = np.random.get_state()  # noqa: NPY002
    try:
        np.random.seed(11)  # noqa: NPY002 - Zoology's own seeding, reproduced on purpose
        keys = np.random.choice(np.arange(1, 32), size=4, replace=False)  # noqa: NPY002
    finally:
        np.random.set_state(saved)  # noqa: NPY002
    x, _ = multiquery_ar(64, 1, 32, seed=11, num_kv_pairs=4, random_non_queries=False)
    assert x[0, 0:8:2].tolist() == keys.tolist()


def test_build_uses_train_and_test_seeds() -> None:
    d = MQARData.build(
        MQARConfig(seq_len=32, num_kv_pairs=2, vocab_size=128, num_train=20, num_test=10)
    )
    assert d.train_inputs.shape == (20, 32)
    assert d.test_inputs.shape == (10, 32)
    assert not torch.equal(d.train_inputs[:10], d.test_inputs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_seq_len": 63}, "even"),
        ({"vocab_size": 32}, "vocab_size must exceed"),
        ({"num_kv_pairs": 17}, "4 \\* num_kv_pairs"),
        ({"num_examples": 0}, "num_examples"),
        ({"power_a": 0.0}, "power_a"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    base = dict(vocab_size=128, num_examples=4, input_seq_len=64, seed=0, num_kv_pairs=4)
    with pytest.raises(ValueError, match=match):
        multiquery_ar(**{**base, **kwargs})  # type: ignore[arg-type]
