"""PR monitor against a local aiohttp fake of the GitHub API on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from seedbed.devtools.pull_request_monitor import (
    GitHubAuthError,
    GitHubClient,
    GitHubError,
    ResponseCache,
    check_mergeable,
    list_open_prs,
    main,
    parse_link_header,
)

TOKEN = "ghp_SECRET_token_value_123"
N_PRS = 250  # three pages of 100


class FakeGitHub:
    """A tiny GitHub REST fake served from a background thread on 127.0.0.1."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: dict[str, list[tuple[int, dict[str, str], Any]]] = {}
        self.mergeable_after = 2  # PR detail requests answered with mergeable null first
        self.detail_calls: dict[int, int] = {}
        self.prs = [
            {
                "number": n,
                "title": f"change {n}",
                "head": {"ref": f"feature-{n}", "sha": f"{n:040x}"},
                "base": {"ref": "main"},
            }
            for n in range(1, N_PRS + 1)
        ]
        app = web.Application()
        app.router.add_get("/repos/{owner}/{repo}/pulls", self.pulls)
        app.router.add_get("/repos/{owner}/{repo}/pulls/{number}", self.pull)
        self.runner = web.AppRunner(app)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> FakeGitHub:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.base = f"http://{host}:{port}"

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def _scripted(self, request: web.Request) -> web.Response | None:
        queue = self.script.get(request.path)
        if queue:
            status, headers, body = queue.pop(0)
            return web.json_response(body, status=status, headers=headers)
        return None

    def _record(self, request: web.Request) -> None:
        self.requests.append(
            {
                "path": request.path,
                "query": dict(request.query),
                "auth": request.headers.get("Authorization"),
                "if_none_match": request.headers.get("If-None-Match"),
            }
        )

    @staticmethod
    def _etag(body: Any) -> str:
        return '"' + hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest() + '"'

    async def pulls(self, request: web.Request) -> web.Response:
        self._record(request)
        scripted = self._scripted(request)
        if scripted is not None:
            return scripted
        per_page = int(request.query.get("per_page", "30"))
        page = int(request.query.get("page", "1"))
        items = self.prs[(page - 1) * per_page : page * per_page]
        etag = self._etag(items)
        headers = {"ETag": etag, "x-ratelimit-remaining": "4999", "x-ratelimit-reset": "0"}
        last = (len(self.prs) + per_page - 1) // per_page
        links = []
        base = f"{self.base}{request.path}?state=open&per_page={per_page}"
        if page < last:
            links.append(f'<{base}&page={page + 1}>; rel="next"')
        links.append(f'<{base}&page={last}>; rel="last"')
        headers["Link"] = ", ".join(links)
        if request.headers.get("If-None-Match") == etag:
            self.requests[-1]["status"] = 304
            return web.Response(status=304, headers=headers)
        self.requests[-1]["status"] = 200
        return web.json_response(items, headers=headers)

    async def pull(self, request: web.Request) -> web.Response:
        self._record(request)
        scripted = self._scripted(request)
        if scripted is not None:
            return scripted
        n = int(request.match_info["number"])
        k = self.detail_calls[n] = self.detail_calls.get(n, 0) + 1
        pr = dict(self.prs[n - 1])
        pr["mergeable"] = None if k <= self.mergeable_after else n % 3 != 0
        etag = self._etag(pr)
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.json_response(pr, headers={"ETag": etag})


class FakeClock:
    """Epoch clock that only moves when the client sleeps."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def gh_fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


def _client(
    fake: FakeGitHub, clock: FakeClock, session: aiohttp.ClientSession, **kw: Any
) -> GitHubClient:
    return GitHubClient(
        session,
        token=TOKEN,
        base_url=fake.base,
        cache=kw.pop("cache", ResponseCache()),
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(0),
        **kw,
    )


def test_link_header_parsing():
    h = '<https://x/y?page=2>; rel="next", <https://x/y?page=5>; rel="last"'
    assert parse_link_header(h) == {"next": "https://x/y?page=2", "last": "https://x/y?page=5"}
    assert parse_link_header(None) == {}


def test_pagination_across_three_pages_and_304_from_cache(gh_fake):
    clock = FakeClock()

    async def go() -> tuple[list[Any], list[Any]]:
        async with aiohttp.ClientSession() as session:
            gh = _client(gh_fake, clock, session)
            first = await gh.list_open_prs("octo", "repo")
            second = await gh.list_open_prs("octo", "repo")
            return first, second

    first, second = asyncio.run(go())
    assert [p["number"] for p in first] == list(range(1, N_PRS + 1))
    assert second == first
    reqs = gh_fake.requests
    assert len(reqs) == 6  # 3 pages, then 3 conditional requests: nothing refetched
    assert all(r["query"]["per_page"] == "100" and r["query"]["state"] == "open" for r in reqs)
    assert [r["query"].get("page", "1") for r in reqs] == ["1", "2", "3"] * 2
    assert [r["status"] for r in reqs] == [200, 200, 200, 304, 304, 304]
    assert all(r["if_none_match"] is None for r in reqs[:3])
    assert all(r["if_none_match"] for r in reqs[3:])
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in reqs)


def test_rate_limit_waits_until_reset_with_mocked_clock(gh_fake):
    clock = FakeClock()
    reset = clock.now + 30
    gh_fake.script["/repos/octo/repo/pulls"] = [
        (
            403,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(reset))},
            {"message": "API rate limit exceeded"},
        ),
        (429, {"retry-after": "7"}, {"message": "You have exceeded a secondary rate limit"}),
    ]

    async def go() -> list[Any]:
        async with aiohttp.ClientSession() as session:
            return await _client(gh_fake, clock, session).list_open_prs("octo", "repo")

    prs = asyncio.run(go())
    assert len(prs) == N_PRS
    assert clock.slept == [pytest.approx(31.0), 7.0]  # reset - now + 1 s, then retry-after


def test_exhausted_remaining_waits_before_next_request(gh_fake):
    clock = FakeClock()
    gh_fake.script["/repos/octo/repo/pulls/1"] = [
        (
            200,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(clock.now + 100))},
            {**gh_fake.prs[0], "mergeable": True},
        )
    ]

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            gh = _client(gh_fake, clock, session)
            await gh.get_pull("octo", "repo", 1)
            assert clock.slept == []
            await gh.get_pull("octo", "repo", 2)  # waits for the reset first

    asyncio.run(go())
    assert clock.slept == [pytest.approx(101.0)]


def test_5xx_retries_with_jittered_backoff(gh_fake):
    clock = FakeClock()
    gh_fake.script["/repos/octo/repo/pulls"] = [
        (502, {}, {"message": "Bad Gateway"}),
        (503, {}, {"message": "Unavailable"}),
        (500, {}, {"message": "oops"}),
    ]

    async def go(**kw: Any) -> list[Any]:
        async with aiohttp.ClientSession() as session:
            return await _client(gh_fake, clock, session, backoff=1.0, **kw).list_open_prs(
                "octo", "repo"
            )

    assert len(asyncio.run(go())) == N_PRS
    assert len(clock.slept) == 3
    for k, d in enumerate(clock.slept):
        assert 0.0 <= d <= 2.0**k  # full jitter under the exponential cap
    assert len(set(clock.slept)) == 3
    gh_fake.script["/repos/octo/repo/pulls"] = [(500, {}, {"message": "down"})] * 3
    clock.slept.clear()
    with pytest.raises(GitHubError, match="GitHub API 500 for GET /repos/octo/repo/pulls"):
        asyncio.run(go(max_retries=2))
    assert len(clock.slept) == 2


def test_401_is_a_clear_error_and_the_token_is_never_logged(gh_fake, caplog):
    clock = FakeClock()
    gh_fake.script["/repos/octo/repo/pulls"] = [
        (502, {}, {"message": "Bad Gateway"}),
        (401, {}, {"message": "Bad credentials"}),
    ]
    caplog.set_level(logging.DEBUG)

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            gh = _client(gh_fake, clock, session)
            assert TOKEN not in repr(gh)
            await gh.list_open_prs("octo", "repo")

    with pytest.raises(GitHubAuthError) as exc:
        asyncio.run(go())
    msg = str(exc.value)
    assert "401" in msg
    assert "Bad credentials" in msg
    assert "GITHUB_TOKEN" in msg
    assert TOKEN not in msg
    assert caplog.records, "the retry should have been logged"
    for rec in caplog.records:
        assert TOKEN not in rec.getMessage()
        assert TOKEN not in str(rec.args)
    assert gh_fake.requests[-1]["auth"] == f"Bearer {TOKEN}"  # it was sent, just not logged


def test_403_without_rate_limit_is_an_error(gh_fake):
    gh_fake.script["/repos/octo/repo/pulls"] = [(403, {}, {"message": "Resource not accessible"})]

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            await _client(gh_fake, FakeClock(), session).list_open_prs("octo", "repo")

    with pytest.raises(GitHubError, match=r"403.*Resource not accessible"):
        asyncio.run(go())


def test_links_off_the_api_host_are_refused(gh_fake):
    gh_fake.script["/repos/octo/repo/pulls"] = [
        (200, {"Link": '<http://evil.example/steal?page=2>; rel="next"'}, [gh_fake.prs[0]])
    ]

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            await _client(gh_fake, FakeClock(), session).list_open_prs("octo", "repo")

    with pytest.raises(GitHubError, match="off the API host"):
        asyncio.run(go())
    assert len(gh_fake.requests) == 1


def test_mergeable_is_polled_until_computed(gh_fake):
    clock = FakeClock()

    async def go() -> tuple[bool, bool]:
        async with aiohttp.ClientSession() as session:
            gh = _client(gh_fake, clock, session)
            a = await check_mergeable("octo", "repo", 4, client=gh, poll_interval=2.0)
            b = await check_mergeable("octo", "repo", 6, client=gh, poll_interval=2.0)
            return a, b

    assert asyncio.run(go()) == (True, False)
    assert gh_fake.detail_calls == {4: 3, 6: 3}
    assert clock.slept == [2.0, 2.0, 2.0, 2.0]
    gh_fake.mergeable_after = 100

    async def never() -> None:
        async with aiohttp.ClientSession() as session:
            await _client(gh_fake, clock, session).wait_mergeable("octo", "repo", 5, max_polls=3)

    with pytest.raises(TimeoutError, match="after 3 polls"):
        asyncio.run(never())


def test_module_functions_share_a_session(gh_fake, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    gh_fake.mergeable_after = 0

    async def go() -> tuple[int, bool]:
        async with aiohttp.ClientSession() as session:
            prs = await list_open_prs("octo", "repo", session, base_url=gh_fake.base)
            ok = await check_mergeable("octo", "repo", 1, session, base_url=gh_fake.base)
            assert not session.closed  # a shared session is left open for the caller
            return len(prs), ok

    assert asyncio.run(go()) == (N_PRS, True)
    assert gh_fake.requests[0]["auth"] == f"Bearer {TOKEN}"


def test_validation():
    with pytest.raises(ValueError, match="owner must be a GitHub name"):
        asyncio.run(list_open_prs("bad owner", "repo", base_url="http://127.0.0.1:1"))
    with pytest.raises(ValueError, match="base_url must be an http"):
        GitHubClient(base_url="ftp://x")
    with pytest.raises(ValueError, match="max_retries must be >= 0"):
        GitHubClient(max_retries=-1, base_url="http://127.0.0.1:1")


def test_main_use_asyncio_against_fake(gh_fake, capsys, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    gh_fake.prs = gh_fake.prs[:5]
    gh_fake.mergeable_after = 0
    code = main(["octo/repo", "--use-asyncio", "--base-url", gh_fake.base, "--poll-interval", "0"])
    out = capsys.readouterr()
    assert code == 0, out.err
    lines = out.out.strip().splitlines()
    assert len(lines) == 5
    assert lines[2].startswith("#3\tmergeable=False\tfeature-3 -> main")
    assert lines[0].startswith("#1\tmergeable=True")
    assert TOKEN not in out.out + out.err
    code = main(["octo/repo", "--base-url", gh_fake.base, "--no-mergeable"])
    assert code == 0
    assert "mergeable=unchecked" in capsys.readouterr().out
    gh_fake.script["/repos/octo/repo/pulls"] = [(401, {}, {"message": "Bad credentials"})]
    assert main(["octo/repo", "--use-asyncio", "--base-url", gh_fake.base]) == 1
    err = capsys.readouterr().err
    assert "Bad credentials" in err
    assert TOKEN not in err
    assert main(["not-a-repo-spec"]) == 2
