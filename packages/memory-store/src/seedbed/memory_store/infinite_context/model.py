"""InfiniteContextModel: RWKV recurrence + kNN memory attention over an unbounded history.

Byte-level language model read chunk by chunk (seed 002, "Example Infinite Context
Training")::

    bytes (B, L) -> embedding -> RWKVLoop x memory_after          (recurrent state carried)
                 -> + LinkSlotAttention(LN(h), top-k memories)    (local chunk + memory)
                 -> RWKVLoop x (n_layers - memory_after) -> LN -> logits (B, L, 256)

Each batch row is its own stream with its own :class:`HierarchicalMemory`. After a chunk,
the attention layer's inputs (one vector per token, detached) are written to that stream's
memory, with the token and the token that followed it as metadata, so later chunks can
retrieve them; the memory's cold tier is compressed by a :class:`StreamingCompressor`.
A retrieved memory's value is its value projection plus an embedding of the token that
followed it (``next_embed``): attending to contexts like the current one brings back what came
next in them, as in kNN-LM (Khandelwal et al., 2020). Only past tokens are ever stored. Compute and state per chunk stay constant
however long the stream gets; only the memory grows (up to ``max_memory`` entries, oldest
dropped first).

With ``use_memory=False`` the same model (same parameters) runs with no retrieval: the
attention layer is local only. That is the ablation of ``seedbed-train-infinite --ablate-memory``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from seedbed.memory_store.compression import StreamingCompressor
from seedbed.memory_store.hierarchical_memory import HierarchicalMemory, MemorySearchResult
from seedbed.memory_store.link_slot_attention import LinkSlotAttention
from seedbed.sequence_models import RWKVLoop, RWKVState

__all__ = ["InfiniteContextConfig", "InfiniteContextModel", "ModelState"]

ModelState = list[RWKVState]  # one state per RWKV block


@dataclass
class InfiniteContextConfig:
    vocab_size: int = 256  # byte-level
    d_model: int = 128  # model width D
    n_layers: int = 2  # RWKV blocks
    n_heads: int = 4  # LinkSlotAttention heads
    memory_after: int = 1  # the memory attention sits after this many RWKV blocks
    chunk_size: int = 64  # tokens per training chunk
    top_k: int = 16  # memories retrieved per token
    use_memory: bool = True  # False: no retrieval (local attention only), same parameters
    hot_capacity: int = 2048  # exact recent memories per stream
    latent_dim: int | None = 32  # compressor code size of the cold tier; None: uncompressed
    growth: float = 64.0  # compressor reservoir growth (expected size growth * ln(1 + n))
    max_memory: int | None = 32768  # entries per stream; oldest dropped beyond (None: no cap)
    memory_backend: str = "memory"  # cold tier: "memory" (VectorStore) or "faiss"
    memory_kind: str = "flat"  # FAISS index kind when memory_backend == "faiss"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "chunk_size", "top_k"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads must divide d_model={self.d_model}, got {self.n_heads}")
        if not isinstance(self.memory_after, int) or not 0 <= self.memory_after <= self.n_layers:
            raise ValueError(
                f"memory_after must be in [0, n_layers={self.n_layers}], got {self.memory_after!r}"
            )
        if not isinstance(self.hot_capacity, int) or self.hot_capacity < 0:
            raise ValueError(f"hot_capacity must be an int >= 0, got {self.hot_capacity!r}")
        if self.latent_dim is not None and not (
            isinstance(self.latent_dim, int) and 1 <= self.latent_dim < self.d_model
        ):
            raise ValueError(
                f"latent_dim must be None or an int in [1, d_model), got {self.latent_dim!r}"
            )
        if self.max_memory is not None and (
            not isinstance(self.max_memory, int) or self.max_memory < 1
        ):
            raise ValueError(f"max_memory must be None or a positive int, got {self.max_memory!r}")
        if self.memory_backend not in ("memory", "faiss"):
            raise ValueError(
                f"memory_backend must be 'memory' or 'faiss', got {self.memory_backend!r}"
            )
        if not (isinstance(self.growth, (int, float)) and self.growth > 0):
            raise ValueError(f"growth must be > 0, got {self.growth!r}")


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class InfiniteContextModel(nn.Module):
    """RWKVLoop stack with a LinkSlotAttention memory layer and per-stream memories.

    Example:
        >>> model = InfiniteContextModel(InfiniteContextConfig(d_model=64))
        >>> model.reset_memory(batch_size=2)
        >>> state = model.init_state(2)
        >>> logits, state, info = model(tokens[:, :64], state)   # writes the chunk to memory
    """

    def __init__(self, cfg: InfiniteContextConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d)
        self.blocks = nn.ModuleList(
            RWKVLoop(d, layer_id=i, n_layers=cfg.n_layers) for i in range(cfg.n_layers)
        )
        self.attn_norm = nn.LayerNorm(d)
        self.attn = LinkSlotAttention(d, cfg.n_heads, top_k=cfg.top_k)
        self.next_embed = nn.Embedding(cfg.vocab_size, d)  # value payload: the token that followed
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.vocab_size, bias=False)
        for emb in (self.embed.weight, self.next_embed.weight, self.head.weight):
            nn.init.normal_(emb, std=0.02)
        self.memories: list[HierarchicalMemory] = []
        self._oldest: list[int] = []  # smallest id still in each stream's memory
        # Per stream, the last position of the previous chunk: (vector, token), stored once
        # the token that follows it (the next chunk's first) is known.
        self._pending: list[tuple[np.ndarray, int] | None] = []

    @property
    def _loops(self) -> list[RWKVLoop]:
        return cast(list[RWKVLoop], list(self.blocks))

    # ------------------------------------------------------------------ memory
    def new_memory(self) -> HierarchicalMemory:
        """An empty memory configured as ``cfg`` says."""
        cfg = self.cfg
        comp = (
            StreamingCompressor(cfg.d_model, cfg.latent_dim, growth=cfg.growth)
            if cfg.latent_dim
            else None
        )
        return HierarchicalMemory(
            cfg.d_model,
            metric="dot",
            compressor=comp,
            hot_capacity=cfg.hot_capacity,
            backend=cfg.memory_backend,
            kind=cfg.memory_kind,
        )

    def reset_memory(self, batch_size: int) -> None:
        """Fresh, empty memories for ``batch_size`` streams."""
        for mem in self.memories:
            mem.close()
        self.memories = [self.new_memory() for _ in range(batch_size)]
        self._oldest = [0] * batch_size
        self._pending = [None] * batch_size

    def set_memories(
        self, memories: list[HierarchicalMemory], pending: dict[str, torch.Tensor] | None = None
    ) -> None:
        """Install memories (e.g. loaded from a checkpoint), one per stream, and the entries
        still waiting for their next token (:meth:`pending_tensors`)."""
        self.memories = list(memories)
        self._oldest = [int(m.ids.min()) if len(m) else 0 for m in self.memories]
        self._pending = [None] * len(self.memories)
        if pending:
            for i, (has, vec, tok) in enumerate(
                zip(pending["has"].tolist(), pending["vec"].numpy(), pending["tok"].tolist())
            ):
                if has:
                    self._pending[i] = (vec.astype(np.float32), int(tok))

    def pending_tensors(self) -> dict[str, torch.Tensor]:
        """The per-stream pending entries as tensors (for checkpoints)."""
        n, d = len(self._pending), self.cfg.d_model
        vec = torch.zeros(n, d)
        tok = torch.zeros(n, dtype=torch.long)
        has = torch.zeros(n, dtype=torch.bool)
        for i, p in enumerate(self._pending):
            if p is not None:
                vec[i], tok[i], has[i] = torch.from_numpy(p[0]), p[1], True
        return {"vec": vec, "tok": tok, "has": has}

    @property
    def memory_size(self) -> int:
        """Entries stored over all streams."""
        return sum(len(m) for m in self.memories)

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> ModelState:
        dev = device if device is not None else self.embed.weight.device
        return [blk.init_state(batch_size, device=dev) for blk in self._loops]

    # ------------------------------------------------------------------ forward
    def _retrieve(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """u: (B, L, D) retrieval queries -> vectors (B, L, K, D), mask (B, L, K) and the token
        that followed each retrieved entry (B, L, K) (-1: empty slot)."""
        b, l, d = u.shape
        k = self.cfg.top_k
        vecs = u.new_zeros(b, l, k, d)
        mask = torch.zeros(b, l, k, dtype=torch.bool, device=u.device)
        nexts = torch.full((b, l, k), -1, dtype=torch.long)
        for i, mem in enumerate(self.memories):
            if len(mem) == 0:
                continue
            res = cast(MemorySearchResult, mem.search(u[i].detach(), k))  # sync: blocks
            vecs[i] = res.vectors.to(u.dtype)
            mask[i] = res.ids >= 0
            nexts[i] = torch.tensor(
                [[m["next"] if m is not None else -1 for m in row] for row in res.metadata]
            )
        return vecs, mask, nexts.to(u.device)

    def _write(self, h: torch.Tensor, tokens: torch.Tensor) -> None:
        """Store h (B, L, D), one stream per memory, with metadata ``tok`` (the token at that
        position) and ``next`` (the token after it). The chunk's last position waits in
        ``_pending`` until the next chunk supplies its next token."""
        hv = h.detach().float().cpu().numpy()
        tv = tokens.cpu().tolist()
        cap = self.cfg.max_memory
        for i, mem in enumerate(self.memories):
            vecs, meta = hv[i][:-1], [{"tok": t, "next": n} for t, n in zip(tv[i][:-1], tv[i][1:])]
            pend = self._pending[i]
            if pend is not None:
                vecs = np.concatenate([pend[0][None], vecs])
                meta = [{"tok": pend[1], "next": tv[i][0]}, *meta]
            self._pending[i] = (hv[i][-1].copy(), tv[i][-1])
            if len(vecs) == 0:
                continue
            mem.add(vecs, metadata=meta)
            if cap is not None and len(mem) > cap:
                drop = len(mem) - cap
                mem.delete(np.arange(self._oldest[i], self._oldest[i] + drop))
                self._oldest[i] += drop

    def forward(
        self, tokens: torch.Tensor, state: ModelState | None = None, *, write_memory: bool = True
    ) -> tuple[torch.Tensor, ModelState, dict[str, Any]]:
        """One chunk.

        Args:
            tokens: (B, L) int64 bytes.
            state: per-block RWKV states from the previous chunk (None: stream start).
            write_memory: store this chunk in the memories afterwards.

        Returns:
            ``(logits (B, L, V), new_state, info)`` where ``info["retrieved_next"]`` is
            (B, L, K) int64: for each retrieved memory, the token that followed it (-1: none).
        """
        if tokens.ndim != 2:
            raise ValueError(f"tokens must have shape (B, L), got {tuple(tokens.shape)}")
        b = tokens.shape[0]
        use_mem = self.cfg.use_memory
        if use_mem and len(self.memories) != b:
            raise ValueError(
                f"{len(self.memories)} memories for a batch of {b}: call reset_memory({b})"
            )
        if use_mem and _loop_running():
            raise RuntimeError(
                "InfiniteContextModel blocks on its memories; call it outside a running event "
                "loop (e.g. through asyncio.to_thread)"
            )
        if state is None:
            state = self.init_state(b, tokens.device)
        h = self.embed(tokens)  # (B, L, D)
        new_state: ModelState = []
        for i, blk in enumerate(self._loops):
            if i == self.cfg.memory_after:
                h, info = self._memory_layer(h, tokens, use_mem, write_memory)
            h, s = blk.stream(h, state[i])
            new_state.append(s)
        if self.cfg.memory_after == len(self.blocks):
            h, info = self._memory_layer(h, tokens, use_mem, write_memory)
        return self.head(self.ln_f(h)), new_state, info

    def _memory_layer(
        self, h: torch.Tensor, tokens: torch.Tensor, use_mem: bool, write: bool
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        x = self.attn_norm(h)  # (B, L, D): what is attended to and stored
        b, l, _ = x.shape
        if use_mem:
            vecs, mask, nexts = self._retrieve(self.attn.memory_queries(x))
            values = self.next_embed(nexts.clamp_min(0)) * mask[..., None].to(x.dtype)
            out = self.attn(x, vecs, mask, values)
            if write:
                self._write(x, tokens)
        else:
            nexts = torch.full((b, l, self.cfg.top_k), -1, dtype=torch.long, device=h.device)
            out = self.attn(x)
        return h + out, {"retrieved_next": nexts}

    # ------------------------------------------------------------------ state (de)serialisation
    @staticmethod
    def state_tensors(state: ModelState) -> dict[str, torch.Tensor]:
        """Flatten a model state for safetensors: ``"{block}.{field}"`` -> tensor."""
        return {
            f"{i}.{k}": v.detach().contiguous()
            for i, s in enumerate(state)
            for k, v in s.tensors().items()
        }

    def state_from_tensors(self, tensors: dict[str, torch.Tensor]) -> ModelState:
        out: ModelState = []
        for i in range(len(self.blocks)):
            fields = {
                f.name: tensors[f"{i}.{f.name}"]
                for f in dataclasses.fields(RWKVState)
                if f"{i}.{f.name}" in tensors
            }
            out.append(RWKVState(**fields))
        return out
