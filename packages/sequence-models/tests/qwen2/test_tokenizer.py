"""Byte-level tokenizer, HF tokenizer.json through ``tokenizers``, streaming detokenization."""

from __future__ import annotations

import pytest

from seedbed.sequence_models.qwen2.tokenizer import (
    ByteTokenizer,
    HFTokenizer,
    StreamDecoder,
    load_tokenizer,
)


def test_byte_round_trip_and_specials():
    tok = ByteTokenizer()
    text = "héllo, 世界 🌱"
    ids = tok.encode(text)
    assert all(0 <= i < 256 for i in ids)
    assert tok.decode(ids) == text
    assert tok.vocab_size == 259
    assert tok.eos_token_id == 256
    ids = tok.encode("a<|im_end|>b")
    assert ids == [97, 258, 98]
    assert tok.encode("a<|im_end|>b", allow_special=False)[1] == ord("<")
    assert tok.decode(ids) == "a<|im_end|>b"
    assert tok.decode(ids, skip_special_tokens=True) == "ab"
    assert tok.stop_token_ids == [256, 258]
    with pytest.raises(ValueError, match="token id"):
        tok.decode([999])
    with pytest.raises(TypeError, match="str"):
        tok.encode(b"bytes")  # type: ignore[arg-type]


def test_chat_template_is_chatml():
    tok = ByteTokenizer()
    text = tok.apply_chat_template(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    )
    assert (
        text
        == "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    with pytest.raises(ValueError, match="non-empty list"):
        tok.apply_chat_template([])
    with pytest.raises(TypeError, match="content"):
        tok.apply_chat_template([{"role": "user", "content": 3}])


def test_stream_decoder_never_splits_a_character():
    tok = ByteTokenizer()
    text = "a世b🌱c"
    dec = StreamDecoder(tok)
    deltas = [dec.push(i) for i in tok.encode(text)]
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)
    assert deltas[1] == ""
    assert deltas[3] == "世"


def test_stream_decoder_flushes_incomplete_tail():
    tok = ByteTokenizer()
    dec = StreamDecoder(tok)
    assert dec.push(ord("x")) == "x"
    assert dec.push(0xE4) == ""
    assert dec.flush() == "\ufffd"


def _hf_tokenizer_dir(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tk = tokenizers.Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tk.train_from_iterator(
        ["hello world, the quick brown fox jumps over the lazy dog"] * 50, trainer
    )
    tk.save(str(tmp_path / "tokenizer.json"))
    return tmp_path


def test_hf_tokenizer_json_is_used_when_present(tmp_path):
    d = _hf_tokenizer_dir(tmp_path)
    tok = load_tokenizer(d)
    assert isinstance(tok, HFTokenizer)
    text = "hello world<|im_end|>"
    ids = tok.encode(text)
    assert ids[-1] == tok.special_tokens["<|im_end|>"]
    assert tok.decode(ids) == text
    assert tok.special_tokens["<|im_end|>"] not in tok.encode(text, allow_special=False)
    assert tok.eos_token_id == tok.special_tokens["<|endoftext|>"]
    dec = StreamDecoder(tok)
    assert (
        "".join(dec.push(i) for i in tok.encode("the lazy fox 世")) + dec.flush()
        == "the lazy fox 世"
    )
    out = tmp_path / "copy"
    out.mkdir()
    assert tok.save(out) == ["tokenizer.json"]
    assert load_tokenizer(out).encode(text) == ids


def test_hf_tokenizer_config_sets_eos(tmp_path):
    d = _hf_tokenizer_dir(tmp_path)
    (d / "tokenizer_config.json").write_text(
        '{"eos_token": "<|im_end|>", "pad_token": {"content": "<|endoftext|>"}}'
    )
    tok = load_tokenizer(d)
    assert tok.eos_token_id == tok.special_tokens["<|im_end|>"]
    assert tok.pad_token_id == tok.special_tokens["<|endoftext|>"]


def test_default_is_byte_tokenizer(tmp_path):
    assert isinstance(load_tokenizer(tmp_path), ByteTokenizer)
    with pytest.raises(ValueError, match="does not exist"):
        load_tokenizer(tmp_path / "missing")
    with pytest.raises(ValueError, match="distinct"):
        ByteTokenizer(["<a>", "<a>"])
