"""HF-format checkpoint IO for :class:`Qwen2Model`: ``config.json`` + safetensors (sharded or not).

Layout written and read (the same as ``transformers``' ``save_pretrained``)::

    config.json
    model.safetensors                                  # one file, or
    model-00001-of-00002.safetensors ...               # shards, plus
    model.safetensors.index.json                       # {"metadata": {...}, "weight_map": {name: file}}
    tokenizer.json | seedbed_tokenizer.json            # optional

Loading validates everything before a model is built: every shard the index names exists, every
tensor the config implies is present with the right shape, and no unknown tensor is left over.
Errors name the tensor; on error no model is returned.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from seedbed.sequence_models.qwen2.config import Qwen2Config

if TYPE_CHECKING:
    from seedbed.sequence_models.qwen2.model import Qwen2Model
    from seedbed.sequence_models.qwen2.tokenizer import Tokenizer

__all__ = [
    "CheckpointError",
    "expected_shapes",
    "hf_to_ours",
    "load_pretrained",
    "ours_to_hf",
    "save_pretrained",
]

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"
_SHARD_RE = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")
# Tensors some HF checkpoints carry that are recomputed here (RoPE frequencies).
_IGNORABLE_RE = re.compile(r"(^|\.)rotary_emb\.inv_freq$")

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded as the config describes."""


# --------------------------------------------------------------------------------- name mapping
def hf_to_ours(name: str) -> str:
    """Map an HF ``Qwen2ForCausalLM`` tensor name to this model's state-dict name.

    ``model.layers.3.self_attn.q_proj.weight`` -> ``layers.3.self_attn.q_proj.weight``;
    ``lm_head.weight`` stays. Names without the ``model.`` prefix (a bare HF ``Qwen2Model``)
    are accepted as they are.
    """
    return name[len("model.") :] if name.startswith("model.") else name


def ours_to_hf(name: str) -> str:
    """Inverse of :func:`hf_to_ours` (always writes the ``Qwen2ForCausalLM`` layout)."""
    return name if name.startswith("lm_head.") else "model." + name


def expected_shapes(config: Qwen2Config) -> dict[str, tuple[int, ...]]:
    """Every tensor a checkpoint of ``config`` must hold, by our name, with its shape."""
    d, hd = config.hidden_size, config.head_dim
    assert hd is not None
    q, kv, f = (
        config.num_attention_heads * hd,
        config.num_key_value_heads * hd,
        config.intermediate_size,
    )
    shapes: dict[str, tuple[int, ...]] = {"embed_tokens.weight": (config.vocab_size, d)}
    for i in range(config.num_hidden_layers):
        p = f"layers.{i}."
        shapes[p + "input_layernorm.weight"] = (d,)
        shapes[p + "post_attention_layernorm.weight"] = (d,)
        shapes[p + "self_attn.q_proj.weight"] = (q, d)
        shapes[p + "self_attn.k_proj.weight"] = (kv, d)
        shapes[p + "self_attn.v_proj.weight"] = (kv, d)
        shapes[p + "self_attn.o_proj.weight"] = (d, q)
        if config.attention_bias:
            shapes[p + "self_attn.q_proj.bias"] = (q,)
            shapes[p + "self_attn.k_proj.bias"] = (kv,)
            shapes[p + "self_attn.v_proj.bias"] = (kv,)
        shapes[p + "mlp.gate_proj.weight"] = (f, d)
        shapes[p + "mlp.up_proj.weight"] = (f, d)
        shapes[p + "mlp.down_proj.weight"] = (d, f)
    shapes["norm.weight"] = (d,)
    if not config.tie_word_embeddings:
        shapes["lm_head.weight"] = (config.vocab_size, d)
    return shapes


# --------------------------------------------------------------------------------- loading
def _weight_files(root: Path) -> dict[str, Path]:
    """Map each HF tensor name to the file that holds it, checking every file exists."""
    index_path = root / SAFE_INDEX_NAME
    if index_path.is_file():
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{index_path} is not valid JSON: {e}") from e
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index_path} has no 'weight_map' (name -> shard file)")
        missing: dict[str, list[str]] = {}
        files: dict[str, Path] = {}
        for name, fname in weight_map.items():
            if not isinstance(fname, str) or "/" in fname or "\\" in fname or fname.startswith("."):
                raise CheckpointError(
                    f"{index_path}: tensor {name!r} maps to a bad file name {fname!r}"
                )
            path = root / fname
            if not path.is_file():
                missing.setdefault(fname, []).append(name)
            files[name] = path
        if missing:
            parts = [
                f"shard {f!r} (holding tensor {names[0]!r}"
                + (f" and {len(names) - 1} more" if len(names) > 1 else "")
                + ")"
                for f, names in sorted(missing.items())
            ]
            raise CheckpointError(f"checkpoint {root} is missing {'; '.join(parts)}")
        return files
    single = root / SAFE_WEIGHTS_NAME
    if single.is_file():
        with safe_open(str(single), framework="pt") as f:
            return {name: single for name in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    if any(root.glob("*.bin")) or any(root.glob("*.pt")):
        raise CheckpointError(
            f"checkpoint {root} holds only pickle weights (*.bin/*.pt); expected "
            f"{SAFE_WEIGHTS_NAME} or {SAFE_INDEX_NAME} (safetensors)"
        )
    raise CheckpointError(
        f"checkpoint {root} has neither {SAFE_WEIGHTS_NAME} nor {SAFE_INDEX_NAME}"
    )


def _read_shapes(files: Mapping[str, Path]) -> dict[str, tuple[tuple[int, ...], str]]:
    """HF name -> (shape, dtype string), read from safetensors headers without loading data."""
    by_file: dict[Path, list[str]] = {}
    for name, path in files.items():
        by_file.setdefault(path, []).append(name)
    out: dict[str, tuple[tuple[int, ...], str]] = {}
    for path, names in by_file.items():
        try:
            with safe_open(str(path), framework="pt") as f:
                present = set(f.keys())
                for name in names:
                    if name not in present:
                        raise CheckpointError(
                            f"tensor {name!r} is listed for {path.name} but that file does not hold it"
                        )
                    sl = f.get_slice(name)
                    out[name] = (tuple(int(s) for s in sl.get_shape()), str(sl.get_dtype()))
        except CheckpointError:
            raise
        except Exception as e:  # safetensors raises its own error types on corrupt headers
            raise CheckpointError(f"cannot read safetensors file {path}: {e}") from e
    return out


def _validate(
    config: Qwen2Config, found: Mapping[str, tuple[tuple[int, ...], str]]
) -> dict[str, str]:
    """Check names and shapes; return our name -> HF name for the tensors to load."""
    want = expected_shapes(config)
    ours_to_src: dict[str, str] = {}
    unexpected: list[str] = []
    for hf_name in found:
        if _IGNORABLE_RE.search(hf_name):
            continue
        name = hf_to_ours(hf_name)
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # a tied checkpoint may still carry the (identical) head; the embedding wins
        if name not in want:
            unexpected.append(hf_name)
            continue
        if name in ours_to_src:
            raise CheckpointError(
                f"tensor {name!r} appears twice ({ours_to_src[name]!r}, {hf_name!r})"
            )
        ours_to_src[name] = hf_name
    if unexpected:
        more = f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""
        raise CheckpointError(
            f"checkpoint holds tensor {sorted(unexpected)[0]!r}{more} that a Qwen2 model with this "
            "config.json does not have"
        )
    missing = [n for n in want if n not in ours_to_src]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"checkpoint is missing tensor {ours_to_hf(missing[0])!r}{more}")
    for name, shape in want.items():
        got, _ = found[ours_to_src[name]]
        if got != shape:
            raise CheckpointError(
                f"tensor {ours_to_src[name]!r} has shape {list(got)} but config.json implies "
                f"{list(shape)}"
            )
    return ours_to_src


def load_pretrained(
    path: str | os.PathLike[str],
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Qwen2Model:
    """Load a Qwen2 causal LM from an HF-format directory.

    Args:
        path: directory with ``config.json`` and safetensors weights (one file, or shards with
            ``model.safetensors.index.json``).
        dtype: dtype of the returned model; None keeps the checkpoint's floating dtype.
        device: device of the returned model (default CPU).

    Returns:
        A :class:`Qwen2Model` in eval mode.

    Raises:
        CheckpointError: (a ValueError) when a file is missing, a tensor is missing, unknown or
            has a shape that disagrees with ``config.json``; the message names the tensor.
    """
    from seedbed.sequence_models.qwen2.model import Qwen2Model

    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(f"checkpoint path {root} is not a directory")
    if not (root / CONFIG_NAME).is_file():
        raise CheckpointError(f"checkpoint {root} has no {CONFIG_NAME}")
    config = Qwen2Config.from_json_file(root / CONFIG_NAME)
    files = _weight_files(root)
    found = _read_shapes(files)
    ours_to_src = _validate(config, found)

    if dtype is None:
        stored = {found[src][1] for src in ours_to_src.values()}
        st_dtypes = {
            "F32": torch.float32,
            "F16": torch.float16,
            "BF16": torch.bfloat16,
            "F64": torch.float64,
        }
        known = [st_dtypes[s] for s in stored if s in st_dtypes]
        dtype = known[0] if len(known) == 1 else torch.float32
    state: dict[str, torch.Tensor] = {}
    by_file: dict[Path, list[str]] = {}
    for name, src in ours_to_src.items():
        by_file.setdefault(files[src], []).append(name)
    for fpath, names in by_file.items():
        with safe_open(str(fpath), framework="pt") as f:
            for name in names:
                state[name] = f.get_tensor(ours_to_src[name]).to(dtype)

    model = Qwen2Model(config).to(dtype=dtype)
    model.load_hf_state_dict(state)
    if device is not None:
        model = model.to(device)
    return model.eval()


# --------------------------------------------------------------------------------- saving
def _parse_size(size: int | str) -> int:
    if isinstance(size, bool):
        raise TypeError(f"max_shard_size must be an int or a string like '5GB', got {size!r}")
    if isinstance(size, int):
        if size < 1:
            raise ValueError(f"max_shard_size must be >= 1 byte, got {size}")
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", str(size), flags=re.IGNORECASE)
    if not m:
        raise ValueError(f"max_shard_size must be an int or a string like '5GB', got {size!r}")
    unit = (m.group(2) or "B").upper()
    mult = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    return max(1, int(float(m.group(1)) * mult[unit]))


def save_pretrained(
    model: Qwen2Model,
    path: str | os.PathLike[str],
    *,
    max_shard_size: int | str = "5GB",
    tokenizer: Tokenizer | None = None,
) -> None:
    """Write ``model`` (and optionally its tokenizer) as an HF-format directory.

    The files are written to a temporary directory first and moved in place only when all of
    them are complete, so a failed call leaves an existing checkpoint as it was.

    Args:
        model: the model to save (not quantized).
        path: target directory (created if needed).
        max_shard_size: largest shard in bytes (or '500MB', '5GB'); bigger models are sharded
            with a ``model.safetensors.index.json``.
        tokenizer: written next to the weights when given.
    """
    state = model.hf_state_dict()
    limit = _parse_size(max_shard_size)
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    dtypes = {t.dtype for t in state.values()}
    dtype_name = next((k for k, v in _DTYPES.items() if dtypes == {v}), "float32")

    shards: list[dict[str, torch.Tensor]] = [{}]
    sizes = [0]
    for name, t in state.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and sizes[-1] + nbytes > limit:
            shards.append({})
            sizes.append(0)
        shards[-1][name] = t.detach().to("cpu").contiguous().clone()
        sizes[-1] += nbytes

    tmp = Path(tempfile.mkdtemp(prefix=".tmp-save-", dir=root))
    try:
        written: list[str] = []
        if len(shards) == 1:
            save_file(shards[0], str(tmp / SAFE_WEIGHTS_NAME), metadata={"format": "pt"})
            written.append(SAFE_WEIGHTS_NAME)
        else:
            weight_map: dict[str, str] = {}
            n = len(shards)
            for i, shard in enumerate(shards):
                fname = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
                save_file(shard, str(tmp / fname), metadata={"format": "pt"})
                written.append(fname)
                weight_map.update(dict.fromkeys(shard, fname))
            index: dict[str, Any] = {
                "metadata": {"total_size": sum(sizes)},
                "weight_map": weight_map,
            }
            (tmp / SAFE_INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
            written.append(SAFE_INDEX_NAME)
        model.config.to_json_file(tmp / CONFIG_NAME, dtype=dtype_name)
        written.append(CONFIG_NAME)
        if tokenizer is not None:
            written.extend(tokenizer.save(tmp))
        # Everything is complete: move in place, then drop weight files of an older layout.
        for fname in written:
            os.replace(tmp / fname, root / fname)
        for old in root.iterdir():
            stale = old.name in (SAFE_WEIGHTS_NAME, SAFE_INDEX_NAME) or _SHARD_RE.match(old.name)
            if old.is_file() and stale and old.name not in written:
                old.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
