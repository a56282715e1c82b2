//! `handoff`: what one hand-off of a commit to the file store's writer
//! thread and back costs on this machine, with nothing else to do.
//!
//! The file store's commit path (`crate/src/store/file/handle.rs` and
//! `writer.rs`): the committing task sends its request over a
//! `std::sync::mpsc` channel to the WAL writer thread, which sleeps in
//! `recv`; the thread answers through a `futures::channel::oneshot`, whose
//! completion wakes the task on its tokio worker. This benchmark does only
//! that, with no I/O in between: a task on a one-worker tokio runtime (the
//! durable-write benchmark's setting) sends a oneshot sender to a thread,
//! which completes it at once; the task awaits it. Printed: the round trip's
//! p50 and p90 over `--n` round trips, `--rounds` times, and the same with
//! the oneshot completed in the task itself (no thread: what is left of the
//! machinery).
//!
//! ```sh
//! cargo run --release -p outpost-bench --bin handoff
//! ```
#![forbid(unsafe_code)]

use std::sync::mpsc;
use std::time::Instant;

use clap::Parser;
use futures::channel::oneshot;

/// Round trip of a request to a thread that sleeps in `recv`, and back to a
/// task that awaits a oneshot: the file store writer's hand-off, without I/O.
#[derive(Parser)]
struct Args {
    /// Round trips per round.
    #[arg(long, default_value_t = 20_000)]
    n: usize,
    /// Rounds (each printed).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// p50 and p90 of `lat` (ns), in µs.
fn summary(mut lat: Vec<u64>) -> (f64, f64) {
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    (at(0.5), at(0.9))
}

fn main() {
    let args = Args::parse();
    let (tx, rx) = mpsc::channel::<oneshot::Sender<()>>();
    let thread = std::thread::Builder::new()
        .name("handoff".into())
        .spawn(move || {
            while let Ok(reply) = rx.recv() {
                let _ = reply.send(());
            }
        })
        .expect("spawn the thread");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        for round in 1..=args.rounds {
            let mut to_thread = Vec::with_capacity(args.n);
            let mut inline = Vec::with_capacity(args.n);
            for _ in 0..args.n {
                let t = Instant::now();
                let (s, r) = oneshot::channel();
                tx.send(s).expect("the thread is running");
                r.await.expect("the thread answers");
                to_thread.push(t.elapsed().as_nanos() as u64);
                let t = Instant::now();
                let (s, r) = oneshot::channel();
                let _ = s.send(());
                r.await.expect("completed");
                inline.push(t.elapsed().as_nanos() as u64);
            }
            let (p50, p90) = summary(to_thread);
            let (i50, i90) = summary(inline);
            println!(
                "round {round}: to the thread and back p50 {p50:.1} µs, p90 {p90:.1} µs; \
                 completed in the task p50 {i50:.2} µs, p90 {i90:.2} µs"
            );
        }
    });
    drop(tx);
    let _ = thread.join();
}
