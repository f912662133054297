#!/usr/bin/env python3
"""Builds every benchmark participant, runs them, and prints one comparison table.

Start it through run.sh, which first installs what the participants need. See README.md.

Each participant is a program `... BENCH N` that runs one workload once and prints JSON lines:
    {"bench": "B1", "impl": "UVLoop", "metric": "callbacks/s", "value": 123.0, "n": 1000000}
A participant that cannot be built or fails shows as "n/a", with the reason under the table.
"""

import argparse
import atexit
import json
import os
import re
import resource
import select as select_module
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
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
    # "run": the participant runs the workload itself (PROGRAM BENCH N). "echo", "http", "churn",
    # "idle", "tls-echo", "tls-handshake": the participant is a server (PROGRAM BENCH LOOPS) and
    # run.py's client measures it.
    kind: str = "run"
    # The participants that take part (None: every one whose `benches` allows it).
    impls: Optional[set] = None
    # Runs per participant when --repeat is not given (None: the default, 5; 1 with --quick).
    repeat: Optional[int] = None
    # Benchmarks with the same table are printed together, with only the columns that take part.
    table: str = "loop"


BENCHMARKS = [
    Benchmark("B1", "callSoon throughput: n trivial callbacks scheduled from inside the loop", 1_000_000, 100_000),
    Benchmark("B2", "timers: n timers, delays 0-100 ms (xorshift32, seed 42)", 100_000, 10_000),
    Benchmark("B3", "cross-thread: 4 threads post n callbacks in total (callSoonThreadsafe)", 1_000_000, 100_000),
    Benchmark("B4", "TCP echo: 8 connections ping-pong n 1 KiB messages, then n/10 64 KiB ones (c/echo_client.c)",
              200_000, 20_000, kind="echo"),
    Benchmark("B4b", "HTTP hello under wrk: n seconds with 1 loop, then with 2 loops", 5, 2, kind="http"),
    # Issue 11: executor hops (Swift participants only: asyncio has no executors to hop between).
    Benchmark("B8", "executor hops: n awaits of a loop-bound actor from the global executor; n tasks created on the loop and awaited",
              200_000, 20_000, impls={BASELINE, "SwiftNIO"}),
]

# Issue 3: spawning and child watchers. 3 runs each by default (not 5), and B5b with n = 64 (its
# "64 in flight" is then one burst of 64), so that the whole default run stays near 10 minutes: a
# fork-based spawn of a 1 GiB parent takes 30-40 ms here, so B5b's forking participants (libuv,
# uvloop, UVLoop's [libuv] watcher) need about 5 s each for 2 x 64 children.
SPAWN_PEERS = {BASELINE, "libuv", "uvloop", "asyncio", "swift-subprocess", "Foundation.Process"}
BENCHMARKS += [
    Benchmark("B5", "spawn and reap /bin/true n times, one at a time and 64 in flight, per child watcher",
              1000, 200, impls=SPAWN_PEERS, repeat=3, table="spawn"),
    Benchmark("B5b", "B5 with a parent holding 1 GiB of touched memory", 64, 16,
              impls=SPAWN_PEERS, repeat=3, table="spawn"),
    Benchmark("B6", "exit-to-callback latency: SIGKILL to wait() returning, median of n, with 1/100/1000 other live children",
              30, 10, impls={BASELINE}, repeat=3, table="watchers"),
    Benchmark("B7", "memory: RSS per pending child (n children) per watcher, and per idle EventLoop (2n loops)",
              500, 100, impls={BASELINE}, repeat=3, table="watchers"),
    # Issue 12: supervision costs (UVLoop against itself) and the loop's stall while spawning.
    Benchmark("B5c", "spawn /bin/true n times with closeFDs and 0 or 1,000 extra fds; runSubprocessExec vs createSubprocessExec + communicate",
              500, 100, impls={BASELINE}, repeat=3, table="watchers"),
    Benchmark("B9", "a 1 GiB parent's 1 ms repeating timer while n children spawn, 8 in flight: timer lateness",
              64, 16, impls={BASELINE, "uvloop", "asyncio"}, repeat=3, table="stall"),
]

# Connections (B10, B11): the servers are measured by c/conn_client.c; streams participants only.
CONNECTION_PEERS = {BASELINE, "SwiftNIO", "uvloop", "asyncio"}
BENCHMARKS += [
    Benchmark("B10", "connection churn: 8 workers connect, send 1 KiB, read the echo, close, for n seconds (c/conn_client.c)",
              5, 2, kind="churn", impls=CONNECTION_PEERS, table="connections"),
    Benchmark("B11", "idle-connection memory: n connections, each a handler waiting in a read; server Pss after minus before, over n",
              10_000, 1_000, kind="idle", impls=CONNECTION_PEERS, repeat=3, table="connections"),
]

# TLS (B12, B12b): the servers are measured by c/tls_client.c, TLS 1.3 with TLS_AES_128_GCM_SHA256
# and an ECDSA P-256 certificate made for the run; n is the seconds of each measured window.
TLS_PEERS = {BASELINE, "libuv+OpenSSL", "NIO-SSL", "uvloop"}
BENCHMARKS += [
    Benchmark("B12", "TLS 1.3 echo: 8 connections ping-pong 1 KiB messages for n seconds, then 64 KiB ones for n seconds (c/tls_client.c)",
              2, 1, kind="tls-echo", impls=TLS_PEERS, repeat=3, table="tls"),
    Benchmark("B12b", "TLS 1.3 full handshakes: 8 clients connect, handshake (no resumption), echo 64 bytes, close, for n seconds",
              3, 1, kind="tls-handshake", impls=TLS_PEERS, repeat=3, table="tls"),
]

ECHO_CONNECTIONS = 8
CHURN_WORKERS = 8
CHURN_MESSAGE_BYTES = 1024
CHURN_WARM_UP_SECONDS = 0.5  # not counted: the server's caches and the client's threads settle
IDLE_WARM_UP_CONNECTIONS = 100  # B11: opened and closed before the "before" figure
TLS_CONNECTIONS = 8  # B12's connections, B12b's clients
TLS_WARM_UP_SECONDS = 0.5  # before each B12/B12b window (B12: the 8 handshakes are in it)
TLS_HANDSHAKE_MESSAGE_BYTES = 64  # B12b's one echo per connection


@dataclass
class Participant:
    name: str  # the table column; also the "impl" its JSON lines carry
    build: Callable[[], list]  # builds it and returns the command prefix, or raises BuildError
    # The benchmarks it takes part in (None: every one; it exits 2 for those it lacks).
    benches: Optional[set] = None
    # For server benchmarks: (bench id, loops) -> the server's command; default: command + [id, loops].
    server: Optional[Callable[[str, int], list]] = None
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


SCRATCH = ".build"  # --scratch changes it, so that two people building at once do not share a lock


def swift_build(product, scratch=None, env=None, package=HERE):
    """Builds one executable product in release mode and returns its path."""
    scratch = scratch or SCRATCH
    base = ["swift", "build", "-c", "release", "--package-path", str(package), "--scratch-path", str(HERE / scratch)]
    run_logged(base + ["--product", product], f"{product}-{scratch.lstrip('.')}.log", env)
    bin_dir = subprocess.run(base + ["--show-bin-path"], capture_output=True, text=True, env=env).stdout.strip()
    return [str(Path(bin_dir) / product)]


HTTP_HELLO = None  # the http-hello example (UVLoop's B4b server), built with bench-uvloop when B4b runs
SELECTED = set()  # the ids of the benchmarks this run runs (main sets it)
UVLOOP_COMMAND = None  # bench-uvloop, once built: UVLoop+limits runs the same program
LIMITS = f"{BASELINE}+limits"  # B4's second UVLoop server: maxConnections and idleTimeout set


def build_uvloop():
    global HTTP_HELLO, UVLOOP_COMMAND
    command = UVLOOP_COMMAND = swift_build("bench-uvloop")
    # B4b's UVLoop server is the example itself, from the root package (its own scratch directory):
    # a build of the whole root package, so only when B4b runs.
    if "B4b" not in SELECTED:
        return command
    try:
        HTTP_HELLO = swift_build("http-hello", scratch=(SCRATCH + "-root"), package=HERE.parent)
    except BuildError as error:
        HTTP_HELLO = None
        print(f"  http-hello: {error}", file=sys.stderr)
    return command


def uvloop_server(bench, loops):
    if bench == "B4b":
        if HTTP_HELLO is None:
            raise RuntimeError("the http-hello example did not build")
        return HTTP_HELLO + ["--port", "0", "--loops", str(loops), "--quiet"]
    return None


def build_uvloop_limits():
    """UVLoop+limits is bench-uvloop itself (built once for both columns)."""
    global UVLOOP_COMMAND
    if UVLOOP_COMMAND is None:
        UVLOOP_COMMAND = swift_build("bench-uvloop")
    return UVLOOP_COMMAND


def uvloop_limits_server(bench, loops):
    """B4 with `startServer(..., maxConnections: 10_000, idleTimeout: 60)`, everything else as
    UVLoop's B4 server (bench-uvloop's "B4-limits" entry)."""
    return UVLOOP_COMMAND + [f"{bench}-limits", str(loops)]


def base_participant(ref):
    """`--base REF`: UVLoop as it was at git commit REF, as one more column ("UVLoop@REF"), so a
    change is measured against its starting point in the same run. The commit is checked out
    with `git worktree` under Benchmarks/.build-base/ (ignored by git), and its own Benchmarks
    package builds its bench-uvloop and http-hello there."""
    root = HERE.parent
    tree = HERE / ".build-base" / re.sub(r"[^A-Za-z0-9_.-]", "_", ref)
    http_hello = {}

    def build():
        if not (tree / ".git").exists():
            tree.parent.mkdir(exist_ok=True)
            subprocess.run(["git", "-C", str(root), "worktree", "prune"], capture_output=True)
            run_logged(["git", "-C", str(root), "worktree", "add", "--detach", "--force", str(tree), ref],
                       "base-worktree.log")
        command = swift_build("bench-uvloop", scratch=SCRATCH + "-base", package=tree / "Benchmarks")
        try:
            http_hello["command"] = swift_build("http-hello", scratch=SCRATCH + "-base-root", package=tree)
        except BuildError as error:
            print(f"  http-hello at {ref}: {error}", file=sys.stderr)
        return command

    def server(bench, loops):
        if bench == "B4b":
            if "command" not in http_hello:
                raise RuntimeError(f"the http-hello example at {ref} did not build")
            return http_hello["command"] + ["--port", "0", "--loops", str(loops), "--quiet"]
        return None

    return Participant(f"{BASELINE}@{ref}", build, server=server)


def build_nio(product="bench-nio"):
    try:
        return swift_build(product)
    except BuildError:
        # If the root package (UVLoop) cannot even be loaded, nothing in this package builds: retry
        # with a manifest that leaves UVLoop out, in a scratch directory of its own.
        env = dict(os.environ, BENCHMARKS_WITHOUT_UVLOOP="1")
        return swift_build(product, scratch=".build-without-uvloop", env=env)


def build_nio_ssl():
    """B12/B12b's SwiftNIO server with swift-nio-ssl: a product of its own (BoringSSL takes minutes
    to build the first time), so that bench-nio stays as it is."""
    return build_nio("bench-nio-ssl")


def build_subprocess():
    return swift_build("bench-subprocess")


def build_process():
    return swift_build("bench-process")


def build_libuv():
    binary = HERE / ".build-c" / "bench_libuv"
    binary.parent.mkdir(exist_ok=True)
    run_logged(["cc", "-O2", "-o", str(binary), str(HERE / "c" / "bench_libuv.c"), "-luv", "-lpthread"], "bench_libuv.log")
    return [str(binary)]


def build_libuv_openssl():
    """B12/B12b's floor: c/tls_server_libuv.c, libuv and OpenSSL's memory BIOs in C."""
    binary = HERE / ".build-c" / "tls_server_libuv"
    binary.parent.mkdir(exist_ok=True)
    run_logged(["cc", "-O2", "-o", str(binary), str(HERE / "c" / "tls_server_libuv.c"), "-luv", "-lssl", "-lcrypto"],
               "tls_server_libuv.log")
    return [str(binary)]


def python_loop(kind, api="streams"):
    def build():
        if kind == "uvloop" and subprocess.run([sys.executable, "-c", "import uvloop"], capture_output=True).returncode:
            raise BuildError("the uvloop module is not installed (python3 -m pip install uvloop)")
        return [sys.executable, str(HERE / "python" / "bench_asyncio.py"), "--loop", kind, "--api", api]

    return build


ECHO_CLIENT = None  # B4's client, built by build_tools
CONN_CLIENT = None  # B10's and B11's client, built by build_conn_client
TLS_CLIENT = None  # B12's and B12b's client, built by build_tls_client
TLS_FILES = None  # (certificate, key): the PEM files every TLS server presents, made by make_tls_files


def build_tools():
    """B4's echo client (C); B4b needs wrk on PATH (run.sh installs it)."""
    global ECHO_CLIENT
    binary = HERE / ".build-c" / "echo_client"
    binary.parent.mkdir(exist_ok=True)
    run_logged(["cc", "-O2", "-o", str(binary), str(HERE / "c" / "echo_client.c")], "echo_client.log")
    ECHO_CLIENT = str(binary)


def build_conn_client():
    """B10's and B11's client (C, threads with blocking sockets)."""
    global CONN_CLIENT
    binary = HERE / ".build-c" / "conn_client"
    binary.parent.mkdir(exist_ok=True)
    run_logged(["cc", "-O2", "-o", str(binary), str(HERE / "c" / "conn_client.c"), "-lpthread"], "conn_client.log")
    CONN_CLIENT = str(binary)


def build_tls_client():
    """B12's and B12b's client (C, OpenSSL, one epoll thread)."""
    global TLS_CLIENT
    binary = HERE / ".build-c" / "tls_client"
    binary.parent.mkdir(exist_ok=True)
    run_logged(["cc", "-O2", "-o", str(binary), str(HERE / "c" / "tls_client.c"), "-lssl", "-lcrypto"], "tls_client.log")
    TLS_CLIENT = str(binary)


def make_tls_files():
    """An ECDSA P-256 key and a self-signed certificate for localhost and 127.0.0.1, made with the
    openssl command line into a temporary directory (removed at exit). Every TLS server gets
    them in BENCH_TLS_CERT and BENCH_TLS_KEY; the client trusts the certificate."""
    global TLS_FILES
    if shutil.which("openssl") is None:
        raise BuildError("the openssl command line is not installed (apt-get install openssl; run.sh does it)")
    directory = Path(tempfile.mkdtemp(prefix="uvloop-bench-tls-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    certificate, key = directory / "cert.pem", directory / "key.pem"
    run_logged(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", str(key), "-out", str(certificate), "-days", "2", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], "tls_certificate.log")
    TLS_FILES = (str(certificate), str(key))


# Column order of the table. A new participant (say swift-subprocess) is one more entry here.
# The -proto columns are asyncio's protocol API (B4 only); the plain Python ones use streams.
PARTICIPANTS = [
    Participant(BASELINE, build_uvloop, server=uvloop_server),
    # B4 only: UVLoop's echo server with maxConnections: 10_000 and idleTimeout: 60 (issue 13: within
    # 3% of the plain one; the check is under "Connection targets").
    Participant(LIMITS, build_uvloop_limits, benches={"B4"}, server=uvloop_limits_server),
    Participant("libuv", build_libuv, benches={"B1", "B2", "B3", "B4", "B5", "B5b"}),
    Participant("SwiftNIO", build_nio),
    # B12/B12b only: SwiftNIO with swift-nio-ssl (NIOSSLServerHandler in front of B4's echo handler).
    Participant("NIO-SSL", build_nio_ssl, benches={"B12", "B12b"}),
    # B12/B12b only: the same server in C on libuv and OpenSSL (OpenSSL's own cost, without UVLoop's).
    Participant("libuv+OpenSSL", build_libuv_openssl, benches={"B12", "B12b"}),
    Participant("uvloop", python_loop("uvloop")),
    Participant("asyncio", python_loop("asyncio")),
    Participant("uvloop-proto", python_loop("uvloop", "protocol"), benches={"B4"}),
    Participant("asyncio-proto", python_loop("asyncio", "protocol"), benches={"B4"}),
    # B5/B5b only: Swift's other ways to start a process.
    Participant("swift-subprocess", build_subprocess, benches={"B5", "B5b"}),
    Participant("Foundation.Process", build_process, benches={"B5", "B5b"}),
]


def takes_part(participant, bench):
    return ((participant.benches is None or bench.id in participant.benches)
            and (bench.impls is None or participant.name in bench.impls))


def higher_is_better(metric):
    """Rates ("callbacks/s") are better higher; times and everything else, lower. A trailing
    "[tag]" (which watcher, how many live children) does not count: "seq spawns/s [pidfd]" is a rate."""
    return re.sub(r"\s*\[[^\]]*\]$", "", metric).endswith("/s")


def start_server(participant, bench, loops, env=None):
    """Starts a participant's server; returns (process, port) once it prints "listening on H:P"."""
    command = participant.server(bench.id, loops) if participant.server else None
    command = command or participant.command + [bench.id, str(loops)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline:
        ready, _, _ = select_module.select([process.stdout], [], [], 0.5)
        if ready:
            line = process.stdout.readline()
            if not line:
                break
            seen.append(line.strip())
            match = re.search(r"listening on \S*?:(\d+)", line)
            if match:
                return process, int(match.group(1))
        elif process.poll() is not None:
            break
    stop_server(process)
    error = (process.stderr.read() or "").strip().splitlines()
    raise RuntimeError(f"server did not start: {(error or seen or ['no output'])[-1]}")


def stop_server(process):
    """SIGTERM (every server stops cleanly on it), then SIGKILL after 10 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def echo_client(port, message_bytes, round_trips, timeout):
    done = subprocess.run([ECHO_CLIENT, str(port), str(ECHO_CONNECTIONS), str(message_bytes), str(round_trips)],
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"echo client: {(done.stderr.strip().splitlines() or ['exit %d' % done.returncode])[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_echo(participant, bench, n, timeout):
    """B4: one server process; 1 KiB ping-pong (round trips/s), then 64 KiB (MB/s of echoed payload)."""
    if ECHO_CLIENT is None:
        raise RuntimeError("the echo client did not build")
    process, port = start_server(participant, bench, 1)
    try:
        small = echo_client(port, 1024, n, timeout)
        large = echo_client(port, 65536, max(n // 10, ECHO_CONNECTIONS), timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {timeout} s")
    finally:
        stop_server(process)
    return {
        "1KiB round trips/s": small["round_trips"] / small["seconds"],
        "64KiB MB/s": large["round_trips"] * large["message_bytes"] / large["seconds"] / 1e6,
    }


def run_churn(participant, bench, n, timeout):
    """B10: one server; conn_client's 8 workers connect, send 1 KiB, read it back and close, for
    n seconds after an uncounted warm-up. The client reads the server's CPU time (/proc/PID/stat)
    at the start and the end of its window, and its own (getrusage)."""
    if CONN_CLIENT is None:
        raise RuntimeError("the connection client did not build")
    process, port = start_server(participant, bench, 1)
    try:
        command = [CONN_CLIENT, "churn", str(port), str(CHURN_WORKERS), str(CHURN_MESSAGE_BYTES),
                   str(CHURN_WARM_UP_SECONDS), str(n), str(process.pid)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"conn_client: {(done.stderr.strip().splitlines() or ['exit %d' % done.returncode])[-1]}")
        if process.poll() is not None:
            raise RuntimeError(f"the server exited (status {process.returncode}) during the run")
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {timeout} s")
    finally:
        stop_server(process)
    cycles = result["cycles"]
    if cycles <= 0:
        raise RuntimeError("no cycle finished in the window")
    return {
        "cycles/s": cycles / result["seconds"],
        "server CPU us/cycle": result["server_cpu_seconds"] / cycles * 1e6,
        # The same split: the kernel's share (TCP on loopback) is most of it, and alike for all.
        "server user CPU us/cycle": result["server_user_seconds"] / cycles * 1e6,
        "server sys CPU us/cycle": result["server_system_seconds"] / cycles * 1e6,
        "client CPU us/cycle": result["client_cpu_seconds"] / cycles * 1e6,
    }


def tls_client(mode, process, port, message_bytes, seconds, timeout):
    """Runs c/tls_client.c once against the server: a warm-up, then a window of `seconds`."""
    command = [TLS_CLIENT, mode, str(port), str(TLS_CONNECTIONS), str(message_bytes), str(TLS_WARM_UP_SECONDS),
               str(seconds), str(process.pid), TLS_FILES[0]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"tls_client: {(done.stderr.strip().splitlines() or ['exit %d' % done.returncode])[-1]}")
    if process.poll() is not None:
        raise RuntimeError(f"the server exited (status {process.returncode}) during the run")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["operations"] <= 0:
        raise RuntimeError(f"tls_client {mode}: nothing finished in the window")
    return result


def cpu_metrics(prefix, result, unit, per):
    """The server's CPU (user + system, then each) and the client's, in µs per `unit`, over `per`
    units (round trips, MB, handshakes) in the window."""
    return {
        f"{prefix}server CPU us/{unit}": result["server_cpu_seconds"] / per * 1e6,
        f"{prefix}server user CPU us/{unit}": result["server_user_seconds"] / per * 1e6,
        f"{prefix}server sys CPU us/{unit}": result["server_system_seconds"] / per * 1e6,
        # For context: the client shares the 2 cores (one epoll thread: at most one of them).
        f"{prefix}client CPU us/{unit}": result["client_cpu_seconds"] / per * 1e6,
    }


def tls_server(participant, bench):
    if TLS_CLIENT is None or TLS_FILES is None:
        raise RuntimeError("the TLS client or the certificate could not be made")
    env = dict(os.environ, BENCH_TLS_CERT=TLS_FILES[0], BENCH_TLS_KEY=TLS_FILES[1])
    return start_server(participant, bench, 1, env=env)


def run_tls_echo(participant, bench, n, timeout):
    """B12: one server; 8 TLS connections ping-pong 1 KiB for n seconds (round trips/s, server CPU
    per round trip), then 8 new ones 64 KiB for n seconds (MB/s of echoed payload, one direction;
    server CPU per MB). The client reads the server's CPU time over each window."""
    process, port = tls_server(participant, bench)
    try:
        small = tls_client("echo", process, port, 1024, n, timeout)
        large = tls_client("echo", process, port, 65536, n, timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {timeout} s")
    finally:
        stop_server(process)
    megabytes = large["operations"] * large["message_bytes"] / 1e6
    return {
        "1KiB round trips/s": small["operations"] / small["seconds"],
        **cpu_metrics("1KiB ", small, "round trip", small["operations"]),
        "64KiB MB/s": megabytes / large["seconds"],
        **cpu_metrics("64KiB ", large, "MB", megabytes),
    }


def run_tls_handshake(participant, bench, n, timeout):
    """B12b: one server; 8 clients loop connect, full handshake, one 64-byte echo, close, for n
    seconds (handshakes/s, server CPU per handshake)."""
    process, port = tls_server(participant, bench)
    try:
        result = tls_client("handshake", process, port, TLS_HANDSHAKE_MESSAGE_BYTES, n, timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {timeout} s")
    finally:
        stop_server(process)
    handshakes = result["operations"]
    if result["eof_without_close_notify"]:
        NOTES.setdefault((participant.name, bench.id), []).append(
            f"{result['eof_without_close_notify']} of {handshakes} connections closed without the server's close_notify")
    return {
        "handshakes/s": handshakes / result["seconds"],
        **cpu_metrics("", result, "handshake", handshakes),
        # Session tickets the server sent per handshake (the client drops them): their making is
        # in the server's CPU figure.
        "server tickets/handshake": result["tickets"] / handshakes,
    }


def process_cpu_ticks(pid):
    """utime + stime of a process (every thread), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def socket_count(pid):
    """The sockets a process holds (entries of /proc/PID/fd linking to "socket:[...]"): its
    listener and its connections; not the other descriptors a server may open lazily (UVLoop keeps
    a spare /dev/null for running out of descriptors, for one)."""
    directory, count = f"/proc/{pid}/fd", 0
    for entry in os.listdir(directory):
        try:
            count += os.readlink(f"{directory}/{entry}").startswith("socket:")
        except OSError:  # closed meanwhile
            pass
    return count


def memory_kib(pid):
    """(Pss, Rss) of a process in KiB: /proc/PID/smaps_rollup (VmRSS of /proc/PID/status for both
    if the kernel has no smaps_rollup)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            fields = dict(re.findall(r"^(Pss|Rss):\s+(\d+) kB", f.read(), re.M))
        return int(fields["Pss"]), int(fields["Rss"])
    except (OSError, KeyError):
        with open(f"/proc/{pid}/status") as f:
            rss = int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))
        return rss, rss


def wait_until(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {seconds} s")
        time.sleep(0.1)


def wait_until_quiet(process, seconds=30):
    """Waits until the server has used at most 1 clock tick of CPU in each of 2 successive 0.5 s
    intervals: every handler has run up to its pending read, nothing is still being set up."""
    deadline, quiet = time.monotonic() + seconds, 0
    ticks = process_cpu_ticks(process.pid)
    while quiet < 2:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not go quiet within {seconds} s")
        time.sleep(0.5)
        now = process_cpu_ticks(process.pid)
        quiet, ticks = (quiet + 1 if now - ticks <= 1 else 0), now


class IdleClient:
    """conn_client idle: opens `count` connections, sends nothing, holds them until stdin closes."""

    def __init__(self, port, count, timeout):
        self.process = subprocess.Popen([CONN_CLIENT, "idle", str(port), str(count)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select_module.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.close()
            error = (self.process.stderr.read() or "").strip().splitlines()
            raise RuntimeError(f"conn_client idle: {(error or ['no answer in %.0f s' % timeout])[-1]}")
        self.result = json.loads(line)

    def close(self):
        """Closes its stdin: it closes every connection and exits."""
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run_idle(participant, bench, n, timeout):
    """B11: the server's memory with n idle connections (each a handler waiting in a read), over n.

    After the server listens, a warm-up of IDLE_WARM_UP_CONNECTIONS connections is opened, accepted
    and closed; once the server is quiet, "before" is its Pss. Then the client opens n connections
    (paced on the server's accept queue) and sends nothing; run.py waits until the server holds a
    socket for each of them and has gone quiet, and reads "after"."""
    if CONN_CLIENT is None:
        raise RuntimeError("the connection client did not build")
    process, port = start_server(participant, bench, 1)
    client = None
    try:
        pid = process.pid
        listening = socket_count(pid)
        warm = min(IDLE_WARM_UP_CONNECTIONS, max(n // 10, 1))
        client = IdleClient(port, warm, timeout)
        wait_until(lambda: socket_count(pid) >= listening + warm, 30, f"the server did not accept {warm} warm-up connections")
        wait_until_quiet(process)
        client.close()
        client = None
        wait_until(lambda: socket_count(pid) <= listening, 30, "the server did not close the warm-up connections")
        wait_until_quiet(process)
        before_sockets, (before_pss, before_rss) = socket_count(pid), memory_kib(pid)

        client = IdleClient(port, n, timeout)
        try:
            wait_until(lambda: socket_count(pid) - before_sockets >= n, 60, f"the server did not accept all {n} connections")
        except RuntimeError as error:
            raise RuntimeError(f"{error} (it holds {socket_count(pid) - before_sockets} more sockets)")
        wait_until_quiet(process)
        after_pss, after_rss = memory_kib(pid)
        if process.poll() is not None:
            raise RuntimeError(f"the server exited (status {process.returncode}) during the run")
        if not client.result.get("paced"):
            NOTES.setdefault((participant.name, bench.id), []).append(
                "conn_client could not read the accept queue (sock_diag): connects were not paced")
    finally:
        if client is not None:
            client.close()
        stop_server(process)
    return {
        "Pss bytes/conn": (after_pss - before_pss) * 1024 / n,
        "RSS bytes/conn": (after_rss - before_rss) * 1024 / n,
    }


WRK_THREADS = 2
WRK_CONNECTIONS = 64


def tree_cpu_seconds(pid):
    """User + system CPU seconds of a process and its live descendants (servers with N processes)."""
    ticks, parents, stats = os.sysconf("SC_CLK_TCK"), {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        stats[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    tree, grown = {pid}, True
    while grown:
        more = {child for child, parent in parents.items() if parent in tree} - tree
        grown, tree = bool(more), tree | more
    return sum(stats.get(member, 0.0) for member in tree)


def run_wrk(port, seconds, timeout):
    """Returns (requests/s, requests, wrk's CPU seconds)."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk; run.sh does it)")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
                          capture_output=True, text=True, timeout=timeout)
    match = re.search(r"Requests/sec:\s*([\d.]+)", done.stdout)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"wrk: {(done.stderr.strip() or done.stdout.strip() or 'no output').splitlines()[-1]}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", done.stdout)
    if errors:
        raise RuntimeError(f"wrk reported errors: {errors.group(0)}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    requests = re.search(r"(\d+) requests in", done.stdout)
    client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return float(match.group(1)), int(requests.group(1)) if requests else 0, client_cpu


def run_http(participant, bench, n, timeout):
    """B4b: wrk for n seconds against the server with 1 loop, then against a fresh one with 2.

    Also the CPU time per request of the server (all its processes) and of wrk: on a machine whose
    cores wrk shares, 2 loops can serve at most cores / (server + wrk CPU per request)."""
    values = {}
    for loops in (1, 2):
        process, port = start_server(participant, bench, loops)
        try:
            server_cpu = tree_cpu_seconds(process.pid)
            rate, requests, client_cpu = run_wrk(port, n, timeout)
            server_cpu = tree_cpu_seconds(process.pid) - server_cpu
            values[f"{loops}-loop req/s"] = rate
            if requests:
                values[f"{loops}-loop server CPU us/req"] = server_cpu / requests * 1e6
                values[f"{loops}-loop wrk CPU us/req"] = client_cpu / requests * 1e6
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"timed out after {timeout} s")
        finally:
            stop_server(process)
    return values


def run_once(participant, bench, n, timeout):
    """Runs one participant on one benchmark; returns {metric: value} or raises RuntimeError."""
    if bench.kind == "echo":
        return run_echo(participant, bench, n, timeout)
    if bench.kind == "http":
        return run_http(participant, bench, n, timeout)
    if bench.kind == "churn":
        return run_churn(participant, bench, n, timeout)
    if bench.kind == "idle":
        return run_idle(participant, bench, n, timeout)
    if bench.kind == "tls-echo":
        return run_tls_echo(participant, bench, n, timeout)
    if bench.kind == "tls-handshake":
        return run_tls_handshake(participant, bench, n, timeout)
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
            if "note" in record:  # a remark for under the table, e.g. why a watcher has no figure
                NOTES.setdefault((participant.name, bench.id), []).append(record["note"])
                continue
            values[record["metric"]] = float(record["value"])
    if not values:
        raise RuntimeError("printed no result")
    return values


NOTES = {}  # (participant, bench id) -> remarks the participant printed as {"note": ...} lines


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


def print_table(rows, participants, stat, repeat, quick, legend=True):
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
    if not legend:
        return
    print(
        f"\nRatio columns: {BASELINE}'s value divided by the peer's, on the same row.\n"
        f"  higher-better rows (callbacks/s): above 1.00x means {BASELINE} is faster than the peer.\n"
        f"  lower-better rows (ms): below 1.00x means {BASELINE} is better; these are {BASELINE}/peer\n"
        f"  times, e.g. 2.00x on 'overhead ms' means {BASELINE} overshoots the last timer twice as much.\n"
        "  A ratio is n/a when either side is missing or not positive (an overhead can be ~0 or negative)."
    )


def print_scaling(rows, participants):
    """B4b: each participant's 2-loop figure over its own 1-loop figure."""
    one, two = rows.get(("B4b", "1-loop req/s")), rows.get(("B4b", "2-loop req/s"))
    if not one or not two:
        return
    cells = [f"{p.name} {two[p.name] / one[p.name]:.2f}x" for p in participants
             if one.get(p.name, 0) > 0 and two.get(p.name, 0) > 0]
    print("\nB4b scaling, 2-loop req/s over 1-loop req/s: " + ", ".join(cells))
    # wrk runs on the same cores: 2 loops serve at most cores / (server + wrk CPU per request).
    server, client = rows.get(("B4b", "2-loop server CPU us/req")), rows.get(("B4b", "2-loop wrk CPU us/req"))
    if server and client:
        cores = os.cpu_count() or 1
        cells = []
        for p in participants:
            if server.get(p.name, 0) > 0 and client.get(p.name, 0) > 0 and two.get(p.name, 0) > 0:
                ceiling = cores / (server[p.name] + client[p.name]) * 1e6
                cells.append(f"{p.name} {format_value('req/s', ceiling)} ({two[p.name] / ceiling:.0%} reached)")
        print(f"B4b 2-loop CPU ceiling on {cores} shared cores, cores / (server + wrk CPU per request): "
              + ", ".join(cells))


def repeats(bench, args):
    """Runs per participant: --repeat when given, else the benchmark's own count, else the default."""
    if args.repeat_given or bench.repeat is None:
        return args.repeat
    return 1 if args.quick else bench.repeat


def print_spawn_targets(rows):
    """Issue 3's targets for B5-B7: the figures each compares, and whether it is met."""

    def cell(bench, metric, impl=BASELINE):
        return rows.get((bench, metric), {}).get(impl)

    checks = []  # (what, the figures, the target, met)

    def ratio(what, numerator, denominator, target, unit, at_least):
        if numerator is None or not denominator or denominator <= 0:
            return
        value = numerator / denominator
        if unit == "/s":
            figures = f"{value:.2f}x ({format_value('/s', numerator)} / {format_value('/s', denominator)} spawns/s)"
        else:
            figures = f"{value:.2f}x ({numerator:.0f} / {denominator:.0f} µs)"
        checks.append((what, figures, f"{'>=' if at_least else '<='} {target}x",
                       value >= target if at_least else value <= target))

    for label in ("seq", "64"):
        metric = f"{label} spawns/s [best]"
        ratio(f"B5b/B5 {label}, UVLoop's best watcher", cell("B5b", metric), cell("B5", metric), 0.5, "/s", True)
    for peer, target in (("libuv", 0.9), ("uvloop", 2.0)):
        metric = "seq spawns/s [best]"
        ratio(f"B5 seq, UVLoop best / {peer}", cell("B5", metric), cell("B5", metric, peer), target, "/s", True)
    for tag in ("pidfd", "threaded"):
        ratio(f"B6 [{tag}] latency, 1000 live / 1 live", cell("B6", f"latency µs [{tag}, 1000 live]"),
              cell("B6", f"latency µs [{tag}, 1 live]"), 1.5, "µs", False)
    for what, metric in (("B7 [threaded] RSS per pending child", "RSS KiB per pending child [threaded]"),
                         ("B7 the same less [pidfd]'s bookkeeping", "thread KiB per pending child [threaded - pidfd]")):
        value = cell("B7", metric)
        if value is not None:
            checks.append((what, f"{value:.1f} KiB", "<= 64 KiB", value <= 64))
    if not checks:
        return
    print("\nIssue 3 targets (UVLoop):")
    width = max(len(check[0]) for check in checks)
    for what, figures, target, met in checks:
        print(f"  {what.ljust(width)}  {figures}, target {target}: {'met' if met else 'NOT met'}")
    for label in ("seq", "64"):
        metric = f"{label} spawns/s [best]"
        kept = [f"{impl} {big / small:.2f}x" for impl, small in rows.get(("B5", metric), {}).items()
                if (big := cell("B5b", metric, impl)) is not None and small > 0]
        if kept:
            print(f"  B5b/B5 {label} [best], every participant: " + ", ".join(kept))


def print_supervision_targets(rows):
    """Issue 12's targets for B5c and B9."""

    def cell(bench, metric, impl=BASELINE):
        return rows.get((bench, metric), {}).get(impl)

    checks = []
    pairs = (("B5c 1,000 extra fds / none, closeFDs on", "seq spawns/s [closeFDs, 1000 extra fds]",
              "seq spawns/s [closeFDs, 0 extra fds]", 0.85),
             ("B5c runSubprocessExec / createSubprocessExec + communicate", "seq runs/s [runSubprocessExec]",
              "seq runs/s [createSubprocessExec+communicate]", 0.9))
    for what, top, bottom, target in pairs:
        numerator, denominator = cell("B5c", top), cell("B5c", bottom)
        if numerator is not None and denominator:
            value = numerator / denominator
            checks.append((what, f"{value:.2f}x ({numerator:.0f} / {denominator:.0f} per s)", f">= {target}x", value >= target))
    worst = cell("B9", "worst timer lateness ms")
    if worst is not None:
        checks.append(("B9 worst timer lateness", f"{worst:.2f} ms", "<= 5 ms", worst <= 5))
        peer = cell("B9", "worst timer lateness ms", "uvloop")
        if peer:
            checks.append(("B9 worst lateness, UVLoop / uvloop", f"{worst / peer:.3f}x ({worst:.2f} / {peer:.2f} ms)",
                           "<= 0.1x", worst / peer <= 0.1))
        asyncio_worst = cell("B9", "worst timer lateness ms", "asyncio")
        if asyncio_worst:
            checks.append(("B9 worst lateness, UVLoop / asyncio (no target)",
                           f"{worst / asyncio_worst:.3f}x ({worst:.2f} / {asyncio_worst:.2f} ms)", "-", True))
    if not checks:
        return
    print("\nIssue 12 targets (UVLoop):")
    width = max(len(check[0]) for check in checks)
    for what, figures, target, met in checks:
        verdict = "" if target == "-" else f", target {target}: {'met' if met else 'NOT met'}"
        print(f"  {what.ljust(width)}  {figures}{verdict}")


def print_connection_targets(rows):
    """B10's and B11's targets: UVLoop against SwiftNIO and uvloop."""

    def cell(bench, metric, impl=BASELINE):
        return rows.get((bench, metric), {}).get(impl)

    checks = []  # (what, the figures, the target or "-", met)

    # B4 with maxConnections and idleTimeout set against the plain server: within 3%.
    for metric in ("1KiB round trips/s", "64KiB MB/s"):
        limited, plain = cell("B4", metric, LIMITS), cell("B4", metric)
        if limited is None or plain is None or limited <= 0 or plain <= 0:
            continue
        value, rate = limited / plain, higher_is_better(metric)
        target = 0.97 if rate else 1.03  # a rate may fall 3%, a time may grow 3%
        checks.append((f"B4 {metric}, {LIMITS} / {BASELINE}",
                       f"{value:.3f}x ({format_value(metric, limited)} / {format_value(metric, plain)})",
                       f"{'>=' if rate else '<='} {target}x", value >= target if rate else value <= target))

    def ratio(what, bench, metric, peer, target, at_least, unit, digits):
        mine, theirs = cell(bench, metric), cell(bench, metric, peer)
        if mine is None or theirs is None or mine <= 0 or theirs <= 0:
            return
        value = mine / theirs
        if unit == "/s":
            figures = f"{value:.2f}x ({format_value('/s', mine)} / {format_value('/s', theirs)} cycles/s)"
        else:
            figures = f"{value:.2f}x ({mine:.{digits}f} / {theirs:.{digits}f} {unit})"
        if target is None:
            checks.append((what + " (no target)", figures, "-", True))
        else:
            checks.append((what, figures, f"{'>=' if at_least else '<='} {target}x",
                           value >= target if at_least else value <= target))

    ratio("B10 server CPU per cycle, UVLoop / SwiftNIO", "B10", "server CPU us/cycle", "SwiftNIO", 0.75, False, "µs", 1)
    ratio("B10 server CPU per cycle, UVLoop / uvloop", "B10", "server CPU us/cycle", "uvloop", 0.65, False, "µs", 1)
    ratio("B10 cycles/s, UVLoop / SwiftNIO", "B10", "cycles/s", "SwiftNIO", 1.1, True, "/s", 0)
    ratio("B11 Pss per connection, UVLoop / SwiftNIO", "B11", "Pss bytes/conn", "SwiftNIO", 1.0, False, "bytes", 0)
    ratio("B11 Pss per connection, UVLoop / uvloop", "B11", "Pss bytes/conn", "uvloop", None, False, "bytes", 0)
    if not checks:
        return
    print("\nConnection targets (UVLoop):")
    width = max(len(check[0]) for check in checks)
    for what, figures, target, met in checks:
        verdict = "" if target == "-" else f", target {target}: {'met' if met else 'NOT met'}"
        print(f"  {what.ljust(width)}  {figures}{verdict}")


def print_tls_targets(rows):
    """B12's and B12b's targets: UVLoop against NIO-SSL and uvloop."""

    def cell(bench, metric, impl=BASELINE):
        return rows.get((bench, metric), {}).get(impl)

    checks = []  # (what, the figures, the target, met)
    targets = (
        ("B12 1 KiB server CPU per round trip, UVLoop / NIO-SSL", "B12", "1KiB server CPU us/round trip", "NIO-SSL", 0.8, "µs"),
        ("B12 1 KiB round trips/s, UVLoop / uvloop", "B12", "1KiB round trips/s", "uvloop", 1.5, "round trips/s"),
        ("B12 64 KiB MB/s, UVLoop / NIO-SSL", "B12", "64KiB MB/s", "NIO-SSL", 1.0, "MB/s"),
        ("B12 64 KiB MB/s, UVLoop / uvloop", "B12", "64KiB MB/s", "uvloop", 1.3, "MB/s"),
        ("B12b server CPU per handshake, UVLoop / NIO-SSL", "B12b", "server CPU us/handshake", "NIO-SSL", 1.25, "µs"),
        ("B12b handshakes/s, UVLoop / uvloop", "B12b", "handshakes/s", "uvloop", 1.2, "handshakes/s"),
        # No target: how much UVLoop adds to OpenSSL's own cost (1.0 would be nothing).
        ("B12 1 KiB server CPU per round trip, UVLoop / libuv+OpenSSL", "B12", "1KiB server CPU us/round trip",
         "libuv+OpenSSL", None, "µs"),
        ("B12 64 KiB server CPU per MB, UVLoop / libuv+OpenSSL", "B12", "64KiB server CPU us/MB", "libuv+OpenSSL", None, "µs"),
        ("B12b server CPU per handshake, UVLoop / libuv+OpenSSL", "B12b", "server CPU us/handshake",
         "libuv+OpenSSL", None, "µs"),
    )
    for what, bench, metric, peer, target, unit in targets:
        mine, theirs = cell(bench, metric), cell(bench, metric, peer)
        if mine is None or theirs is None or mine <= 0 or theirs <= 0:
            continue
        value, rate = mine / theirs, higher_is_better(metric)
        if rate:
            figures = f"{value:.2f}x ({format_value(metric, mine)} / {format_value(metric, theirs)} {unit})"
        else:
            figures = f"{value:.2f}x ({mine:.1f} / {theirs:.1f} {unit})"
        if target is None:
            checks.append((what, figures, None, None))
            continue
        checks.append((what, figures, f"{'>=' if rate else '<='} {target}x", value >= target if rate else value <= target))
    if not checks:
        return
    print("\nTLS targets (UVLoop):")
    width = max(len(check[0]) for check in checks)
    for what, figures, target, met in checks:
        verdict = "" if target is None else f", target {target}: {'met' if met else 'NOT met'}"
        print(f"  {what.ljust(width)}  {figures}{verdict}")


def parse_args():
    parser = argparse.ArgumentParser(description="Run the UVLoop benchmarks (see README.md).")
    parser.add_argument("--only", help="comma-separated benchmark ids, e.g. B1,B3 (default: all)")
    parser.add_argument("--impl", help="comma-separated participants, e.g. UVLoop,libuv,NIO-SSL (default: all)")
    parser.add_argument("--repeat", type=int, help="runs per participant and benchmark (default 5, 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="small workloads, one run: a smoke test")
    parser.add_argument("--stat", choices=["best", "median"], default="best", help="how runs are summarised (default best)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds before one run counts as failed")
    parser.add_argument("--scratch", default=".build", help="SwiftPM scratch directory under Benchmarks/ (default .build)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="B4b: wrk's threads (default 2)")
    parser.add_argument("--wrk-connections", type=int, default=64, help="B4b: wrk's connections (default 64)")
    parser.add_argument("--base", metavar="REF",
                        help="also run UVLoop as of git commit REF, as a column UVLoop@REF (before/after in one run)")
    args = parser.parse_args()
    args.repeat_given = args.repeat is not None  # else a benchmark's own `repeat` applies
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
    global SCRATCH, WRK_THREADS, WRK_CONNECTIONS, SELECTED
    args = parse_args()
    SCRATCH, WRK_THREADS, WRK_CONNECTIONS = args.scratch, args.wrk_threads, args.wrk_connections
    benchmarks = select(BENCHMARKS, args.only, lambda b: b.id, "benchmark")
    SELECTED = {b.id for b in benchmarks}
    participants = select(PARTICIPANTS, args.impl, lambda p: p.name, "participant")
    if args.base:
        base = base_participant(args.base)
        participants.insert(1, base)
        for bench in benchmarks:
            if bench.impls is not None and BASELINE in bench.impls:
                bench.impls = bench.impls | {base.name}
    participants = [p for p in participants if any(takes_part(p, b) for b in benchmarks)]
    started = time.monotonic()
    if any(b.kind == "echo" for b in benchmarks):
        try:
            build_tools()
        except BuildError as error:
            print(f"  echo client: {error}", file=sys.stderr)
    if any(b.kind in ("churn", "idle") for b in benchmarks):
        try:
            build_conn_client()
        except BuildError as error:
            print(f"  connection client: {error}", file=sys.stderr)
    if any(b.kind.startswith("tls-") for b in benchmarks):
        try:
            build_tls_client()
            make_tls_files()
        except BuildError as error:
            print(f"  TLS client or certificate: {error}", file=sys.stderr)

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
        repeat = repeats(bench, args)
        print(f"{bench.id} (n={n}): {bench.title}", file=sys.stderr, flush=True)
        for round_number in range(1, repeat + 1):
            progress = []
            for participant in runnable:
                if bench.id in participant.failures:
                    continue
                if not takes_part(participant, bench):
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
            print(f"  run {round_number}/{repeat}: " + ", ".join(progress), file=sys.stderr, flush=True)

    rows = {
        key: {name: summarise(values, key[1], args.stat) for name, values in by_participant.items()}
        for key, by_participant in samples.items()
    }
    # One table per group of benchmarks (the event-loop ones, then the spawning ones), each with
    # only the participants that take part in it.
    tables = []
    for bench in benchmarks:
        if bench.table not in tables and any(key[0] == bench.id for key in rows):
            tables.append(bench.table)
    for number, table in enumerate(tables):
        group = [b for b in benchmarks if b.table == table]
        ids = {b.id for b in group}
        columns = [p for p in participants if any(takes_part(p, b) for b in group)]
        print_table({key: values for key, values in rows.items() if key[0] in ids}, columns, args.stat,
                    max(repeats(b, args) for b in group), args.quick, legend=number == len(tables) - 1)
    print_scaling(rows, participants)
    print_spawn_targets(rows)
    print_supervision_targets(rows)
    print_connection_targets(rows)
    print_tls_targets(rows)

    notes = [f"  {p.name}: {p.failure}" for p in participants if p.failure]
    notes += [f"  {p.name} on {bench}: {why}" for p in participants for bench, why in p.failures.items()]
    if notes:
        print("\nFailures (a cell is n/a when no run succeeded):")
        print("\n".join(notes))
    if NOTES:
        print("\nNotes from the participants (per run):")
        for (name, bench_id), remarks in NOTES.items():
            print("\n".join(f"  {name} on {bench_id}: {remark}" for remark in remarks))
    print(f"\nTotal time {time.monotonic() - started:.0f} s.")


if __name__ == "__main__":
    main()
