"""The OpenAI-compatible server over loopback, driven by aiohttp's own client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import torch

pytest.importorskip("aiohttp")

from aiohttp.test_utils import TestClient, TestServer

from seedbed.sequence_models.generation.generate import generate
from seedbed.sequence_models.qwen2.checkpoint import save_pretrained
from seedbed.sequence_models.qwen2.config import Qwen2Config
from seedbed.sequence_models.qwen2.model import Qwen2Model
from seedbed.sequence_models.qwen2.tokenizer import ByteTokenizer
from seedbed.sequence_models.serving.engine import EngineConfig, LLMEngine
from seedbed.sequence_models.serving.server import (
    RUNNER_KEY,
    ServerConfig,
    build_from_args,
    build_parser,
    create_app,
)


def _model() -> Qwen2Model:
    torch.manual_seed(0)
    m = Qwen2Model(Qwen2Config.tiny()).eval()
    m.reset_parameters(0.2)
    return m


def _run(app, scenario, **server_kw: Any) -> Any:
    async def main() -> Any:
        async with TestClient(TestServer(app, **server_kw)) as client:
            return await scenario(client)

    return asyncio.run(main())


def _app(max_queue: int = 64, **engine_kw: Any):
    engine = LLMEngine(
        _model(), ByteTokenizer(), EngineConfig(**{"num_blocks": 256, "block_size": 8, **engine_kw})
    )
    cfg = ServerConfig(
        model_name="tiny", max_prompt_tokens=64, max_tokens_limit=400, max_queue=max_queue
    )
    return create_app(engine, cfg), engine


async def _read_sse(resp) -> list[Any]:
    events = []
    async for raw in resp.content:
        line = raw.decode().strip()
        if not line:
            continue
        assert line.startswith("data: ")
        data = line[len("data: ") :]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_32_concurrent_streaming_clients_get_complete_correct_responses():
    app, engine = _app(max_batch_size=16)
    tok = ByteTokenizer()
    prompts = [f"prompt number {i}: " + "xyz"[: i % 4] for i in range(32)]
    expected = generate(engine.model, prompts, tokenizer=tok, max_new_tokens=12)

    async def one(client, i: int) -> tuple[str, str | None]:
        body = {
            "model": "tiny",
            "prompt": prompts[i],
            "max_tokens": 12,
            "temperature": 0,
            "stream": True,
        }
        resp = await client.post("/v1/completions", json=body)
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = await _read_sse(resp)
        assert events[-1] == "[DONE]"
        chunks = events[:-1]
        assert all(c["object"] == "text_completion" and c["model"] == "tiny" for c in chunks)
        text = "".join(c["choices"][0]["text"] for c in chunks)
        return text, chunks[-1]["choices"][0]["finish_reason"]

    async def scenario(client):
        return await asyncio.gather(*(one(client, i) for i in range(32)))

    results = _run(app, scenario)
    for i, (text, reason) in enumerate(results):
        assert text == expected.texts[i], f"client {i}"
        assert reason == expected.finish_reasons[i]
    assert engine.num_used_blocks == 0
    assert engine.counters["finished"] == 32


def test_non_streaming_completion_and_chat():
    app, engine = _app()
    tok = ByteTokenizer()

    async def scenario(client):
        r1 = await client.post(
            "/v1/completions", json={"prompt": "hello", "max_tokens": 6, "temperature": 0}
        )
        b1 = await r1.json()
        msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
        r2 = await client.post(
            "/v1/chat/completions", json={"messages": msgs, "max_tokens": 5, "temperature": 0}
        )
        b2 = await r2.json()
        r3 = await client.post(
            "/v1/chat/completions",
            json={
                "messages": msgs,
                "max_tokens": 5,
                "temperature": 0,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        )
        ev3 = await _read_sse(r3)
        models = await (await client.get("/v1/models")).json()
        health = await (await client.get("/health")).json()
        return r1.status, b1, r2.status, b2, ev3, models, health

    s1, b1, s2, b2, ev3, models, health = _run(app, scenario)
    assert s1 == 200
    assert b1["object"] == "text_completion"
    assert (
        b1["choices"][0]["text"]
        == generate(engine.model, "hello", tokenizer=tok, max_new_tokens=6).texts[0]
    )
    assert b1["usage"] == {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}
    assert s2 == 200
    assert b2["object"] == "chat.completion"
    chat_prompt = tok.apply_chat_template(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    )
    want = generate(engine.model, chat_prompt, tokenizer=tok, max_new_tokens=5)
    assert b2["choices"][0]["message"] == {"role": "assistant", "content": want.texts[0]}
    assert ev3[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in ev3[:-2]) == want.texts[0]
    assert ev3[-2]["usage"]["completion_tokens"] == len(want.sequences[0])
    assert ev3[-1] == "[DONE]"
    assert models["data"][0]["id"] == "tiny"
    assert health["status"] == "ok"
    assert health["engine"]["used_blocks"] == 0


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/completions", b"{not json", "not valid JSON"),
        ("/v1/completions", b"[1, 2]", "must be a JSON object"),
        (
            "/v1/completions",
            {"prompt": "x", "max_tokens": "5"},
            "'max_tokens' must be an integer, got string",
        ),
        (
            "/v1/completions",
            {"prompt": "x", "temperature": "hot"},
            "'temperature' must be a number",
        ),
        ("/v1/completions", {"prompt": "x", "stream": 1}, "'stream' must be a boolean"),
        ("/v1/completions", {"prompt": 5}, "'prompt' must be a string or an array of token ids"),
        ("/v1/completions", {"prompt": "x" * 65}, "the prompt has 65 tokens, the limit is 64"),
        ("/v1/completions", {"prompt": "x", "max_tokens": 401}, "'max_tokens' must be in [1, 400]"),
        ("/v1/completions", {"prompt": "x", "bogus": 1}, "unknown field 'bogus'"),
        ("/v1/completions", {"prompt": "x", "n": 2}, "'n' must be 1"),
        ("/v1/completions", {"prompt": "x", "top_p": 0}, "top_p must be in (0, 1]"),
        ("/v1/completions", {"prompt": [1, 999]}, "token ids must be in [0, 259)"),
        ("/v1/completions", {"max_tokens": 3}, "missing required field 'prompt'"),
        ("/v1/chat/completions", {"messages": "hi"}, "'messages' must be a non-empty array"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "robot", "content": "x"}]},
            "'messages[0].role' must be",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x", "x": 1}]},
            "unknown field 'messages[0].x'",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "prompt": "y"},
            "unknown field 'prompt'",
        ),
    ],
)
def test_bad_requests_get_400_with_a_clear_message(path, body, message):
    app, engine = _app()

    async def scenario(client):
        if isinstance(body, bytes):
            r = await client.post(path, data=body, headers={"Content-Type": "application/json"})
        else:
            r = await client.post(path, json=body)
        return r.status, await r.json()

    status, payload = _run(app, scenario)
    assert status == 400
    assert payload["error"]["type"] == "invalid_request_error"
    assert message in payload["error"]["message"]
    assert engine.counters["finished"] == 0
    assert not engine.has_unfinished()


def test_unknown_model_and_route():
    app, _ = _app()

    async def scenario(client):
        r1 = await client.post("/v1/completions", json={"model": "gpt-9", "prompt": "x"})
        r2 = await client.get("/v2/nothing")
        return r1.status, await r1.json(), r2.status, await r2.json()

    s1, b1, s2, b2 = _run(app, scenario)
    assert s1 == 404
    assert "model 'gpt-9' is not served" in b1["error"]["message"]
    assert s2 == 404
    assert b2["error"]["type"] == "not_found_error"


def test_full_queue_gives_429():
    app, _engine = _app(max_queue=2)

    async def scenario(client):
        body = {
            "prompt": "long one",
            "max_tokens": 300,
            "temperature": 0,
            "stream": True,
            "ignore_eos": True,
        }
        first = await client.post("/v1/completions", json=body)
        second = await client.post("/v1/completions", json=body)
        third = await client.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
        payload = await third.json()
        first.close()
        second.close()
        return first.status, second.status, third.status, payload

    s1, s2, s3, payload = _run(app, scenario)
    assert (s1, s2, s3) == (200, 200, 429)
    assert payload["error"]["type"] == "rate_limit_error"
    assert "capacity" in payload["error"]["message"]


@pytest.mark.parametrize(
    "handler_cancellation", [True, False], ids=["cancel-handler", "write-error"]
)
def test_client_disconnect_frees_cache_blocks(handler_cancellation):
    app, engine = _app()
    runner = app[RUNNER_KEY]

    async def scenario(client):
        body = {
            "prompt": "a long generation",
            "max_tokens": 400,
            "temperature": 0,
            "stream": True,
            "ignore_eos": True,
        }
        resp = await client.post("/v1/completions", json=body)
        assert resp.status == 200
        seen = 0
        async for raw in resp.content:
            if raw.strip():
                seen += 1
            if seen == 3:
                break
        used_mid_stream = engine.num_used_blocks
        resp.close()  # drop the connection mid-stream
        for _ in range(400):
            if engine.counters["aborted"] == 1 and engine.num_used_blocks == 0:
                break
            await asyncio.sleep(0.01)
        health = await (await client.get("/health")).json()
        return used_mid_stream, health

    used_mid_stream, health = _run(app, scenario, handler_cancellation=handler_cancellation)
    assert used_mid_stream > 0
    assert engine.counters["aborted"] == 1
    assert engine.counters["finished"] == 0
    assert engine.num_used_blocks == 0
    assert not engine.has_unfinished()
    assert runner.cancelled == 1
    assert health["in_flight"] == 0


def test_cli_builds_a_server_bound_to_loopback(tmp_path):
    save_pretrained(_model(), tmp_path, tokenizer=ByteTokenizer())
    args = build_parser().parse_args(
        ["--model", str(tmp_path), "--max-queue", "3", "--quantization", "int8"]
    )
    assert args.host == "127.0.0.1"
    app, engine = build_from_args(args)
    assert engine.config.quantization == "int8"

    async def scenario(client):
        r = await client.post(
            "/v1/completions", json={"prompt": "hi", "max_tokens": 3, "temperature": 0}
        )
        return r.status, await r.json()

    status, body = _run(app, scenario)
    assert status == 200
    assert body["model"] == tmp_path.name
    assert body["usage"]["completion_tokens"] >= 1
