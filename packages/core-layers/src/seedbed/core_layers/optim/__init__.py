"""Nested Learning optimizers: Delta Gradient Descent and Multi-scale Momentum Muon (M3)."""

from seedbed.core_layers.optim.dgd import DeltaGradientDescent
from seedbed.core_layers.optim.m3 import M3Optimizer
from seedbed.core_layers.optim.newton_schulz import CUBIC, MUON, newton_schulz

__all__ = ["CUBIC", "MUON", "DeltaGradientDescent", "M3Optimizer", "newton_schulz"]
