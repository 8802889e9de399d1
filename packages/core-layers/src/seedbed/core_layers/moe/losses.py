"""Auxiliary router losses for mixture-of-experts layers.

- Switch load-balancing loss (Fedus et al. 2021, Eq. 4-6): N·Σ_i f_i·P_i, where f_i is the
  fraction of tokens dispatched to expert i (all k choices counted, as in HF transformers'
  ``load_balancing_loss_func``) and P_i the mean router probability of expert i. It equals k
  at perfect balance. The caller multiplies it by α (``MoELayer.balance_weight``).
- Router z-loss (Zoph et al. 2022, ST-MoE Eq. 5): mean over tokens of logsumexp(logits)².
"""

from __future__ import annotations

import torch

__all__ = ["load_balancing_loss", "router_z_loss"]


def load_balancing_loss(
    probs: torch.Tensor, expert_index: torch.Tensor, num_experts: int
) -> torch.Tensor:
    """Switch Transformer load-balancing loss N·Σ f_i·P_i (without the α factor).

    Args:
        probs: (T, E) router probabilities (softmax over experts).
        expert_index: (T, k) chosen experts (before any capacity dropping).
        num_experts: E.

    Returns:
        Scalar tensor, differentiable through ``probs``.
    """
    if probs.dim() != 2 or probs.shape[-1] != num_experts:
        raise ValueError(f"probs must have shape (T, {num_experts}), got {tuple(probs.shape)}")
    if expert_index.dim() != 2 or expert_index.shape[0] != probs.shape[0]:
        raise ValueError(
            f"expert_index must have shape ({probs.shape[0]}, k), got {tuple(expert_index.shape)}"
        )
    t = probs.shape[0]
    if t == 0:
        return probs.new_zeros(())
    counts = torch.bincount(expert_index.reshape(-1), minlength=num_experts)  # (E,)
    f = counts.to(probs.dtype) / t  # fraction of tokens per expert (sums to k)
    p = probs.mean(0)  # (E,)
    return num_experts * (f * p).sum()


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE router z-loss: mean_t (logsumexp_i logits[t, i])².

    Args:
        logits: (T, E) router logits.

    Returns:
        Scalar fp32 tensor.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (T, E), got {tuple(logits.shape)}")
    if logits.shape[0] == 0:
        return logits.new_zeros((), dtype=torch.float32)
    return torch.logsumexp(logits.float(), dim=-1).square().mean()
