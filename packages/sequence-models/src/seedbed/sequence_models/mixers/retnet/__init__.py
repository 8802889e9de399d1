"""RetNet retention: naive / chunk / recurrent forms and ``MultiScaleRetention``."""

from seedbed.sequence_models.mixers.retnet.chunk import chunk_retention
from seedbed.sequence_models.mixers.retnet.layer import MultiScaleRetention, RetentionState
from seedbed.sequence_models.mixers.retnet.naive import naive_retention, retention_log_decay
from seedbed.sequence_models.mixers.retnet.recurrent import recurrent_retention, retention_step

__all__ = [
    "MultiScaleRetention",
    "RetentionState",
    "chunk_retention",
    "naive_retention",
    "recurrent_retention",
    "retention_log_decay",
    "retention_step",
]
