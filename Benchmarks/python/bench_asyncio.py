"""asyncio and uvloop participants.

Usage: python3 bench_asyncio.py --loop asyncio|uvloop BENCH N   (BENCH is B1, B2 or B3)
Prints one JSON line per metric, like every other participant.
"""

import argparse
import asyncio
import json
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


BENCHMARKS = {"B1": b1_call_soon, "B2": b2_timers, "B3": b3_cross_thread}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("bench")
    parser.add_argument("n", type=int)
    args = parser.parse_args()
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
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
