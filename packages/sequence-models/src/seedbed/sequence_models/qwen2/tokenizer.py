"""Tokenizers: a built-in byte-level tokenizer, and HF ``tokenizer.json`` through ``tokenizers``.

Both share one small interface (:class:`Tokenizer`): ``encode``, ``decode``, the special ids,
a ChatML chat template and ``save``. :class:`StreamDecoder` turns a stream of token ids into
text deltas without splitting multi-byte characters.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ByteTokenizer",
    "HFTokenizer",
    "StreamDecoder",
    "Tokenizer",
    "load_tokenizer",
]

BYTE_TOKENIZER_FILE = "seedbed_tokenizer.json"
HF_TOKENIZER_FILE = "tokenizer.json"
HF_TOKENIZER_CONFIG = "tokenizer_config.json"

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"


def _check_messages(messages: Sequence[dict[str, Any]]) -> None:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(f"messages must be a non-empty list of dicts, got {messages!r}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise TypeError(f"messages[{i}] must be a dict, got {type(m).__name__}")
        if not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise TypeError(f"messages[{i}] needs string 'role' and 'content', got {m!r}")


class Tokenizer:
    """Interface shared by :class:`ByteTokenizer` and :class:`HFTokenizer`."""

    vocab_size: int
    eos_token_id: int | None
    pad_token_id: int | None
    special_tokens: dict[str, int]

    def encode(self, text: str, *, allow_special: bool = True) -> list[int]:
        """Text -> token ids; special-token strings become their ids when ``allow_special``."""
        raise NotImplementedError

    def decode(self, ids: Iterable[int], *, skip_special_tokens: bool = False) -> str:
        """Token ids -> text (invalid UTF-8 becomes U+FFFD)."""
        raise NotImplementedError

    def save(self, directory: str | os.PathLike[str]) -> list[str]:
        """Write the tokenizer files into ``directory``; return their names."""
        raise NotImplementedError

    @property
    def stop_token_ids(self) -> list[int]:
        """Ids that end a generation: end-of-text and the chat end-of-turn marker."""
        ids = [self.eos_token_id] if self.eos_token_id is not None else []
        if IM_END in self.special_tokens and self.special_tokens[IM_END] not in ids:
            ids.append(self.special_tokens[IM_END])
        return ids

    def apply_chat_template(
        self, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool = True
    ) -> str:
        """ChatML (the Qwen2 chat format): ``<|im_start|>role\\ncontent<|im_end|>\\n`` per turn.

        Args:
            messages: ``[{"role": "system"|"user"|"assistant", "content": str}, ...]``.
            add_generation_prompt: end with the opening of an assistant turn.
        """
        _check_messages(messages)
        parts = [f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages]
        if add_generation_prompt:
            parts.append(f"{IM_START}assistant\n")
        return "".join(parts)


class ByteTokenizer(Tokenizer):
    """Byte-level tokenizer: ids 0..255 are the UTF-8 bytes, then the special tokens.

    Default specials: ``<|endoftext|>`` = 256 (EOS and pad), ``<|im_start|>`` = 257,
    ``<|im_end|>`` = 258, so ``vocab_size`` = 259.
    """

    def __init__(self, special_tokens: Sequence[str] = (ENDOFTEXT, IM_START, IM_END)) -> None:
        specials = list(special_tokens)
        if len(set(specials)) != len(specials) or any(not s for s in specials):
            raise ValueError(f"special_tokens must be distinct non-empty strings, got {specials!r}")
        self.special_tokens = {s: 256 + i for i, s in enumerate(specials)}
        self._id_to_special = {i: s for s, i in self.special_tokens.items()}
        self.vocab_size = 256 + len(specials)
        first = specials[0] if specials else None
        self.eos_token_id = self.special_tokens[first] if first is not None else None
        self.pad_token_id = self.eos_token_id
        self._split = (
            re.compile(
                "(" + "|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)) + ")"
            )
            if specials
            else None
        )

    def encode(self, text: str, *, allow_special: bool = True) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not allow_special or self._split is None:
            return list(text.encode("utf-8"))
        ids: list[int] = []
        for piece in self._split.split(text):
            if piece in self.special_tokens:
                ids.append(self.special_tokens[piece])
            elif piece:
                ids.extend(piece.encode("utf-8"))
        return ids

    def decode(self, ids: Iterable[int], *, skip_special_tokens: bool = False) -> str:
        out: list[str] = []
        buf = bytearray()
        for i in ids:
            i = int(i)
            if 0 <= i < 256:
                buf.append(i)
                continue
            if i not in self._id_to_special:
                raise ValueError(f"token id must be in [0, {self.vocab_size}), got {i}")
            if buf:
                out.append(buf.decode("utf-8", errors="replace"))
                buf.clear()
            if not skip_special_tokens:
                out.append(self._id_to_special[i])
        if buf:
            out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)

    def save(self, directory: str | os.PathLike[str]) -> list[str]:
        spec = {"type": "byte", "special_tokens": list(self.special_tokens)}
        Path(directory, BYTE_TOKENIZER_FILE).write_text(
            json.dumps(spec, indent=2) + "\n", encoding="utf-8"
        )
        return [BYTE_TOKENIZER_FILE]

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ByteTokenizer:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(spec, dict) or spec.get("type") != "byte":
            raise ValueError(f"{path} is not a byte tokenizer spec (expected type 'byte')")
        return cls(spec.get("special_tokens", []))


class HFTokenizer(Tokenizer):
    """A ``tokenizers.Tokenizer`` (HF ``tokenizer.json``) behind the :class:`Tokenizer` interface.

    EOS and pad are taken from ``tokenizer_config.json`` when present, else from the usual
    special-token strings found in the vocabulary.
    """

    def __init__(
        self, tokenizer: Any, *, eos_token: str | None = None, pad_token: str | None = None
    ) -> None:
        self._tok = tokenizer
        self.vocab_size = int(tokenizer.get_vocab_size(with_added_tokens=True))
        added = (
            tokenizer.get_added_tokens_decoder()
            if hasattr(tokenizer, "get_added_tokens_decoder")
            else {}
        )
        self.special_tokens = {tok.content: int(i) for i, tok in added.items() if tok.special}

        def _id(s: str | None) -> int | None:
            return None if s is None else tokenizer.token_to_id(s)

        eos = _id(eos_token)
        if eos is None:
            for cand in (ENDOFTEXT, "</s>", "<eos>", "<|eot_id|>"):
                if (eos := _id(cand)) is not None:
                    break
        self.eos_token_id = eos
        pad = _id(pad_token)
        self.pad_token_id = pad if pad is not None else eos

    @classmethod
    def from_directory(cls, directory: str | os.PathLike[str]) -> HFTokenizer:
        try:
            from tokenizers import Tokenizer as _HFTok
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                "reading tokenizer.json needs the 'tokenizers' package "
                "(pip install 'seedbed-sequence-models[tokenizers]')"
            ) from e
        root = Path(directory)
        tok = _HFTok.from_file(str(root / HF_TOKENIZER_FILE))
        eos = pad = None
        cfg_path = root / HF_TOKENIZER_CONFIG
        if cfg_path.is_file():
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))

            def _content(v: Any) -> str | None:
                return v.get("content") if isinstance(v, dict) else v

            eos, pad = _content(cfg.get("eos_token")), _content(cfg.get("pad_token"))
        out = cls(tok, eos_token=eos, pad_token=pad)
        out._directory = root
        return out

    _directory: Path | None = None

    def encode(self, text: str, *, allow_special: bool = True) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if allow_special:
            return list(self._tok.encode(text, add_special_tokens=False).ids)
        # Encode special-token strings as ordinary text: split them out and encode the pieces.
        ids: list[int] = []
        names = sorted(self.special_tokens, key=len, reverse=True)
        pieces = re.split("(" + "|".join(map(re.escape, names)) + ")", text) if names else [text]
        for piece in pieces:
            if piece in self.special_tokens:
                # Encode char by char so the special token does not survive as one id.
                for ch in piece:
                    ids.extend(self._tok.encode(ch, add_special_tokens=False).ids)
            elif piece:
                ids.extend(self._tok.encode(piece, add_special_tokens=False).ids)
        return ids

    def decode(self, ids: Iterable[int], *, skip_special_tokens: bool = False) -> str:
        return str(self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens))

    def save(self, directory: str | os.PathLike[str]) -> list[str]:
        self._tok.save(str(Path(directory, HF_TOKENIZER_FILE)))
        names = [HF_TOKENIZER_FILE]
        if self._directory is not None and (self._directory / HF_TOKENIZER_CONFIG).is_file():
            cfg = (self._directory / HF_TOKENIZER_CONFIG).read_text(encoding="utf-8")
            Path(directory, HF_TOKENIZER_CONFIG).write_text(cfg, encoding="utf-8")
            names.append(HF_TOKENIZER_CONFIG)
        return names


def load_tokenizer(directory: str | os.PathLike[str]) -> Tokenizer:
    """The tokenizer stored in a checkpoint directory.

    ``tokenizer.json`` (HF, read with ``tokenizers``) wins; else ``seedbed_tokenizer.json``;
    else the default :class:`ByteTokenizer`. Nothing is downloaded.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"tokenizer directory {root} does not exist")
    if (root / HF_TOKENIZER_FILE).is_file():
        return HFTokenizer.from_directory(root)
    if (root / BYTE_TOKENIZER_FILE).is_file():
        return ByteTokenizer.from_file(root / BYTE_TOKENIZER_FILE)
    return ByteTokenizer()


class StreamDecoder:
    """Incremental detokenizer: feed ids one at a time, get the newly completed text.

    Text is held back while it ends in an incomplete UTF-8 sequence (a trailing U+FFFD), so a
    multi-byte character split over several byte tokens comes out whole. Cost per token is the
    decode of a short window, not of the whole sequence.
    """

    def __init__(self, tokenizer: Tokenizer, *, skip_special_tokens: bool = False) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self.text = ""  # all text emitted so far
        self._prefix_offset = 0
        self._read_offset = 0

    def push(self, token_id: int) -> str:
        """Append one id; return the text it completes (possibly '')."""
        self.ids.append(int(token_id))
        dec = self.tokenizer.decode
        skip = self.skip_special_tokens
        prefix = dec(self.ids[self._prefix_offset : self._read_offset], skip_special_tokens=skip)
        full = dec(self.ids[self._prefix_offset :], skip_special_tokens=skip)
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            delta = full[len(prefix) :]
            self._prefix_offset = self._read_offset
            self._read_offset = len(self.ids)
            self.text += delta
            return delta
        return ""

    def flush(self) -> str:
        """Emit whatever is held back (an incomplete character becomes U+FFFD)."""
        skip = self.skip_special_tokens
        prefix = self.tokenizer.decode(
            self.ids[self._prefix_offset : self._read_offset], skip_special_tokens=skip
        )
        full = self.tokenizer.decode(self.ids[self._prefix_offset :], skip_special_tokens=skip)
        delta = full[len(prefix) :] if len(full) > len(prefix) else ""
        self._prefix_offset = self._read_offset = len(self.ids)
        self.text += delta
        return delta
