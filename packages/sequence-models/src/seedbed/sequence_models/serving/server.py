"""OpenAI-compatible HTTP server over :class:`LLMEngine` (aiohttp; extra ``serve``).

Endpoints:

* ``POST /v1/completions`` and ``POST /v1/chat/completions`` (ChatML template), streamed as
  server-sent events with ``"stream": true``;
* ``GET /v1/models`` and ``GET /health``.

Requests are validated strictly (unknown fields, wrong types, prompts or ``max_tokens`` over
the limits give 400 with an OpenAI-style JSON error body). At most ``max_queue`` requests are
in flight (waiting or running); beyond that the server answers 429. A client that disconnects
has its request aborted, which returns its KV blocks to the pool. The engine steps in one
worker thread; requests are added and aborted on the event loop between steps.

Run it with ``seedbed-serve --model DIR`` (binds 127.0.0.1 unless ``--host`` says otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from seedbed.sequence_models.generation.sampling import SamplingParams
from seedbed.sequence_models.serving.engine import EngineConfig, LLMEngine, RequestOutput

__all__ = ["RUNNER_KEY", "EngineRunner", "ServerConfig", "create_app", "main"]


@dataclass
class ServerConfig:
    """Limits and names of the HTTP layer."""

    model_name: str = "seedbed-qwen2"  # the id /v1/models reports and requests may name
    max_prompt_tokens: int = 2048  # longer prompts get 400
    max_tokens_limit: int = 1024  # largest max_tokens a request may ask for
    default_max_tokens: int = 16  # max_tokens when the request gives none (OpenAI's default)
    max_queue: int = 64  # requests in flight (waiting + running); more get 429
    max_body_bytes: int = 1 << 20  # larger bodies get 413

    def __post_init__(self) -> None:
        for name in (
            "max_prompt_tokens",
            "max_tokens_limit",
            "default_max_tokens",
            "max_queue",
            "max_body_bytes",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ServerConfig.{name} must be a positive int, got {v!r}")
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError(
                f"ServerConfig.default_max_tokens ({self.default_max_tokens}) must be <= "
                f"max_tokens_limit ({self.max_tokens_limit})"
            )


class QueueFullError(RuntimeError):
    """More requests in flight than the server allows."""


class RequestError(ValueError):
    """A request the server refuses; carries the HTTP status and the offending field."""

    def __init__(
        self, message: str, *, status: int = 400, param: str | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.status, self.param, self.code = status, param, code


# ------------------------------------------------------------------------------- engine runner
_DONE = object()


class EngineRunner:
    """Drives an :class:`LLMEngine` from asyncio: one step at a time in a worker thread.

    ``submit`` registers a request and returns a queue that receives its
    :class:`RequestOutput` items (an ``Exception`` item if the engine fails); ``cancel`` aborts.
    """

    def __init__(self, engine: LLMEngine, max_queue: int) -> None:
        self.engine = engine
        self.max_queue = max_queue
        self._queues: dict[str, asyncio.Queue[Any]] = {}
        self._to_add: list[tuple[str, list[int], SamplingParams]] = []
        self._to_abort: list[str] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seedbed-engine")
        self.cancelled = 0  # requests aborted because the client went away

    @property
    def in_flight(self) -> int:
        return len(self._queues)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=True)

    def submit(
        self, prompt_ids: list[int], params: SamplingParams
    ) -> tuple[str, asyncio.Queue[Any]]:
        """Queue a validated request (raises :class:`QueueFullError` when at capacity)."""
        if len(self._queues) >= self.max_queue:
            raise QueueFullError(
                f"server is at capacity ({self.max_queue} requests in flight); retry later"
            )
        self.engine.check_request(prompt_ids, params)  # raises ValueError, changes nothing
        rid = uuid.uuid4().hex
        q: asyncio.Queue[Any] = asyncio.Queue()
        self._queues[rid] = q
        self._to_add.append((rid, prompt_ids, params))
        self._wake.set()
        return rid, q

    def cancel(self, rid: str) -> None:
        """Abort ``rid`` before the next step (no-op if it already finished)."""
        if self._queues.pop(rid, None) is None:
            return
        self._to_add = [a for a in self._to_add if a[0] != rid]
        self._to_abort.append(rid)
        self.cancelled += 1
        self._wake.set()

    def _apply_pending(self) -> None:
        for rid in self._to_abort:
            self.engine.abort(rid)
        self._to_abort.clear()
        for rid, ids, params in self._to_add:
            try:
                self.engine.add_request(ids, params, request_id=rid)
            except Exception as e:  # validated in submit(); fail this request alone if not
                q = self._queues.pop(rid, None)
                if q is not None:
                    q.put_nowait(e)
        self._to_add.clear()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._apply_pending()
            if not self.engine.has_unfinished():
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                outputs: list[RequestOutput] = await loop.run_in_executor(
                    self._executor, self.engine.step
                )
            except Exception as e:  # fail every request in flight, keep serving
                for rid, failed in list(self._queues.items()):
                    failed.put_nowait(e)
                    self.engine.abort(rid)
                self._queues.clear()
                continue
            for out in outputs:
                q = self._queues.get(str(out.request_id))
                if q is None:
                    continue
                q.put_nowait(out)
                if out.finished:
                    self._queues.pop(str(out.request_id), None)
            await asyncio.sleep(0)  # let handlers run between steps


RUNNER_KEY = web.AppKey("seedbed_engine_runner", EngineRunner)  # app[RUNNER_KEY] -> the runner

# ------------------------------------------------------------------------------- validation
_NUM = (int, float)


def _type_name(v: Any) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(v), "null" if v is None else type(v).__name__)


def _check_type(body: dict[str, Any], key: str, ok: Callable[[Any], bool], want: str) -> None:
    if key in body and not ok(body[key]):
        raise RequestError(f"'{key}' must be {want}, got {_type_name(body[key])}", param=key)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, _NUM) and not isinstance(v, bool)


_COMMON_FIELDS = {
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "stop",
    "stop_token_ids",
    "seed",
    "stream",
    "stream_options",
    "n",
    "user",
    "ignore_eos",
}
COMPLETION_FIELDS = _COMMON_FIELDS | {"prompt"}
CHAT_FIELDS = _COMMON_FIELDS | {"messages", "max_completion_tokens"}


def parse_sampling(body: dict[str, Any], cfg: ServerConfig) -> SamplingParams:
    """OpenAI request fields -> :class:`SamplingParams` (raises :class:`RequestError`)."""
    _check_type(body, "max_tokens", lambda v: v is None or _is_int(v), "an integer")
    _check_type(body, "max_completion_tokens", lambda v: v is None or _is_int(v), "an integer")
    _check_type(body, "temperature", lambda v: v is None or _is_num(v), "a number")
    _check_type(body, "top_p", lambda v: v is None or _is_num(v), "a number")
    _check_type(body, "top_k", lambda v: v is None or _is_int(v), "an integer")
    _check_type(body, "repetition_penalty", lambda v: v is None or _is_num(v), "a number")
    _check_type(body, "seed", lambda v: v is None or _is_int(v), "an integer")
    _check_type(body, "stream", lambda v: isinstance(v, bool), "a boolean")
    _check_type(body, "ignore_eos", lambda v: isinstance(v, bool), "a boolean")
    _check_type(body, "n", lambda v: v is None or _is_int(v), "an integer")
    _check_type(body, "user", lambda v: isinstance(v, str), "a string")
    _check_type(
        body,
        "stop",
        lambda v: (
            v is None
            or isinstance(v, str)
            or (isinstance(v, list) and all(isinstance(s, str) for s in v))
        ),
        "a string or an array of strings",
    )
    _check_type(
        body,
        "stop_token_ids",
        lambda v: v is None or (isinstance(v, list) and all(_is_int(t) for t in v)),
        "an array of integers",
    )
    _check_type(body, "stream_options", lambda v: v is None or isinstance(v, dict), "an object")
    so = body.get("stream_options") or {}
    if set(so) - {"include_usage"}:
        raise RequestError(
            f"unknown field 'stream_options.{sorted(set(so) - {'include_usage'})[0]}'",
            param="stream_options",
        )
    if "include_usage" in so and not isinstance(so["include_usage"], bool):
        raise RequestError(
            "'stream_options.include_usage' must be a boolean", param="stream_options"
        )
    if body.get("n") not in (None, 1):
        raise RequestError(f"'n' must be 1 (one choice per request), got {body['n']}", param="n")
    mt = body.get("max_tokens")
    if mt is None:
        mt = body.get("max_completion_tokens")
    if mt is None:
        mt = cfg.default_max_tokens
    if not 1 <= mt <= cfg.max_tokens_limit:
        raise RequestError(
            f"'max_tokens' must be in [1, {cfg.max_tokens_limit}], got {mt}", param="max_tokens"
        )
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > 4 or any(not s for s in stops):
        raise RequestError("'stop' must hold at most 4 non-empty strings", param="stop")
    kw: dict[str, Any] = {"max_new_tokens": mt, "stop_strings": stops}
    for src, dst in (("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k"),
                     ("repetition_penalty", "repetition_penalty"), ("seed", "seed"),
                     ("stop_token_ids", "stop_token_ids"), ("ignore_eos", "ignore_eos")):  # fmt: skip
        if body.get(src) is not None:
            kw[dst] = body[src]
    if "temperature" not in kw:
        kw["temperature"] = 1.0  # OpenAI's default
    if kw["temperature"] > 2:
        raise RequestError(
            f"'temperature' must be in [0, 2], got {kw['temperature']}", param="temperature"
        )
    try:
        return SamplingParams(**kw)
    except (TypeError, ValueError) as e:
        raise RequestError(str(e)) from e


def _check_fields(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RequestError(f"request body must be a JSON object, got {_type_name(body)}")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RequestError(f"unknown field '{unknown[0]}'", param=unknown[0])
    return body


def _error_response(
    message: str, status: int, param: str | None = None, code: str | None = None
) -> web.Response:
    kind = {400: "invalid_request_error", 404: "not_found_error", 413: "invalid_request_error",
            429: "rate_limit_error"}.get(status, "server_error")  # fmt: skip
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status)


# ------------------------------------------------------------------------------- handlers
class _Handlers:
    def __init__(self, engine: LLMEngine, cfg: ServerConfig) -> None:
        if engine.tokenizer is None:
            raise ValueError("the server needs an engine with a tokenizer")
        self.engine, self.cfg = engine, cfg
        self.tokenizer = engine.tokenizer
        self.runner = EngineRunner(engine, cfg.max_queue)
        self.created = int(time.time())

    async def _json(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RequestError(f"request body is not valid JSON: {e}") from e

    def _check_model(self, body: dict[str, Any]) -> None:
        if "model" in body:
            if not isinstance(body["model"], str):
                raise RequestError(
                    f"'model' must be a string, got {_type_name(body['model'])}", param="model"
                )
            if body["model"] != self.cfg.model_name:
                raise RequestError(
                    f"model '{body['model']}' is not served here; available: ['{self.cfg.model_name}']",
                    status=404,
                    param="model",
                    code="model_not_found",
                )

    def _prompt_ids(self, body: dict[str, Any]) -> list[int]:
        if "prompt" not in body:
            raise RequestError("missing required field 'prompt'", param="prompt")
        p = body["prompt"]
        if isinstance(p, str):
            ids = self.tokenizer.encode(p)
        elif isinstance(p, list) and p and all(_is_int(t) for t in p):
            ids = list(p)
        else:
            raise RequestError(
                f"'prompt' must be a string or an array of token ids, got {_type_name(p)}",
                param="prompt",
            )
        return self._check_prompt_len(ids)

    def _check_prompt_len(self, ids: list[int]) -> list[int]:
        if not ids:
            raise RequestError("the prompt is empty", param="prompt")
        if len(ids) > self.cfg.max_prompt_tokens:
            raise RequestError(
                f"the prompt has {len(ids)} tokens, the limit is {self.cfg.max_prompt_tokens}",
                param="prompt",
                code="context_length_exceeded",
            )
        return ids

    def _chat_ids(self, body: dict[str, Any]) -> list[int]:
        if "messages" not in body:
            raise RequestError("missing required field 'messages'", param="messages")
        msgs = body["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise RequestError(
                f"'messages' must be a non-empty array, got {_type_name(msgs)}", param="messages"
            )
        for i, m in enumerate(msgs):
            if not isinstance(m, dict):
                raise RequestError(
                    f"'messages[{i}]' must be an object, got {_type_name(m)}", param="messages"
                )
            extra = sorted(set(m) - {"role", "content", "name"})
            if extra:
                raise RequestError(f"unknown field 'messages[{i}].{extra[0]}'", param="messages")
            if m.get("role") not in ("system", "user", "assistant"):
                raise RequestError(
                    f"'messages[{i}].role' must be 'system', 'user' or 'assistant', got {m.get('role')!r}",
                    param="messages",
                )
            if not isinstance(m.get("content"), str):
                raise RequestError(
                    f"'messages[{i}].content' must be a string, got {_type_name(m.get('content'))}",
                    param="messages",
                )
        text = self.tokenizer.apply_chat_template(msgs)
        return self._check_prompt_len(self.tokenizer.encode(text))

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=False)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=True)

    async def _serve(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        try:
            body = _check_fields(
                await self._json(request), CHAT_FIELDS if chat else COMPLETION_FIELDS
            )
            self._check_model(body)
            params = parse_sampling(body, self.cfg)
            ids = self._chat_ids(body) if chat else self._prompt_ids(body)
            try:
                rid, queue = self.runner.submit(ids, params)
            except QueueFullError as e:
                return _error_response(str(e), 429, code="queue_full")
            except (TypeError, ValueError) as e:
                raise RequestError(str(e)) from e
        except RequestError as e:
            return _error_response(str(e), e.status, e.param, e.code)
        stream = bool(body.get("stream", False))
        usage_chunk = bool((body.get("stream_options") or {}).get("include_usage", False))
        finished = False
        try:
            if stream:
                resp = await self._stream(request, rid, queue, chat, len(ids), usage_chunk)
            else:
                resp = await self._collect(rid, queue, chat, len(ids))
            finished = True
            return resp
        finally:
            if not finished:
                self.runner.cancel(rid)  # client went away (or the handler failed): free blocks

    def _envelope(self, rid: str, chat: bool, chunk: bool) -> dict[str, Any]:
        obj = (
            ("chat.completion.chunk" if chunk else "chat.completion") if chat else "text_completion"
        )
        return {
            "id": ("chatcmpl-" if chat else "cmpl-") + rid,
            "object": obj,
            "created": int(time.time()),
            "model": self.cfg.model_name,
        }

    @staticmethod
    def _usage(n_prompt: int, n_out: int) -> dict[str, int]:
        return {
            "prompt_tokens": n_prompt,
            "completion_tokens": n_out,
            "total_tokens": n_prompt + n_out,
        }

    async def _next(self, queue: asyncio.Queue[Any]) -> RequestOutput:
        item = await queue.get()
        if isinstance(item, Exception):
            raise item
        return item  # type: ignore[no-any-return]

    async def _collect(
        self, rid: str, queue: asyncio.Queue[Any], chat: bool, n_prompt: int
    ) -> web.Response:
        text, reason, n_out = "", None, 0
        try:
            while True:
                out = await self._next(queue)
                text += out.new_text
                n_out = out.num_output_tokens
                if out.finished:
                    reason = out.finish_reason
                    break
        except asyncio.CancelledError:
            raise
        except Exception as e:
            return _error_response(f"generation failed: {e}", 500)
        choice: dict[str, Any] = {"index": 0, "finish_reason": reason}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice.update(text=text, logprobs=None)
        body = self._envelope(rid, chat, chunk=False)
        body.update(choices=[choice], usage=self._usage(n_prompt, n_out))
        return web.json_response(body)

    async def _stream(
        self,
        request: web.Request,
        rid: str,
        queue: asyncio.Queue[Any],
        chat: bool,
        n_prompt: int,
        usage_chunk: bool,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)

        async def send(payload: Any) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            await resp.write(f"data: {data}\n\n".encode())

        def chunk(delta_text: str | None, reason: str | None, role: bool = False) -> dict[str, Any]:
            c = self._envelope(rid, chat, chunk=True)
            choice: dict[str, Any] = {"index": 0, "finish_reason": reason}
            if chat:
                delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
                if delta_text:
                    delta["content"] = delta_text
                choice["delta"] = delta
            else:
                choice.update(text=delta_text or "", logprobs=None)
            c["choices"] = [choice]
            return c

        if chat:
            await send(chunk(None, None, role=True))
        n_out = 0
        try:
            while True:
                out = await self._next(queue)
                n_out = out.num_output_tokens
                if out.finished:
                    if out.new_text:
                        await send(chunk(out.new_text, None))
                    await send(chunk(None, out.finish_reason))
                    break
                if out.new_text:
                    await send(chunk(out.new_text, None))
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as e:
            await send(
                {
                    "error": {
                        "message": f"generation failed: {e}",
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                }
            )
            await resp.write_eof()
            return resp
        if usage_chunk:
            u = self._envelope(rid, chat, chunk=True)
            u.update(choices=[], usage=self._usage(n_prompt, n_out))
            await send(u)
        await send("[DONE]")
        await resp.write_eof()
        return resp

    async def models(self, request: web.Request) -> web.Response:
        card = {
            "id": self.cfg.model_name,
            "object": "model",
            "created": self.created,
            "owned_by": "seedbed",
        }
        return web.json_response({"object": "list", "data": [card]})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "model": self.cfg.model_name,
                "in_flight": self.runner.in_flight,
                "max_queue": self.cfg.max_queue,
                "cancelled": self.runner.cancelled,
                "engine": self.engine.stats(),
                "engine_config": self.engine.info(),
            }
        )


@web.middleware
async def _errors_as_json(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    """Turn aiohttp's HTTP errors (404, 405, 413) into OpenAI-style JSON bodies."""
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return _error_response(e.reason or str(e), e.status)


def create_app(engine: LLMEngine, config: ServerConfig | None = None) -> web.Application:
    """The aiohttp application serving ``engine`` (the engine loop starts with the app).

    ``app[RUNNER_KEY]`` is the :class:`EngineRunner` (its ``cancelled`` counter and the
    engine's ``counters``/``num_used_blocks`` show cancellations and freed blocks).
    """
    cfg = config or ServerConfig()
    h = _Handlers(engine, cfg)
    app = web.Application(client_max_size=cfg.max_body_bytes, middlewares=[_errors_as_json])
    app[RUNNER_KEY] = h.runner
    app.router.add_post("/v1/completions", h.completions)
    app.router.add_post("/v1/chat/completions", h.chat_completions)
    app.router.add_get("/v1/models", h.models)
    app.router.add_get("/health", h.health)

    async def on_startup(app: web.Application) -> None:
        await h.runner.start()

    async def on_cleanup(app: web.Application) -> None:
        await h.runner.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


# ------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seedbed-serve",
        description="OpenAI-compatible server for a local HF-format Qwen2 checkpoint.",
    )
    p.add_argument(
        "--model", required=True, help="checkpoint directory (config.json + safetensors)"
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="bind address (default 127.0.0.1: loopback only)"
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--model-name", default=None, help="id reported by /v1/models (default: directory name)"
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default=None,
        help="default: checkpoint's",
    )
    p.add_argument("--quantization", choices=("none", "int8", "nf4"), default="none")
    p.add_argument("--num-blocks", type=int, default=EngineConfig.num_blocks)
    p.add_argument("--block-size", type=int, default=EngineConfig.block_size)
    p.add_argument("--max-batch-size", type=int, default=EngineConfig.max_batch_size)
    p.add_argument(
        "--max-num-batched-tokens", type=int, default=EngineConfig.max_num_batched_tokens
    )
    p.add_argument("--prefill-chunk-size", type=int, default=EngineConfig.prefill_chunk_size)
    p.add_argument("--max-prompt-tokens", type=int, default=ServerConfig.max_prompt_tokens)
    p.add_argument("--max-tokens-limit", type=int, default=ServerConfig.max_tokens_limit)
    p.add_argument("--max-queue", type=int, default=ServerConfig.max_queue)
    return p


def build_from_args(args: argparse.Namespace) -> tuple[web.Application, LLMEngine]:
    """Load the checkpoint and tokenizer and assemble the app (no network access)."""
    from pathlib import Path

    import torch

    from seedbed.sequence_models.qwen2.checkpoint import load_pretrained
    from seedbed.sequence_models.qwen2.tokenizer import load_tokenizer

    dtype = None if args.dtype is None else getattr(torch, args.dtype)
    model = load_pretrained(args.model, dtype=dtype)
    tok = load_tokenizer(args.model)
    engine = LLMEngine(
        model,
        tok,
        EngineConfig(
            num_blocks=args.num_blocks,
            block_size=args.block_size,
            max_batch_size=args.max_batch_size,
            max_num_batched_tokens=args.max_num_batched_tokens,
            prefill_chunk_size=args.prefill_chunk_size,
            quantization=None if args.quantization == "none" else args.quantization,
        ),
    )
    cfg = ServerConfig(
        model_name=args.model_name or Path(args.model).resolve().name,
        max_prompt_tokens=args.max_prompt_tokens,
        max_tokens_limit=args.max_tokens_limit,
        max_queue=args.max_queue,
    )
    return create_app(engine, cfg), engine


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``seedbed-serve``."""
    args = build_parser().parse_args(argv)
    app, _ = build_from_args(args)
    web.run_app(app, host=args.host, port=args.port, handler_cancellation=True)
