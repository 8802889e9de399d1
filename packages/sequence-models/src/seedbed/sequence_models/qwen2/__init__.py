"""Qwen2-style decoder: config, model, HF-format checkpoints, tokenizers."""

from seedbed.sequence_models.qwen2.checkpoint import (
    CheckpointError,
    expected_shapes,
    hf_to_ours,
    load_pretrained,
    ours_to_hf,
    save_pretrained,
)
from seedbed.sequence_models.qwen2.config import Qwen2Config
from seedbed.sequence_models.qwen2.model import Qwen2DecoderLayer, Qwen2Model
from seedbed.sequence_models.qwen2.tokenizer import (
    ByteTokenizer,
    HFTokenizer,
    StreamDecoder,
    Tokenizer,
    load_tokenizer,
)

__all__ = [
    "ByteTokenizer",
    "CheckpointError",
    "HFTokenizer",
    "Qwen2Config",
    "Qwen2DecoderLayer",
    "Qwen2Model",
    "StreamDecoder",
    "Tokenizer",
    "expected_shapes",
    "hf_to_ours",
    "load_pretrained",
    "load_tokenizer",
    "ours_to_hf",
    "save_pretrained",
]
