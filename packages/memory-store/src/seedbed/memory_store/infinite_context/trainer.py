"""Chunk-wise training, evaluation and checkpoints of :class:`InfiniteContextModel`.

``ChunkWiseRetrainer`` reads B parallel byte streams in consecutive chunks (64 tokens by
default), one optimizer step per chunk. The RWKV state is carried from chunk to chunk with
its graph cut (truncated BPTT), and every chunk is written to its stream's memory, so memory
and compute per step stay constant while the usable context keeps growing.

``save_checkpoint`` writes the model, the optimizer, the recurrent state, the stream
positions and every stream's memory as one atomically committed version; ``load_checkpoint``
rebuilds a trainer that continues exactly where the saved one stopped, memory included.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from seedbed.memory_store._atomic import commit_version, current_version_dir, write_file_durable
from seedbed.memory_store.hierarchical_memory import HierarchicalMemory
from seedbed.memory_store.infinite_context.data import ChunkStreams
from seedbed.memory_store.infinite_context.model import (
    InfiniteContextConfig,
    InfiniteContextModel,
    ModelState,
)

__all__ = ["ChunkWiseRetrainer", "evaluate", "load_checkpoint", "save_checkpoint"]

_FORMAT = "seedbed.InfiniteContextCheckpoint/1"


def _fingerprint(data: np.ndarray) -> str:
    return f"{len(data)}:{zlib.crc32(np.ascontiguousarray(data).tobytes()):08x}"


class ChunkWiseRetrainer:
    """Train on B parallel streams, one chunk (``model.cfg.chunk_size`` tokens) per step.

    Args:
        model: the model (its memories are reset for ``batch_size`` streams).
        data: uint8 corpus.
        batch_size: parallel streams B.
        lr: AdamW learning rate (linear warm-up over ``warmup`` steps, then constant).
        weight_decay: AdamW weight decay.
        grad_clip: max gradient norm.
        warmup: warm-up steps.
    """

    def __init__(
        self,
        model: InfiniteContextModel,
        data: np.ndarray,
        *,
        batch_size: int = 8,
        lr: float = 2e-3,
        weight_decay: float = 0.01,
        grad_clip: float = 1.0,
        warmup: int = 20,
    ) -> None:
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if not (isinstance(grad_clip, (int, float)) and grad_clip > 0):
            raise ValueError(f"grad_clip must be > 0, got {grad_clip!r}")
        if not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
        self.model = model
        self.data = np.asarray(data, dtype=np.uint8)
        self.streams = ChunkStreams(self.data, batch_size, model.cfg.chunk_size)
        self.batch_size = batch_size
        self.hparams = {
            "batch_size": batch_size,
            "lr": float(lr),
            "weight_decay": float(weight_decay),
            "grad_clip": float(grad_clip),
            "warmup": warmup,
        }
        self.opt = torch.optim.AdamW(
            model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=weight_decay
        )
        self.state: ModelState | None = None
        self.step = 0
        self.losses: list[float] = []
        model.reset_memory(batch_size)

    @property
    def device(self) -> torch.device:
        return self.model.embed.weight.device

    def train_step(self) -> float:
        """One chunk: forward (retrieving from and writing to memory), backward, update."""
        self.model.train()
        x, y = (t.to(self.device) for t in self.streams.next())  # (B, L) each
        logits, state, _ = self.model(x, self.state)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.hparams["grad_clip"])
        warm = self.hparams["warmup"]
        scale = min(1.0, (self.step + 1) / warm) if warm else 1.0
        for g in self.opt.param_groups:
            g["lr"] = self.hparams["lr"] * scale
        self.opt.step()
        self.state = [s.detach() for s in state]
        self.step += 1
        value = float(loss.detach())
        self.losses.append(value)
        return value

    def train(self, steps: int, *, progress: bool = True, desc: str = "train") -> list[float]:
        """Run ``steps`` chunks with a tqdm progress bar; returns their losses."""
        if not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be an int >= 0, got {steps!r}")
        out = []
        bar = tqdm(range(steps), desc=desc, disable=not progress, dynamic_ncols=True)
        for _ in bar:
            out.append(self.train_step())
            bar.set_postfix(loss=f"{out[-1]:.3f}", mem=self.model.memory_size)
        return out


@torch.no_grad()
def evaluate(
    model: InfiniteContextModel,
    data: np.ndarray,
    *,
    batch_size: int = 4,
    max_chunks: int | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Loss, perplexity, retrieval hit rate and memory size on held-out bytes.

    The held-out text is read as ``batch_size`` streams, chunk by chunk, each with a fresh
    memory filled from its own past (the training memories are put back afterwards), so the
    memory holds only text the model has already read.

    Returns:
        ``loss`` (nats/byte), ``perplexity`` (exp loss), ``retrieval_hit_rate`` (fraction of
        positions with memories where some retrieved entry was followed by the byte that
        follows here; NaN without memory), ``memory_size`` (entries over all streams at the
        end) and ``tokens``.
    """
    cfg = model.cfg
    data = np.asarray(data, dtype=np.uint8)
    streams = ChunkStreams(data, batch_size, cfg.chunk_size)
    n_chunks = max(1, len(data) // (batch_size * cfg.chunk_size))
    if max_chunks is not None:
        n_chunks = min(n_chunks, max_chunks)
    saved = (model.memories, model._oldest, model._pending)
    was_training = model.training
    model.eval()
    model.reset_memory(batch_size)
    device = model.embed.weight.device
    state = None
    total, count, hits, with_mem = 0.0, 0, 0, 0
    try:
        for _ in tqdm(range(n_chunks), desc="eval", disable=not progress, dynamic_ncols=True):
            x, y = (t.to(device) for t in streams.next())
            logits, state, info = model(x, state)
            total += float(F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum"))
            count += y.numel()
            toks = info["retrieved_next"]  # (B, L, K)
            has = (toks >= 0).any(-1)
            with_mem += int(has.sum())
            hits += int(((toks == y[..., None]).any(-1) & has).sum())
        memory_size = model.memory_size
    finally:
        for mem in model.memories:
            mem.close()
        model.memories, model._oldest, model._pending = saved
        model.train(was_training)
    loss = total / count
    return {
        "loss": loss,
        "perplexity": math.exp(loss),
        "retrieval_hit_rate": hits / with_mem if with_mem else float("nan"),
        "memory_size": float(memory_size),
        "tokens": float(count),
    }


def save_checkpoint(path: str | os.PathLike[str], trainer: ChunkWiseRetrainer) -> Path:
    """Save model, optimizer, recurrent state, stream positions and memories atomically.

    ``path`` is a directory; the new version becomes visible in one rename (a crash mid-save
    leaves the previous checkpoint). Returns the committed version directory.
    """
    model = trainer.model
    meta = {
        "format": _FORMAT,
        "config": dataclasses.asdict(model.cfg),
        "hparams": trainer.hparams,
        "step": trainer.step,
        "positions": trainer.streams.positions.tolist(),
        "losses": trainer.losses,
        "data": _fingerprint(trainer.data),
        "has_state": trainer.state is not None,
        "n_memories": len(model.memories),
    }
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    state = (
        {k: v.cpu() for k, v in model.state_tensors(trainer.state).items()}
        if trainer.state is not None
        else {}
    )

    def write(d: Path) -> None:
        write_file_durable(d / "model.safetensors", safetensors.torch.save(weights))
        write_file_durable(d / "state.safetensors", safetensors.torch.save(state))
        pending = {k: v.contiguous() for k, v in model.pending_tensors().items()}
        write_file_durable(d / "pending.safetensors", safetensors.torch.save(pending))
        tmp = d / "optimizer.pt"
        torch.save(trainer.opt.state_dict(), tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        for i, mem in enumerate(model.memories):
            mem.save_sync(d / "memory" / str(i))
        write_file_durable(d / "trainer.json", json.dumps(meta).encode())

    return commit_version(path, write)


def load_checkpoint(
    path: str | os.PathLike[str], data: np.ndarray, *, device: str | torch.device = "cpu"
) -> ChunkWiseRetrainer:
    """Rebuild the trainer saved at ``path`` (``data`` must be the same corpus)."""
    d = current_version_dir(path)
    meta = json.loads((d / "trainer.json").read_text())
    if meta.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a {_FORMAT} checkpoint")
    data = np.asarray(data, dtype=np.uint8)
    if meta["data"] != _fingerprint(data):
        raise ValueError(
            f"checkpoint was trained on corpus {meta['data']}, got {_fingerprint(data)}"
        )
    model = InfiniteContextModel(InfiniteContextConfig(**meta["config"])).to(device)
    model.load_state_dict(
        safetensors.torch.load_file(str(d / "model.safetensors"), device=str(device))
    )
    hp = meta["hparams"]
    trainer = ChunkWiseRetrainer(
        model,
        data,
        batch_size=hp["batch_size"],
        lr=hp["lr"],
        weight_decay=hp["weight_decay"],
        grad_clip=hp["grad_clip"],
        warmup=hp["warmup"],
    )
    trainer.opt.load_state_dict(
        torch.load(d / "optimizer.pt", map_location=device, weights_only=True)
    )
    if meta["has_state"]:
        tensors = safetensors.torch.load_file(str(d / "state.safetensors"), device=str(device))
        trainer.state = model.state_from_tensors(tensors)
    model.set_memories(
        pending=safetensors.torch.load_file(str(d / "pending.safetensors")),
        memories=[
            HierarchicalMemory.load_sync(d / "memory" / str(i)) for i in range(meta["n_memories"])
        ],
    )
    trainer.streams.positions = np.array(meta["positions"], dtype=np.int64)
    trainer.step = int(meta["step"])
    trainer.losses = [float(v) for v in meta["losses"]]
    return trainer


def _describe(metrics: dict[str, Any]) -> str:
    hr = metrics["retrieval_hit_rate"]
    return (
        f"loss {metrics['loss']:.4f}  perplexity {metrics['perplexity']:.3f}  "
        f"retrieval hit rate {'n/a' if math.isnan(hr) else f'{hr:.3f}'}  "
        f"memory size {int(metrics['memory_size'])}"
    )
