"""PR conflict checker on a real temporary git repository: clean vs conflicting merges."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from seedbed.devtools import pr_conflict_checker as pcc
from seedbed.devtools.pr_conflict_checker import (
    check_branches,
    check_merge,
    check_prs,
    main,
    require_merge_tree,
)

if shutil.which("git") is None:
    pytest.skip("git is not installed", allow_module_level=True)
try:
    require_merge_tree()
except RuntimeError as exc:
    pytest.skip(str(exc), allow_module_level=True)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _commit(repo: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)


A = "a = 1\nb = {b}\nc = 3\nd = 4\ne = 5\nf = {f}\n"  # lines 2 and 6 change independently


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    _git(r, "init", "-q", "-b", "main")
    _git(r, "config", "user.email", "test@example.com")
    _git(r, "config", "user.name", "Test")
    _git(r, "config", "commit.gpgsign", "false")
    base = {"src/a.py": A.format(b=2, f=6), "src/b.py": "x = 1\n", "README": "hello\n"}
    _commit(r, base, "base")
    _git(r, "branch", "clean")
    _git(r, "branch", "conflict")
    # main moves on: edits a.py line 2 and b.py
    _commit(r, {"src/a.py": A.format(b=20, f=6), "src/b.py": "x = 10\n"}, "main edits")
    # clean: touches other lines/files only
    _git(r, "checkout", "-q", "clean")
    _commit(r, {"src/a.py": A.format(b=2, f=60), "docs/new.md": "doc\n"}, "clean edits")
    # conflict: edits the same lines as main, plus a file main did not touch
    _git(r, "checkout", "-q", "conflict")
    _commit(
        r,
        {"src/a.py": A.format(b=200, f=6), "src/b.py": "x = 100\n", "README": "hi\n"},
        "conflicting edits",
    )
    _git(r, "checkout", "-q", "main")
    return r


def _snapshot(repo: Path) -> tuple[str, str, str, str]:
    index = hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest()
    return (
        _git(repo, "rev-parse", "HEAD"),
        _git(repo, "status", "--porcelain", "--untracked-files=all"),
        index,
        _git(repo, "for-each-ref"),
    )


def test_clean_and_conflicting_merges_are_told_apart(repo):
    before = _snapshot(repo)
    clean = check_merge(repo, "main", "clean")
    bad = check_merge(repo, "main", "conflict")
    assert clean.error is None
    assert clean.clean
    assert clean.conflicts == []
    assert bad.error is None
    assert not bad.clean
    assert bad.conflicts == ["src/a.py", "src/b.py"]  # README changed on one side only
    base_sha = _git(repo, "rev-parse", "main~1")
    assert clean.merge_base == bad.merge_base == base_sha
    assert clean.tree
    assert bad.tree
    # the merged tree of the clean merge holds both sides' edits
    merged = _git(repo, "cat-file", "-p", f"{clean.tree}:src/a.py")
    assert merged == A.format(b=20, f=60).strip()
    assert _snapshot(repo) == before  # no work tree, index, HEAD or ref touched


def test_scoreboard_rows(repo):
    rows = check_branches(repo, "main", ["clean", "conflict", "no-such-branch"])
    got = [(r.module, r.status, r.passed, r.failed, r.errors) for r in rows]
    assert got == [
        ("clean -> main", "passed", 1, 0, 0),
        ("conflict -> main", "failed", 0, 2, 0),
        ("no-such-branch -> main", "error", 0, 0, 1),
    ]
    assert "src/a.py" in rows[1].output
    assert "src/b.py" in rows[1].output
    assert rows[1].detail == "2 conflicting file(s): src/a.py, src/b.py"
    assert "unknown commit 'no-such-branch'" in rows[2].detail


def test_check_prs_from_github_style_dicts(repo):
    prs = [
        {
            "number": 7,
            "title": "Clean change",
            "head": {"ref": "clean", "sha": _git(repo, "rev-parse", "clean")},
            "base": {"ref": "main"},
        },
        {
            "number": 9,
            "title": "Conflicting change",
            "head": {"ref": "conflict", "sha": _git(repo, "rev-parse", "conflict")},
            "base": {"ref": "main"},
        },
    ]
    rows = check_prs(repo, prs)
    assert [(r.module, r.status, r.failed) for r in rows] == [
        ("#7 Clean change", "passed", 0),
        ("#9 Conflicting change", "failed", 2),
    ]
    with pytest.raises(ValueError, match="needs 'number', 'base' and 'head'"):
        check_prs(repo, [{"title": "x"}])


def test_fetch_pr_heads_from_a_remote(repo, tmp_path):
    # GitHub serves PR heads as refs/pull/N/head; a bare "remote" with such refs stands in
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(remote)], check=True)
    _git(remote, "update-ref", "refs/pull/3/head", _git(repo, "rev-parse", "conflict"))
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(remote), str(clone)], check=True)
    pr = {"number": 3, "title": "from a fork", "head": {"sha": "0" * 40}, "base": {"ref": "main"}}
    (row,) = check_prs(clone, [pr], remote="origin", fetch=True)
    assert (row.status, row.failed) == ("failed", 2)
    assert _git(clone, "status", "--porcelain") == ""


def test_unrelated_histories_are_an_error(repo):
    _git(repo, "checkout", "-q", "--orphan", "island")
    _git(repo, "rm", "-rqf", ".")
    _commit(repo, {"other.txt": "x\n"}, "island")
    _git(repo, "checkout", "-q", "main")
    check = check_merge(repo, "main", "island")
    assert check.error == "no common ancestor (unrelated histories)"


def test_git_version_checks(monkeypatch):
    assert pcc._parse_version("git version 2.39.5") == (2, 39, 5)
    assert pcc._parse_version("git version 2.37.1.windows.1") == (2, 37, 1)
    with pytest.raises(RuntimeError, match="cannot run"):
        pcc.git_version("/nonexistent/git")
    monkeypatch.setattr(pcc, "git_version", lambda git="git": (2, 37, 1))
    with pytest.raises(RuntimeError, match=r"needs git >= 2.38, found 2.37.1"):
        require_merge_tree()


def test_cli(repo, capsys, tmp_path):
    assert main(["--repo-dir", str(repo), "--base", "main", "--head", "clean"]) == 0
    assert "clean -> main" in capsys.readouterr().out
    assert main(["--repo-dir", str(repo), "--base", "main", "--head", "clean", "conflict"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out
    assert "src/b.py" in out
    assert main(["--repo-dir", str(tmp_path / "nope"), "--base", "main", "--head", "x"]) == 2


def test_cli_github_mode_uses_list_open_prs(repo, capsys, monkeypatch):
    # a minimal fake GitHub API on 127.0.0.1 serving the repository's two branches as PRs
    import asyncio
    import threading

    from aiohttp import web

    prs = [
        {"number": n, "title": b, "head": {"ref": b, "sha": _git(repo, "rev-parse", b)}}
        | {"base": {"ref": "main"}}
        for n, b in ((1, "clean"), (2, "conflict"))
    ]

    async def pulls(request: web.Request) -> web.Response:
        assert request.query["state"] == "open"
        return web.json_response(prs)

    app = web.Application()
    app.router.add_get("/repos/octo/repo/pulls", pulls)
    runner = web.AppRunner(app)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> str:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    base = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    try:
        code = main(["--repo-dir", str(repo), "--github", "octo/repo", "--base-url", base])
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    out = capsys.readouterr().out
    assert code == 1
    assert "#1 clean" in out
    assert "#2 conflict" in out
    row = next(ln for ln in out.splitlines() if ln.startswith("#2 conflict"))
    assert row.split()[2:7] == ["FAILED", "0", "2", "0", "0"]
