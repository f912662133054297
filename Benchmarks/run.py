#!/usr/bin/env python3
"""Builds every benchmark participant, runs them, and prints one comparison table.

Start it through run.sh, which first installs what the participants need. See README.md.

Each participant is a program `... BENCH N` that runs one workload once and prints JSON lines:
    {"bench": "B1", "impl": "UVLoop", "metric": "callbacks/s", "value": 123.0, "n": 1000000}
A participant that cannot be built or fails shows as "n/a", with the reason under the table.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

HERE = Path(__file__).resolve().parent
LOGS = HERE / ".build-logs"
BASELINE = "UVLoop"


@dataclass
class Benchmark:
    id: str
    title: str
    n: int  # the workload size every participant gets
    quick_n: int  # the size for --quick


BENCHMARKS = [
    Benchmark("B1", "callSoon throughput: n trivial callbacks scheduled from inside the loop", 1_000_000, 100_000),
    Benchmark("B2", "timers: n timers, delays 0-100 ms (xorshift32, seed 42)", 100_000, 10_000),
    Benchmark("B3", "cross-thread: 4 threads post n callbacks in total (callSoonThreadsafe)", 1_000_000, 100_000),
]


@dataclass
class Participant:
    name: str  # the table column; also the "impl" its JSON lines carry
    build: Callable[[], list]  # builds it and returns the command prefix, or raises BuildError
    command: Optional[list] = None
    failure: Optional[str] = None  # why it shows "n/a"
    failures: dict = field(default_factory=dict)  # bench id -> why that bench shows "n/a"


class BuildError(Exception):
    pass


def run_logged(command, log_name, env=None):
    """Runs a build step, keeping its output in .build-logs/; raises BuildError if it fails."""
    LOGS.mkdir(exist_ok=True)
    log = LOGS / log_name
    with open(log, "w") as out:
        status = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    if status != 0:
        raise BuildError(f"build failed (exit {status}), see {log.relative_to(HERE.parent)}")


def swift_build(product, scratch=".build", env=None):
    """Builds one executable product in release mode and returns its path."""
    base = ["swift", "build", "-c", "release", "--package-path", str(HERE), "--scratch-path", str(HERE / scratch)]
    run_logged(base + ["--product", product], f"{product}-{scratch.lstrip('.')}.log", env)
    bin_dir = subprocess.run(base + ["--show-bin-path"], capture_output=True, text=True, env=env).stdout.strip()
    return [str(Path(bin_dir) / product)]


def build_uvloop():
    return swift_build("bench-uvloop")


def build_nio():
    try:
        return swift_build("bench-nio")
    except BuildError:
        # If the root package (UVLoop) cannot even be loaded, nothing in this package builds: retry
        # with a manifest that leaves UVLoop out, in a scratch directory of its own.
        env = dict(os.environ, BENCHMARKS_WITHOUT_UVLOOP="1")
        return swift_build("bench-nio", scratch=".build-without-uvloop", env=env)


def build_libuv():
    binary = HERE / ".build-c" / "bench_libuv"
    binary.parent.mkdir(exist_ok=True)
    run_logged(["cc", "-O2", "-o", str(binary), str(HERE / "c" / "bench_libuv.c"), "-luv", "-lpthread"], "bench_libuv.log")
    return [str(binary)]


def python_loop(kind):
    def build():
        if kind == "uvloop" and subprocess.run([sys.executable, "-c", "import uvloop"], capture_output=True).returncode:
            raise BuildError("the uvloop module is not installed (python3 -m pip install uvloop)")
        return [sys.executable, str(HERE / "python" / "bench_asyncio.py"), "--loop", kind]

    return build


# Column order of the table. A new participant (say swift-subprocess) is one more entry here.
PARTICIPANTS = [
    Participant(BASELINE, build_uvloop),
    Participant("libuv", build_libuv),
    Participant("SwiftNIO", build_nio),
    Participant("uvloop", python_loop("uvloop")),
    Participant("asyncio", python_loop("asyncio")),
]


def higher_is_better(metric):
    """Rates ("callbacks/s") are better higher; times and everything else, lower."""
    return metric.endswith("/s")


def run_once(participant, bench, n, timeout):
    """Runs one participant on one benchmark; returns {metric: value} or raises RuntimeError."""
    try:
        done = subprocess.run(participant.command + [bench.id, str(n)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {timeout} s")
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no message"]
        message = lines[-1] if lines[0].startswith("Traceback") else lines[0]  # Python's error is last
        raise RuntimeError(f"exit {done.returncode}: {message}")
    values = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            values[record["metric"]] = float(record["value"])
    if not values:
        raise RuntimeError("printed no result")
    return values


def format_value(metric, value):
    if value is None:
        return "n/a"
    if higher_is_better(metric):
        for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= scale:
                return f"{value / scale:.2f}{suffix}"
    return f"{value:.1f}"


def format_ratio(value, peer):
    if value is None or peer is None or value <= 0 or peer <= 0:
        return "n/a"
    return f"{value / peer:.2f}x"


def print_table(rows, participants, stat, repeat, quick):
    peers = [p.name for p in participants if p.name != BASELINE]
    header = ["bench", "metric"] + [p.name for p in participants] + [f"{BASELINE}/{peer}" for peer in peers]
    lines = []
    for (bench_id, metric), values in rows.items():
        direction = "higher better" if higher_is_better(metric) else "lower better"
        cells = [bench_id, f"{metric} ({direction})"]
        cells += [format_value(metric, values.get(p.name)) for p in participants]
        cells += [format_ratio(values.get(BASELINE), values.get(peer)) for peer in peers]
        lines.append(cells)
    widths = [max(len(row[i]) for row in [header] + lines) for i in range(len(header))]

    def show(cells):
        left = [cells[i].ljust(widths[i]) for i in range(2)]
        right = [cells[i].rjust(widths[i]) for i in range(2, len(cells))]
        print("  ".join(left + right))

    size = "quick sizes" if quick else "full sizes"
    print(f"\n{stat.capitalize()} of {repeat} run(s) per participant, {size}.")
    show(header)
    print("  ".join("-" * w for w in widths))
    for cells in lines:
        show(cells)
    print(
        f"\nRatio columns: {BASELINE}'s value divided by the peer's, on the same row.\n"
        f"  higher-better rows (callbacks/s): above 1.00x means {BASELINE} is faster than the peer.\n"
        f"  lower-better rows (ms): below 1.00x means {BASELINE} is better; these are {BASELINE}/peer\n"
        f"  times, e.g. 2.00x on 'overhead ms' means {BASELINE} overshoots the last timer twice as much.\n"
        "  A ratio is n/a when either side is missing or not positive (an overhead can be ~0 or negative)."
    )


def parse_args():
    parser = argparse.ArgumentParser(description="Run the UVLoop benchmarks (see README.md).")
    parser.add_argument("--only", help="comma-separated benchmark ids, e.g. B1,B3 (default: all)")
    parser.add_argument("--impl", help="comma-separated participants, e.g. UVLoop,libuv (default: all)")
    parser.add_argument("--repeat", type=int, help="runs per participant and benchmark (default 5, 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="small workloads, one run: a smoke test")
    parser.add_argument("--stat", choices=["best", "median"], default="best", help="how runs are summarised (default best)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds before one run counts as failed")
    args = parser.parse_args()
    args.repeat = args.repeat or (1 if args.quick else 5)
    return args


def select(items, wanted, key, what):
    if not wanted:
        return items
    names = [name.strip() for name in wanted.split(",") if name.strip()]
    unknown = [name for name in names if name not in {key(item) for item in items}]
    if unknown:
        sys.exit(f"unknown {what}: {', '.join(unknown)}; known: {', '.join(key(item) for item in items)}")
    return [item for item in items if key(item) in names]


def summarise(samples, metric, stat):
    if stat == "median":
        return statistics.median(samples)
    return max(samples) if higher_is_better(metric) else min(samples)


def main():
    args = parse_args()
    benchmarks = select(BENCHMARKS, args.only, lambda b: b.id, "benchmark")
    participants = select(PARTICIPANTS, args.impl, lambda p: p.name, "participant")
    started = time.monotonic()

    for participant in participants:
        print(f"building {participant.name} ...", file=sys.stderr, flush=True)
        try:
            participant.command = participant.build()
        except (BuildError, OSError) as error:
            participant.failure = str(error)
            print(f"  n/a: {participant.failure}", file=sys.stderr)
    runnable = [p for p in participants if p.command]

    # samples[(bench, metric)][participant] = [value per run]; rounds interleave the participants
    # so that a noisy moment on this shared machine does not hit just one of them.
    samples = {}
    for bench in benchmarks:
        n = bench.quick_n if args.quick else bench.n
        print(f"{bench.id} (n={n}): {bench.title}", file=sys.stderr, flush=True)
        for round_number in range(1, args.repeat + 1):
            progress = []
            for participant in runnable:
                if bench.id in participant.failures:
                    continue
                try:
                    values = run_once(participant, bench, n, args.timeout)
                except RuntimeError as error:
                    participant.failures[bench.id] = str(error)
                    progress.append(f"{participant.name} failed")
                    continue
                for metric, value in values.items():
                    samples.setdefault((bench.id, metric), {}).setdefault(participant.name, []).append(value)
                first_metric = next(iter(values))
                progress.append(f"{participant.name} {format_value(first_metric, values[first_metric])}")
            print(f"  run {round_number}/{args.repeat}: " + ", ".join(progress), file=sys.stderr, flush=True)

    rows = {
        key: {name: summarise(values, key[1], args.stat) for name, values in by_participant.items()}
        for key, by_participant in samples.items()
    }
    print_table(rows, participants, args.stat, args.repeat, args.quick)

    notes = [f"  {p.name}: {p.failure}" for p in participants if p.failure]
    notes += [f"  {p.name} on {bench}: {why}" for p in participants for bench, why in p.failures.items()]
    if notes:
        print("\nFailures (a cell is n/a when no run succeeded):")
        print("\n".join(notes))
    print(f"\nTotal time {time.monotonic() - started:.0f} s.")


if __name__ == "__main__":
    main()
