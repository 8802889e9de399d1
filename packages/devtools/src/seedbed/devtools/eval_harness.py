"""``seedbed-eval``: discover, run and report every registered Seedbed benchmark.

Packages register benchmarks under the entry-point group ``seedbed.benchmarks``. An entry
point resolves to a callable benchmark or to a list of them. A benchmark is called as
``bench(full=False)`` and returns an iterable of metric mappings with the keys ``name``,
``value``, ``unit``, ``target``, ``higher_is_better`` and optionally ``series`` (a list of
``{x, y, xlabel, ylabel, label, logx, logy}``) and ``note``. devtools imports no sibling
package: it reads these as plain data.

Usage::

    seedbed-eval                    # quick sizes, all installed packages
    seedbed-eval --only 'core_layers:*' --out results/ --strict
    seedbed-eval --full             # paper-scale sizes, their own targets
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from tqdm import tqdm

from seedbed.devtools.malloc import keep_freed_memory

__all__ = [
    "ENTRY_POINT_GROUP",
    "BenchmarkSpec",
    "Row",
    "discover_benchmarks",
    "main",
    "run_benchmarks",
    "write_reports",
]

ENTRY_POINT_GROUP = "seedbed.benchmarks"


@dataclass(frozen=True)
class BenchmarkSpec:
    """A discovered benchmark: ``package:name`` and the callable that runs it."""

    package: str  # entry-point name, e.g. "core_layers"
    name: str  # the benchmark callable's __name__
    fn: Callable[..., Iterable[Mapping[str, Any]]]

    @property
    def qualname(self) -> str:
        return f"{self.package}:{self.name}"


@dataclass
class Row:
    """One line of the results table: a metric, or an error from a benchmark that raised."""

    package: str
    benchmark: str
    metric: str
    value: float | None
    unit: str = ""
    target: float | None = None
    higher_is_better: bool = True
    status: str = "info"  # "pass", "fail", "info" (no target) or "error"
    note: str = ""
    seconds: float = 0.0  # wall time of the whole benchmark
    series: list[dict[str, Any]] = field(default_factory=list)


class UsageError(Exception):
    """Bad command-line input: reported as one line, exit code 2."""


def discover_benchmarks() -> list[BenchmarkSpec]:
    """All benchmarks registered by installed packages, sorted by qualified name.

    An entry point that fails to load is reported as a benchmark that raises the load error,
    so that one broken package never hides the others.
    """
    specs: list[BenchmarkSpec] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # surfaced as an error row when run
            err = exc

            def _raise(full: bool = False, _err: BaseException = err) -> list[dict[str, Any]]:
                raise RuntimeError(f"could not load entry point: {_err!r}") from _err

            specs.append(BenchmarkSpec(ep.name, "<load>", _raise))
            continue
        fns = obj if isinstance(obj, (list, tuple)) else [obj]
        for fn in fns:
            if not callable(fn):
                continue
            specs.append(BenchmarkSpec(ep.name, getattr(fn, "__name__", repr(fn)), fn))
    return sorted(specs, key=lambda s: s.qualname)


def select(specs: Sequence[BenchmarkSpec], patterns: Sequence[str]) -> list[BenchmarkSpec]:
    """Benchmarks whose ``package:name`` matches any glob (a bare word matches as a substring).

    Raises:
        UsageError: a pattern matches no benchmark.
    """
    if not patterns:
        return list(specs)
    chosen: list[BenchmarkSpec] = []
    for pat in patterns:
        glob = pat if any(ch in pat for ch in "*?[") else f"*{pat}*"
        hits = [s for s in specs if fnmatch.fnmatchcase(s.qualname, glob)]
        if not hits:
            known = ", ".join(s.qualname for s in specs) or "none installed"
            raise UsageError(f"--only {pat!r} matches no benchmark (known: {known})")
        chosen.extend(h for h in hits if h not in chosen)
    return sorted(chosen, key=lambda s: s.qualname)


def _status(value: float, target: float | None, higher: bool) -> str:
    if target is None:
        return "info"
    if math.isnan(value):
        return "fail"
    return "pass" if (value >= target if higher else value <= target) else "fail"


def _rows_from(spec: BenchmarkSpec, metrics: Iterable[Mapping[str, Any]], secs: float) -> list[Row]:
    rows = []
    for m in metrics:
        value = float(m["value"])
        target = m.get("target")
        target = None if target is None else float(target)
        higher = bool(m.get("higher_is_better", True))
        rows.append(
            Row(
                spec.package,
                spec.name,
                str(m["name"]),
                value,
                str(m.get("unit", "")),
                target,
                higher,
                _status(value, target, higher),
                str(m.get("note", "")),
                secs,
                [dict(s) for s in m.get("series", []) or []],
            )
        )
    if not rows:
        rows.append(
            Row(
                spec.package,
                spec.name,
                "-",
                None,
                status="error",
                note="benchmark returned no metrics",
                seconds=secs,
            )
        )
    return rows


def run_benchmarks(
    specs: Sequence[BenchmarkSpec], *, full: bool = False, progress: bool = True
) -> list[Row]:
    """Run each benchmark; one that raises becomes an ``error`` row and the rest still run."""
    rows: list[Row] = []
    bar = tqdm(specs, desc="benchmarks", unit="bench", disable=not progress, file=sys.stderr)
    for spec in bar:
        bar.set_postfix_str(spec.qualname)
        t0 = time.perf_counter()
        try:
            metrics = list(spec.fn(full=full))
            rows.extend(_rows_from(spec, metrics, time.perf_counter() - t0))
        except Exception as exc:
            tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
            rows.append(
                Row(
                    spec.package,
                    spec.name,
                    "-",
                    None,
                    status="error",
                    note=tb,
                    seconds=time.perf_counter() - t0,
                )
            )
    return rows


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v == 0 or 1e-3 <= abs(v) < 1e6:
        return f"{v:.4g}"
    return f"{v:.3e}"


_COLUMNS = ("package", "benchmark", "metric", "value", "unit", "target", "pass/fail")


def _table_cells(rows: Sequence[Row]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for r in rows:
        tgt = "-" if r.target is None else ("≥ " if r.higher_is_better else "≤ ") + _fmt(r.target)
        verdict = {"pass": "PASS", "fail": "FAIL", "info": "-", "error": "ERROR"}[r.status]
        out.append((r.package, r.benchmark, r.metric, _fmt(r.value), r.unit, tgt, verdict))
    return out


def format_table(rows: Sequence[Row]) -> str:
    """Plain-text table of the results, one row per metric."""
    cells = [_COLUMNS, *_table_cells(rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(c))).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    errors = [r for r in rows if r.status == "error"]
    for r in errors:
        lines.append(f"error in {r.package}:{r.benchmark}: {r.note}")
    return "\n".join(lines)


def _markdown(rows: Sequence[Row], full: bool, charts: Sequence[str], allocator: str | None) -> str:
    head = "| " + " | ".join(_COLUMNS) + " | note |\n|" + "---|" * (len(_COLUMNS) + 1) + "\n"
    body = "".join(
        "| " + " | ".join(c) + f" | {r.note.replace('|', '/')} |\n"
        for r, c in zip(rows, _table_cells(rows))
    )
    n_pass = sum(r.status == "pass" for r in rows)
    n_fail = sum(r.status == "fail" for r in rows)
    n_err = sum(r.status == "error" for r in rows)
    md = f"# Seedbed benchmark results ({'full' if full else 'quick'} sizes)\n\n"
    md += f"{n_pass} passed, {n_fail} failed, {n_err} errors.\n\n"
    if allocator:
        md += f"Memory allocator: {allocator}.\n\n"
    md += head + body
    for c in charts:
        md += f"\n![{c}]({c})\n"
    return md


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".probe-"):
            pass
    except OSError as exc:
        raise UsageError(
            f"--out {str(out)!r} is not a writable directory ({exc.strerror})"
        ) from exc


def _atomic_write(path: Path, data: str | bytes) -> None:
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _plot(rows: Sequence[Row], out: Path) -> list[str]:
    """One PNG per metric that carries series; returns the file names written."""
    with_series = [r for r in rows if r.series]
    if not with_series:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for r in with_series:
        fig, ax = plt.subplots(figsize=(6, 4))
        for s in r.series:
            ax.plot(s["x"], s["y"], marker="o", label=s.get("label") or None)
        s0 = r.series[0]
        ax.set_xlabel(s0.get("xlabel", "x"))
        ax.set_ylabel(s0.get("ylabel", "y"))
        if s0.get("logx"):
            ax.set_xscale("log")
        if s0.get("logy"):
            ax.set_yscale("log")
        if any(s.get("label") for s in r.series):
            ax.legend()
        ax.set_title(f"{r.package}:{r.benchmark} — {r.metric}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        name = f"{r.package}__{r.benchmark}__{r.metric}.png".replace("/", "_")
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        names.append(name)
    return names


def write_reports(
    rows: Sequence[Row], out: Path, *, full: bool = False, allocator: str | None = None
) -> list[Path]:
    """Write results.json, results.md and one PNG chart per metric with a series.
    ``allocator`` describes the process's malloc settings (:func:`keep_freed_memory`)."""
    charts = _plot(rows, out)
    payload = {
        "mode": "full" if full else "quick",
        "allocator": allocator,
        "rows": [asdict(r) for r in rows],
    }
    _atomic_write(out / "results.json", json.dumps(payload, indent=2, allow_nan=True))
    _atomic_write(out / "results.md", _markdown(rows, full, charts, allocator))
    return [out / "results.json", out / "results.md", *(out / c for c in charts)]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seedbed-eval",
        description="Run every benchmark that installed Seedbed packages register.",
    )
    p.add_argument("--full", action="store_true", help="paper-scale sizes and their targets")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="glob on package:benchmark (a bare word matches as a substring); repeatable",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("results"),
        help="directory for results.json, results.md and charts (default: results)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc's malloc settings as they are (by default freed memory is kept "
        "for reuse, so that timings do not depend on page faults; see seedbed.devtools.malloc)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point. Exit codes: 0 ok, 1 a target missed under --strict (or an error row),
    2 bad input."""
    args = _parser().parse_args(argv)
    try:
        specs = select(discover_benchmarks(), args.only)
        if args.list:
            print("\n".join(s.qualname for s in specs))
            return 0
        _check_writable(args.out)
    except UsageError as exc:
        print(f"seedbed-eval: error: {exc}", file=sys.stderr)
        return 2
    allocator = "system malloc (--system-malloc)" if args.system_malloc else keep_freed_memory()
    print(f"memory allocator: {allocator}", file=sys.stderr)
    rows = run_benchmarks(specs, full=args.full, progress=not args.no_progress)
    print(format_table(rows))
    paths = write_reports(rows, args.out, full=args.full, allocator=allocator)
    print(f"\nwrote {', '.join(str(p) for p in paths)}")
    bad = [r for r in rows if r.status in ("fail", "error")]
    return 1 if args.strict and bad else 0


if __name__ == "__main__":
    sys.exit(main())
