//! Subscription-index and retained-store benches.
//!
//! - `match`: `SubscriptionTrie::match_topic` on a trie of 1,000,000
//!   subscriptions held by 10,000 clients in 100 tenants (90 exact
//!   `tenant/{t}/device/{d}/telemetry` filters and 10 wildcard filters per
//!   client), on topics that hit, on topics of an unknown tenant, and on
//!   one hit topic repeated (cache-hot);
//! - `churn`: subscribe and unsubscribe rate into that same trie (each
//!   sample inserts fresh subscriptions and takes them out again, so the
//!   trie stays at 1M);
//! - `retained`: `RetainedStore::for_each_match` over 100,000 retained
//!   topics with wildcard filters.
//!
//! The setup prints the process RSS before and after building the 1M
//! trie (VmRSS from /proc/self/status).
//!
//! Run: `cargo bench --no-default-features --bench trie`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use vane::broker::retained::RetainedStore;
use vane::broker::trie::SubscriptionTrie;
use vane::codec::{TopicFilter, TopicName};

/// Counts live heap bytes, to report the trie's footprint exactly (RSS
/// also holds allocator slack and freed-but-kept pages).
struct CountingAlloc;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const CLIENTS: u32 = 10_000;
const TENANTS: u32 = 100;
const DEVICES: u32 = 10_000;
const EXACT_PER_CLIENT: u32 = 90;
const WILD_PER_CLIENT: u32 = 10;
const TOPIC_SAMPLES: usize = 4096;
const CHURN_POOL: usize = 50_000;

/// The shape of the broker's key: which core, which session slot.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    core: u16,
    slot: u32,
}

/// About the size of the broker's subscription options (only the size
/// matters here).
#[allow(dead_code)]
#[derive(Clone, Copy)]
struct Opts {
    qos: u8,
    flags: u8,
    id: Option<NonZeroU32>,
}

const OPTS: Opts = Opts {
    qos: 1,
    flags: 0,
    id: None,
};

/// splitmix64: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }
}

fn filter(text: &str) -> TopicFilter {
    TopicFilter::try_from(text).unwrap()
}

fn key(client: u32) -> Key {
    Key {
        core: (client % 16) as u16,
        slot: client,
    }
}

/// Client `c`'s tenant.
fn tenant(c: u32) -> u32 {
    c % TENANTS
}

/// Wildcard filter number `i` (of [`WILD_PER_CLIENT`]) for client `c`.
fn wildcard_filter(rng: &mut Rng, c: u32, i: u32) -> String {
    let t = tenant(c);
    let d = rng.below(DEVICES);
    match i {
        0..=5 => format!("tenant/{t}/device/{d}/+"),
        6..=7 => format!("tenant/{t}/device/{d}/#"),
        8 => format!("tenant/{t}/+/{d}/telemetry"),
        // One client in ten per tenant wants all device telemetry, one in
        // ten wants everything of the tenant.
        _ => match (c / TENANTS) % 10 {
            0 => format!("tenant/{t}/device/+/telemetry"),
            1 => format!("tenant/{t}/#"),
            _ => format!("tenant/{t}/+/{d}/status"),
        },
    }
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn build_trie() -> SubscriptionTrie<Key, Opts> {
    let rss_before = vm_rss_kib();
    let heap_before = LIVE_BYTES.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut trie = SubscriptionTrie::new();
    let mut rng = Rng(1);
    let mut text = String::new();
    for c in 0..CLIENTS {
        let t = tenant(c);
        let mut exact = 0;
        while exact < EXACT_PER_CLIENT {
            use std::fmt::Write;
            text.clear();
            write!(text, "tenant/{t}/device/{}/telemetry", rng.below(DEVICES)).unwrap();
            if trie.insert(&filter(&text), key(c), OPTS).is_none() {
                exact += 1;
            }
        }
        let mut wild = 0;
        while wild < WILD_PER_CLIENT {
            let f = wildcard_filter(&mut rng, c, wild);
            if trie.insert(&filter(&f), key(c), OPTS).is_none() {
                wild += 1;
            }
        }
    }
    let rss_after = vm_rss_kib();
    let heap = LIVE_BYTES.load(Ordering::Relaxed) - heap_before;
    assert_eq!(
        trie.len(),
        (CLIENTS * (EXACT_PER_CLIENT + WILD_PER_CLIENT)) as usize
    );
    eprintln!(
        "trie: {} subscriptions, {} nodes, built in {:.2?}; VmRSS {} MiB before, {} MiB after; live heap of the trie {} MiB ({:.0} B/subscription)",
        trie.len(),
        trie.node_count(),
        started.elapsed(),
        rss_before / 1024,
        rss_after / 1024,
        heap >> 20,
        heap as f64 / trie.len() as f64,
    );
    trie
}

/// Topics of known tenants and devices: every one meets the tenant's
/// wildcard subscribers, some also an exact one.
fn hit_topics(rng: &mut Rng) -> Vec<String> {
    (0..TOPIC_SAMPLES)
        .map(|_| {
            format!(
                "tenant/{}/device/{}/telemetry",
                rng.below(TENANTS),
                rng.below(DEVICES)
            )
        })
        .collect()
}

/// Topics of tenants nobody subscribed to.
fn miss_topics(rng: &mut Rng) -> Vec<String> {
    (0..TOPIC_SAMPLES)
        .map(|_| {
            format!(
                "tenant/{}/device/{}/telemetry",
                TENANTS + rng.below(TENANTS),
                rng.below(DEVICES)
            )
        })
        .collect()
}

fn count_matches(trie: &SubscriptionTrie<Key, Opts>, topic: &str) -> usize {
    let (mut plain, mut shared) = (0, 0);
    trie.match_topic(
        topic,
        |k, o| {
            black_box((k, o.qos));
            plain += 1
        },
        |_, g| shared += g.len(),
    );
    plain + shared
}

fn bench_trie(c: &mut Criterion) {
    let mut trie = build_trie();
    let mut rng = Rng(2);
    let hits = hit_topics(&mut rng);
    let misses = miss_topics(&mut rng);
    let visits: usize = hits.iter().map(|t| count_matches(&trie, t)).sum();
    eprintln!(
        "match: {:.1} subscriptions visited per hit topic on average",
        visits as f64 / hits.len() as f64
    );
    assert!(misses.iter().all(|t| count_matches(&trie, t) == 0));

    let mut group = c.benchmark_group("match");
    group.throughput(Throughput::Elements(1));
    // `hit`/`miss` cycle through 4096 random topics (the trie is far
    // larger than the CPU caches); `hit-same-topic` repeats one topic to
    // show the cost without cache misses.
    let same: Vec<String> = vec![hits[0].clone(); TOPIC_SAMPLES];
    for (name, topics) in [("hit", &hits), ("miss", &misses), ("hit-same-topic", &same)] {
        group.bench_function(name, |b| {
            let mut i = 0;
            b.iter(|| {
                let topic = &topics[i % TOPIC_SAMPLES];
                i += 1;
                count_matches(&trie, black_box(topic))
            })
        });
    }
    group.finish();

    // Fresh subscriptions by clients beyond the 10,000: same shapes, 90%
    // exact, 10% wildcard, on existing tenants.
    let pool: Vec<(TopicFilter, Key)> = (0..CHURN_POOL)
        .map(|i| {
            let c = CLIENTS + i as u32;
            let text = if i % 10 == 9 {
                let which = rng.below(WILD_PER_CLIENT);
                wildcard_filter(&mut rng, c, which)
            } else {
                format!(
                    "tenant/{}/device/{}/telemetry",
                    tenant(c),
                    rng.below(DEVICES)
                )
            };
            (filter(&text), key(c))
        })
        .collect();

    let mut group = c.benchmark_group("churn");
    group.throughput(Throughput::Elements(1));
    group.bench_function("subscribe", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let batch = &pool[..left.min(CHURN_POOL)];
                let start = Instant::now();
                for (f, k) in batch {
                    black_box(trie.insert(f, *k, OPTS));
                }
                timed += start.elapsed();
                for (f, k) in batch {
                    trie.remove(f, *k).unwrap();
                }
                left -= batch.len();
            }
            timed
        })
    });
    group.bench_function("unsubscribe", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let batch = &pool[..left.min(CHURN_POOL)];
                for (f, k) in batch {
                    trie.insert(f, *k, OPTS);
                }
                let start = Instant::now();
                for (f, k) in batch {
                    black_box(trie.remove(f, *k));
                }
                timed += start.elapsed();
                left -= batch.len();
            }
            timed
        })
    });
    group.finish();
    assert_eq!(
        trie.len(),
        (CLIENTS * (EXACT_PER_CLIENT + WILD_PER_CLIENT)) as usize
    );
}

fn bench_retained(c: &mut Criterion) {
    let mut store = RetainedStore::new();
    let payload = Bytes::from_static(b"{\"temperature\":21.5}");
    for t in 0..TENANTS {
        for d in 0..1000 {
            let topic =
                TopicName::try_from(format!("tenant/{t}/device/{d}/telemetry").as_str()).unwrap();
            store.insert(&topic, payload.clone());
        }
    }
    assert_eq!(store.len(), 100_000);
    let mut group = c.benchmark_group("retained");
    for pattern in [
        "tenant/42/device/+/telemetry",
        "tenant/42/#",
        "tenant/+/device/7/telemetry",
    ] {
        let mut matches = 0;
        store.for_each_match(pattern, |_, _| matches += 1);
        group.throughput(Throughput::Elements(matches));
        group.bench_function(pattern, |b| {
            b.iter(|| {
                let mut n = 0usize;
                store.for_each_match(black_box(pattern), |topic, m| {
                    black_box((topic, m));
                    n += 1;
                });
                n
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_trie, bench_retained
}
criterion_main!(benches);
