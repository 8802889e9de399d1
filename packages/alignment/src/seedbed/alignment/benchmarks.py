"""Benchmarks that alignment registers under ``seedbed.benchmarks``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from seedbed.alignment.preference import bradley_terry_loss
from seedbed.core_layers.benchmarking import Metric

__all__ = ["BENCHMARKS", "reward_model_recovery"]


def reward_model_recovery(full: bool = False) -> list[dict[str, Any]]:
    """Fit a linear Bradley-Terry reward model to preferences sampled from a known reward.

    Reports held-out pairwise accuracy of the fit over that of the true reward (1.0 = as good
    as the truth) and the cosine between the learned and true reward directions.
    """
    n, d, steps = (20_000, 64, 600) if full else (4_000, 32, 300)
    g = torch.Generator().manual_seed(0)
    w_true = torch.randn(d, generator=g)
    a, b = torch.randn(2, n, d, generator=g).unbind(0)
    p_a_wins = torch.sigmoid(a @ w_true - b @ w_true)
    a_wins = torch.rand(n, generator=g) < p_a_wins
    chosen = torch.where(a_wins[:, None], a, b)
    rejected = torch.where(a_wins[:, None], b, a)
    n_train = int(0.8 * n)
    w = torch.zeros(d, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        loss = bradley_terry_loss(chosen[:n_train] @ w, rejected[:n_train] @ w)
        loss.backward()
        opt.step()
    c, r = chosen[n_train:], rejected[n_train:]
    acc_fit = ((c @ w.detach()) > (r @ w.detach())).float().mean().item()
    acc_true = ((c @ w_true) > (r @ w_true)).float().mean().item()
    cos = torch.nn.functional.cosine_similarity(w.detach(), w_true, dim=0).item()
    note = f"N={n} pairs, D={d}, {steps} Adam steps, 20% held out"
    return [
        Metric(
            "heldout_acc_over_true_reward", acc_fit / acc_true, "", 0.97, True, note=note
        ).as_dict(),
        Metric("reward_direction_cosine", cos, "", 0.95, True, note=note).as_dict(),
    ]


BENCHMARKS: list[Callable[..., list[dict[str, Any]]]] = [reward_model_recovery]
