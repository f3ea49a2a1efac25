//! Following publishers: which live connections are fed mostly by one other
//! core, and when to move them there.
//!
//! A message that crosses cores costs the receiving core a wake-up (an
//! eventfd write, an io_uring wait that returns, a trip round glommio's
//! reactor). At low load that wake-up is most of a message's latency: on
//! the 2-core test machine a subscriber served by the publisher's core sees
//! p99 about 60 µs lower than one served by the other core
//! (benches/RESULTS.md). So a core reviews, every
//! `executor.follow_interval_ms`, the connections it delivered at least
//! `follow_min_messages` to, and moves one to the core that published at
//! least four in five of its messages (with more than two cores, as few as
//! three in five may do, see [`Feed::review`]), when that has held for two
//! reviews in a row and both cores were below `follow_max_load_pct` busy over the
//! last two intervals. Under load the guard keeps connections where the
//! kernel put them, spread over the cores: moving every subscriber of a
//! busy publisher onto its core would trade throughput for latency. Nor
//! does a connection that received more than `follow_max_messages` in the
//! interval move: its new deliveries would wait for the old path's whole
//! backlog, and its latency is its queue's anyway. Nor does a connection
//! move to a core at `max_connections_per_core`.
//! Moves wanted but not made are counted (`moves_declined`).
//!
//! Owns: the per-connection tally ([`Feed`]), the review, and the load
//! figure each core publishes. Does not own: the move itself
//! (`migrate.rs`).

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::core::Core;
use super::sessions::Presence;
use super::stats::CoreStats;

/// Where a live connection's deliveries came from during the current
/// review interval, and how long one other core has fed it. Eight bytes,
/// kept in the connection's link (an idle, parked connection has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feed {
    /// The review interval the tally is for (wrapping).
    epoch: u8,
    /// Majority vote over the interval's deliveries (Boyer–Moore): the core
    /// that sent most of them, if any sent a majority, and its lead.
    source: u8,
    lead: u16,
    /// Deliveries tallied this interval (saturating).
    total: u16,
    /// The last review that found one other core dominating the
    /// deliveries: its interval and that core ([`NO_CORE`]: none).
    streak_epoch: u8,
    streak_source: u8,
}

/// `Feed::streak_source` when there is no streak. Following is off with
/// more than 254 cores (see `ExecutorSettings::follow`).
const NO_CORE: u8 = u8::MAX;

impl Default for Feed {
    fn default() -> Self {
        Feed {
            epoch: 0,
            source: 0,
            lead: 0,
            total: 0,
            streak_epoch: 0,
            streak_source: NO_CORE,
        }
    }
}

impl Feed {
    /// Tallies one delivery of a message published on core `source` during
    /// review interval `epoch`. Returns true when the connection has just
    /// reached `min` deliveries this interval: it is then due for review.
    pub fn record(&mut self, source: u8, epoch: u8, min: u16) -> bool {
        if self.epoch != epoch {
            // A new interval, possibly after quiet ones: start the tally
            // again; `review` decides whether the streak goes on.
            self.epoch = epoch;
            self.lead = 0;
            self.total = 0;
        }
        if self.lead == 0 {
            self.source = source;
        }
        if self.source == source {
            self.lead = self.lead.saturating_add(1);
        } else {
            self.lead -= 1;
        }
        self.total = self.total.saturating_add(1);
        self.total == min
    }

    /// Reviews interval `epoch` for a connection served by core `home`:
    /// the core to move it to, once one other core has dominated its
    /// deliveries in two reviewed intervals in a row. A review of an
    /// interval the tally is not for (the connection went quiet), or an
    /// interval without such a core, breaks the streak.
    ///
    /// Dominated means a lead of three fifths of the tally. A core with k
    /// of n deliveries ends with a lead of at least 2k - n and at most k.
    /// So four in five always dominates and fewer than three in five never
    /// does. With one other source (always so on two cores) the lead is
    /// exactly 2k - n and the line is four in five; with several, between
    /// the two, depending on how much the others cancel each other out.
    pub fn review(&mut self, epoch: u8, home: u8) -> Option<u8> {
        let dominant = self.epoch == epoch
            && u32::from(self.lead) * 5 >= u32::from(self.total) * 3
            && self.source != home;
        if !dominant {
            self.streak_source = NO_CORE;
            return None;
        }
        let follows =
            self.streak_source == self.source && self.streak_epoch == epoch.wrapping_sub(1);
        self.streak_source = self.source;
        self.streak_epoch = epoch;
        follows.then_some(self.source)
    }

    /// Deliveries tallied in interval `epoch` (0 if none was tallied).
    pub fn tallied(&self, epoch: u8) -> u16 {
        if self.epoch == epoch {
            self.total
        } else {
            0
        }
    }

    /// Forgets the streak: the connection was just asked to move, or is
    /// too busy to.
    pub fn restart(&mut self) {
        self.streak_source = NO_CORE;
    }
}

/// What the review needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct FollowSettings {
    pub interval: Duration,
    pub min_messages: u16,
    /// Busy fraction in thousandths above which a core neither sends nor
    /// takes a connection.
    pub max_load_permille: u64,
    /// Deliveries in an interval above which a connection does not move.
    pub max_messages: u16,
    /// Moves one core asks for per review, at most.
    pub max_moves: usize,
}

/// CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Busy thousandths of `wall` that `cpu` represents.
fn permille(cpu: Duration, wall: Duration) -> u64 {
    if wall.is_zero() {
        return 0;
    }
    (cpu.as_nanos() * 1000 / wall.as_nanos()).min(1000) as u64
}

/// The core's review loop. `peers` are every core's stats, this one's
/// included, indexed by core id: the load each core publishes is read
/// from there. Runs until the core stops.
pub async fn run(core: Rc<Core>, peers: Vec<Arc<CoreStats>>, settings: FollowSettings) {
    let mut last_cpu = thread_cpu_time();
    let mut last_at = Instant::now();
    let mut previous_load = 1000;
    loop {
        // Cancelled when the core stops (`stopping` wakes one waiter
        // only, the accept loop).
        glommio::timer::sleep(settings.interval).await;
        if core.is_shutting_down() {
            return;
        }
        let (cpu, at) = (thread_cpu_time(), Instant::now());
        let load = permille(cpu.saturating_sub(last_cpu), at - last_at);
        (last_cpu, last_at) = (cpu, at);
        // The higher of the last two intervals: a core that just got busy
        // (a benchmark starting) does not look idle for one more review.
        core.stats.busy_permille.set(load.max(previous_load));
        previous_load = load;
        review(&core, &peers, settings);
    }
}

/// Closes the current interval: asks the connections that should follow
/// their publishers to move, within the load guard.
fn review(core: &Core, peers: &[Arc<CoreStats>], settings: FollowSettings) {
    let epoch = core.follow_epoch.get();
    core.follow_epoch.set(epoch.wrapping_add(1));
    let candidates = std::mem::take(&mut *core.follow_candidates.borrow_mut());
    let own_load = core.stats.busy_permille.get();
    let mut moves = 0;
    let mut sessions = core.sessions.borrow_mut();
    for key in candidates {
        let Some(slot) = sessions.get_mut(key) else {
            continue;
        };
        let Presence::Live(link) = &slot.presence else {
            continue;
        };
        if core.migrations.borrow().is_settling(key) {
            continue;
        }
        let mut feed = link.feed.get();
        // Too busy to gain from a move (see `follow_max_messages`).
        let busy = feed.tallied(epoch) > settings.max_messages;
        let target = feed.review(epoch, core.id as u8);
        link.feed.set(feed);
        let Some(target) = target.map(usize::from) else {
            continue;
        };
        let cool = |load: u64| load < settings.max_load_permille;
        let Some(target_stats) = peers.get(target) else {
            continue;
        };
        // The target's max_connections_per_core, as it last counted: a
        // move must not take it over (moves from several cores in one
        // review may still, by at most their number). A move leaves the
        // global max_connections count as it is.
        let target_full = target_stats.connections_current.get() >= core.max_connections as u64;
        if busy || !cool(own_load) || !cool(target_stats.busy_permille.get()) || target_full {
            core.stats.moves_declined.inc();
            continue;
        }
        if moves >= settings.max_moves {
            continue;
        }
        if link.request_move(target) {
            moves += 1;
            feed.restart();
            link.feed.set(feed);
            tracing::debug!(
                core = core.id,
                client_id = slot.client_id.as_str(),
                target,
                "moving a connection to the core that publishes to it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `n` deliveries from `source` in `epoch`; whether the last one
    /// made the connection due for review.
    fn feed(f: &mut Feed, source: u8, epoch: u8, n: usize, min: u16) -> bool {
        let mut due = false;
        for _ in 0..n {
            due = f.record(source, epoch, min);
        }
        due
    }

    #[test]
    fn a_connection_fed_by_one_other_core_moves_after_two_reviews() {
        let mut f = Feed::default();
        assert!(!feed(&mut f, 1, 0, 10, 64), "not yet due");
        assert!(feed(&mut f, 1, 0, 54, 64), "due at exactly min");
        assert!(!f.record(1, 0, 64), "due once per interval");
        assert_eq!(f.review(0, 0), None, "one review is not a streak");
        feed(&mut f, 1, 1, 100, 64);
        assert_eq!(f.review(1, 0), Some(1));
    }

    #[test]
    fn a_connection_fed_by_its_own_core_or_by_many_stays() {
        let mut f = Feed::default();
        for epoch in 0..4 {
            feed(&mut f, 0, epoch, 100, 64);
            assert_eq!(f.review(epoch, 0), None, "its own core feeds it");
        }
        // Three cores in turn: nobody has four in five.
        let mut f = Feed::default();
        for epoch in 0..4 {
            for _ in 0..40 {
                f.record(1, epoch, 64);
                f.record(2, epoch, 64);
                f.record(0, epoch, 64);
            }
            assert_eq!(f.review(epoch, 0), None);
        }
        // Three in four from core 1 is not enough either.
        let mut f = Feed::default();
        for epoch in 0..4 {
            for _ in 0..40 {
                feed(&mut f, 1, epoch, 3, 64);
                f.record(0, epoch, 64);
            }
            assert_eq!(f.review(epoch, 0), None);
        }
    }

    /// With several other sources the line lies between three and four in
    /// five: deliveries from cores 2 and 3 that cancel each other out
    /// before core 1's arrive leave core 1's lead at its full count.
    #[test]
    fn with_three_sources_three_in_five_may_do_and_less_never() {
        let arrive = |f: &mut Feed, epoch: u8, from_core_1: usize| {
            for _ in 0..(200 - from_core_1) / 2 {
                f.record(2, epoch, 64);
                f.record(3, epoch, 64);
            }
            feed(f, 1, epoch, from_core_1, 64);
        };
        let mut f = Feed::default();
        for epoch in 0..2 {
            arrive(&mut f, epoch, 120);
            assert_eq!(f.review(epoch, 0), (epoch == 1).then_some(1));
        }
        let mut f = Feed::default();
        for epoch in 0..4 {
            arrive(&mut f, epoch, 118);
            assert_eq!(f.review(epoch, 0), None, "under three in five");
        }
    }

    #[test]
    fn four_in_five_from_one_core_is_enough() {
        let mut f = Feed::default();
        for epoch in 0..2 {
            for _ in 0..40 {
                feed(&mut f, 1, epoch, 4, 64);
                f.record(0, epoch, 64);
            }
            let expect = (epoch == 1).then_some(1);
            assert_eq!(f.review(epoch, 0), expect);
        }
    }

    #[test]
    fn a_quiet_interval_or_a_new_source_breaks_the_streak() {
        let mut f = Feed::default();
        feed(&mut f, 1, 0, 100, 64);
        assert_eq!(f.review(0, 0), None);
        // Interval 1 went by without enough deliveries to be reviewed.
        feed(&mut f, 1, 2, 100, 64);
        assert_eq!(f.review(2, 0), None, "interval 1 was quiet");
        feed(&mut f, 2, 3, 100, 64);
        assert_eq!(f.review(3, 0), None, "a different core now");
        feed(&mut f, 2, 4, 100, 64);
        assert_eq!(f.review(4, 0), Some(2));
        f.restart();
        feed(&mut f, 2, 5, 100, 64);
        assert_eq!(f.review(5, 0), None, "asked to move: counts again");
        // A review for an interval the tally is not for (nothing was
        // tallied since) ends the streak.
        assert_eq!(f.review(6, 0), None);
        feed(&mut f, 2, 7, 100, 64);
        assert_eq!(f.review(7, 0), None);
    }

    #[test]
    fn the_tally_saturates() {
        let mut f = Feed::default();
        feed(&mut f, 1, 0, 70_000, 64);
        assert_eq!(f.review(0, 0), None);
        feed(&mut f, 1, 1, 70_000, 64);
        assert_eq!(f.review(1, 0), Some(1));
        assert_eq!(std::mem::size_of::<Feed>(), 8);
    }

    #[test]
    fn load_is_cpu_over_wall_time_in_thousandths() {
        let ms = Duration::from_millis;
        assert_eq!(permille(ms(100), ms(1000)), 100);
        assert_eq!(permille(ms(2000), ms(1000)), 1000);
        assert_eq!(permille(ms(5), Duration::ZERO), 0);
    }
}
