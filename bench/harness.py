"""The benchmark harness: ours beside the anchor, same data, same run, alternating.

The rules are in ../shared/BENCHMARKING.md.

Every benchmark builds a list of `Contender`s (ours first), a check that their answers agree, and
calls `compare`. The harness warms each up once, checks agreement (exit non-zero if not), runs at
least five alternating rounds, prints a table and appends a dated section to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "docs" / "BENCHMARKS.md"


class DisagreementError(RuntimeError):
    """Ours and the anchor gave different answers: timing them would be meaningless."""


@dataclass
class Contender:
    """One way of doing the work: ``run`` returns the answer that `agree` compares."""

    name: str
    run: Callable[[], Any]
    setup: Callable[[], None] | None = None


@dataclass
class Result:
    """Timings of one contender."""

    name: str
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """Median of the timed rounds."""
        return statistics.median(self.seconds)

    def p95(self) -> float:
        """95th percentile (nearest rank) of the timed rounds."""
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def machine() -> str:
    """Cores, memory and Python of this machine, for the record."""
    try:
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        memory = f"{mem_kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration):
        memory = "?"
    system = f"{platform.system()} {platform.machine()}, Python {platform.python_version()}"
    return f"{os.cpu_count()} cores (nproc), {memory} RAM, {system}"


def peak_rss_mib() -> float:
    """Peak resident memory of this process and its waited-for children, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def process_cpu_seconds() -> float:
    """CPU seconds (user + system) this process and its waited-for children have used so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _stat_times(pid: int) -> tuple[int, list[int]]:
    """(parent pid, [utime, stime, cutime, cstime] in clock ticks) from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), [int(t) for t in fields[11:15]]


def local_postmaster(backend_pid: int) -> int | None:
    """The PostgreSQL server process of a backend (``SELECT pg_backend_pid()``) when the server runs on this
    machine; None when it does not (or /proc cannot tell)."""
    try:
        if Path(f"/proc/{backend_pid}/comm").read_text().strip() != "postgres":
            return None
        return _stat_times(backend_pid)[0]
    except (OSError, ValueError, IndexError):
        return None


def server_cpu_seconds(postmaster: int) -> float:
    """CPU seconds a local PostgreSQL server has used so far: the postmaster, its live children (backends,
    parallel workers, autovacuum, checkpointer, ...) and the children it has already reaped.

    Read until the postmaster's reaped-children total holds still across the read: a backend reaped
    between reading it and reading the postmaster would otherwise count twice or not at all.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    while True:
        _, before = _stat_times(postmaster)
        live = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or entry.name == str(postmaster):
                continue
            try:
                parent, times = _stat_times(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
            if parent == postmaster:
                live += times[0] + times[1]
        _, after = _stat_times(postmaster)
        if after[2:] == before[2:]:
            return (sum(after) + live) / ticks


def compare(
    contenders: Sequence[Contender],
    agree: Callable[[dict[str, Any]], None],
    *,
    rounds: int = 5,
) -> list[Result]:
    """Warm up, check agreement, then time ``rounds`` alternating rounds; ours is ``contenders[0]``."""
    answers: dict[str, Any] = {}
    for contender in contenders:
        if contender.setup:
            contender.setup()
        answers[contender.name] = contender.run()
    agree(answers)
    results = [Result(c.name) for c in contenders]
    for _ in range(rounds):
        for contender, result in zip(contenders, results, strict=True):
            if contender.setup:
                contender.setup()
            started = time.perf_counter()
            contender.run()
            result.seconds.append(time.perf_counter() - started)
    return results


def table(results: Sequence[Result], unit: str = "s") -> str:
    """A Markdown table: median, p95, min–max and the ratio to ours (the first row)."""
    ours = results[0].median
    lines = [
        f"| contender | median ({unit}) | p95 ({unit}) | min–max ({unit}) | ratio to ours |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        lines.append(
            f"| {result.name} | {result.median:.3f} | {result.p95():.3f} | "
            f"{min(result.seconds):.3f}–{max(result.seconds):.3f} | {result.median / ours:.2f}× |"
        )
    return "\n".join(lines)


def record(title: str, body: str, *, module: str, data_size: str, enabled: bool = True) -> None:
    """Print the section and append it, dated, to docs/BENCHMARKS.md (unless ``enabled`` is False)."""
    command = " ".join(["python -m", module, *sys.argv[1:]])
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
        ).stdout.strip()
    except OSError:
        commit = "?"
    section = (
        f"\n## {title} — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n\n"
        f"- machine: {machine()}\n- data: {data_size}\n- command: `{command}` (commit {commit})\n"
        f"- peak RSS of the benchmark process: {peak_rss_mib():.0f} MiB\n\n{body}\n"
    )
    print(section)
    if enabled:
        BENCHMARKS_MD.parent.mkdir(exist_ok=True)
        if not BENCHMARKS_MD.exists():
            BENCHMARKS_MD.write_text(
                "# Benchmarks\n\nWritten by `bench/` scripts from real runs, never by hand; newest last.\n",
                encoding="utf-8",
            )
        with BENCHMARKS_MD.open("a", encoding="utf-8") as out:
            out.write(section)
