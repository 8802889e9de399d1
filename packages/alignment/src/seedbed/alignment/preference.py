"""Pairwise preference losses: the Bradley-Terry reward-model loss and DPO.

Bradley-Terry: P(chosen > rejected) = sigmoid(r_c - r_r); the loss is its negative log.
DPO (Rafailov et al., 2023, Eq. 7):
    -log sigmoid(beta * [(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bradley_terry_loss", "dpo_loss"]


def _check_pair(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    for name, t in ((name_a, a), (name_b, b)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be floating point, got dtype {t.dtype}")
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood that ``chosen`` beats ``rejected``.

    Args:
        chosen: (N,) rewards of the preferred responses.
        rejected: (N,) rewards of the other responses.

    Returns:
        Scalar loss, ``mean(softplus(rejected - chosen))`` (= -log sigmoid(chosen - rejected)).
    """
    _check_pair("chosen", chosen, "rejected", rejected)
    return F.softplus(rejected - chosen).mean()


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """Direct Preference Optimization loss on sequence log-probabilities.

    Args:
        policy_chosen: (N,) log pi(y_w | x) summed over response tokens.
        policy_rejected: (N,) log pi(y_l | x).
        ref_chosen: (N,) log pi_ref(y_w | x).
        ref_rejected: (N,) log pi_ref(y_l | x).
        beta: inverse temperature of the implicit reward, > 0.

    Returns:
        Scalar mean loss.
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    _check_pair("policy_chosen", policy_chosen, "policy_rejected", policy_rejected)
    _check_pair("ref_chosen", ref_chosen, "ref_rejected", ref_rejected)
    _check_pair("policy_chosen", policy_chosen, "ref_chosen", ref_chosen)
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return bradley_terry_loss(beta * margin, torch.zeros_like(margin))
