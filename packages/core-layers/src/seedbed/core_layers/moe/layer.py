"""Sparse mixture-of-experts feed-forward layer (seed 002, S-1).

E SwiGLU experts (Mixtral/Qwen-MoE style) behind a :class:`HashRouter` or :class:`SwitchRouter`.
The forward returns ``(output, aux_loss)`` with

    aux_loss = balance_weight · balance_loss() + z_loss_weight · router_z_loss(logits).

Expert weights use HF transformers' ``MixtralExperts`` layout, so a Mixtral sparse-MoE block's
weights load as they are: ``gate_up_proj`` (E, 2F, D) with gate rows first, ``down_proj``
(E, D, F), and ``router.gate.weight`` (E, D).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from seedbed.core_layers.moe.dispatch import DISPATCH_BACKENDS, moe_dispatch
from seedbed.core_layers.moe.losses import router_z_loss
from seedbed.core_layers.moe.routers import HashRouter, Router, RouterOutput, SwitchRouter

__all__ = ["MoELayer"]


class MoELayer(nn.Module):
    """Mixture of SwiGLU experts with sort-based grouped dispatch.

    Args:
        d_model: D.
        d_ff: F, hidden size of each expert.
        num_experts: E.
        router: ``"switch"``, ``"hash"`` or a :class:`Router` instance (then ``top_k``,
            ``capacity_factor``, ``jitter`` are taken from it and must be left at their defaults).
        top_k: experts per token.
        capacity_factor: per-expert capacity factor for the switch router (None: no dropping).
        jitter: router input jitter in training (switch router).
        balance_weight: α multiplying :meth:`balance_loss` in the returned aux loss.
        z_loss_weight: weight of the router z-loss in the returned aux loss.
        dispatch: ``"auto"``, ``"grouped_mm"`` or ``"batched"`` (see :mod:`.dispatch`).
        hash_seed: seed of the hash function when ``router="hash"``.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        num_experts: int,
        *,
        router: str | Router = "switch",
        top_k: int = 2,
        capacity_factor: float | None = None,
        jitter: float = 0.0,
        balance_weight: float = 0.01,
        z_loss_weight: float = 0.0,
        dispatch: str = "auto",
        hash_seed: int = 0,
    ) -> None:
        super().__init__()
        for name, val in (("d_model", d_model), ("d_ff", d_ff), ("num_experts", num_experts)):
            if not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if balance_weight < 0 or z_loss_weight < 0:
            raise ValueError(
                f"balance_weight and z_loss_weight must be >= 0, got {balance_weight!r}, {z_loss_weight!r}"
            )
        if dispatch not in DISPATCH_BACKENDS:  # device/dtype support is checked at forward time
            raise ValueError(f"dispatch must be one of {DISPATCH_BACKENDS}, got {dispatch!r}")
        self.router: Router
        if isinstance(router, Router):
            if router.num_experts != num_experts:
                raise ValueError(
                    f"router.num_experts ({router.num_experts}) must equal num_experts ({num_experts})"
                )
            if (top_k, capacity_factor, jitter) != (2, None, 0.0):
                raise ValueError(
                    "pass top_k/capacity_factor/jitter to the router instance, not to MoELayer"
                )
            self.router = router
        elif router == "switch":
            self.router = SwitchRouter(d_model, num_experts, top_k, capacity_factor, jitter)
        elif router == "hash":
            if capacity_factor is not None or jitter:
                raise ValueError(
                    "the hash router has no capacity_factor or jitter; leave them unset"
                )
            self.router = HashRouter(num_experts, top_k, seed=hash_seed)
        else:
            raise ValueError(
                f"router must be 'switch', 'hash' or a Router instance, got {router!r}"
            )
        self.d_model, self.d_ff, self.num_experts = d_model, d_ff, num_experts
        self.top_k = self.router.top_k
        self.balance_weight = float(balance_weight)
        self.z_loss_weight = float(z_loss_weight)
        self.dispatch = dispatch
        self.gate_up_proj = nn.Parameter(torch.empty(num_experts, 2 * d_ff, d_model))  # (E, 2F, D)
        self.down_proj = nn.Parameter(torch.empty(num_experts, d_model, d_ff))  # (E, D, F)
        self.last_router_output: RouterOutput | None = None
        self._last_balance: torch.Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Linear's default init per expert: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        nn.init.uniform_(
            self.gate_up_proj, -1 / math.sqrt(self.d_model), 1 / math.sqrt(self.d_model)
        )
        nn.init.uniform_(self.down_proj, -1 / math.sqrt(self.d_ff), 1 / math.sqrt(self.d_ff))

    def forward(
        self, x: torch.Tensor, ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Route and run the experts.

        Args:
            x: (..., D).
            ids: optional (...,) integer token ids for the hash router.

        Returns:
            ``(y, aux_loss)``: y (..., D); aux_loss a scalar tensor. Tokens whose assignments were
            all dropped by the capacity limit get y = 0, i.e. they pass through the residual
            connection of the enclosing block unchanged.
        """
        if x.shape[-1] != self.d_model:
            raise ValueError(
                f"x must have last dim d_model={self.d_model}, got shape {tuple(x.shape)}"
            )
        shape = x.shape
        x2 = x.reshape(-1, self.d_model)  # (T, D)
        flat_ids = ids.reshape(-1) if ids is not None else None
        r = self.router(x2, ids=flat_ids)
        y = moe_dispatch(
            x2, r.expert_index, r.gates, r.keep, self.gate_up_proj, self.down_proj, self.dispatch
        )
        balance = self.router.balance_loss(r)
        aux = self.balance_weight * balance
        if self.z_loss_weight and r.logits is not None:
            aux = aux + self.z_loss_weight * router_z_loss(r.logits)
        self.last_router_output = r
        self._last_balance = balance
        return y.reshape(shape), aux

    def balance_loss(self) -> torch.Tensor:
        """The router's load-balancing loss N·Σ f_i·P_i from the most recent forward call."""
        if self._last_balance is None:
            raise RuntimeError("balance_loss() needs a forward call first")
        return self._last_balance

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_ff={self.d_ff}, num_experts={self.num_experts}, "
            f"top_k={self.top_k}, balance_weight={self.balance_weight}, "
            f"z_loss_weight={self.z_loss_weight}, dispatch={self.dispatch!r}"
        )
