"""Token generation: sampling rules, batched/streamed generation with a KV cache."""

from seedbed.sequence_models.generation.generate import (
    GenerationOutput,
    StopStringMatcher,
    StreamEvent,
    generate,
    stream_generate,
)
from seedbed.sequence_models.generation.sampling import SamplingParams, sample_next

__all__ = [
    "GenerationOutput",
    "SamplingParams",
    "StopStringMatcher",
    "StreamEvent",
    "generate",
    "sample_next",
    "stream_generate",
]
