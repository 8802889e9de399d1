"""AutoBench (A-2): run every test module in its own pytest process and score the results.

Each module runs as ``python -m pytest MODULE --junitxml=...`` in a subprocess of its own, so
that one module's imports, global state, hangs or crashes cannot touch another's (the same
isolation pytest-isolate and pytest-xdist's ``--forked`` aim at). Modules run ``-j N`` at a
time; a module still running after ``--timeout`` seconds is killed with its whole process
group and reported as ``timeout``; a module that segfaults or calls ``os._exit`` is reported
as ``crashed``. Counts come from pytest's JUnit XML.

CLI::

    python -m seedbed.devtools.autobench tests/ -j 4 --timeout 60 --junit report.xml
    python -m seedbed.devtools.autobench tests/ -- -k "not slow"   # extra pytest arguments

Exit codes: 0 every module passed (or was skipped/empty), 1 something failed, errored, hung or
crashed, 2 bad input.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

__all__ = [
    "ModuleResult",
    "discover_modules",
    "main",
    "merge_junit",
    "run_autobench",
    "run_module",
    "summarize_results",
]

# statuses that count as success; anything else makes the run fail
OK_STATUSES = ("passed", "skipped", "empty")
_SKIP_DIRS = {"__pycache__", "node_modules", "build", "dist"}


@dataclass
class ModuleResult:
    """One row of the scoreboard: a test module (or, for the conflict checker, a PR)."""

    module: str  # name shown in the scoreboard (path relative to the run directory)
    status: str  # passed | failed | error | timeout | crashed | skipped | empty
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0  # wall time of the module's process
    returncode: int | None = None
    output: str = ""  # stdout and stderr of the process, interleaved
    detail: str = ""  # one-line reason for a non-passing status
    junit: str | None = None  # the module's JUnit XML, None when it wrote none

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES


def discover_modules(path: str | os.PathLike[str]) -> list[Path]:
    """Test modules under ``path`` (``test_*.py`` and ``*_test.py``), sorted; a file is itself.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"autobench: {str(root)!r} does not exist")
    if root.is_file():
        return [root]
    found = []
    for p in root.rglob("*.py"):
        rel = p.relative_to(root).parts[:-1]
        if any(part.startswith(".") or part in _SKIP_DIRS for part in rel):
            continue
        if p.name.startswith("test_") or p.name.endswith("_test.py"):
            found.append(p)
    return sorted(found)


def _pytest_command(
    module: Path, xml: Path, pytest_args: Sequence[str], env: Mapping[str, str]
) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", str(module), f"--junitxml={xml}"]
    cmd += ["-o", "junit_family=xunit2", "-p", "no:cacheprovider", "-q", "-rfE"]
    autoload = not env.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    if autoload and importlib.util.find_spec("xdist") is not None:
        cmd += ["-n", "0"]  # one process per module already; override a config's -n N
    return cmd + list(pytest_args)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows has no process groups of this kind
            proc.kill()
    except ProcessLookupError:
        pass


def _count(xml_text: str) -> tuple[int, int, int, int]:
    """(passed, failed, errors, skipped) from a pytest JUnit XML report."""
    root = ET.fromstring(xml_text)
    passed = failed = errors = skipped = 0
    for case in root.iter("testcase"):
        tags = {child.tag for child in case}
        if "error" in tags:
            errors += 1
        elif "failure" in tags:
            failed += 1
        elif "skipped" in tags:
            skipped += 1
        else:
            passed += 1
    return passed, failed, errors, skipped


def _signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


def run_module(
    module: str | os.PathLike[str],
    *,
    timeout: float = 300.0,
    pytest_args: Sequence[str] = (),
    name: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> ModuleResult:
    """Run one test module in a fresh ``pytest`` process and score it.

    Args:
        module: path of the test module.
        timeout: seconds before the process group is killed (status ``timeout``).
        pytest_args: extra arguments for pytest.
        name: the name shown in the scoreboard (default: the path as given).
        cwd: working directory of the process (default: the module's directory).
        env: extra environment variables for the process (on top of ``os.environ``), e.g.
            ``{"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}`` for a lean start.

    Returns:
        The module's :class:`ModuleResult`; a crash or a hang is a result, never an exception.
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    path = Path(module)
    label = name if name is not None else str(path)
    with tempfile.TemporaryDirectory(prefix="autobench-") as tmp:
        xml = Path(tmp) / "report.xml"
        full_env = {**os.environ, **(env or {})}
        cmd = _pytest_command(path, xml, pytest_args, full_env)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(cwd) if cwd is not None else str(path.parent.resolve()),
            env=full_env,
            start_new_session=(os.name == "posix"),
        )
        timed_out = False
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            out, _ = proc.communicate()
        secs = time.perf_counter() - t0
        output = out.decode("utf-8", errors="replace")
        rc = proc.returncode
        junit = xml.read_text("utf-8") if xml.exists() else None
    res = ModuleResult(label, "passed", seconds=secs, returncode=rc, output=output, junit=junit)
    counts = None
    if junit is not None:
        try:
            counts = _count(junit)
        except ET.ParseError:
            counts, res.junit = None, None
    if counts is not None:
        res.passed, res.failed, res.errors, res.skipped = counts
    if timed_out:
        res.status, res.detail = "timeout", f"no result after {timeout:g} s; killed"
        res.errors = max(res.errors, 1)
    elif rc is not None and rc < 0:
        res.status, res.detail = "crashed", f"killed by {_signal_name(rc)}"
        res.errors = max(res.errors, 1)
    elif counts is None:
        res.status = "crashed"
        res.detail = f"exited with code {rc} before writing its report"
        res.errors = max(res.errors, 1)
    elif res.errors:
        res.status, res.detail = "error", f"{res.errors} error(s)"
    elif res.failed:
        res.status, res.detail = "failed", f"{res.failed} test(s) failed"
    elif rc not in (0, 5):
        res.status, res.detail = "error", f"pytest exited with code {rc}"
    elif res.passed == 0 and res.skipped == 0:
        res.status, res.detail = "empty", "no tests collected"
    elif res.passed == 0:
        res.status = "skipped"
    return res


def run_autobench(
    path: str | os.PathLike[str],
    *,
    jobs: int = 1,
    timeout: float = 300.0,
    pytest_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    progress: bool = False,
) -> list[ModuleResult]:
    """Run every test module under ``path``, ``jobs`` at a time, one process each.

    Returns:
        One :class:`ModuleResult` per module, in discovery (sorted path) order.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``jobs < 1``, ``timeout <= 0``, or no test module under ``path``.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    root = Path(path)
    modules = discover_modules(root)
    if not modules:
        raise ValueError(f"no test modules (test_*.py or *_test.py) under {str(root)!r}")
    base = root if root.is_dir() else root.parent
    names = [str(m.relative_to(base)) for m in modules]
    results: list[ModuleResult | None] = [None] * len(modules)
    bar = tqdm(total=len(modules), desc="autobench", unit="module", disable=not progress)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {
            pool.submit(
                run_module,
                m,
                timeout=timeout,
                pytest_args=pytest_args,
                name=n,
                cwd=base.resolve(),
                env=env,
            ): k
            for k, (m, n) in enumerate(zip(modules, names))
        }
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            bar.update(1)
    bar.close()
    return [r for r in results if r is not None]


def summarize_results(results: Sequence[ModuleResult], *, show_output: bool = True) -> str:
    """The scoreboard (status, pass/fail/error/skip counts and time per module), a totals
    line, and the full output of every module that did not pass."""
    head = ("module", "status", "pass", "fail", "error", "skip", "time")
    rows = [
        (
            r.module,
            r.status if r.ok else r.status.upper(),
            str(r.passed),
            str(r.failed),
            str(r.errors),
            str(r.skipped),
            f"{r.seconds:.2f}s",
        )
        for r in results
    ]
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]

    def fmt(cells: Sequence[str]) -> str:
        left = [c.ljust(w) for c, w in zip(cells[:2], widths[:2])]
        right = [c.rjust(w) for c, w in zip(cells[2:], widths[2:])]
        return "  ".join(left + right)

    lines = [fmt(head), "  ".join("-" * w for w in widths)]
    for r, row in zip(results, rows):
        lines.append(fmt(row) + (f"  ({r.detail})" if r.detail and not r.ok else ""))
    bad = [r for r in results if not r.ok]
    total = (
        f"{len(results)} modules: {len(results) - len(bad)} ok, {len(bad)} not ok "
        f"({sum(r.passed for r in results)} passed, {sum(r.failed for r in results)} failed, "
        f"{sum(r.errors for r in results)} errors, {sum(r.skipped for r in results)} skipped) "
        f"in {sum(r.seconds for r in results):.2f}s of process time"
    )
    lines += ["", total]
    if show_output:
        for r in bad:
            lines += ["", f"==== {r.module}: {r.status} ({r.detail}) ====", r.output.rstrip()]
    return "\n".join(lines)


def merge_junit(results: Sequence[ModuleResult]) -> str:
    """One JUnit XML document with a ``<testsuite>`` per module; a module that wrote no
    report (hang, crash) gets a synthesized suite with one ``<error>`` test case."""
    root = ET.Element("testsuites", name="autobench")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    time_total = 0.0
    for r in results:
        suites = []
        if r.junit is not None and r.status not in ("timeout", "crashed"):
            parsed = ET.fromstring(r.junit)
            suites = [parsed] if parsed.tag == "testsuite" else list(parsed.iter("testsuite"))
        if not suites:
            suite = ET.Element("testsuite", name=r.module)
            case = ET.SubElement(suite, "testcase", classname=r.module, name=r.module)
            case.set("time", f"{r.seconds:.3f}")
            err = ET.SubElement(case, "error", message=f"{r.status}: {r.detail}")
            err.text = r.output
            suites = [suite]
        for suite in suites:
            suite.set("name", r.module)
            suite.set("time", f"{r.seconds:.3f}")
            cases = list(suite.iter("testcase"))
            counts = {
                "tests": len(cases),
                "failures": sum(any(c.tag == "failure" for c in case) for case in cases),
                "errors": sum(any(c.tag == "error" for c in case) for case in cases),
                "skipped": sum(
                    any(c.tag == "skipped" for c in case)
                    and not any(c.tag in ("failure", "error") for c in case)
                    for case in cases
                ),
            }
            for k, v in counts.items():
                suite.set(k, str(v))
                totals[k] += v
            root.append(suite)
        time_total += r.seconds
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", f"{time_total:.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; see the module docstring for the exit codes."""
    p = argparse.ArgumentParser(
        prog="python -m seedbed.devtools.autobench",
        description="Run each test module in its own pytest process and print a scoreboard.",
    )
    p.add_argument("path", type=Path, help="directory of test modules (or one module)")
    p.add_argument("-j", "--jobs", type=int, default=1, help="modules run in parallel")
    p.add_argument(
        "--timeout", type=float, default=300.0, help="seconds per module before it is killed"
    )
    p.add_argument("--junit", type=Path, help="write a merged JUnit XML report here")
    p.add_argument("--no-output", action="store_true", help="omit the failing modules' output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = p.parse_args(argv)
    try:
        results = run_autobench(
            args.path,
            jobs=args.jobs,
            timeout=args.timeout,
            pytest_args=args.pytest_args,
            progress=not args.no_progress,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"autobench: error: {exc}", file=sys.stderr)
        return 2
    print(summarize_results(results, show_output=not args.no_output))
    if args.junit is not None:
        try:
            args.junit.write_text(merge_junit(results), encoding="utf-8")
        except OSError as exc:
            print(f"autobench: error: cannot write {args.junit}: {exc}", file=sys.stderr)
            return 2
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
