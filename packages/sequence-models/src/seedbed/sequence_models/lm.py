"""A small language model that stacks any sequence mixer (used by MQAR and later issues).

Pre-norm residual blocks, nanoGPT-style:

    x = x + mixer(RMSNorm(x));   x = x + SwiGLU(RMSNorm(x))

with core-layers' :class:`RMSNorm` and :class:`SwiGLU`, a token embedding, a final RMSNorm and
a (tied) LM head. The model inherits the mixer contract: ``stream`` over chunks with the
per-layer states, or ``step`` one token at a time, gives the same logits as ``forward``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from seedbed.core_layers import RMSNorm, SwiGLU
from seedbed.sequence_models.mixers.base import MixerState, SequenceMixer
from seedbed.sequence_models.mixers.registry import MIXERS, build_mixer

__all__ = ["LMConfig", "LMState", "MixerLM"]


@dataclass
class LMConfig:
    """Configuration of :class:`MixerLM`."""

    vocab_size: int  # number of token ids
    d_model: int = 128  # residual width D
    n_layers: int = 2  # number of (mixer, MLP) blocks
    mixer: str = "attention"  # a key of seedbed.sequence_models.MIXERS
    mixer_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the mixer
    d_ffn: int | None = None  # SwiGLU hidden size; default 4 D (None) ; 0 = no MLP sublayer
    norm_eps: float = 1e-6  # RMSNorm epsilon
    max_position_embeddings: int = 0  # > 0: learned absolute positions for that many tokens
    #   (Zoology's attention baseline); 0: none, positions come from the mixers alone
    tie_embeddings: bool = True  # share the embedding and LM-head weights
    embed_std: float = 0.02  # init std of the token embeddings (GPT-2's and Zoology's 0.02)
    logit_scale: float = 1.0  # multiplier of the LM head's logits (D**-0.5 suits a tied head
    #   over unit-variance embeddings, embed_std = 1)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"LMConfig.{name} must be a positive int, got {val!r}")
        if self.mixer not in MIXERS:
            raise ValueError(f"LMConfig.mixer must be one of {sorted(MIXERS)}, got {self.mixer!r}")
        if self.d_ffn is None:
            self.d_ffn = 4 * self.d_model
        if isinstance(self.d_ffn, bool) or not isinstance(self.d_ffn, int) or self.d_ffn < 0:
            raise ValueError(f"LMConfig.d_ffn must be an int >= 0 or None, got {self.d_ffn!r}")
        m = self.max_position_embeddings
        if isinstance(m, bool) or not isinstance(m, int) or m < 0:
            raise ValueError(f"LMConfig.max_position_embeddings must be an int >= 0, got {m!r}")
        for name in ("norm_eps", "embed_std", "logit_scale"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not 0 < val < math.inf:
                raise ValueError(f"LMConfig.{name} must be a finite number > 0, got {val!r}")


@dataclasses.dataclass
class LMState(MixerState):
    """Per-layer mixer states of a :class:`MixerLM`."""

    mixer = "MixerLM"
    layers: list[MixerState]
    offset: int = 0  # tokens seen so far (the next token's absolute position)


class Block(nn.Module):
    """``x + mixer(norm(x))`` then ``x + mlp(norm(x))`` (no MLP when d_ffn == 0)."""

    def __init__(self, cfg: LMConfig, layer_id: int) -> None:
        super().__init__()
        kwargs = dict(cfg.mixer_kwargs)
        if cfg.mixer in ("rwkv", "rwkv_block"):
            kwargs.setdefault("layer_id", layer_id)
            kwargs.setdefault("n_layers", cfg.n_layers)
        self.norm1 = RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mixer: SequenceMixer[Any] = build_mixer(cfg.mixer, cfg.d_model, **kwargs)
        assert cfg.d_ffn is not None
        self.norm2 = RMSNorm(cfg.d_model, eps=cfg.norm_eps) if cfg.d_ffn else None
        self.mlp = SwiGLU(cfg.d_model, cfg.d_ffn) if cfg.d_ffn else None

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        if self.mlp is None or self.norm2 is None:
            return x
        return x + self.mlp(self.norm2(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mlp(x + self.mixer(self.norm1(x)))

    def stream(self, x: torch.Tensor, state: MixerState | None) -> tuple[torch.Tensor, MixerState]:
        h, state = self.mixer.stream(self.norm1(x), state)
        return self._mlp(x + h), state

    def step(self, x: torch.Tensor, state: MixerState | None) -> tuple[torch.Tensor, MixerState]:
        h, state = self.mixer.step(self.norm1(x), state)
        return self._mlp(x + h), state


class MixerLM(nn.Module):
    """Token LM: embedding -> n_layers x Block(mixer, SwiGLU) -> RMSNorm -> LM head.

    By default no positional embedding: positions come from the mixers (RoPE in attention
    and RetNet, convolutions and recurrences elsewhere), so streams may run to any length.
    With ``max_position_embeddings = P > 0`` a learned absolute position embedding is added
    to the token embedding (as Zoology's attention baseline), and a sequence or stream may
    then hold at most P tokens.

    Args:
        config: :class:`LMConfig`.

    Shapes:
        input_ids: (B, L) int64 -> logits (B, L, V).

    Example:
        >>> lm = MixerLM(LMConfig(vocab_size=256, d_model=64, mixer="mamba"))
        >>> logits = lm(torch.randint(0, 256, (2, 16)))
    """

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        if not isinstance(config, LMConfig):
            raise TypeError(f"MixerLM expects an LMConfig, got {type(config).__name__}")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        nn.init.normal_(self.embed.weight, std=config.embed_std)
        self.embed_pos = (
            nn.Embedding(config.max_position_embeddings, config.d_model)
            if config.max_position_embeddings
            else None
        )
        if self.embed_pos is not None:
            nn.init.normal_(self.embed_pos.weight, std=0.02)  # GPT-2's init
        self.layers = nn.ModuleList([Block(config, i) for i in range(config.n_layers)])
        self.norm = RMSNorm(config.d_model, eps=config.norm_eps)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        # Small token embeddings (std 0.02) under an unscaled tied head, as GPT-2 and Zoology:
        # AdamW's steps are of a fixed size, so small rows move fast relative to their norm
        # and the model shapes its token geometry early. On MQAR (L=64, 16 pairs, batch 64)
        # attention reached 0.995 in 1000 steps this way, against 0.20 after 1750 steps with
        # unit-variance rows under logits scaled by D^-0.5 (BENCHMARKS.md, MQAR).
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    def blocks(self) -> list[Block]:
        """The residual blocks, typed."""
        return [b for b in self.layers if isinstance(b, Block)]

    def _check_ids(self, ids: Any, ndim: int) -> None:
        shape = "(B, L)" if ndim == 2 else "(B,)"
        if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.is_complex():
            got = ids.dtype if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise TypeError(f"MixerLM expects integer token ids {shape}, got {got}")
        if ids.ndim != ndim or ids.numel() == 0:
            raise ValueError(
                f"MixerLM expects token ids of shape {shape} with no empty dim, got {tuple(ids.shape)}"
            )
        if ids.min() < 0 or ids.max() >= self.config.vocab_size:
            raise ValueError(
                f"token ids must be in [0, {self.config.vocab_size}), got range "
                f"[{int(ids.min())}, {int(ids.max())}]"
            )

    def _embed(self, input_ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Token (+ absolute position) embeddings (B, L, D) of ids (B, L) at positions
        ``offset .. offset + L - 1``."""
        x = self.embed(input_ids)  # (B, L, D)
        if self.embed_pos is not None:
            length, limit = input_ids.shape[1], self.config.max_position_embeddings
            if offset + length > limit:
                raise ValueError(
                    f"positions {offset}..{offset + length - 1} exceed "
                    f"max_position_embeddings={limit} of this MixerLM"
                )
            pos = torch.arange(offset, offset + length, device=input_ids.device)
            x = x + self.embed_pos(pos)  # (L, D) broadcast over the batch
        return x

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Final normalised hidden states (B, L, D) (the LM head's input)."""
        self._check_ids(input_ids, 2)
        x = self._embed(input_ids)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM head on final hidden states (..., D) -> (..., V)."""
        return self.lm_head(hidden) * self.config.logit_scale

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits (B, L, V) for token ids (B, L)."""
        return self.logits(self.hidden_states(input_ids))

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> LMState:  # type: ignore[no-untyped-def]
        """Empty per-layer states."""
        return LMState(
            layers=[
                layer.mixer.init_state(batch_size, device=device, dtype=dtype)
                for layer in self.blocks()
            ]
        )

    def _check_state(self, state: Any, batch_size: int) -> LMState:
        if not isinstance(state, LMState):
            raise TypeError(f"MixerLM expects an LMState, got {type(state).__name__}")
        if len(state.layers) != len(self.layers):
            raise ValueError(
                f"LMState has {len(state.layers)} layers, the model has {len(self.layers)}"
            )
        if state.batch_size != batch_size:
            raise ValueError(
                f"LMState is for batch size {state.batch_size}, input has batch size {batch_size}"
            )
        return state

    def stream(
        self, input_ids: torch.Tensor, state: LMState | None = None
    ) -> tuple[torch.Tensor, LMState]:
        """Logits (B, L, V) for one chunk of ids (B, L) and the state after it."""
        self._check_ids(input_ids, 2)
        if state is not None:
            self._check_state(state, input_ids.shape[0])
        offset = 0 if state is None else state.offset
        x = self._embed(input_ids, offset)
        new = []
        for i, layer in enumerate(self.blocks()):
            x, s = layer.stream(x, None if state is None else state.layers[i])
            new.append(s)
        return self.logits(self.norm(x)), LMState(layers=new, offset=offset + input_ids.shape[1])

    def step(
        self, token: torch.Tensor, state: LMState | None = None
    ) -> tuple[torch.Tensor, LMState]:
        """Logits (B, V) for one token id per sequence (B,) and the state after it."""
        self._check_ids(token, 1)
        if state is not None:
            self._check_state(state, token.shape[0])
        offset = 0 if state is None else state.offset
        x = self._embed(token[:, None], offset)[:, 0]
        new = []
        for i, layer in enumerate(self.blocks()):
            x, s = layer.step(x, None if state is None else state.layers[i])
            new.append(s)
        return self.logits(self.norm(x)), LMState(layers=new, offset=offset + 1)

    def num_parameters(self) -> int:
        """Number of distinct parameters (tied weights counted once)."""
        return sum(p.numel() for p in self.parameters())
