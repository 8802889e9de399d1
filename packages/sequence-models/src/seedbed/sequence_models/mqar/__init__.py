"""MQAR (Zoology's multi-query associative recall): data, training, CLI ``seedbed-mqar``."""

from seedbed.sequence_models.mqar.data import MQARConfig, MQARData, multiquery_ar
from seedbed.sequence_models.mqar.train import (
    MQARResult,
    TrainConfig,
    evaluate,
    load_mqar_model,
    train_mqar,
)

__all__ = [
    "MQARConfig",
    "MQARData",
    "MQARResult",
    "TrainConfig",
    "evaluate",
    "load_mqar_model",
    "multiquery_ar",
    "train_mqar",
]
