"""Token routers for sparse mixture-of-experts layers (seed 002, S-1).

Two routers share one output type, :class:`RouterOutput`:

- :class:`HashRouter`: a fixed hash of token ids (Roller et al. 2021, "Hash Layers For Large
  Sparse Models"), or a locality-sensitive hash of the features when no ids are given. At most
  two experts per token, no parameters.
- :class:`SwitchRouter`: a learned linear gate with top-k selection, renormalised gates and an
  optional per-expert capacity with token dropping (Fedus et al. 2021, "Switch Transformers").

Both expose :meth:`Router.expert_utilization` (tokens per expert) and
:meth:`Router.load_balance_std` (the standard deviation of those counts across experts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seedbed.core_layers.moe.losses import load_balancing_loss

__all__ = ["HashRouter", "Router", "RouterOutput", "SwitchRouter", "capacity_keep_mask"]

_M32 = 0xFFFFFFFF
_MIX = 0x45D9F3B  # odd 27-bit multiplier: products of 32-bit values stay below 2**59 (no int64 overflow)


def _mix32(h: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer avalanche hash on int64 tensors holding values in [0, 2**32)."""
    h = ((h >> 16) ^ h) * _MIX & _M32
    h = ((h >> 16) ^ h) * _MIX & _M32
    return (h >> 16) ^ h


@dataclass
class RouterOutput:
    """Routing decision for T tokens (flattened batch) over E experts.

    Attributes:
        expert_index: (T, k) int64, the chosen experts per token, best first.
        gates: (T, k) float32 combine weights; zero where the assignment was dropped.
        keep: (T, k) bool, False where an assignment was dropped by the capacity limit.
        logits: (T, E) router logits, or None for routers without a learned gate.
        probs: (T, E) float32 softmax of the logits, or None.
        num_experts: E.
    """

    expert_index: torch.Tensor
    gates: torch.Tensor
    keep: torch.Tensor
    logits: torch.Tensor | None
    probs: torch.Tensor | None
    num_experts: int

    @property
    def num_dropped(self) -> int:
        """Number of (token, slot) assignments dropped by the capacity limit."""
        return int((~self.keep).sum())


def capacity_keep_mask(expert_index: torch.Tensor, num_experts: int, capacity: int) -> torch.Tensor:
    """Which assignments fit into per-expert buffers of ``capacity`` tokens.

    Priority follows Switch/GShard: every token's first choice is served before any second
    choice, and within one slot earlier tokens come first. Sort-based, no per-expert loop.

    Args:
        expert_index: (T, k) int64 expert ids.
        num_experts: E.
        capacity: tokens each expert accepts (>= 0).

    Returns:
        (T, k) bool keep mask.
    """
    t, k = expert_index.shape
    flat = expert_index.t().reshape(-1)  # (k*T,) slot-major: priority order
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=num_experts)
    starts = torch.cumsum(counts, 0) - counts  # (E,)
    sorted_e = flat[order]
    pos_sorted = torch.arange(flat.numel(), device=flat.device) - starts[sorted_e]
    pos = torch.empty_like(pos_sorted)
    pos[order] = pos_sorted  # position of each assignment inside its expert's queue
    return (pos < capacity).reshape(k, t).t()


class Router(nn.Module):
    """Base class: holds ``num_experts`` and ``top_k`` and the load statistics."""

    def __init__(self, num_experts: int, top_k: int) -> None:
        super().__init__()
        if not isinstance(num_experts, int) or num_experts < 1:
            raise ValueError(f"num_experts must be a positive int, got {num_experts!r}")
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive int, got {top_k!r}")
        if top_k > num_experts:
            raise ValueError(f"top_k must be <= num_experts ({num_experts}), got top_k={top_k}")
        self.num_experts = num_experts
        self.top_k = top_k

    def _assignments(self, assign: RouterOutput | torch.Tensor) -> torch.Tensor:
        if isinstance(assign, RouterOutput):
            return assign.expert_index[assign.keep]
        if not isinstance(assign, torch.Tensor) or assign.is_floating_point():
            raise TypeError(
                f"expected a RouterOutput or an integer tensor of expert ids, got {type(assign).__name__}"
            )
        return assign.reshape(-1)

    def expert_utilization(self, assign: RouterOutput | torch.Tensor) -> torch.Tensor:
        """Tokens routed to each expert (dropped assignments not counted).

        Args:
            assign: a :class:`RouterOutput` or an integer tensor of expert ids of any shape.

        Returns:
            (E,) int64 counts.
        """
        ids = self._assignments(assign)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_experts):
            raise ValueError(
                f"expert ids must lie in [0, {self.num_experts}), got range "
                f"[{int(ids.min())}, {int(ids.max())}]"
            )
        return torch.bincount(ids, minlength=self.num_experts)

    def load_balance_std(self, assign: RouterOutput | torch.Tensor) -> float:
        """Population standard deviation of :meth:`expert_utilization` across the experts."""
        counts = self.expert_utilization(assign).double()
        return float(counts.std(unbiased=False))

    def balance_loss(self, out: RouterOutput) -> torch.Tensor:
        """Switch load-balancing loss N·Σ f_i·P_i for this routing (zero without a learned gate)."""
        if out.probs is None:
            return out.gates.new_zeros(())
        return load_balancing_loss(out.probs, out.expert_index, self.num_experts)


class HashRouter(Router):
    """Fixed, parameter-free routing by a hash of the token id (Hash Layers).

    With token ids, expert = mix32(id) mod E; a second expert (``top_k=2``) is drawn from a second
    hash among the remaining E-1 experts, so the two are always distinct. A token id therefore
    always reaches the same expert(s), and on random ids the load is multinomial (balanced in
    expectation). Without ids, the features are hashed with a fixed random-hyperplane
    (sign) projection, so similar features share experts. Gates are 1/k.

    Args:
        num_experts: E.
        top_k: 1 or 2 experts per token.
        seed: selects one fixed hash function out of a family.
        num_planes: hyperplanes for the feature (no-ids) hash.
    """

    def __init__(self, num_experts: int, top_k: int = 1, *, seed: int = 0, num_planes: int = 16):
        super().__init__(num_experts, top_k)
        if top_k > 2:
            raise ValueError(
                f"HashRouter routes to at most two experts per token, got top_k={top_k}"
            )
        if not isinstance(num_planes, int) or not 1 <= num_planes <= 62:
            raise ValueError(f"num_planes must be an int in [1, 62], got {num_planes!r}")
        self.seed = int(seed)
        self.num_planes = num_planes
        self._planes: dict[tuple[int, torch.device], torch.Tensor] = {}

    def _hyperplanes(self, d: int, device: torch.device) -> torch.Tensor:
        key = (d, device)
        if key not in self._planes:
            g = torch.Generator().manual_seed(0x5EED + self.seed)
            self._planes[key] = torch.randn(d, self.num_planes, generator=g).to(device)
        return self._planes[key]  # (D, P)

    def hash_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """(T,) integer ids -> (T, k) expert ids; a pure function of (id, seed)."""
        if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
            raise ValueError(
                f"HashRouter needs integer token ids (torch.int64/int32/...), got dtype {ids.dtype}"
            )
        v = ids.to(torch.int64)
        v = (v ^ (v >> 32)) & _M32  # fold 64 -> 32 bits
        v = v ^ ((self.seed * 0x9E3779B9) & _M32)
        h1 = _mix32(v)
        e1 = h1 % self.num_experts
        if self.top_k == 1:
            return e1[:, None]
        h2 = _mix32(h1 ^ 0x5BD1E995)
        e2 = (e1 + 1 + h2 % (self.num_experts - 1)) % self.num_experts  # distinct from e1
        return torch.stack([e1, e2], dim=-1)

    def forward(self, x: torch.Tensor, ids: torch.Tensor | None = None) -> RouterOutput:
        """Route tokens.

        Args:
            x: (..., D) features, or an integer tensor of token ids (...,) (then used as ids).
            ids: optional (...,) integer token ids matching ``x.shape[:-1]``.

        Returns:
            :class:`RouterOutput` over the T = prod(leading dims) tokens.
        """
        if ids is None and not x.is_floating_point():
            ids, feats = x, None
        else:
            feats = x
        if ids is not None:
            if feats is not None and tuple(ids.shape) != tuple(feats.shape[:-1]):
                raise ValueError(
                    f"ids must have shape {tuple(feats.shape[:-1])} (x.shape[:-1]), got {tuple(ids.shape)}"
                )
            index = self.hash_ids(ids.reshape(-1))
        else:
            assert feats is not None
            x2 = feats.reshape(-1, feats.shape[-1])  # (T, D)
            planes = self._hyperplanes(x2.shape[-1], x2.device)
            bits = (x2.float() @ planes > 0).to(torch.int64)  # (T, P)
            code = (bits << torch.arange(self.num_planes, device=x2.device)).sum(-1)  # (T,)
            index = self.hash_ids(code)
        t = index.shape[0]
        gate_dtype = feats.dtype if feats is not None else torch.float32
        gates = torch.full((t, self.top_k), 1.0 / self.top_k, dtype=gate_dtype, device=index.device)
        keep = torch.ones_like(index, dtype=torch.bool)
        return RouterOutput(index, gates, keep, None, None, self.num_experts)

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, top_k={self.top_k}, seed={self.seed}"


class SwitchRouter(Router):
    """Learned top-k router with renormalised gates and capacity-based token dropping.

    logits = x Wᵀ (W: (E, D), HF Mixtral's ``gate.weight``), probs = softmax(logits) in fp32,
    the k largest probabilities are the gates, renormalised to sum to one when ``normalize``.
    With ``capacity_factor`` c each expert accepts C = ceil(c·T·k/E) assignments per call;
    the rest are dropped (gate 0), first choices before second choices, earlier tokens first.

    Args:
        d_model: D.
        num_experts: E.
        top_k: experts per token.
        capacity_factor: None for no limit, else > 0.
        jitter: multiplicative input noise U(1-j, 1+j) applied to the router input in training.
        normalize: renormalise the top-k gates; default True for top_k > 1 and False for
            top_k = 1 (the Switch Transformer keeps p_max so the gate still gets gradient).
    """

    def __init__(
        self,
        d_model: int,
        num_experts: int,
        top_k: int = 1,
        capacity_factor: float | None = None,
        jitter: float = 0.0,
        *,
        normalize: bool | None = None,
    ) -> None:
        super().__init__(num_experts, top_k)
        if not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        if capacity_factor is not None and not capacity_factor > 0:
            raise ValueError(f"capacity_factor must be > 0 or None, got {capacity_factor!r}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter!r}")
        self.d_model = d_model
        self.capacity_factor = capacity_factor
        self.jitter = float(jitter)
        self.normalize = top_k > 1 if normalize is None else bool(normalize)
        self.gate = nn.Linear(d_model, num_experts, bias=False)  # weight (E, D)

    def capacity(self, num_tokens: int) -> int | None:
        """Per-expert capacity C = ceil(c·T·k/E) for T tokens, or None without a limit."""
        if self.capacity_factor is None:
            return None
        return math.ceil(self.capacity_factor * num_tokens * self.top_k / self.num_experts)

    def forward(self, x: torch.Tensor, ids: torch.Tensor | None = None) -> RouterOutput:
        """Route tokens.

        Args:
            x: (..., D) features.
            ids: ignored (accepted so routers are interchangeable).

        Returns:
            :class:`RouterOutput` over the T = prod(leading dims) tokens.
        """
        if x.shape[-1] != self.d_model:
            raise ValueError(
                f"x must have last dim d_model={self.d_model}, got shape {tuple(x.shape)}"
            )
        x2 = x.reshape(-1, self.d_model)  # (T, D)
        if self.training and self.jitter > 0:
            x2 = x2 * torch.empty_like(x2).uniform_(1.0 - self.jitter, 1.0 + self.jitter)
        logits = F.linear(x2, self.gate.weight)  # (T, E)
        probs = torch.softmax(logits.float(), dim=-1)  # (T, E)
        top_p, index = torch.topk(probs, self.top_k, dim=-1)  # (T, k)
        gates = top_p / top_p.sum(-1, keepdim=True) if self.normalize else top_p
        cap = self.capacity(x2.shape[0])
        if cap is None:
            keep = torch.ones_like(index, dtype=torch.bool)
        else:
            keep = capacity_keep_mask(index, self.num_experts, cap)
            gates = gates * keep
        return RouterOutput(index, gates, keep, logits, probs, self.num_experts)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, num_experts={self.num_experts}, top_k={self.top_k}, "
            f"capacity_factor={self.capacity_factor}, jitter={self.jitter}, normalize={self.normalize}"
        )
