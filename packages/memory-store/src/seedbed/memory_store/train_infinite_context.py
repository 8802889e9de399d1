"""``seedbed-train-infinite``: chunk-wise infinite-context training (seed 002's
``scripts/train_infinite_context.py``).

Trains an :class:`InfiniteContextModel` on the standard library's sources (bytes) or on
``--data FILE``, evaluates on the held-out tail after each epoch (loss, perplexity, retrieval
hit rate, memory size) and optionally checkpoints (model + memories) under
``--checkpoint-dir/stepN``. ``--resume DIR`` continues from a checkpoint. ``--ablate-memory``
trains the same model twice from the same initialisation, on the same chunks, with memory and
without (``use_memory=False``: identical parameters, no retrieval), and prints both
perplexities.

    seedbed-train-infinite --steps 300 --ablate-memory
    python -m seedbed.memory_store.train_infinite_context --data notes.txt --epochs 2
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from seedbed.core_layers import get_device
from seedbed.memory_store.infinite_context.data import load_corpus, split_corpus
from seedbed.memory_store.infinite_context.model import InfiniteContextConfig, InfiniteContextModel
from seedbed.memory_store.infinite_context.trainer import (
    ChunkWiseRetrainer,
    _describe,
    evaluate,
    load_checkpoint,
    save_checkpoint,
)

__all__ = ["main", "parse_args", "run"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="seedbed-train-infinite", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="text file (default: the standard library's .py sources)",
    )
    p.add_argument(
        "--max-bytes",
        type=int,
        default=4_000_000,
        help="read at most this many bytes of the corpus",
    )
    p.add_argument("--eval-fraction", type=float, default=0.1, help="held-out tail of the corpus")
    p.add_argument(
        "--epochs", type=int, default=1, help="evaluate (and checkpoint) after each epoch"
    )
    p.add_argument("--steps", type=int, default=300, help="training chunks per epoch")
    p.add_argument("--batch-size", type=int, default=8, help="parallel streams")
    p.add_argument("--chunk-size", type=int, default=64, help="tokens per chunk")
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-layers", type=int, default=2, help="RWKV blocks")
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--top-k", type=int, default=16, help="memories retrieved per token")
    p.add_argument(
        "--hot-capacity", type=int, default=2048, help="exact recent memories per stream"
    )
    p.add_argument(
        "--latent-dim",
        type=int,
        default=32,
        help="compressed code size of the cold tier (0: no compression)",
    )
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-batch-size", type=int, default=4)
    p.add_argument(
        "--eval-chunks",
        type=int,
        default=200,
        help="evaluation chunks per stream (0: the whole held-out tail)",
    )
    p.add_argument(
        "--checkpoint-dir", type=Path, default=None, help="save DIR/stepN after each epoch"
    )
    p.add_argument("--resume", type=Path, default=None, help="continue from this checkpoint")
    p.add_argument(
        "--ablate-memory",
        action="store_true",
        help="also train without memory and print both perplexities",
    )
    p.add_argument(
        "--plot", type=Path, default=None, help="write the training-loss curves to this PNG"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: best available)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = p.parse_args(argv)
    for name in ("epochs", "steps", "batch_size", "chunk_size", "eval_batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.ablate_memory and args.resume is not None:
        p.error("--ablate-memory trains from scratch; it cannot be combined with --resume")
    return args


def _config(args: argparse.Namespace, use_memory: bool) -> InfiniteContextConfig:
    return InfiniteContextConfig(
        d_model=args.d_model,
        n_layers=args.n_layers,
        n_heads=args.n_heads,
        chunk_size=args.chunk_size,
        top_k=args.top_k,
        use_memory=use_memory,
        hot_capacity=args.hot_capacity,
        latent_dim=args.latent_dim or None,
    )


def _train_one(
    args: argparse.Namespace,
    train: np.ndarray,
    held_out: np.ndarray,
    use_memory: bool,
    device: torch.device,
) -> tuple[dict[str, float], list[float]]:
    label = "memory" if use_memory else "no memory"
    if args.resume is not None:
        trainer = load_checkpoint(args.resume, train, device=device)
        print(
            f"[{label}] resumed from {args.resume} at step {trainer.step} with {trainer.model.memory_size} memories"
        )
    else:
        torch.manual_seed(args.seed)
        model = InfiniteContextModel(_config(args, use_memory)).to(device)
        trainer = ChunkWiseRetrainer(model, train, batch_size=args.batch_size, lr=args.lr)
    n_params = sum(p.numel() for p in trainer.model.parameters())
    print(
        f"[{label}] {n_params:,} parameters, {len(train):,} training bytes, {len(held_out):,} held out"
    )
    metrics: dict[str, float] = {}
    for epoch in range(args.epochs):
        trainer.train(args.steps, progress=not args.no_progress, desc=f"{label} epoch {epoch + 1}")
        metrics = evaluate(
            trainer.model,
            held_out,
            batch_size=args.eval_batch_size,
            max_chunks=args.eval_chunks or None,
            progress=not args.no_progress,
        )
        print(f"[{label}] epoch {epoch + 1} step {trainer.step}: {_describe(metrics)}")
        if args.checkpoint_dir is not None:
            where = (
                args.checkpoint_dir
                / ("memory" if use_memory else "no_memory")
                / f"step{trainer.step}"
            )
            save_checkpoint(where, trainer)
            print(f"[{label}] checkpoint: {where}")
    return metrics, trainer.losses


def _plot(path: Path, curves: dict[str, list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, losses in curves.items():
        k = max(1, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(len(smooth)) + k, smooth, label=label)
    ax.set_xlabel("chunk (optimizer step)")
    ax.set_ylabel("training loss (nats/byte)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Run the CLI with parsed ``args``; returns the final metrics per variant."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    data = load_corpus(args.data, args.max_bytes)
    train, held_out = split_corpus(data, args.eval_fraction)
    source = str(args.data) if args.data else "standard library sources"
    print(f"corpus: {source}, {len(data):,} bytes; device {device}")
    results: dict[str, dict[str, float]] = {}
    curves: dict[str, list[float]] = {}
    results["memory"], curves["with memory"] = _train_one(args, train, held_out, True, device)
    if args.ablate_memory:
        results["no_memory"], curves["without memory"] = _train_one(
            args, train, held_out, False, device
        )
        pm, pn = results["memory"]["perplexity"], results["no_memory"]["perplexity"]
        print(f"perplexity with memory:    {pm:.4f}")
        print(f"perplexity without memory: {pn:.4f}")
        print(
            f"memory {'helps' if pm < pn else 'does not help'}: ratio {pm / pn:.4f} (same parameters, same {args.epochs * args.steps} steps)"
        )
    if args.plot is not None:
        _plot(args.plot, curves)
        print(f"loss curves: {args.plot}")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    return 0 if all(math.isfinite(r["perplexity"]) for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
