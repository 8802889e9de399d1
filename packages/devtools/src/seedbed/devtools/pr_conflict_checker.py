"""PR conflict checks (A-9): would each pull request merge cleanly into its base branch?

For each PR this runs, on a local clone, ``git merge-base BASE HEAD`` and
``git merge-tree --write-tree --name-only BASE HEAD`` (git >= 2.38). ``merge-tree`` performs
the merge in git's object database only: the work tree, the index, ``HEAD`` and every ref stay
as they were. Its exit status says clean (0) or conflicted (1), and it lists the conflicted
paths. Results come back as AutoBench scoreboard rows (:class:`~.autobench.ModuleResult`):
``passed`` for a clean merge, ``failed`` with one failure per conflicting file, ``error``
when git could not answer (unknown commit, unrelated histories).

CLI::

    # local branches
    python -m seedbed.devtools.pr_conflict_checker --repo-dir . --base main --head feat-a feat-b
    # the open PRs of a GitHub repository (heads fetched as refs/pull/N/head)
    python -m seedbed.devtools.pr_conflict_checker --repo-dir . --github OWNER/REPO --fetch
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seedbed.devtools.autobench import ModuleResult, summarize_results

__all__ = [
    "MIN_GIT",
    "GitError",
    "MergeCheck",
    "check_branches",
    "check_merge",
    "check_prs",
    "fetch_pr_heads",
    "git_version",
    "main",
    "require_merge_tree",
]

MIN_GIT = (2, 38)  # first release with `git merge-tree --write-tree`
_ENV = {"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}


class GitError(RuntimeError):
    """A git command that failed; the message carries git's own stderr."""


def _git(
    repo: str | os.PathLike[str], *args: str, git: str = "git"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [git, "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **_ENV},
        check=False,
    )


def git_version(git: str = "git") -> tuple[int, ...]:
    """The installed git's version, e.g. ``(2, 39, 5)``.

    Raises:
        RuntimeError: git is not installed or its version cannot be read.
    """
    try:
        out = subprocess.run([git, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError(f"cannot run {git!r}: {exc}") from exc
    return _parse_version(out)


def _parse_version(text: str) -> tuple[int, ...]:
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        raise RuntimeError(f"cannot read a git version from {text.strip()!r}")
    return tuple(int(g) for g in m.groups() if g is not None)


def require_merge_tree(git: str = "git") -> None:
    """Raise a clear RuntimeError unless git supports ``merge-tree --write-tree``."""
    version = git_version(git)
    if version[:2] < MIN_GIT:
        have = ".".join(map(str, version))
        raise RuntimeError(
            f"git merge-tree --write-tree needs git >= {MIN_GIT[0]}.{MIN_GIT[1]}, found {have}"
        )


@dataclass
class MergeCheck:
    """The outcome of merging ``head`` into ``base`` in the object database."""

    base: str  # the refs or commits as given
    head: str
    base_sha: str | None = None
    head_sha: str | None = None
    merge_base: str | None = None  # None: no common ancestor (or an error before it)
    clean: bool = False
    conflicts: list[str] = field(default_factory=list)  # conflicted paths, sorted
    tree: str | None = None  # the merged tree (with conflict markers when not clean)
    error: str | None = None  # git's complaint when it could not answer


def _resolve(repo: str | os.PathLike[str], ref: str, git: str) -> str:
    r = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", git=git)
    if r.returncode != 0:
        raise GitError(f"unknown commit {ref!r}")
    return r.stdout.strip()


def check_merge(
    repo: str | os.PathLike[str], base: str, head: str, *, git: str = "git"
) -> MergeCheck:
    """Merge ``head`` into ``base`` without touching the work tree; list conflicting files.

    Raises:
        FileNotFoundError: ``repo`` is not a directory.
        RuntimeError: git is missing or older than 2.38.
    """
    if not Path(repo).is_dir():
        raise FileNotFoundError(f"repository directory {str(repo)!r} does not exist")
    require_merge_tree(git)
    res = MergeCheck(base, head)
    try:
        res.base_sha = _resolve(repo, base, git)
        res.head_sha = _resolve(repo, head, git)
    except GitError as exc:
        res.error = str(exc)
        return res
    mb = _git(repo, "merge-base", res.base_sha, res.head_sha, git=git)
    if mb.returncode != 0:
        res.error = (
            "no common ancestor (unrelated histories)" if mb.returncode == 1 else mb.stderr.strip()
        )
        return res
    res.merge_base = mb.stdout.strip()
    mt = _git(
        repo,
        "merge-tree",
        "--write-tree",
        "--name-only",
        "--no-messages",
        "-z",
        res.base_sha,
        res.head_sha,
        git=git,
    )
    if mt.returncode not in (0, 1):
        res.error = mt.stderr.strip() or f"git merge-tree exited with {mt.returncode}"
        return res
    fields = [f for f in mt.stdout.split("\0") if f]
    res.tree = fields[0] if fields else None
    res.conflicts = sorted(set(fields[1:]))
    res.clean = mt.returncode == 0
    return res


def _row(name: str, check: MergeCheck, seconds: float) -> ModuleResult:
    lines = [f"base {check.base} ({check.base_sha}) <- head {check.head} ({check.head_sha})"]
    if check.error is not None:
        lines.append(f"error: {check.error}")
        return ModuleResult(
            name, "error", errors=1, seconds=seconds, output="\n".join(lines), detail=check.error
        )
    lines.append(f"merge-base {check.merge_base}")
    if check.clean:
        lines.append("merges cleanly")
        return ModuleResult(name, "passed", passed=1, seconds=seconds, output="\n".join(lines))
    lines.append("conflicting files:")
    lines += [f"  {p}" for p in check.conflicts]
    shown = ", ".join(check.conflicts[:5]) + (", ..." if len(check.conflicts) > 5 else "")
    return ModuleResult(
        name,
        "failed",
        failed=len(check.conflicts),
        seconds=seconds,
        output="\n".join(lines),
        detail=f"{len(check.conflicts)} conflicting file(s): {shown}",
    )


def check_branches(
    repo: str | os.PathLike[str], base: str, heads: Iterable[str], *, git: str = "git"
) -> list[ModuleResult]:
    """Scoreboard rows for merging each of ``heads`` into ``base``."""
    rows = []
    for head in heads:
        t0 = time.perf_counter()
        check = check_merge(repo, base, head, git=git)
        rows.append(_row(f"{head} -> {base}", check, time.perf_counter() - t0))
    return rows


def fetch_pr_heads(
    repo: str | os.PathLike[str],
    numbers: Iterable[int],
    *,
    remote: str = "origin",
    git: str = "git",
) -> dict[int, str]:
    """Fetch ``refs/pull/N/head`` from ``remote`` into ``refs/remotes/<remote>/pr/N``.

    Only refs and objects are written; the work tree and the index are not touched.

    Returns:
        ``{N: local ref}``.

    Raises:
        GitError: the fetch failed.
    """
    nums = [int(n) for n in numbers]
    if not nums:
        return {}
    specs = [f"+refs/pull/{n}/head:refs/remotes/{remote}/pr/{n}" for n in nums]
    r = _git(repo, "fetch", "--quiet", "--no-tags", remote, *specs, git=git)
    if r.returncode != 0:
        raise GitError(f"git fetch {remote} failed: {r.stderr.strip()}")
    return {n: f"refs/remotes/{remote}/pr/{n}" for n in nums}


def check_prs(
    repo: str | os.PathLike[str],
    prs: Sequence[Mapping[str, Any]],
    *,
    remote: str | None = None,
    fetch: bool = False,
    git: str = "git",
) -> list[ModuleResult]:
    """Scoreboard rows for GitHub pull requests (as :func:`list_open_prs` returns them).

    Each PR's head is its ``head.sha`` (or, with ``fetch=True``, ``refs/pull/N/head`` fetched
    from ``remote``); its base is ``base.ref``, prefixed with ``remote/`` when a remote is
    given (the remote-tracking branch of a clone).
    """
    if fetch and remote is None:
        remote = "origin"
    for pr in prs:
        if not isinstance(pr, Mapping) or "number" not in pr or "base" not in pr:
            raise ValueError(f"each PR needs 'number', 'base' and 'head' fields, got {pr!r}")
    heads = (
        fetch_pr_heads(repo, [pr["number"] for pr in prs], remote=remote or "origin", git=git)
        if fetch
        else {}
    )
    rows = []
    for pr in prs:
        n = int(pr["number"])
        base = pr["base"]["ref"]
        if remote:
            base = f"{remote}/{base}"
        head = heads.get(n) or pr["head"]["sha"]
        t0 = time.perf_counter()
        check = check_merge(repo, base, head, git=git)
        title = str(pr.get("title", ""))[:40]
        rows.append(_row(f"#{n} {title}".rstrip(), check, time.perf_counter() - t0))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """CLI. Exit codes: 0 every merge is clean, 1 a conflict or a git error, 2 bad input."""
    p = argparse.ArgumentParser(
        prog="python -m seedbed.devtools.pr_conflict_checker",
        description="Check whether branches or pull requests merge cleanly (git merge-tree).",
    )
    p.add_argument("--repo-dir", type=Path, default=Path("."), help="local clone (default: .)")
    p.add_argument("--base", help="base branch for --head")
    p.add_argument("--head", nargs="+", default=[], help="branches or commits to check")
    p.add_argument("--github", metavar="OWNER/REPO", help="check the open PRs of this repository")
    p.add_argument("--remote", default=None, help="remote of the clone (base refs are REMOTE/BASE)")
    p.add_argument("--fetch", action="store_true", help="fetch refs/pull/N/head from the remote")
    p.add_argument(
        "--base-url", help="GitHub API root (default: $GITHUB_API_URL or api.github.com)"
    )
    args = p.parse_args(argv)
    try:
        if args.github:
            from seedbed.devtools.pull_request_monitor import GitHubError, list_open_prs

            owner, _, name = args.github.partition("/")
            try:
                prs = asyncio.run(list_open_prs(owner, name, base_url=args.base_url))
            except GitHubError as exc:
                print(f"pr_conflict_checker: error: {exc}", file=sys.stderr)
                return 1
            rows = check_prs(args.repo_dir, prs, remote=args.remote, fetch=args.fetch)
        elif args.base and args.head:
            rows = check_branches(args.repo_dir, args.base, args.head)
        else:
            p.error("give --base and --head, or --github OWNER/REPO")
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"pr_conflict_checker: error: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print("nothing to check")
        return 0
    print(summarize_results(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
