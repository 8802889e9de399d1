"""Trains a tiny model with Trainer; run plainly (1 process) or under torchrun (DDP).

Usage: python ddp_worker.py OUT.json CKPT_DIR
The global batch is 16 rows per step; under DDP each of W ranks gets 16 / W rows, split into
2 micro-batches. Rank 0 writes the loss curve and final weights to OUT.json.
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

from seedbed.core_layers import Trainer, TrainerConfig

STEPS, GLOBAL_BATCH = 6, 16


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1 = nn.Linear(6, 16)
        self.l2 = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.tanh(self.l1(x)))


def main(out: str, ckpt_dir: str) -> None:
    torch.manual_seed(0)
    model = TinyNet()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(STEPS * GLOBAL_BATCH, 6, generator=g)
    y = torch.sin(x.sum(-1, keepdim=True))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    per_rank = GLOBAL_BATCH // world
    accum = 2 if world > 1 else 1
    micro = per_rank // accum
    data = []
    for s in range(STEPS):
        lo = s * GLOBAL_BATCH + rank * per_rank
        for a in range(accum):
            rows = slice(lo + a * micro, lo + (a + 1) * micro)
            data.append((x[rows], y[rows]))
    cfg = TrainerConfig(
        max_steps=STEPS,
        lr=1e-2,
        grad_accum_steps=accum,
        progress=False,
        device="cpu",  # gloo on CPU, also where CUDA is present
        checkpoint_dir=ckpt_dir,
        save_every=3,
    )
    with Trainer(model, cfg, loss_fn=lambda m, b: F.mse_loss(m(b[0]), b[1])) as t:
        hist = t.fit(data)
        if t.rank == 0:
            with open(out, "w") as fh:
                json.dump(
                    {
                        "world_size": t.world_size,
                        "losses": [m.loss for m in hist],
                        "params": torch.cat(
                            [p.detach().flatten() for p in model.parameters()]
                        ).tolist(),
                    },
                    fh,
                )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
