"""Qwen2 configuration: a dataclass that reads and writes HF ``config.json`` dictionaries."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["Qwen2Config"]

# HF config keys that carry no information for inference (or are re-derived on save).
_IGNORED_HF_KEYS = frozenset(
    {
        "architectures",
        "model_type",
        "transformers_version",
        "torch_dtype",
        "dtype",
        "initializer_range",
        "use_cache",
        "attention_dropout",
        "hidden_act",
        "rope_parameters",
        "rope_scaling",
        "rope_theta",
        "use_sliding_window",
        "max_window_layers",
        "_name_or_path",
        "output_attentions",
        "output_hidden_states",
        "return_dict",
        "use_mrope",
    }
)


@dataclass
class Qwen2Config:
    """Hyper-parameters of a Qwen2 decoder-only causal language model.

    Field names follow HF ``transformers.Qwen2Config`` so that ``config.json`` maps one to one.
    """

    vocab_size: int = 151936  # number of token ids
    hidden_size: int = 896  # model width d
    intermediate_size: int = 4864  # SwiGLU hidden width
    num_hidden_layers: int = 24  # decoder blocks
    num_attention_heads: int = 14  # query heads H
    num_key_value_heads: int = 2  # key/value heads H_kv (GQA when < H); H % H_kv == 0
    head_dim: int | None = None  # per-head width D; None -> hidden_size // num_attention_heads
    max_position_embeddings: int = 32768  # longest sequence the engine/generate will accept
    rope_theta: float = 1000000.0  # RoPE base
    rms_norm_eps: float = 1e-6  # RMSNorm epsilon
    tie_word_embeddings: bool = True  # lm_head shares embed_tokens.weight
    attention_bias: bool = True  # q/k/v projections carry a bias (Qwen2: True); o_proj never does
    sliding_window: int | None = None  # window w for layers marked "sliding_attention"
    layer_types: list[str] = field(
        default_factory=list
    )  # per layer "full_attention"/"sliding_attention"; [] -> all full
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None  # one id or several; generation stops on any
    pad_token_id: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "max_position_embeddings",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Qwen2Config.{name} must be a positive int, got {value!r}")
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads != 0:
                raise ValueError(
                    "Qwen2Config.hidden_size must be divisible by num_attention_heads when "
                    f"head_dim is not given, got {self.hidden_size} and {self.num_attention_heads}"
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        if (
            isinstance(self.head_dim, bool)
            or not isinstance(self.head_dim, int)
            or self.head_dim < 2
        ):
            raise ValueError(f"Qwen2Config.head_dim must be an int >= 2, got {self.head_dim!r}")
        if self.head_dim % 2 != 0:
            raise ValueError(f"Qwen2Config.head_dim must be even for RoPE, got {self.head_dim}")
        if self.num_attention_heads % self.num_key_value_heads != 0:
            raise ValueError(
                "Qwen2Config.num_attention_heads must be a multiple of num_key_value_heads, got "
                f"{self.num_attention_heads} and {self.num_key_value_heads}"
            )
        if not self.rope_theta > 0:
            raise ValueError(f"Qwen2Config.rope_theta must be > 0, got {self.rope_theta!r}")
        if not self.rms_norm_eps > 0:
            raise ValueError(f"Qwen2Config.rms_norm_eps must be > 0, got {self.rms_norm_eps!r}")
        if not self.layer_types:
            self.layer_types = ["full_attention"] * self.num_hidden_layers
        self.layer_types = list(self.layer_types)
        if len(self.layer_types) != self.num_hidden_layers:
            raise ValueError(
                f"Qwen2Config.layer_types must have num_hidden_layers={self.num_hidden_layers} "
                f"entries, got {len(self.layer_types)}"
            )
        bad = sorted({t for t in self.layer_types} - {"full_attention", "sliding_attention"})
        if bad:
            raise ValueError(
                "Qwen2Config.layer_types entries must be 'full_attention' or "
                f"'sliding_attention', got {bad}"
            )
        if "sliding_attention" in self.layer_types and (
            self.sliding_window is None or self.sliding_window < 1
        ):
            raise ValueError(
                "Qwen2Config.sliding_window must be a positive int when a layer is "
                f"'sliding_attention', got {self.sliding_window!r}"
            )

    # ----------------------------------------------------------------------------- derived
    @property
    def eos_token_ids(self) -> list[int]:
        """The end-of-sequence ids as a list (empty when none is set)."""
        if self.eos_token_id is None:
            return []
        if isinstance(self.eos_token_id, int):
            return [self.eos_token_id]
        return list(self.eos_token_id)

    def layer_window(self, layer_idx: int) -> int | None:
        """Sliding window of layer ``layer_idx`` (None for full attention)."""
        if self.layer_types[layer_idx] == "sliding_attention":
            return self.sliding_window
        return None

    def num_parameters(self) -> int:
        """Parameter count of a model built from this config (tied weights counted once)."""
        d, hd = self.hidden_size, self.head_dim or 0
        q, kv = self.num_attention_heads * hd, self.num_key_value_heads * hd
        attn = d * q + 2 * d * kv + q * d + (q + 2 * kv if self.attention_bias else 0)
        mlp = 3 * d * self.intermediate_size
        per_layer = attn + mlp + 2 * d
        emb = self.vocab_size * d * (1 if self.tie_word_embeddings else 2)
        return self.num_hidden_layers * per_layer + emb + d

    # ----------------------------------------------------------------------------- presets
    @classmethod
    def tiny(cls, **overrides: Any) -> Qwen2Config:
        """A 2-layer d=64 model for unit tests (byte-level vocabulary of 259)."""
        kw: dict[str, Any] = dict(
            vocab_size=259,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            rope_theta=10000.0,
            tie_word_embeddings=True,
        )
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def small_20m(cls, **overrides: Any) -> Qwen2Config:
        """About 20M parameters: d=384, 8 layers, 6 heads / 2 KV heads, 16k vocabulary."""
        kw: dict[str, Any] = dict(
            vocab_size=16384,
            hidden_size=384,
            intermediate_size=1024,
            num_hidden_layers=8,
            num_attention_heads=6,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            rope_theta=1000000.0,
            tie_word_embeddings=True,
        )
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def qwen2_0_5b(cls, **overrides: Any) -> Qwen2Config:
        """The shape of Qwen2-0.5B (for loading that checkpoint from a local directory)."""
        kw: dict[str, Any] = dict(
            vocab_size=151936,
            hidden_size=896,
            intermediate_size=4864,
            num_hidden_layers=24,
            num_attention_heads=14,
            num_key_value_heads=2,
            max_position_embeddings=32768,
            rope_theta=1000000.0,
            tie_word_embeddings=True,
            bos_token_id=151643,
            eos_token_id=151643,
        )
        kw.update(overrides)
        return cls(**kw)

    # ----------------------------------------------------------------------------- HF format
    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> Qwen2Config:
        """Build from an HF ``config.json`` dictionary (transformers 4.x or 5.x layout).

        Raises:
            ValueError: for a model type, activation or RoPE scaling this model does not
                implement, or for keys this config does not know.
        """
        if not isinstance(d, dict):
            raise TypeError(f"config must be a dict, got {type(d).__name__}")
        model_type = d.get("model_type", "qwen2")
        if model_type != "qwen2":
            raise ValueError(f"config.json model_type must be 'qwen2', got {model_type!r}")
        act = d.get("hidden_act", "silu")
        if act not in ("silu", "swish"):
            raise ValueError(f"config.json hidden_act must be 'silu', got {act!r}")
        rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise ValueError(f"config.json rope_type must be 'default', got {rope_type!r}")
        theta = rope.get("rope_theta", d.get("rope_theta", 10000.0))
        known = {f.name for f in fields(cls)}
        unknown = sorted(k for k in d if k not in known and k not in _IGNORED_HF_KEYS)
        kw = {k: v for k, v in d.items() if k in known}
        kw["rope_theta"] = float(theta if theta is not None else 10000.0)
        kw.setdefault("attention_bias", True)
        if not d.get("use_sliding_window", False):
            kw["sliding_window"] = None
            kw["layer_types"] = []
        elif not d.get("layer_types"):
            n = int(d["num_hidden_layers"])
            mwl = int(d.get("max_window_layers", n))
            kw["layer_types"] = [
                "sliding_attention" if i >= mwl else "full_attention" for i in range(n)
            ]
        if kw.get("head_dim") is None:
            kw.pop("head_dim", None)
        if unknown:
            # Extra keys are harmless for inference but are reported so nothing is silently lost.
            warnings.warn(
                f"config.json keys ignored by Qwen2Config: {', '.join(unknown)}", stacklevel=2
            )
        return cls(**kw)

    def to_hf_dict(self, dtype: str = "float32") -> dict[str, Any]:
        """An HF-compatible ``config.json`` dictionary (loads with ``transformers``).

        Args:
            dtype: the name of the weights' dtype, written as ``dtype``.
        """
        d = asdict(self)
        sliding = "sliding_attention" in self.layer_types
        d.update(
            architectures=["Qwen2ForCausalLM"],
            model_type="qwen2",
            hidden_act="silu",
            rope_theta=self.rope_theta,
            rope_parameters={"rope_theta": self.rope_theta, "rope_type": "default"},
            use_sliding_window=sliding,
            max_window_layers=(
                self.layer_types.index("sliding_attention") if sliding else self.num_hidden_layers
            ),
            sliding_window=self.sliding_window if sliding else None,
            attention_dropout=0.0,
            use_cache=True,
            dtype=dtype,
        )
        return d

    @classmethod
    def from_json_file(cls, path: str | os.PathLike[str]) -> Qwen2Config:
        """Read ``config.json``."""
        with open(path, encoding="utf-8") as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{os.fspath(path)} is not valid JSON: {e}") from e
        return cls.from_hf_dict(d)

    def to_json_file(self, path: str | os.PathLike[str], dtype: str = "float32") -> None:
        """Write ``config.json``."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_hf_dict(dtype), f, indent=2, sort_keys=True)
            f.write("\n")
