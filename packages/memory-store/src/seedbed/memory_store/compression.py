"""Streaming compression: a uniform reservoir of token embeddings and a small autoencoder.

**Reservoir.** After n items the sample must be a *uniform* sample of all n (every item
equally likely to be in it) while the working set grows only logarithmically in n (seed 002:
"keeping the working set roughly logarithmic in sequence length"). A fixed-size reservoir
(Vitter's Algorithm R) cannot grow: a uniform sample of size s+1 cannot be built from one of
size s once the other items are gone. So :class:`ReservoirSampler` keeps every item
independently with probability

    p(n) = min(1, growth * ln(1 + n) / n)

which is non-increasing in n. When the stream advances from n0 to n1 items, each old member
survives with probability p(n1) / p(n0) and each new item enters with probability p(n1), so
after every update each of the n1 items is in the sample independently with probability
p(n1): exactly uniform, with expected size ``growth * ln(1 + n)``. From the deterministic
point where that expectation reaches ``max_size``, the sampler switches to Algorithm R with
the size it has (item m replaces a uniformly chosen member with probability size / m), which
keeps the sample uniform given its size.

**Autoencoder.** :class:`StreamingCompressor` fits a tied linear autoencoder
``x_hat = W^T W (x - mu) + mu`` with orthonormal rows in W (latent, dim) on the reservoir.
Its optimum is the PCA subspace of everything seen so far. Orthonormal rows make inner
products and L2 distances in the latent space equal (up to a per-query constant) to those
against the decoded vectors, so a vector store can search the compressed codes directly.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import nn

from seedbed.memory_store._atomic import atomic_write_bytes
from seedbed.memory_store._validation import check_vectors

__all__ = ["ReservoirSampler", "StreamingCompressor"]


class ReservoirSampler:
    """Uniform sample of a stream whose expected size grows like ``growth * ln(1 + n)``.

    Items are rows of numpy arrays; the sampler also records each member's stream position
    (0-based) in :attr:`positions`.

    Args:
        growth: expected working-set size per unit of ln(1 + n).
        max_size: expected size at which the sampler switches to fixed-size Algorithm R.
        seed: RNG seed.
    """

    def __init__(self, growth: float = 32.0, max_size: int = 4096, seed: int | None = 0) -> None:
        if not (isinstance(growth, (int, float)) and growth > 0 and math.isfinite(growth)):
            raise ValueError(f"growth must be a positive finite number, got {growth!r}")
        if not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"max_size must be a positive int, got {max_size!r}")
        self.growth = float(growth)
        self.max_size = max_size
        self.rng = np.random.default_rng(seed)
        self.n_seen = 0
        self.items: np.ndarray | None = None  # (S, ...) members
        self.positions = np.empty(0, dtype=np.int64)  # (S,) stream positions of members
        # First n with growth * ln(1 + n) >= max_size: from there on Algorithm R.
        ratio = max_size / self.growth
        self.switch_at = math.ceil(math.expm1(ratio)) if ratio < 43 else 2**62

    def __len__(self) -> int:
        return len(self.positions)

    def inclusion_probability(self, n: int) -> float:
        """p(n): the probability that any given one of n items is in the sample."""
        if n <= 0:
            return 1.0
        return min(1.0, self.growth * math.log1p(n) / n)

    def expected_size(self, n: int) -> float:
        """Expected sample size after n items (constant once Algorithm R takes over)."""
        m = min(n, self.switch_at)
        return m * self.inclusion_probability(m)

    def add(self, items: np.ndarray) -> None:
        """Feed the next ``len(items)`` stream items (rows) to the sampler."""
        items = np.asarray(items)
        if items.ndim == 0:
            raise ValueError("items must have a leading item axis")
        if self.items is None:
            self.items = np.empty((0, *items.shape[1:]), dtype=items.dtype)
        elif items.shape[1:] != self.items.shape[1:]:
            raise ValueError(
                f"items must have shape (N, {self.items.shape[1:]}), got {items.shape}"
            )
        start = 0
        if self.n_seen < self.switch_at:  # Bernoulli phase, up to the switch point
            take = min(len(items), self.switch_at - self.n_seen)
            self._bernoulli(items[:take])
            start = take
        if start < len(items):
            self._algorithm_r(items[start:])

    def _bernoulli(self, items: np.ndarray) -> None:
        assert self.items is not None
        n0, n1 = self.n_seen, self.n_seen + len(items)
        p0, p1 = self.inclusion_probability(n0), self.inclusion_probability(n1)
        survive = self.rng.random(len(self.positions)) < p1 / p0  # old members
        enter = np.flatnonzero(self.rng.random(len(items)) < p1)  # new items
        self.items = np.concatenate([self.items[survive], items[enter]])
        self.positions = np.concatenate([self.positions[survive], n0 + enter])
        self.n_seen = n1

    def _algorithm_r(self, items: np.ndarray) -> None:
        assert self.items is not None
        size = len(self.positions)
        m = self.n_seen + 1 + np.arange(len(items))  # 1-based stream index of each item
        accept = np.flatnonzero(self.rng.random(len(items)) < size / m)
        if size:
            slots = self.rng.integers(0, size, size=len(accept))
            for j, slot in zip(accept.tolist(), slots.tolist()):  # in stream order
                self.items[slot] = items[j]
                self.positions[slot] = self.n_seen + j
        self.n_seen += len(items)

    def state(self) -> dict[str, Any]:
        """JSON-serialisable counters and RNG state (the members are saved separately)."""
        return {
            "growth": self.growth,
            "max_size": self.max_size,
            "n_seen": self.n_seen,
            "rng": self.rng.bit_generator.state,
        }


class StreamingCompressor(nn.Module):
    """Reservoir of token embeddings plus a tied linear autoencoder fitted on it.

    Args:
        dim: embedding dimension D.
        latent_dim: code dimension (< D).
        growth: reservoir growth, expected size ``growth * ln(1 + n)`` after n embeddings.
        max_size: reservoir size cap (see :class:`ReservoirSampler`).
        seed: RNG seed of the reservoir.

    Example:
        >>> comp = StreamingCompressor(128, 32)
        >>> comp.observe(token_embeddings)          # (B, L, 128) or (N, 128), any device
        >>> comp.fit(steps=200)
        >>> z = comp.encode(x)                      # (..., 32)
        >>> err = comp.reconstruction_error(x)      # relative squared error
    """

    mean: torch.Tensor  # (D,) buffer: reservoir mean at the last fit

    def __init__(
        self,
        dim: int,
        latent_dim: int,
        *,
        growth: float = 32.0,
        max_size: int = 4096,
        seed: int | None = 0,
    ) -> None:
        super().__init__()
        if not isinstance(dim, int) or dim < 2:
            raise ValueError(f"dim must be an int >= 2, got {dim!r}")
        if not isinstance(latent_dim, int) or not 1 <= latent_dim < dim:
            raise ValueError(f"latent_dim must be an int in [1, {dim}), got {latent_dim!r}")
        self.dim = dim
        self.latent_dim = latent_dim
        self.sampler = ReservoirSampler(growth, max_size, seed)
        gen = torch.Generator().manual_seed(0 if seed is None else seed)
        q, _ = torch.linalg.qr(
            torch.randn(dim, latent_dim, generator=gen)
        )  # (D, r) orthonormal cols
        self.weight = nn.Parameter(q.T.contiguous())  # W: (r, D), orthonormal rows
        self.register_buffer("mean", torch.zeros(dim))
        self.fitted = False
        self.frozen = False

    # ------------------------------------------------------------------ reservoir
    @property
    def n_seen(self) -> int:
        return self.sampler.n_seen

    @property
    def working_set_size(self) -> int:
        return len(self.sampler)

    @property
    def reservoir(self) -> torch.Tensor:
        """(S, D) float32 reservoir members (CPU)."""
        items = self.sampler.items
        return torch.from_numpy(items.copy()) if items is not None else torch.empty(0, self.dim)

    @torch.no_grad()
    def observe(self, x: torch.Tensor | np.ndarray) -> None:
        """Feed embeddings (..., D) to the reservoir, in order (last axis is D)."""
        arr = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if arr.ndim == 0 or arr.shape[-1] != self.dim:
            raise ValueError(
                f"embeddings must have shape (..., {self.dim}), got {tuple(arr.shape)}"
            )
        self.sampler.add(check_vectors(arr.reshape(-1, self.dim), self.dim))

    # ------------------------------------------------------------------ autoencoder
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., D) -> codes (..., latent_dim)."""
        return (x - self.mean.to(x.dtype)) @ self.weight.to(x.dtype).T

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (..., latent_dim) -> x_hat (..., D)."""
        return z @ self.weight.to(z.dtype) + self.mean.to(z.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def fit(
        self, steps: int = 200, *, lr: float = 0.05, batch_size: int = 512, seed: int = 0
    ) -> float:
        """Fit the autoencoder on the reservoir with Adam. Returns the final reconstruction error.

        The tied loss ``|x - W^T W (x - mu) - mu|^2`` is minimised by W whose rows are an
        orthonormal basis of the top principal subspace; after training, W is replaced by
        its polar factor so that the rows are exactly orthonormal.

        Raises RuntimeError when frozen (codes made with the current weights are in use) or
        when the reservoir is empty.
        """
        if self.frozen:
            raise RuntimeError("compressor is frozen: stored codes depend on its current weights")
        data = self.reservoir.to(self.mean.device)
        if len(data) == 0:
            raise RuntimeError("reservoir is empty: observe() some embeddings before fit()")
        self.mean.copy_(data.mean(0))
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam([self.weight], lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                idx = torch.randint(len(data), (min(batch_size, len(data)),), generator=gen)
                xb = data[idx.to(data.device)]  # (b, D)
                loss = (self(xb) - xb).pow(2).sum(-1).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        with torch.no_grad():  # nearest matrix with orthonormal rows (polar factor): U V^T
            u, _, vh = torch.linalg.svd(self.weight, full_matrices=False)
            self.weight.copy_(u @ vh)
        self.fitted = True
        return self.reconstruction_error()

    @torch.no_grad()
    def reconstruction_error(self, x: torch.Tensor | None = None) -> float:
        """Relative squared error ``sum |x - x_hat|^2 / sum |x - mean(x)|^2`` (default: reservoir)."""
        data = self.reservoir if x is None else x.reshape(-1, self.dim)
        data = data.to(self.mean.device, torch.float32)
        if len(data) == 0:
            return float("nan")
        num = (self(data) - data).pow(2).sum()
        den = (data - data.mean(0)).pow(2).sum().clamp_min(1e-12)
        return float(num / den)

    def freeze(self) -> None:
        """Forbid further :meth:`fit` calls (called once codes are stored somewhere)."""
        self.frozen = True

    # ------------------------------------------------------------------ persistence
    def to_files(self) -> dict[str, bytes]:
        """Weights and reservoir (safetensors) and counters (JSON), as file name -> bytes."""
        tensors = {
            f"module.{k}": v.detach().cpu().contiguous() for k, v in self.state_dict().items()
        }
        tensors["reservoir"] = self.reservoir.contiguous()
        tensors["positions"] = torch.from_numpy(self.sampler.positions.copy())
        meta = {
            "dim": self.dim,
            "latent_dim": self.latent_dim,
            "fitted": self.fitted,
            "frozen": self.frozen,
            "sampler": self.sampler.state(),
        }
        return {
            "compressor.safetensors": safetensors.torch.save(tensors),
            "compressor.json": json.dumps(meta).encode(),
        }

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> StreamingCompressor:
        """Inverse of :meth:`to_files`."""
        meta = json.loads(files["compressor.json"])
        s = meta["sampler"]
        comp = cls(meta["dim"], meta["latent_dim"], growth=s["growth"], max_size=s["max_size"])
        t = safetensors.torch.load(files["compressor.safetensors"])
        comp.load_state_dict({k[7:]: v for k, v in t.items() if k.startswith("module.")})
        comp.sampler.items = t["reservoir"].numpy().astype(np.float32)
        comp.sampler.positions = t["positions"].numpy().astype(np.int64)
        comp.sampler.n_seen = int(s["n_seen"])
        comp.sampler.rng.bit_generator.state = s["rng"]
        comp.fitted = bool(meta["fitted"])
        comp.frozen = bool(meta["frozen"])
        return comp

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write :meth:`to_files` into ``directory``, each file replaced atomically."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for name, data in self.to_files().items():
            atomic_write_bytes(d / name, data)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> StreamingCompressor:
        d = Path(directory)
        return cls.from_files(
            {n: (d / n).read_bytes() for n in ("compressor.json", "compressor.safetensors")}
        )
