from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from seedbed.memory_store import ReservoirSampler, StreamingCompressor


def chi2_sf(stat: float, df: int) -> float:
    """Upper tail of the chi-square distribution (Wilson-Hilferty; accurate for df >~ 30)."""
    z = ((stat / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
    return 0.5 * math.erfc(z / math.sqrt(2))


def inclusion_counts(make_sampler, n: int, trials: int, seed: int) -> np.ndarray:
    """How often each of n stream positions ends up in the sample, over independent trials;
    the stream is fed in random-size batches."""
    rng = np.random.default_rng(seed)
    counts = np.zeros(n, dtype=np.int64)
    for t in range(trials):
        s = make_sampler(t)
        pos = 0
        while pos < n:
            step = int(rng.integers(1, 40))
            s.add(np.arange(pos, min(n, pos + step))[:, None])
            pos += step
        counts += np.bincount(s.items[:, 0], minlength=n)
    return counts


def chi2_uniform_pvalue(counts: np.ndarray) -> float:
    expected = counts.mean()
    stat = float(((counts - expected) ** 2 / expected).sum())
    return chi2_sf(stat, len(counts) - 1)


class GrowByAppending:
    """A plausible but wrong growing reservoir: Algorithm R whose capacity follows
    growth * ln(1 + n), growing by simply appending the newest item."""

    def __init__(self, growth: float, seed: int) -> None:
        self.growth, self.rng, self.n = growth, np.random.default_rng(seed), 0
        self.items = np.empty((0, 1), dtype=np.int64)

    def add(self, items: np.ndarray) -> None:
        for item in items:
            self.n += 1
            cap = max(1, int(self.growth * math.log1p(self.n)))
            if len(self.items) < cap:
                self.items = np.concatenate([self.items, item[None]])
            elif self.rng.random() < cap / self.n:
                self.items[self.rng.integers(cap)] = item


def test_reservoir_is_uniform_chi_square() -> None:
    n, trials = 300, 1500
    counts = inclusion_counts(lambda t: ReservoirSampler(growth=8.0, seed=t), n, trials, seed=0)
    p = ReservoirSampler(growth=8.0).inclusion_probability(n)
    assert counts.sum() / trials == pytest.approx(n * p, rel=0.05)  # expected size 8 ln(301)
    assert chi2_uniform_pvalue(counts) > 1e-3


def test_chi_square_test_rejects_a_biased_reservoir() -> None:
    counts = inclusion_counts(lambda t: GrowByAppending(8.0, seed=t), 300, 1500, seed=0)
    assert chi2_uniform_pvalue(counts) < 1e-6  # the same test fails the wrong sampler


def test_fixed_size_phase_stays_uniform() -> None:
    """max_size small enough that Algorithm R takes over mid-stream."""
    mk = lambda t: ReservoirSampler(growth=4.0, max_size=16, seed=t)  # noqa: E731
    assert mk(0).switch_at < 100
    counts = inclusion_counts(mk, 400, 1500, seed=1)
    assert chi2_uniform_pvalue(counts) > 1e-3
    s = mk(0)
    s.add(np.arange(10_000)[:, None])
    size_at_switch = len(s)
    s.add(np.arange(10_000, 20_000)[:, None])
    assert len(s) == size_at_switch  # fixed size after the switch


def test_working_set_grows_logarithmically() -> None:
    sizes = {}
    for n in (1_000, 10_000, 100_000):
        runs = []
        for seed in range(5):
            s = ReservoirSampler(growth=16.0, seed=seed)
            for start in range(0, n, 4096):
                s.add(np.arange(start, min(n, start + 4096))[:, None])
            runs.append(len(s))
        sizes[n] = float(np.mean(runs))
        assert sizes[n] == pytest.approx(16.0 * math.log1p(n), rel=0.15)
    # x100 more tokens, roughly x1.7 the working set (ln ratio), nowhere near x100
    assert sizes[100_000] / sizes[1_000] < 2.0


def test_sampler_validation() -> None:
    with pytest.raises(ValueError, match="growth"):
        ReservoirSampler(growth=0)
    with pytest.raises(ValueError, match="max_size"):
        ReservoirSampler(max_size=0)
    s = ReservoirSampler()
    s.add(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="shape"):
        s.add(np.zeros((3, 5)))


def _low_rank(n: int = 4000, d: int = 32, r: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, r, generator=g) @ torch.randn(r, d, generator=g)
        + 0.05 * torch.randn(n, d, generator=g)
        + 3.0
    )


def test_autoencoder_reaches_pca_error() -> None:
    x = _low_rank()
    comp = StreamingCompressor(32, 6, growth=200.0)
    for chunk in x.split(256):
        comp.observe(chunk)
    assert comp.n_seen == 4000
    assert 500 < comp.working_set_size < 4000
    err = comp.fit(steps=400)
    data = comp.reservoir.double()
    centred = data - data.mean(0)
    s = torch.linalg.svdvals(centred)
    pca_err = float((s[6:] ** 2).sum() / (s**2).sum())  # float64 optimum for rank 6
    assert err <= pca_err * 1.2 + 1e-4
    assert comp.reconstruction_error(x) < 0.01  # held-out: the whole stream
    w = comp.weight.detach()
    torch.testing.assert_close(w @ w.T, torch.eye(6), atol=1e-5, rtol=0)  # orthonormal rows
    z = comp.encode(x[:5])
    assert z.shape == (5, 6)
    # inner products with decoded vectors are code inner products plus a per-query constant
    q = torch.randn(3, 32)
    lhs = q @ comp.decode(z).T
    rhs = comp.encode(q + comp.mean) @ z.T + (q @ comp.mean)[:, None]
    torch.testing.assert_close(lhs, rhs, atol=1e-4, rtol=1e-4)


def test_freeze_save_load(tmp_path: Path) -> None:
    comp = StreamingCompressor(16, 4)
    with pytest.raises(RuntimeError, match="empty"):
        comp.fit()
    comp.observe(_low_rank(500, 16, 3))
    comp.fit(steps=50)
    comp.freeze()
    with pytest.raises(RuntimeError, match="frozen"):
        comp.fit()
    comp.save(tmp_path / "c")
    other = StreamingCompressor.load(tmp_path / "c")
    x = torch.randn(7, 16)
    torch.testing.assert_close(other(x), comp(x), atol=0, rtol=0)
    assert other.frozen
    assert other.fitted
    assert other.n_seen == 500
    assert np.array_equal(other.sampler.positions, comp.sampler.positions)
    comp.observe(torch.randn(100, 16))
    other.observe(torch.randn(100, 16))
    assert np.array_equal(other.sampler.positions, comp.sampler.positions)  # same RNG stream


def test_compressor_validation() -> None:
    with pytest.raises(ValueError, match="latent_dim"):
        StreamingCompressor(8, 8)
    comp = StreamingCompressor(8, 2)
    with pytest.raises(ValueError, match="shape"):
        comp.observe(torch.randn(3, 7))
    with pytest.raises(ValueError, match="finite"):
        comp.observe(torch.full((2, 8), float("nan")))
    assert comp.n_seen == 0
