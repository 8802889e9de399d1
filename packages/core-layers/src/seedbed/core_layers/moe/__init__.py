"""Sparse mixture-of-experts: routers, auxiliary losses, sort-based grouped dispatch, MoELayer."""

from seedbed.core_layers.moe.dispatch import grouped_mm_supported, moe_dispatch
from seedbed.core_layers.moe.layer import MoELayer
from seedbed.core_layers.moe.losses import load_balancing_loss, router_z_loss
from seedbed.core_layers.moe.naive import naive_moe
from seedbed.core_layers.moe.routers import (
    HashRouter,
    Router,
    RouterOutput,
    SwitchRouter,
    capacity_keep_mask,
)

__all__ = [
    "HashRouter",
    "MoELayer",
    "Router",
    "RouterOutput",
    "SwitchRouter",
    "capacity_keep_mask",
    "grouped_mm_supported",
    "load_balancing_loss",
    "moe_dispatch",
    "naive_moe",
    "router_z_loss",
]
