//! What one core does: open its share of the clients at the planned rate,
//! run the phases in step with the other cores, publish on an open-loop
//! schedule, and hand its measurements back.
//!
//! Phases (each ends at a barrier across cores, and every wait is bounded
//! by the run's hard deadline): seed retained messages (retained-storm
//! only), connect and subscribe the subscribers, connect the publishers
//! (and idle clients), run, drain, close.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::timer::sleep;
use vane::codec::{
    Packet, Publish, QoS, QosPid, Subscribe, SubscribeProperties, Subscription,
    SubscriptionOptions, TopicFilter, TopicName,
};

use crate::client::{open, Conn, Ctx, Hello, SubState};
use crate::payload::{instant_at, now_ns, Header};
use crate::plan::{Group, Role};
use crate::stats::{record_ns, CoreStats, Live};
use crate::template::{Rng, Vars};

/// Phase numbers, shown on the progress line.
pub const PHASES: [&str; 7] = [
    "connecting seeders",
    "seeding retained",
    "subscribing",
    "connecting",
    "running",
    "draining",
    "closing",
];

/// Cross-core coordination: barriers, the common start time, live counters.
pub struct Sync {
    pub cores: usize,
    arrived: [AtomicUsize; PHASES.len()],
    pub phase: AtomicUsize,
    pub start_ns: AtomicU64,
    /// When core 0 finished the run phase.
    pub run_end_ns: AtomicU64,
    pub lives: Vec<Arc<Live>>,
    /// No wait goes past this.
    pub deadline: Instant,
    pub abort: AtomicBool,
    /// Deliveries expected per published message, if the same for all.
    pub copies: Option<u64>,
}

impl Sync {
    pub fn new(cores: usize, deadline: Instant, copies: Option<u64>) -> Sync {
        Sync {
            cores,
            arrived: Default::default(),
            phase: AtomicUsize::new(0),
            start_ns: AtomicU64::new(0),
            run_end_ns: AtomicU64::new(0),
            lives: (0..cores).map(|_| Arc::new(Live::default())).collect(),
            deadline,
            abort: AtomicBool::new(false),
            copies,
        }
    }

    fn over(&self) -> bool {
        self.abort.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }

    /// Waits (without blocking the executor) until every core got here.
    async fn barrier(&self, phase: usize) {
        self.arrived[phase].fetch_add(1, Ordering::AcqRel);
        while self.arrived[phase].load(Ordering::Acquire) < self.cores && !self.over() {
            sleep(Duration::from_millis(1)).await;
        }
    }

    fn enter(&self, core: usize, phase: usize) {
        if core == 0 {
            self.phase.store(phase, Ordering::Relaxed);
        }
    }

    pub fn total(&self, f: impl Fn(&Live) -> &AtomicU64) -> u64 {
        self.lives.iter().map(|l| Live::get(f(l))).sum()
    }
}

struct Client {
    group: usize,
    /// Index within the group.
    i: usize,
    conn: Rc<Conn>,
}

/// Runs this core's share of the plan and returns what it measured.
pub async fn core_main(ctx: Rc<Ctx>, sync: Arc<Sync>) -> CoreStats {
    let plan = ctx.plan.clone();
    let core = ctx.core;
    let ticker = glommio::spawn_local(push_intervals(ctx.clone()));
    let mine = |role: Role| -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        for (gi, g) in plan.groups.iter().enumerate() {
            if g.role == role {
                v.extend(
                    (0..g.count)
                        .filter(|&i| plan.core_of(gi, i) == core)
                        .map(|i| (gi, i)),
                );
            }
        }
        v
    };
    let mut clients: Vec<Client> = Vec::new();

    // Seed retained messages.
    sync.enter(core, 0);
    let seeders = connect_all(&ctx, &sync, mine(Role::Seeder)).await;
    sync.barrier(0).await;
    sync.enter(core, 1);
    let seed_start = now_ns();
    let seed_end = seed_start + plan.duration.as_nanos() as u64;
    let tasks: Vec<_> = seeders
        .iter()
        .map(|c| spawn_publisher(&ctx, c, seed_start, seed_end))
        .collect();
    for t in tasks {
        t.await;
    }
    wait_acked(&seeders, sync.deadline.min(Instant::now() + plan.drain)).await;
    for g in plan.groups.iter().filter(|g| g.role == Role::Seeder) {
        ctx.retained_expected
            .set(ctx.retained_expected.get() + g.count as u64 * g.limit.unwrap_or(0));
    }
    sync.barrier(1).await;

    // Subscribers, then publishers and idle clients.
    sync.enter(core, 2);
    clients.extend(connect_all(&ctx, &sync, mine(Role::Subscriber)).await);
    sync.barrier(2).await;
    sync.enter(core, 3);
    let mut others = mine(Role::Publisher);
    others.extend(mine(Role::Idle));
    let publishers = connect_all(&ctx, &sync, others).await;
    sync.barrier(3).await;

    // Run from a common start time.
    sync.enter(core, 4);
    let proposed = now_ns() + 5_000_000;
    let start =
        match sync
            .start_ns
            .compare_exchange(0, proposed, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => proposed,
            Err(s) => s,
        };
    ctx.measure_from_ns
        .set(start + plan.warmup.as_nanos() as u64);
    let end = start + (plan.warmup + plan.duration).as_nanos() as u64;
    let end_at = instant_at(end).min(sync.deadline);
    let tasks: Vec<_> = publishers
        .iter()
        .filter(|c| plan.groups[c.group].role == Role::Publisher)
        .map(|c| spawn_publisher(&ctx, c, start, end))
        .collect();
    let had_open = ctx.open.get() > 0;
    let subs_here = clients.len() as u64;
    let retained_done = || {
        let expected = ctx.retained_expected.get();
        expected > 0 && ctx.stats.borrow().retained_received >= expected * subs_here
    };
    if tasks.is_empty() {
        let all_gone = || had_open && ctx.open.get() == 0;
        while !(Instant::now() >= end_at || all_gone() || retained_done() || sync.over()) {
            sleep(Duration::from_millis(10).min(end_at.saturating_duration_since(Instant::now())))
                .await;
        }
    } else {
        for t in tasks {
            t.await;
        }
    }
    sync.run_end_ns.fetch_max(now_ns(), Ordering::Relaxed);
    sync.barrier(4).await;

    // Drain: wait for acks and deliveries.
    sync.enter(core, 5);
    let drain_end = sync.deadline.min(Instant::now() + plan.drain);
    if plan.has_publishers() {
        drain(&ctx, &sync, &publishers, drain_end).await;
    }
    sync.barrier(5).await;

    // Close: clear retained topics, then disconnect everyone.
    // Every core stops counting before any retained topic is cleared, so
    // the clears are not mistaken for foreign messages.
    sync.enter(core, 6);
    ctx.stopping.set(true);
    sync.barrier(6).await;
    let close_end = sync.deadline.min(Instant::now() + Duration::from_secs(2));
    clear_retained(&ctx, &seeders, close_end).await;
    clients.extend(publishers);
    clients.extend(seeders);
    for c in &clients {
        c.conn.disconnect();
    }
    let flush_end = Instant::now() + Duration::from_millis(500);
    while clients.iter().any(|c| !c.conn.is_closed()) && Instant::now() < flush_end {
        sleep(Duration::from_millis(5)).await;
    }
    {
        let mut stats = ctx.stats.borrow_mut();
        for c in &clients {
            if let Some(sub) = &c.conn.sub {
                if sub.measured {
                    stats.absorb_streams(&sub.streams.borrow());
                }
            }
            stats.unacked += c.conn.inflight_len() as u64;
        }
    }
    ticker.cancel().await;
    ctx.live.push_interval(&ctx.interval.borrow());
    ctx.stats.replace(CoreStats::default())
}

/// Pushes the core's recent latencies to the shared slot four times a second.
async fn push_intervals(ctx: Rc<Ctx>) {
    loop {
        sleep(Duration::from_millis(250)).await;
        let mut h = ctx.interval.borrow_mut();
        if !h.is_empty() {
            ctx.live.push_interval(&h);
            h.reset();
        }
    }
}

/// Opens `who` at this core's share of the connect rate, concurrently.
async fn connect_all(ctx: &Rc<Ctx>, sync: &Arc<Sync>, who: Vec<(usize, usize)>) -> Vec<Client> {
    let plan = &ctx.plan;
    let per_core = plan.connect_rate / plan.cores as f64;
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(who.len());
    for (k, (gi, i)) in who.into_iter().enumerate() {
        if sync.over() {
            break;
        }
        let due = t0 + Duration::from_secs_f64(k as f64 / per_core);
        let now = Instant::now();
        if due > now {
            sleep(due - now).await;
        }
        let ctx = ctx.clone();
        tasks.push(glommio::spawn_local(async move {
            connect_one(&ctx, gi, i)
                .await
                .map(|conn| Client { group: gi, i, conn })
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Some(c) = t.await {
            out.push(c);
        }
    }
    out
}

async fn connect_one(ctx: &Rc<Ctx>, gi: usize, i: usize) -> Option<Rc<Conn>> {
    let plan = &ctx.plan;
    let g = &plan.groups[gi];
    let serial = plan.groups[..gi].iter().map(|x| x.count).sum::<usize>() + i;
    let source = (!plan.sources.is_empty()).then(|| plan.sources[serial % plan.sources.len()]);
    let sub = (g.role == Role::Subscriber).then(|| SubState {
        measured: g.measured,
        read_rate: g.read_rate,
        ..SubState::default()
    });
    let hello = Hello {
        client_id: plan.client_id(g, i),
        source,
        sub,
    };
    {
        let mut stats = ctx.stats.borrow_mut();
        stats.attempted += 1;
        if stats.first_attempt_ns == 0 {
            stats.first_attempt_ns = now_ns();
        }
    }
    let began = Instant::now();
    let conn = match open(ctx, hello).await {
        Ok(conn) => conn,
        Err(reason) => {
            CoreStats::count(&mut ctx.stats.borrow_mut().connect_failures, reason);
            Live::add(&ctx.live.connect_failed, 1);
            return None;
        }
    };
    {
        let mut stats = ctx.stats.borrow_mut();
        stats.connected += 1;
        stats.last_connected_ns = now_ns();
        record_ns(&mut stats.connect, began.elapsed().as_nanos() as u64);
    }
    if g.role == Role::Subscriber {
        let vars = Vars {
            index: plan.id_offset + i as u64,
            core: ctx.core,
            ..Vars::default()
        };
        let filter = match TopicFilter::try_from(g.topic.render(&vars).as_str()) {
            Ok(f) => f,
            Err(e) => {
                CoreStats::count(
                    &mut ctx.stats.borrow_mut().connect_failures,
                    format!("bad topic filter: {e}"),
                );
                conn.close(ctx, "bad topic filter");
                return None;
            }
        };
        let sub = Subscribe {
            pid: vane::codec::PacketId::new(1).unwrap(),
            properties: SubscribeProperties::default(),
            subscriptions: vec![Subscription {
                filter,
                options: SubscriptionOptions {
                    qos: g.qos,
                    ..SubscriptionOptions::default()
                },
            }],
        };
        if plan.groups.iter().any(|x| x.role == Role::Seeder) {
            if let Some(s) = &conn.sub {
                s.retained_since.set(Some(Instant::now()));
            }
        }
        let began = Instant::now();
        if let Err(reason) = conn.subscribe(sub, plan.connect_timeout).await {
            CoreStats::count(&mut ctx.stats.borrow_mut().connect_failures, reason.clone());
            Live::add(&ctx.live.connect_failed, 1);
            conn.close(ctx, reason);
            return None;
        }
        record_ns(
            &mut ctx.stats.borrow_mut().subscribe,
            began.elapsed().as_nanos() as u64,
        );
    }
    Some(conn)
}

fn spawn_publisher(ctx: &Rc<Ctx>, c: &Client, start: u64, end: u64) -> glommio::Task<()> {
    let ctx = ctx.clone();
    let conn = c.conn.clone();
    let (gi, i) = (c.group, c.i);
    glommio::spawn_local(async move { publish_loop(ctx, conn, gi, i, start, end).await })
}

/// Most bytes a connection may have queued before its publisher waits.
const OUTBOX_CAP: usize = 1 << 20;

/// Publishes on an open-loop schedule: message k is due at
/// `start + offset + k / rate` and carries that time, however late it goes
/// out, so a stall shows up in the latencies instead of thinning the load.
async fn publish_loop(ctx: Rc<Ctx>, conn: Rc<Conn>, gi: usize, i: usize, start: u64, end: u64) {
    let plan = ctx.plan.clone();
    let g: &Group = &plan.groups[gi];
    let index = plan.id_offset + i as u64;
    let publisher = index as u32;
    let interval = if g.rate > 0.0 { 1e9 / g.rate } else { 0.0 };
    // Spread publishers over one interval so they do not fire in step.
    let offset = (index.wrapping_mul(7919) % 1000) as f64 / 1000.0 * interval;
    let window = (plan.inflight.min(conn.broker_receive_max)).max(1) as usize;
    let mut rng = Rng::new(index ^ plan.run_id as u64);
    let mut vars = Vars {
        index,
        core: ctx.core,
        ..Vars::default()
    };
    let fixed_topic = (!g.topic.per_message())
        .then(|| TopicName::try_from(g.topic.render(&vars).as_str()).ok())
        .flatten();
    if fixed_topic.is_none() && !g.topic.per_message() {
        conn.close(&ctx, "bad topic name");
        return;
    }
    let mut seq: u64 = 0;
    let mut woke_for = u64::MAX;
    let mut pushed_back = false;
    loop {
        if conn.is_closed() || g.limit.is_some_and(|l| seq >= l) {
            break;
        }
        let now = now_ns();
        let intended = if interval > 0.0 {
            start + (offset + seq as f64 * interval) as u64
        } else {
            now.max(start)
        };
        if intended >= end || instant_at(now) >= ctx_deadline(&ctx, end) {
            break;
        }
        if now < intended {
            // On schedule again: lateness from here on is the tool's own
            // until the broker makes us wait.
            pushed_back = false;
            sleep(Duration::from_nanos(intended - now)).await;
            continue;
        }
        if woke_for != seq {
            // How late the tool itself got to this message (timer wake-up,
            // CPU). Not counted while catching up after broker backpressure.
            woke_for = seq;
            if !pushed_back && intended >= ctx.measure_from_ns.get() {
                record_ns(&mut ctx.stats.borrow_mut().tool_lag, now - intended);
            }
        }
        if g.qos != QoS::AtMostOnce && conn.inflight_len() >= window
            || conn.out.borrow().len() >= OUTBOX_CAP
        {
            // Woken by an ack, a flushed outbox or a close; the timeout
            // only re-checks the deadline.
            pushed_back = true;
            conn.progress.wait_for(Duration::from_millis(100)).await;
            continue;
        }
        let topic = match &fixed_topic {
            Some(t) => t.clone(),
            None => {
                vars.random = rng.below(g.count as u64);
                vars.seq = seq;
                match TopicName::try_from(g.topic.render(&vars).as_str()) {
                    Ok(t) => t,
                    Err(_) => {
                        conn.close(&ctx, "bad topic name");
                        return;
                    }
                }
            }
        };
        let header = Header {
            run: plan.run_id,
            publisher,
            seq,
            sent_ns: intended,
        };
        let qos_pid = match g.qos {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            qos => QosPid::new(qos, Some(conn.begin_publish(intended, publisher))).unwrap(),
        };
        let mut publish = Publish::new(topic, header.to_bytes(g.size));
        publish.qos_pid = qos_pid;
        publish.retain = g.retain;
        conn.send(&Packet::Publish(publish));
        seq += 1;
        {
            let mut stats = ctx.stats.borrow_mut();
            stats.sent += 1;
            stats.publisher(publisher).sent += 1;
            if intended >= ctx.measure_from_ns.get() {
                record_ns(&mut stats.lag, now.saturating_sub(intended));
            }
        }
        Live::add(&ctx.live.sent, 1);
        if seq.is_multiple_of(64) {
            glommio::yield_if_needed().await;
        }
    }
}

fn ctx_deadline(ctx: &Ctx, end: u64) -> Instant {
    // A publisher never outlives its phase by more than the drain time.
    instant_at(end) + ctx.plan.drain
}

async fn wait_acked(conns: &[Client], deadline: Instant) {
    while conns
        .iter()
        .any(|c| !c.conn.is_closed() && c.conn.inflight_len() > 0)
        && Instant::now() < deadline
    {
        sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until this core's publishers are acknowledged and deliveries have
/// caught up (all expected ones arrived, or nothing moved for a second).
async fn drain(ctx: &Ctx, sync: &Sync, publishers: &[Client], deadline: Instant) {
    let plan = &ctx.plan;
    let qos_acked = plan
        .groups
        .iter()
        .any(|g| g.role == Role::Publisher && g.qos != QoS::AtMostOnce);
    let has_subs = plan
        .groups
        .iter()
        .any(|g| g.role == Role::Subscriber && g.measured);
    let mut last = (u64::MAX, u64::MAX);
    let mut quiet_since = Instant::now();
    loop {
        let now = Instant::now();
        if now >= deadline || sync.over() {
            return;
        }
        let my_acked = publishers
            .iter()
            .all(|c| c.conn.is_closed() || c.conn.inflight_len() == 0);
        let received = sync.total(|l| &l.received);
        let acked = sync.total(|l| &l.acked);
        let caught_up = match sync.copies {
            _ if !has_subs => true,
            Some(copies) => {
                let base = if qos_acked {
                    acked
                } else {
                    sync.total(|l| &l.sent)
                };
                received >= copies * base
            }
            None => false,
        };
        if (received, acked) != last {
            last = (received, acked);
            quiet_since = now;
        }
        let quiet = now.duration_since(quiet_since) >= Duration::from_secs(1);
        if my_acked && (caught_up || quiet) {
            return;
        }
        sleep(Duration::from_millis(5)).await;
    }
}

/// Retained-storm: publish an empty retained message to every seeded topic.
async fn clear_retained(ctx: &Rc<Ctx>, seeders: &[Client], deadline: Instant) {
    for c in seeders {
        let g = &ctx.plan.groups[c.group];
        let mut vars = Vars {
            index: ctx.plan.id_offset + c.i as u64,
            core: ctx.core,
            ..Vars::default()
        };
        for seq in 0..g.limit.unwrap_or(0) {
            vars.seq = seq;
            let Ok(topic) = TopicName::try_from(g.topic.render(&vars).as_str()) else {
                break;
            };
            let mut p = Publish::new(topic, Bytes::new());
            p.retain = true;
            if c.conn.is_closed() {
                break;
            }
            c.conn.send(&Packet::Publish(p));
        }
    }
    // QoS 0 clears: give the writers a moment to flush.
    let end = deadline.min(Instant::now() + Duration::from_millis(200));
    while seeders.iter().any(|c| !c.conn.out.borrow().is_empty()) && Instant::now() < end {
        sleep(Duration::from_millis(5)).await;
    }
}
