"""Training: the Trainer loop, its config, checkpoints, LR schedule and metrics."""

from seedbed.core_layers.training.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from seedbed.core_layers.training.metrics import BenchmarkResults, MetricsLogger, TrainingMetrics
from seedbed.core_layers.training.schedule import lr_multiplier
from seedbed.core_layers.training.trainer import Trainer, TrainerConfig

__all__ = [
    "BenchmarkResults",
    "MetricsLogger",
    "Trainer",
    "TrainerConfig",
    "TrainingMetrics",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "lr_multiplier",
    "save_checkpoint",
]
