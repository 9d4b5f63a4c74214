"""librdkafka and Python Arroyo reference runs for bench/kafka.ts.

One consumer run per process, on a topic bench/kafka.ts produced; prints one JSON line:
{"name", "seconds", "messages", "cpuNs", "rssPeak", "rssSteady", "version"}.

--mode rdkafka  a confluent_kafka (librdkafka) loop calling consume(10000), reading each
                value's length, committing the consumed positions once per second
                (asynchronously) and at the end; --backoff-ms sets fetch.queue.backoff.ms
                (librdkafka's default is 1000 ms, which throttles a consumer this fast).
--mode arroyo   Arroyo's KafkaConsumer -> StreamProcessor -> RunTask -> CommitOffsets (commits
                once per second), driven by _run_once until --messages were processed.
--mode arroyo-paused  for bench/kafka_backpressure.ts: Arroyo's StreamProcessor whose only
                step rejects every message (MessageRejected); once Arroyo has paused the
                consumer, waits --settle seconds, then measures CPU and RSS over --hold
                seconds; prints {"name", "pauseAfterS", "cpuPct", "rssMedian", "rssEnd",
                "rssPeak"}.

Timed from the first message to the last (connecting and joining are left out), like the Deno
runs. CPU is the process's (all threads: librdkafka's fetcher threads count). RSS: peak is the
kernel's high-water mark (VmHWM), steady the median of samples taken every 100 ms while timed.

Run by bench/kafka.ts with $ARROYO_PYTHON (pip install confluent-kafka sentry-arroyo into a
virtual environment outside the repository).
"""
import argparse
import json
import os
import time
import uuid
from importlib.metadata import version


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_peak() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def median(values):
    s = sorted(values)
    if not s:
        return 0
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


class Meter:
    """Timed span, CPU time and RSS samples (every 100 ms of wall time while timed)."""

    def __init__(self):
        self.t0 = self.c0 = 0.0
        self.t1 = self.c1 = 0.0
        self.samples = []
        self.next_sample = 0.0

    def start(self):
        self.t0 = time.perf_counter()
        self.c0 = time.process_time()
        self.next_sample = self.t0 + 0.1

    def tick(self):
        now = time.perf_counter()
        if now >= self.next_sample:
            self.samples.append(rss_now())
            self.next_sample = now + 0.1

    def stop(self):
        self.t1 = time.perf_counter()
        self.c1 = time.process_time()
        self.samples.append(rss_now())

    def result(self, name, messages, ver):
        return {
            "name": name,
            "seconds": self.t1 - self.t0,
            "messages": messages,
            "cpuNs": (self.c1 - self.c0) * 1e9 / messages,
            "rssPeak": rss_peak(),
            "rssSteady": median(self.samples),
            "version": ver,
        }


def rdkafka(args) -> dict:
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition  # noqa: F401

    conf = {
        "bootstrap.servers": args.brokers,
        "group.id": f"bench-rdkafka-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    if args.backoff_ms is not None:
        conf["fetch.queue.backoff.ms"] = args.backoff_ms
    consumer = Consumer(conf)
    consumer.subscribe([args.topic])
    meter = Meter()
    count = 0
    size = 0
    last_commit = 0.0
    while count < args.messages:
        batch = consumer.consume(10000, 1.0)
        if not batch:
            continue
        if count == 0:
            meter.start()
            last_commit = time.perf_counter()
        for m in batch:
            if m.error() is not None:
                raise RuntimeError(str(m.error()))
            size += len(m.value())
        count += len(batch)
        meter.tick()
        if time.perf_counter() - last_commit >= 1.0:
            consumer.commit(asynchronous=True)
            last_commit = time.perf_counter()
    meter.stop()
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as e:
        # The last asynchronous commit may already have covered everything read.
        if e.args[0].code() != KafkaError._NO_OFFSET:
            raise
    consumer.close()
    if size != args.messages * args.bytes:
        raise RuntimeError(f"rdkafka read {size} bytes")
    import confluent_kafka

    backoff = "default 1000 ms" if args.backoff_ms is None else f"{args.backoff_ms} ms"
    return meter.result(
        f"librdkafka consume(10000) loop, Python confluent_kafka (fetch.queue.backoff.ms {backoff})",
        count,
        f"confluent_kafka {confluent_kafka.version()[0]}, librdkafka {confluent_kafka.libversion()[0]}",
    )


def arroyo(args) -> dict:
    from arroyo.backends.kafka import KafkaConsumer, build_kafka_consumer_configuration
    from arroyo.commit import ONCE_PER_SECOND
    from arroyo.processing.processor import StreamProcessor
    from arroyo.processing.strategies import CommitOffsets, RunTask
    from arroyo.processing.strategies.abstract import ProcessingStrategyFactory
    from arroyo.types import Topic

    meter = Meter()
    state = {"count": 0, "size": 0}

    def work(message):
        if state["count"] == 0:
            meter.start()
        state["count"] += 1
        state["size"] += len(message.payload.value)
        if state["count"] % 10000 == 0:
            meter.tick()
        if state["count"] == args.messages:
            meter.stop()
        return None

    class Factory(ProcessingStrategyFactory):
        def create_with_partitions(self, commit, partitions):
            return RunTask(work, CommitOffsets(commit))

    conf = build_kafka_consumer_configuration(
        {"bootstrap.servers": args.brokers},
        group_id=f"bench-arroyo-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    consumer = KafkaConsumer(conf)
    processor = StreamProcessor(consumer, Topic(args.topic), Factory(), ONCE_PER_SECOND)
    while state["count"] < args.messages:
        processor._run_once()
    processor._shutdown()
    if state["size"] != args.messages * args.bytes:
        raise RuntimeError(f"arroyo read {state['size']} bytes")
    return meter.result(
        "Python Arroyo KafkaConsumer → RunTask → CommitOffsets", state["count"],
        f"sentry-arroyo {version('sentry-arroyo')}",
    )


def arroyo_paused(args) -> dict:
    from arroyo.backends.kafka import KafkaConsumer, build_kafka_consumer_configuration
    from arroyo.commit import ONCE_PER_SECOND
    from arroyo.processing.processor import StreamProcessor
    from arroyo.processing.strategies.abstract import (
        MessageRejected,
        ProcessingStrategy,
        ProcessingStrategyFactory,
    )
    from arroyo.types import Topic

    t0 = time.perf_counter()

    class Reject(ProcessingStrategy):
        """A step that never has room."""

        def submit(self, message):
            raise MessageRejected()

        def poll(self):
            pass

        def join(self, timeout=None):
            pass

        def close(self):
            pass

        def terminate(self):
            pass

    class Factory(ProcessingStrategyFactory):
        def create_with_partitions(self, commit, partitions):
            return Reject()

    conf = build_kafka_consumer_configuration(
        {"bootstrap.servers": args.brokers},
        group_id=f"bench-arroyo-bp-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    processor = StreamProcessor(KafkaConsumer(conf), Topic(args.topic), Factory(), ONCE_PER_SECOND)
    paused = lambda: processor._StreamProcessor__is_paused  # noqa: E731
    while not paused():
        processor._run_once()
    pause_after = time.perf_counter() - t0
    settle_end = time.perf_counter() + args.settle
    while time.perf_counter() < settle_end:
        processor._run_once()
    # RSS at both ends of the hold, as the Deno runs do (bench/kafka_backpressure.ts).
    samples = [rss_now()]
    c0 = time.process_time()
    w0 = time.perf_counter()
    while time.perf_counter() - w0 < args.hold:
        processor._run_once()
    cpu_pct = 100 * (time.process_time() - c0) / (time.perf_counter() - w0)
    samples.append(rss_now())
    if not paused():
        raise RuntimeError("arroyo no longer paused after the hold")
    return {
        "name": f"Python Arroyo {version('sentry-arroyo')} StreamProcessor, step never has room",
        "pauseAfterS": pause_after,
        "cpuPct": cpu_pct,
        "rssMedian": median(samples),
        "rssEnd": rss_now(),
        "rssPeak": rss_peak(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["rdkafka", "arroyo", "arroyo-paused"], required=True)
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--messages", type=int, required=True)
    ap.add_argument("--bytes", type=int, default=100)
    ap.add_argument("--backoff-ms", type=int, default=None)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--hold", type=float, default=10.0)
    args = ap.parse_args()
    modes = {"rdkafka": rdkafka, "arroyo": arroyo, "arroyo-paused": arroyo_paused}
    result = modes[args.mode](args)
    print(json.dumps(result), flush=True)
    if args.mode == "arroyo-paused":
        os._exit(0)  # the group is thrown away: no clean close of a consumer paused for good


if __name__ == "__main__":
    main()
