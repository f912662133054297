"""asyncio and uvloop participants.

Usage: python3 bench_asyncio.py --loop asyncio|uvloop [--api streams|protocol] BENCH N
  BENCH is B1, B2, B3, B5 or B5b (N: the workload size), or a server benchmark, B4 (TCP echo), B4b (HTTP
  hello), B10 (connection churn: 1 KiB echo per connection), B11 (idle connections) or B12/B12b (TLS
  echo, with the certificate and key named by BENCH_TLS_CERT and BENCH_TLS_KEY), where N is the
  number of loops (B4b: processes sharing the port with SO_REUSEPORT).
  A server prints "listening on 127.0.0.1:PORT" and serves until SIGTERM; run.py's client measures.
Prints one JSON line per metric, like every other participant.
"""

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import ssl
import sys
import threading
import time

PRODUCERS = 4


def new_loop(kind):
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def counting_callback(loop, n, times):
    """The trivial callback: counts, and the n-th call records the end time and stops the loop."""
    count = 0

    def callback():
        nonlocal count
        count += 1
        if count == n:
            times["end"] = time.perf_counter()
            loop.stop()

    return callback


def b1_call_soon(loop, n):
    times = {}
    callback = counting_callback(loop, n, times)

    def start():
        times["start"] = time.perf_counter()
        for _ in range(n):
            loop.call_soon(callback)

    loop.call_soon(start)
    loop.run_forever()
    return [("callbacks/s", n / (times["end"] - times["start"]))]


def timer_delays_ms(n):
    """The shared delay sequence: xorshift32 seeded with 42, each value mod 101 (0..100 ms)."""
    x = 42
    delays = []
    for _ in range(n):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        delays.append(x % 101)
    return delays


def b2_timers(loop, n):
    times = {}
    callback = counting_callback(loop, n, times)
    delays = timer_delays_ms(n)

    def start():
        times["start"] = time.perf_counter()
        for delay in delays:
            loop.call_later(delay / 1000.0, callback)

    loop.call_soon(start)
    loop.run_forever()
    wall_ms = (times["end"] - times["start"]) * 1000.0
    return [("wall ms", wall_ms), ("overhead ms", wall_ms - max(delays))]


def b3_cross_thread(loop, n):
    times = {}
    callback = counting_callback(loop, n, times)
    gate = threading.Event()

    def produce(count):
        gate.wait()
        for _ in range(count):
            loop.call_soon_threadsafe(callback)

    shares = [n // PRODUCERS + (1 if i < n % PRODUCERS else 0) for i in range(PRODUCERS)]
    threads = [threading.Thread(target=produce, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()

    def start():
        times["start"] = time.perf_counter()
        gate.set()

    loop.call_soon(start)
    loop.run_forever()
    for thread in threads:
        thread.join()
    return [("callbacks/s", n / (times["end"] - times["start"]))]


class EchoProtocol(asyncio.Protocol):
    """B4 with the protocol API: every chunk received is written back."""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def echo_stream_handler(reader, writer):
    """B4 with the streams API, the way UVLoop's participant does it: read, write, drain."""
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    writer.close()


async def churn_stream_handler(reader, writer):
    """B10: reads 1 KiB at a time and echoes it until EOF (UVLoop's B10 handler does the same)."""
    try:
        while True:
            data = await reader.read(1024)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    writer.close()


async def idle_stream_handler(reader, writer):
    """B11: one read that stays pending while the connection is idle (the client sends nothing)."""
    try:
        await reader.read(1024)
    except ConnectionError:
        pass
    writer.close()


async def tls_echo_stream_handler(reader, writer):
    """B12/B12b: B4's stream echo on the decrypted streams (start_server with ssl=); close() sends
    close_notify. A peer's TLS error ends the connection quietly, as a reset does."""
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    writer.close()


def tls_server_context():
    """The same certificate and key (PEM) as every B12 server, TLS 1.3 at least; Python's ssl
    defaults otherwise (its cipher suites, OpenSSL's session tickets)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(os.environ["BENCH_TLS_CERT"], os.environ["BENCH_TLS_KEY"])
    return context


def raise_descriptor_limit():
    """B11 holds 10,000 connections: the soft RLIMIT_NOFILE goes up to the hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


HELLO = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"
HELLO_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nHello, World!"


class HelloProtocol(asyncio.Protocol):
    """B4b: answers every request head (through its blank line) with the same 13-byte response
    UVLoop's http-hello sends; keep-alive and pipelining; request bodies are not expected."""

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        buffer = self.buffer + data
        replies = []
        close = False
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end]
            buffer = buffer[end + 4:]
            if b"connection: close" in head.lower():
                replies.append(HELLO_CLOSE)
                close = True
                break
            replies.append(HELLO)
        self.buffer = buffer
        if replies:
            self.transport.write(b"".join(replies))
        if close:
            self.transport.close()


async def serve_until_sigterm(loop, start, port=0):
    server = await start(port)
    port = server.sockets[0].getsockname()[1]
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    return server, port, stop


def run_server(kind, api, bench, loops):
    """Serves B4 (echo), B4b (hello), B10 (churn), B11 (idle) or B12/B12b (TLS echo) until SIGTERM,
    with `loops` processes for B4b."""
    if bench in ("B12", "B12b"):
        context = tls_server_context()

        def start(port):
            return asyncio.start_server(tls_echo_stream_handler, "127.0.0.1", port, ssl=context, backlog=511)
    elif bench in ("B10", "B11"):
        # The backlog UVLoop's and SwiftNIO's servers listen with (asyncio's default is 100).
        handler = churn_stream_handler if bench == "B10" else idle_stream_handler
        if bench == "B11":
            raise_descriptor_limit()

        def start(port):
            return asyncio.start_server(handler, "127.0.0.1", port, backlog=511)
    elif bench == "B4":
        if api == "protocol":
            def start(port):
                return asyncio.get_running_loop().create_server(EchoProtocol, "127.0.0.1", port)
        else:
            def start(port):
                return asyncio.start_server(echo_stream_handler, "127.0.0.1", port)
    else:
        def start(port):
            return asyncio.get_running_loop().create_server(HelloProtocol, "127.0.0.1", port, reuse_port=loops > 1)

    children = []

    async def main(port, announce):
        loop = asyncio.get_running_loop()
        server, port, stop = await serve_until_sigterm(loop, start, port)
        if announce:
            # The first process got the port; the others join it (SO_REUSEPORT), one loop each.
            for _ in range(loops - 1 if bench == "B4b" else 0):
                pid = os.fork()
                if pid == 0:
                    loop.remove_signal_handler(signal.SIGTERM)
                    server.close()
                    os._exit(serve_child(port))
                children.append(pid)
            print(f"listening on 127.0.0.1:{port}", flush=True)
        await stop
        server.close()

    def serve_child(port):
        child_loop = new_loop(kind)
        try:
            child_loop.run_until_complete(main(port, False))
        finally:
            child_loop.close()
        return 0

    loop = new_loop(kind)
    try:
        loop.run_until_complete(main(0, True))
    finally:
        for pid in children:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
        loop.close()
    return []


# B5/B5b: spawn and reap /bin/true n times, one at a time and then 64 in flight. asyncio runs it
# under each of its child watchers (metrics tagged [threaded], [multiloop], ... and [best]); uvloop
# spawns with its own libuv process handles (uv_spawn) and ignores watchers: [best] only.
ASYNCIO_WATCHERS = [
    ("threaded", "ThreadedChildWatcher"),
    ("multiloop", "MultiLoopChildWatcher"),
    ("safe", "SafeChildWatcher"),
    ("fast", "FastChildWatcher"),
    ("pidfd", "PidfdChildWatcher"),
]
SPAWN_WIDTHS = [("seq", 1), ("64", 64)]
BALLAST = None  # B5b's 1 GiB, alive until exit


def touch_ballast(size):
    """Allocates `size` bytes and writes every page, so that the parent really holds them."""
    global BALLAST
    BALLAST = bytearray(size)
    BALLAST[::4096] = b"\x01" * len(range(0, size, 4096))


async def spawn_rate(n, width):
    """Spawns and reaps /bin/true n times, `width` at a time (after one untimed warm-up).
    Returns (spawns/s, how many children were reported with a status other than 0)."""
    wrong = 0

    async def spawn_and_reap():
        nonlocal wrong
        process = await asyncio.create_subprocess_exec("/bin/true")
        if await process.wait() != 0:
            wrong += 1  # e.g. 255: the watcher lost the child's status (see b5_spawn)

    remaining = n

    async def worker():
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await spawn_and_reap()

    await spawn_and_reap()
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(width, n))))
    return n / (time.perf_counter() - start), wrong


def b5_spawn(loop, n, ballast=0):
    """A watcher that reports a wrong exit status for any child gets no figure, only a note:
    CPython 3.11's MultiLoopChildWatcher does, within a few hundred spawns here. Its SIGCHLD
    handler (signal.signal, so it runs between any two bytecodes) re-enters _do_waitpid while
    add_child_handler's own _do_waitpid is between waitpid and popping the callback: the inner
    call finds the pid already reaped and reports 255 ("Unknown child process pid"), the outer
    one logs "Child watcher got an unexpected pid"."""
    if ballast:
        touch_ballast(ballast)
    results, notes = {}, []

    def measure(label, width, tag):
        rate, wrong = loop.run_until_complete(spawn_rate(n, width))
        if wrong:
            notes.append(f"{label} [{tag}]: {wrong} of {n} children reported a non-zero status "
                         "(the watcher lost their exit status); no figure")
        else:
            results[(label, tag)] = rate

    if type(loop).__module__.startswith("uvloop"):
        for label, width in SPAWN_WIDTHS:
            measure(label, width, "best")
    else:
        for tag, class_name in ASYNCIO_WATCHERS:
            # On the main thread: set the watcher, then attach it to the loop (Safe and Fast
            # install their SIGCHLD handler on it; MultiLoop installs signal.signal; Pidfd keeps it).
            watcher = getattr(asyncio, class_name)()
            asyncio.set_child_watcher(watcher)
            watcher.attach_loop(loop)
            asyncio.set_event_loop(loop)
            for label, width in SPAWN_WIDTHS:
                measure(label, width, tag)
        asyncio.set_child_watcher(None)  # closes the last one
        asyncio.set_event_loop(None)
        for label, _ in SPAWN_WIDTHS:
            rates = [value for (l, _), value in results.items() if l == label]
            if rates:
                results[(label, "best")] = max(rates)
    ordered = sorted(results.items(), key=lambda item: [l for l, _ in SPAWN_WIDTHS].index(item[0][0]))
    return [(f"{label} spawns/s [{tag}]", value) for (label, tag), value in ordered] + [("note", note) for note in notes]


def b5b_spawn_big_parent(loop, n):
    return b5_spawn(loop, n, ballast=1 << 30)


def b9_spawn_stall(loop, n):
    """B9: a parent holding 1 GiB runs a 1 ms repeating timer (each tick armed with call_later
    1 ms after the previous one ran) while n children are spawned and reaped, 8 in flight; the
    timer's worst and median lateness, measured on the live monotonic clock (uvloop's
    loop.time() is libuv's cached millisecond clock)."""
    touch_ballast(1 << 30)
    samples = []
    running = True

    def tick(due):
        if not running:
            return
        now = time.monotonic()
        samples.append(now - due)
        loop.call_later(0.001, tick, now + 0.001)

    async def main():
        nonlocal running
        loop.call_later(0.001, tick, time.monotonic() + 0.001)
        await asyncio.sleep(0.05)
        samples.clear()
        _, wrong = await spawn_rate(n, 8)
        running = False
        return wrong

    wrong = loop.run_until_complete(main())
    ordered = sorted(samples)
    results = [("worst timer lateness ms", ordered[-1] * 1e3),
               ("median timer lateness ms", ordered[len(ordered) // 2] * 1e3)]
    if wrong:
        results.append(("note", f"{wrong} of {n} children reported a non-zero status"))
    return results


BENCHMARKS = {"B1": b1_call_soon, "B2": b2_timers, "B3": b3_cross_thread, "B9": b9_spawn_stall}
BENCHMARKS.update({"B5": b5_spawn, "B5b": b5b_spawn_big_parent})
SERVERS = {"B4", "B4b", "B10", "B11", "B12", "B12b"}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--api", choices=["streams", "protocol"], default="streams")
    parser.add_argument("bench")
    parser.add_argument("n", type=int)
    args = parser.parse_args()
    if args.bench in SERVERS:
        run_server(args.loop, args.api, args.bench, args.n)
        return 0
    if args.api != "streams":
        print(f"--api protocol is for the server benchmarks only", file=sys.stderr)
        return 2
    bench = BENCHMARKS.get(args.bench)
    if bench is None:
        print(f"unknown benchmark {args.bench}", file=sys.stderr)
        return 2
    loop = new_loop(args.loop)
    try:
        results = bench(loop, args.n)
    finally:
        loop.close()
    for metric, value in results:
        line = {"bench": args.bench, "impl": args.loop, "metric": metric, "value": value, "n": args.n}
        if metric == "note":  # something run.py prints under the table
            line = {"bench": args.bench, "impl": args.loop, "note": value}
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
