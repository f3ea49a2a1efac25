//! Cross-core mailbox throughput: how many routed messages per second one
//! core can hand to another.
//!
//! Compares the transport Vane uses (glommio's channel mesh between two
//! executors, carrying one `Vec` batch per tick) with the same mesh carrying
//! one message per send, and with crossbeam-channel between two plain
//! threads (a blocking receiver, so no executor integration at all: the
//! floor for a shared queue). The message is shaped like a routed PUBLISH:
//! a topic and a payload as `Bytes`, plus a few words of metadata.

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};

// The fields are never read: they exist so the message has the size and
// the reference counts of a routed PUBLISH.
#[allow(dead_code)]
#[derive(Clone)]
struct Routed {
    topic: Bytes,
    payload: Bytes,
    qos: u8,
    origin: u64,
    received_at: Instant,
}

fn routed() -> Routed {
    Routed {
        topic: Bytes::from_static(b"sensors/device-123/temperature"),
        payload: Bytes::from(vec![7u8; 64]),
        qos: 0,
        origin: 42,
        received_at: Instant::now(),
    }
}

/// Sends `count` messages from one executor to another in batches of
/// `batch`, and returns the elapsed time from the first send to the last
/// receive.
fn mesh_run(count: u64, batch: usize) -> Duration {
    let mesh: MeshBuilder<Vec<Routed>, _> = MeshBuilder::full(2, 256);
    let message = routed();
    let start = std::sync::Arc::new(std::sync::Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|role| {
            let (mesh, message, start) = (mesh.clone(), message.clone(), start.clone());
            LocalExecutorBuilder::new(Placement::Unbound)
                .io_memory(64 << 10)
                .ring_depth(64)
                .spawn(move || async move {
                    let (senders, mut receivers) = mesh.join().await.unwrap();
                    let me = senders.peer_id();
                    let peer = 1 - me;
                    start.wait();
                    let began = Instant::now();
                    if role == 0 {
                        let mut left = count;
                        while left > 0 {
                            let n = (batch as u64).min(left);
                            let items: Vec<Routed> = (0..n).map(|_| message.clone()).collect();
                            senders.send_to(peer, items).await.unwrap();
                            left -= n;
                        }
                        senders.close();
                        Duration::ZERO
                    } else {
                        let mut got = 0u64;
                        let streams = receivers.streams();
                        let (_, receiver) = streams.into_iter().next().unwrap();
                        while got < count {
                            let items = receiver.recv().await.unwrap();
                            got += items.len() as u64;
                            std::hint::black_box(&items);
                        }
                        began.elapsed()
                    }
                })
                .unwrap()
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap()
}

fn crossbeam_run(count: u64, batch: usize) -> Duration {
    let (tx, rx) = crossbeam_channel::bounded::<Vec<Routed>>(256);
    let message = routed();
    let sender = std::thread::spawn(move || {
        let mut left = count;
        while left > 0 {
            let n = (batch as u64).min(left);
            tx.send((0..n).map(|_| message.clone()).collect()).unwrap();
            left -= n;
        }
    });
    let began = Instant::now();
    let mut got = 0u64;
    while got < count {
        let items = rx.recv().unwrap();
        got += items.len() as u64;
        std::hint::black_box(&items);
    }
    let elapsed = began.elapsed();
    sender.join().unwrap();
    elapsed
}

fn mailbox(c: &mut Criterion) {
    let mut group = c.benchmark_group("mailbox");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("glommio_mesh_batch_64", |b| {
        b.iter_custom(|n| mesh_run(n, 64))
    });
    group.bench_function("glommio_mesh_single", |b| b.iter_custom(|n| mesh_run(n, 1)));
    group.bench_function("crossbeam_threads_batch_64", |b| {
        b.iter_custom(|n| crossbeam_run(n, 64))
    });
    group.bench_function("crossbeam_threads_single", |b| {
        b.iter_custom(|n| crossbeam_run(n, 1))
    });
    group.finish();
}

criterion_group!(benches, mailbox);
criterion_main!(benches);
