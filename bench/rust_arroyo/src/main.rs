//! Rust Arroyo reference run for `bench/inmemory.ts`: `LocalBroker` -> `RunTask` (x chain) ->
//! `CommitOffsets`, driven by `StreamProcessor::run_once` until every message was processed.
//!
//! Usage: `sluice_bench_rust_arroyo --messages N --partitions P --chain K [--size B]`.
//! Prints one JSON line: ok, messages, partitions, chain, seconds, rate, cpu_ns (process CPU
//! time per message, all threads) and the crate version.
//!
//! The work matches the Sluice and Python Arroyo variants: the first step counts the message
//! and reads its length, the other `chain - 1` steps hand the payload on unchanged.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sentry_arroyo::backends::local::broker::LocalBroker;
use sentry_arroyo::backends::local::LocalConsumer;
use sentry_arroyo::backends::storages::memory::MemoryMessageStorage;
use sentry_arroyo::processing::strategies::commit_offsets::CommitOffsets;
use sentry_arroyo::processing::strategies::run_task::RunTask;
use sentry_arroyo::processing::strategies::{
    ProcessingStrategy, ProcessingStrategyFactory, SubmitError,
};
use sentry_arroyo::processing::{Callbacks, ConsumerState, StreamProcessor};
use sentry_arroyo::types::{Message, Partition, Topic};
use sentry_arroyo::utils::clock::SystemClock;

type Payload = Vec<u8>;

struct Factory {
    chain: usize,
    processed: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

fn identity(m: Message<Payload>) -> Result<Message<Payload>, SubmitError<Payload>> {
    Ok(m)
}

impl ProcessingStrategyFactory<Payload> for Factory {
    fn create(&self) -> Box<dyn ProcessingStrategy<Payload>> {
        let mut next: Box<dyn ProcessingStrategy<Payload>> =
            Box::new(CommitOffsets::new(Duration::from_secs(1)));
        for _ in 1..self.chain {
            next = Box::new(RunTask::new(identity, next));
        }
        let processed = self.processed.clone();
        let bytes = self.bytes.clone();
        Box::new(RunTask::new(
            move |m: Message<Payload>| -> Result<Message<Payload>, SubmitError<Payload>> {
                processed.fetch_add(1, Ordering::Relaxed);
                bytes.fetch_add(m.payload().len() as u64, Ordering::Relaxed);
                Ok(m)
            },
            next,
        ))
    }
}

fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn arg(args: &[String], name: &str, dflt: u64) -> u64 {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.replace('_', "").parse().ok())
            .unwrap_or_else(|| panic!("{name} needs a positive integer")),
        None => dflt,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let messages = arg(&args, "--messages", 1_000_000);
    let partitions = arg(&args, "--partitions", 1) as u16;
    let chain = arg(&args, "--chain", 1).max(1) as usize;
    let size = arg(&args, "--size", 100) as usize;

    let storage: MemoryMessageStorage<Payload> = Default::default();
    let mut broker = LocalBroker::new(Box::new(storage), Box::new(SystemClock {}));
    let topic = Topic::new("bench");
    broker.create_topic(topic, partitions).unwrap();
    let parts: Vec<Partition> = (0..partitions).map(|i| Partition::new(topic, i)).collect();
    let payload = vec![b'x'; size];
    for i in 0..messages {
        broker
            .produce(&parts[(i % partitions as u64) as usize], payload.clone())
            .unwrap();
    }

    let processed = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let state = ConsumerState::new(
        Box::new(Factory { chain, processed: processed.clone(), bytes: bytes.clone() }),
        None,
    );
    let consumer = Box::new(LocalConsumer::new(
        uuid::Uuid::nil(),
        Arc::new(parking_lot::Mutex::new(broker)),
        "bench".to_string(),
        false,
        &[topic],
        Callbacks(state.clone()),
    ));
    let mut processor = StreamProcessor::new(consumer, state);

    let c0 = cpu_seconds();
    let t0 = Instant::now();
    while processed.load(Ordering::Relaxed) < messages {
        processor.run_once().expect("run_once");
    }
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - c0;
    let committed: HashMap<Partition, u64> = processor.tell();
    assert_eq!(bytes.load(Ordering::Relaxed), messages * size as u64);
    println!(
        "{{\"ok\":true,\"messages\":{messages},\"partitions\":{partitions},\"chain\":{chain},\
         \"seconds\":{seconds},\"rate\":{},\"cpu_ns\":{},\"positions\":{},\"version\":\"2.49.0\"}}",
        messages as f64 / seconds,
        cpu * 1e9 / messages as f64,
        committed.len()
    );
}
