"""LinkSlotAttention: kNN-memory attention in the manner of Memorizing Transformers (C-7).

Each token attends twice:

* **locally**, causal attention over the current chunk (``seedbed.core_layers.attention``);
* **to its memories**, attention over the top-k entries retrieved for it from an external
  memory (one slot set per token), with keys and values projected from the stored vectors.

Per head h, a learned gate ``g_h = sigmoid(gate_h)`` mixes the two:
``o_h = g_h * memory_h + (1 - g_h) * local_h`` (Wu et al., 2022, "Memorizing Transformers").
A token with no retrieved memory uses the local result alone.

What is stored: the layer's *input* vectors x (one per token), not keys and values. Keys
and values of retrieved entries are recomputed with the current projections, so they never go
stale as training moves ``k_proj``/``v_proj``, and gradients reach both. Retrieval is still
exact top-k by the attention score summed over heads: ``sum_h q_h . k_h(x_m) =
(q @ W_k) . x_m + q . b_k``, so searching the memory with :meth:`memory_queries`
(``u = q @ W_k``) by inner product ranks the entries as the heads' summed scores would.
"""

from __future__ import annotations

import torch
from torch import nn

from seedbed.core_layers import attention

__all__ = ["LinkSlotAttention"]


class LinkSlotAttention(nn.Module):
    """Local causal attention + top-k memory attention, mixed by a learned per-head gate.

    Args:
        d_model: model dimension D.
        n_heads: heads H (D % H == 0).
        top_k: memories retrieved per token (used by callers that fill ``mem``).
        gate_init: initial gate logit (sigmoid(0) = 0.5: equal mix).
        bias: biases in the projections.

    Shapes:
        x: (B, L, D); mem: (B, L, K, D) retrieved vectors; mem_mask: (B, L, K) bool, True
        where a slot holds a real memory; mem_values: optional (B, L, K, D) extra value
        input per slot. Output (B, L, D).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        top_k: int = 16,
        gate_init: float = 0.0,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        if not isinstance(n_heads, int) or n_heads < 1 or d_model % n_heads:
            raise ValueError(
                f"n_heads must be a positive divisor of d_model={d_model}, got {n_heads!r}"
            )
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive int, got {top_k!r}")
        self.d_model, self.n_heads, self.top_k = d_model, n_heads, top_k
        self.head_dim = d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.o_proj = nn.Linear(d_model, d_model, bias=bias)
        self.gate = nn.Parameter(torch.full((n_heads,), float(gate_init)))  # (H,) gate logits

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.n_heads, self.head_dim))  # (..., H, Dh)

    def memory_queries(self, x: torch.Tensor) -> torch.Tensor:
        """Retrieval queries u (B, L, D): ``u . x_m`` = summed head scores (up to a per-query
        constant) for a stored vector x_m. Search the memory with these by inner product."""
        return self.q_proj(x) @ self.k_proj.weight

    def forward(
        self,
        x: torch.Tensor,
        mem: torch.Tensor | None = None,
        mem_mask: torch.Tensor | None = None,
        mem_values: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, L, D); mem: (B, L, K, D) retrieved vectors; mem_mask: (B, L, K) bool;
        mem_values: optional (B, L, K, D) added to the memories' value projections (e.g. an
        embedding of the token that followed each stored vector). Returns (B, L, D)."""
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must have shape (B, L, {self.d_model}), got {tuple(x.shape)}")
        b, l, _ = x.shape
        q = self._heads(self.q_proj(x))  # (B, L, H, Dh)
        k = self._heads(self.k_proj(x))
        v = self._heads(self.v_proj(x))
        out = attention(q, k, v, causal=True)  # (B, L, H, Dh)
        if mem is not None:
            if mem.ndim != 4 or mem.shape[:2] != (b, l) or mem.shape[-1] != self.d_model:
                raise ValueError(
                    f"mem must have shape ({b}, {l}, K, {self.d_model}), got {tuple(mem.shape)}"
                )
            n_mem = mem.shape[2]
            if mem_mask is None:
                mem_mask = torch.ones(b, l, n_mem, dtype=torch.bool, device=x.device)
            elif mem_mask.shape != (b, l, n_mem) or mem_mask.dtype != torch.bool:
                raise ValueError(
                    f"mem_mask must be bool of shape ({b}, {l}, {n_mem}), got {mem_mask.dtype} {tuple(mem_mask.shape)}"
                )
            mem = mem.to(x.dtype)
            mk = self._heads(self.k_proj(mem)).flatten(0, 1)  # (B*L, K, H, Dh)
            mv_full = self.v_proj(mem)  # (B, L, K, D)
            if mem_values is not None:
                if mem_values.shape != mem.shape:
                    raise ValueError(
                        f"mem_values must have shape {tuple(mem.shape)}, got {tuple(mem_values.shape)}"
                    )
                mv_full = mv_full + mem_values.to(x.dtype)
            mv = self._heads(mv_full).flatten(0, 1)
            mq = q.flatten(0, 1).unsqueeze(1)  # (B*L, 1, H, Dh): each token its own slot set
            mask = mem_mask.flatten(0, 1)[:, None, None, :]  # (B*L, 1, 1, K)
            mem_out = attention(mq, mk, mv, attn_mask=mask).view(b, l, self.n_heads, self.head_dim)
            g = torch.sigmoid(self.gate).to(x.dtype)[:, None]  # (H, 1)
            g = g * mem_mask.any(-1)[..., None, None].to(x.dtype)  # no memory -> local only
            out = g * mem_out + (1 - g) * out
        return self.o_proj(out.flatten(-2))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, top_k={self.top_k}"
