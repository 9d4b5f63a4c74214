"""Arroyo (Python) reference run for bench/inmemory.ts: LocalBroker -> RunTask -> CommitOffsets.

Prints one JSON line: {"ok": true, "messages": N, "partitions": P, "seconds": s, "rate": msg/s,
"version": "..."}; with --chain K, K synchronous RunTask steps before CommitOffsets.
With --backpressure SECONDS: RunTaskInThreads(fn sleeping --delay-ms, concurrency 1,
max_pending_futures 1024) -> CommitOffsets held back for SECONDS; prints CPU seconds used,
wall seconds, max RSS and messages processed.
Run by bench/inmemory.ts and bench/backpressure.ts with $ARROYO_PYTHON or python3
(pip install sentry-arroyo).
"""
import argparse
import json
import os
import resource
import sys
import time
from importlib.metadata import version

from arroyo.backends.local.backend import LocalBroker
from arroyo.backends.local.storages.memory import MemoryMessageStorage
from arroyo.commit import ONCE_PER_SECOND
from arroyo.processing.processor import StreamProcessor
from arroyo.processing.strategies import CommitOffsets, RunTask, RunTaskInThreads
from arroyo.processing.strategies.abstract import ProcessingStrategyFactory
from arroyo.types import Partition, Topic


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--chain", type=int, default=1)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--backpressure", type=float, default=0)
    ap.add_argument("--delay-ms", type=float, default=50)
    args = ap.parse_args()

    broker = LocalBroker(MemoryMessageStorage())
    topic = Topic("bench")
    broker.create_topic(topic, args.partitions)
    payload = b"x" * args.size
    parts = [Partition(topic, i) for i in range(args.partitions)]
    for i in range(args.messages):
        broker.produce(parts[i % args.partitions], payload)

    consumed = [0]

    def work(message):
        consumed[0] += 1
        return len(message.payload)

    def identity(message):
        return message.payload

    class Factory(ProcessingStrategyFactory):
        def create_with_partitions(self, commit, partitions):
            step = CommitOffsets(commit)
            for _ in range(args.chain - 1):
                step = RunTask(identity, step)
            return RunTask(work, step)

    if args.backpressure > 0:
        backpressure(broker, topic, args)
        return

    consumer = broker.get_consumer("bench")
    processor = StreamProcessor(consumer, topic, Factory(), ONCE_PER_SECOND)
    start = time.perf_counter()
    while consumed[0] < args.messages:
        processor._run_once()
    processor._shutdown()
    seconds = time.perf_counter() - start
    print(json.dumps({
        "ok": True,
        "messages": args.messages,
        "partitions": args.partitions,
        "chain": args.chain,
        "seconds": seconds,
        "rate": args.messages / seconds,
        "version": version("sentry-arroyo"),
    }))


def backpressure(broker, topic, args) -> None:
    processed = [0]

    def slow(message):
        time.sleep(args.delay_ms / 1000)
        processed[0] += 1
        return message.payload

    class Factory(ProcessingStrategyFactory):
        def create_with_partitions(self, commit, partitions):
            return RunTaskInThreads(slow, 1, 1024, CommitOffsets(commit))

    consumer = broker.get_consumer("bench-backpressure")
    processor = StreamProcessor(consumer, topic, Factory(), ONCE_PER_SECOND)
    c0 = time.process_time()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < args.backpressure:
        processor._run_once()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    print(json.dumps({
        "ok": True,
        "wall": wall,
        "cpu": cpu,
        "max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "processed": processed[0],
        "paused": bool(consumer.paused()),
        "version": version("sentry-arroyo"),
    }))
    sys.stdout.flush()
    os._exit(0)  # do not wait for the thread pool to drain


if __name__ == "__main__":
    main()
