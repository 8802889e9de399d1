"""Pull-request monitor: list open PRs and their mergeability through the GitHub REST API.

Follows GitHub's REST conventions (as gidgethub does):

- ``Link`` header pagination (``per_page=100``), with each next page checked to be on the
  API host so the token is never sent elsewhere;
- conditional requests: responses are cached by URL with their ``ETag`` and re-requested
  with ``If-None-Match``; a ``304 Not Modified`` is answered from the cache, not refetched
  (and does not count against the rate limit);
- rate limits: ``x-ratelimit-remaining``/``x-ratelimit-reset`` are honoured before the next
  request, and a 403/429 waits for ``retry-after`` (or the reset time) and tries again;
- 5xx responses and connection errors are retried with exponentially growing, fully jittered
  delays;
- ``mergeable`` is ``null`` until GitHub has computed it in the background, so
  :meth:`GitHubClient.wait_mergeable` polls until it is set.

The token comes from ``GITHUB_TOKEN`` (or ``token=``) and never appears in a log line, an
exception or a ``repr``. The API base URL is ``GITHUB_API_URL`` or ``https://api.github.com``
(tests point it at a local fake).

CLI::

    python -m seedbed.devtools.pull_request_monitor OWNER/REPO --use-asyncio
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import random
import re
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

__all__ = [
    "GitHubAuthError",
    "GitHubClient",
    "GitHubError",
    "ResponseCache",
    "check_mergeable",
    "list_open_prs",
    "main",
    "parse_link_header",
]

log = logging.getLogger(__name__)

DEFAULT_API = "https://api.github.com"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_LINK_RE = re.compile(r'<([^>]+)>\s*;\s*rel="([^"]+)"')


class GitHubError(RuntimeError):
    """A GitHub API request that failed; carries the status and the request path."""

    def __init__(self, status: int, path: str, message: str) -> None:
        self.status = status
        self.path = path
        super().__init__(f"GitHub API {status} for GET {path}: {message}")


class GitHubAuthError(GitHubError):
    """401: the token is missing, wrong or expired (the token itself is never shown)."""


def parse_link_header(value: str | None) -> dict[str, str]:
    """``rel -> URL`` from a ``Link`` header (``<url>; rel="next", ...``)."""
    return {rel: url for url, rel in _LINK_RE.findall(value or "")}


@dataclass
class _Entry:
    etag: str
    body: Any
    link: str | None


class ResponseCache:
    """ETag cache: URL (and a hash of the credentials) -> (ETag, decoded body, Link header)."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, str], _Entry] = {}

    def get(self, who: str, url: str) -> _Entry | None:
        return self._data.get((who, url))

    def put(self, who: str, url: str, entry: _Entry) -> None:
        self._data[(who, url)] = entry

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()


_DEFAULT_CACHE = ResponseCache()


def _fingerprint(token: str | None) -> str:
    return hashlib.sha256((token or "").encode()).hexdigest()[:16]


def _message(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:200] or "(no body)"
    if isinstance(data, dict) and "message" in data:
        return str(data["message"])
    return text.strip()[:200]


def _check_name(kind: str, value: str) -> None:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(f"{kind} must be a GitHub name ([A-Za-z0-9_.-]+), got {value!r}")


class GitHubClient:
    """A small asynchronous GitHub REST client (one ``aiohttp`` session, shared or owned).

    Args:
        session: an open ``aiohttp.ClientSession`` to share; when None the client opens one
            in ``async with`` and closes it on exit.
        token: API token; None reads ``GITHUB_TOKEN`` (unauthenticated when unset).
        base_url: API root; None reads ``GITHUB_API_URL``, else ``https://api.github.com``.
        cache: ETag cache (default: one shared by every client in the process).
        max_retries: retries of a 5xx response or a connection error.
        backoff: base of the jittered exponential backoff, seconds.
        max_backoff: cap of one backoff delay, seconds.
        max_rate_limit_wait: longest rate-limit wait accepted before raising, seconds.
        max_rate_limit_retries: 403/429 rate-limit answers accepted for one request.
        clock: wall clock in epoch seconds (``x-ratelimit-reset`` is an epoch time).
        sleep: the coroutine used to wait (tests pass a fake that advances a fake clock).
        rng: random source of the jitter.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        token: str | None = None,
        base_url: str | None = None,
        cache: ResponseCache | None = None,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        max_rate_limit_wait: float = 3600.0,
        max_rate_limit_retries: int = 5,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if backoff < 0 or max_backoff < 0:
            raise ValueError(f"backoff must be >= 0, got {backoff} and {max_backoff}")
        self._token = token if token is not None else os.environ.get("GITHUB_TOKEN") or None
        base = base_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API
        self.base_url = URL(base.rstrip("/"))
        if self.base_url.scheme not in ("http", "https") or not self.base_url.host:
            raise ValueError(f"base_url must be an http(s) URL, got {base!r}")
        self.cache = cache if cache is not None else _DEFAULT_CACHE
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_rate_limit_wait = max_rate_limit_wait
        self.max_rate_limit_retries = max_rate_limit_retries
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self._session = session
        self._owns_session = session is None
        self._who = _fingerprint(self._token)
        self.rate_remaining: int | None = None  # from the last response's headers
        self.rate_reset: float | None = None

    def __repr__(self) -> str:
        auth = "token" if self._token else "anonymous"
        return f"GitHubClient(base_url={str(self.base_url)!r}, auth={auth})"

    async def __aenter__(self) -> GitHubClient:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # ---- low level ------------------------------------------------------------------------
    def _headers(self, etag: str | None) -> dict[str, str]:
        h = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "seedbed-devtools-pr-monitor",
        }
        if self._token:
            h["Authorization"] = f"Bearer {self._token}"
        if etag:
            h["If-None-Match"] = etag
        return h

    def _note_rate(self, headers: Any) -> None:
        rem, reset = headers.get("x-ratelimit-remaining"), headers.get("x-ratelimit-reset")
        try:
            self.rate_remaining = int(rem) if rem is not None else self.rate_remaining
            self.rate_reset = float(reset) if reset is not None else self.rate_reset
        except ValueError:
            pass

    async def _wait(self, seconds: float, path: str, why: str) -> None:
        if seconds > self.max_rate_limit_wait:
            raise GitHubError(
                429,
                path,
                f"{why}: would wait {seconds:.0f} s (> max {self.max_rate_limit_wait:.0f} s)",
            )
        log.warning("GET %s: %s; waiting %.1f s", path, why, seconds)
        await self.sleep(seconds)

    def _rate_limit_wait(self, status: int, headers: Any, message: str) -> float | None:
        """Seconds to wait before retrying a 403/429, or None if it is not a rate limit."""
        retry_after = headers.get("retry-after")
        if retry_after is not None:
            try:
                return max(float(retry_after), 0.0)
            except ValueError:
                pass
        if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
            try:
                return max(float(headers["x-ratelimit-reset"]) - self.clock(), 0.0) + 1.0
            except ValueError:
                pass
        if status == 429 or "rate limit" in message.lower():
            return 60.0  # secondary rate limit without headers: GitHub asks for >= 1 minute
        return None

    def _check_url(self, url: URL) -> None:
        if url.origin() != self.base_url.origin():
            raise GitHubError(
                0, url.path, f"refusing to follow a link off the API host ({url.host})"
            )

    async def get(self, url: str | URL) -> tuple[Any, str | None]:
        """GET a URL on the API host: ``(decoded JSON body, Link header)``.

        Raises:
            GitHubAuthError: 401.
            GitHubError: any other failure that retries did not fix.
        """
        if self._session is None:
            raise RuntimeError("use the client as 'async with GitHubClient(...) as gh:'")
        url = URL(url)
        self._check_url(url)
        path = url.path_qs
        key = str(url)
        attempt = limited = 0
        while True:
            if (
                self.rate_remaining == 0
                and self.rate_reset is not None
                and self.rate_reset > self.clock()
            ):
                await self._wait(self.rate_reset - self.clock() + 1.0, path, "rate limit exhausted")
                self.rate_remaining = None
            cached = self.cache.get(self._who, key)
            try:
                async with self._session.get(
                    url, headers=self._headers(cached.etag if cached else None)
                ) as resp:
                    status = resp.status
                    headers: Mapping[str, str] = resp.headers
                    self._note_rate(headers)
                    if status == 304 and cached is not None:
                        log.debug("GET %s: 304 not modified (served from cache)", path)
                        return cached.body, cached.link
                    if 200 <= status < 300:
                        body = await resp.json(content_type=None)
                        link = headers.get("Link")
                        etag = headers.get("ETag")
                        if etag:
                            self.cache.put(self._who, key, _Entry(etag, body, link))
                        log.debug("GET %s: %d", path, status)
                        return body, link
                    text = await resp.text()
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                if attempt >= self.max_retries:
                    raise GitHubError(0, path, f"connection failed: {type(exc).__name__}") from None
                status, text, headers = 0, type(exc).__name__, {}
            message = _message(text)
            if status == 401:
                raise GitHubAuthError(
                    401,
                    path,
                    f"{message}: GitHub rejected the credentials; check GITHUB_TOKEN",
                )
            if status in (403, 429):
                wait = self._rate_limit_wait(status, headers, message)
                if wait is None:
                    raise GitHubError(status, path, message)
                limited += 1
                if limited > self.max_rate_limit_retries:
                    raise GitHubError(
                        status, path, f"{message} (still rate limited after {limited - 1} waits)"
                    )
                await self._wait(wait, path, f"rate limited ({status})")
                continue
            if (status == 0 or status >= 500) and attempt < self.max_retries:
                delay = self.rng.uniform(0.0, min(self.max_backoff, self.backoff * 2**attempt))
                attempt += 1
                log.warning(
                    "GET %s: %s; retry %d/%d in %.2f s",
                    path,
                    status or message,
                    attempt,
                    self.max_retries,
                    delay,
                )
                await self.sleep(delay)
                continue
            raise GitHubError(status, path, message)

    async def paginate(self, path: str, params: dict[str, str] | None = None) -> list[Any]:
        """Every item of a list endpoint, following ``rel="next"`` links."""
        url: URL | None = (self.base_url / path.lstrip("/")).with_query(params or {})
        items: list[Any] = []
        while url is not None:
            body, link = await self.get(url)
            if not isinstance(body, list):
                raise GitHubError(200, url.path, f"expected a JSON list, got {type(body).__name__}")
            items.extend(body)
            nxt = parse_link_header(link).get("next")
            url = URL(nxt) if nxt else None
        return items

    # ---- endpoints ------------------------------------------------------------------------
    async def list_open_prs(self, owner: str, repo: str) -> list[dict[str, Any]]:
        """All open pull requests of ``owner/repo`` (100 per page)."""
        _check_name("owner", owner)
        _check_name("repo", repo)
        return await self.paginate(
            f"repos/{owner}/{repo}/pulls", {"state": "open", "per_page": "100"}
        )

    async def get_pull(self, owner: str, repo: str, number: int) -> dict[str, Any]:
        _check_name("owner", owner)
        _check_name("repo", repo)
        if not isinstance(number, int) or number < 1:
            raise ValueError(f"number must be a positive int, got {number!r}")
        body, _ = await self.get(self.base_url / f"repos/{owner}/{repo}/pulls/{number}")
        return body  # type: ignore[no-any-return]

    async def wait_mergeable(
        self,
        owner: str,
        repo: str,
        number: int,
        *,
        poll_interval: float = 2.0,
        max_polls: int = 10,
    ) -> dict[str, Any]:
        """Poll a pull request until GitHub has computed ``mergeable`` (not null).

        Raises:
            TimeoutError: still null after ``max_polls`` requests.
        """
        if max_polls < 1:
            raise ValueError(f"max_polls must be >= 1, got {max_polls}")
        for k in range(max_polls):
            pr = await self.get_pull(owner, repo, number)
            if pr.get("mergeable") is not None:
                return pr
            if k + 1 < max_polls:
                log.debug("PR #%d: mergeable not computed yet; polling again", number)
                await self.sleep(poll_interval)
        raise TimeoutError(
            f"GitHub had not computed 'mergeable' for {owner}/{repo}#{number} after {max_polls} polls"
        )


async def list_open_prs(
    owner: str,
    repo: str,
    session: aiohttp.ClientSession | None = None,
    *,
    token: str | None = None,
    base_url: str | None = None,
    client: GitHubClient | None = None,
) -> list[dict[str, Any]]:
    """Open pull requests of ``owner/repo``; pass ``session`` to share one across calls."""
    if client is not None:
        return await client.list_open_prs(owner, repo)
    async with GitHubClient(session, token=token, base_url=base_url) as gh:
        return await gh.list_open_prs(owner, repo)


async def check_mergeable(
    owner: str,
    repo: str,
    number: int,
    session: aiohttp.ClientSession | None = None,
    *,
    token: str | None = None,
    base_url: str | None = None,
    client: GitHubClient | None = None,
    poll_interval: float = 2.0,
    max_polls: int = 10,
) -> bool:
    """Whether pull request ``number`` can be merged, once GitHub has computed it."""
    if client is not None:
        pr = await client.wait_mergeable(
            owner, repo, number, poll_interval=poll_interval, max_polls=max_polls
        )
    else:
        async with GitHubClient(session, token=token, base_url=base_url) as gh:
            pr = await gh.wait_mergeable(
                owner, repo, number, poll_interval=poll_interval, max_polls=max_polls
            )
    return bool(pr["mergeable"])


def _line(pr: dict[str, Any], mergeable: bool | str | None) -> str:
    head = (pr.get("head") or {}).get("ref", "?")
    base = (pr.get("base") or {}).get("ref", "?")
    return f"#{pr.get('number')}\tmergeable={mergeable}\t{head} -> {base}\t{pr.get('title', '')}"


async def _run_shared(args: argparse.Namespace, owner: str, repo: str) -> list[str]:
    """--use-asyncio: one event loop, one shared session, mergeability checked concurrently."""
    async with aiohttp.ClientSession() as session:
        gh = GitHubClient(session, base_url=args.base_url)
        prs = await gh.list_open_prs(owner, repo)
        if args.no_mergeable:
            return [_line(pr, "unchecked") for pr in prs]
        gate = asyncio.Semaphore(args.concurrency)

        async def one(pr: dict[str, Any]) -> str:
            async with gate:
                try:
                    full = await gh.wait_mergeable(
                        owner,
                        repo,
                        pr["number"],
                        poll_interval=args.poll_interval,
                        max_polls=args.max_polls,
                    )
                    return _line(pr, bool(full["mergeable"]))
                except TimeoutError:
                    return _line(pr, None)

        return list(await asyncio.gather(*(one(pr) for pr in prs)))


def _run_sequential(args: argparse.Namespace, owner: str, repo: str) -> list[str]:
    """Without --use-asyncio: one blocking call after another, each with its own session."""
    prs = asyncio.run(list_open_prs(owner, repo, base_url=args.base_url))
    lines = []
    for pr in prs:
        if args.no_mergeable:
            lines.append(_line(pr, "unchecked"))
            continue
        try:
            ok: bool | None = asyncio.run(
                check_mergeable(
                    owner,
                    repo,
                    pr["number"],
                    base_url=args.base_url,
                    poll_interval=args.poll_interval,
                    max_polls=args.max_polls,
                )
            )
        except TimeoutError:
            ok = None
        lines.append(_line(pr, ok))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: list the open PRs of OWNER/REPO with their mergeability.

    Exit codes: 0 listed, 1 the GitHub API failed, 2 bad input.
    """
    p = argparse.ArgumentParser(
        prog="python -m seedbed.devtools.pull_request_monitor",
        description="List open pull requests and whether GitHub can merge them.",
    )
    p.add_argument("repository", help="OWNER/REPO")
    p.add_argument(
        "--use-asyncio",
        action="store_true",
        help="one event loop and one shared HTTP session; check PRs concurrently",
    )
    p.add_argument("--base-url", help="API root (default: $GITHUB_API_URL or api.github.com)")
    p.add_argument("--no-mergeable", action="store_true", help="only list the PRs")
    p.add_argument("--poll-interval", type=float, default=2.0, help="seconds between polls")
    p.add_argument("--max-polls", type=int, default=10, help="polls of 'mergeable' per PR")
    p.add_argument("--concurrency", type=int, default=8, help="PRs checked at once (asyncio)")
    p.add_argument("-v", "--verbose", action="store_true", help="log requests to stderr")
    args = p.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    owner, _, repo = args.repository.partition("/")
    try:
        _check_name("owner", owner)
        _check_name("repo", repo)
        if args.concurrency < 1 or args.max_polls < 1:
            raise ValueError("--concurrency and --max-polls must be >= 1")
        if args.use_asyncio:
            lines = asyncio.run(_run_shared(args, owner, repo))
        else:
            lines = _run_sequential(args, owner, repo)
    except ValueError as exc:
        print(f"pull_request_monitor: error: {exc}", file=sys.stderr)
        return 2
    except GitHubError as exc:
        print(f"pull_request_monitor: error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines) if lines else f"no open pull requests in {owner}/{repo}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
