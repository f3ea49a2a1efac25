//! `$SYS` topics: every `[stats] sys_interval` seconds core 0 publishes the
//! broker's main figures as retained QoS 0 messages, under Mosquitto's
//! names where Mosquitto has one (`$SYS/broker/clients/connected`,
//! `$SYS/broker/load/messages/received/1min`, ...).
//!
//! Owns: the topic names, the values' text, and the load averages
//! (exponentially weighted per-minute rates over 1, 5 and 15 minutes, as
//! Mosquitto computes them). Does not own: the counters (read from the
//! hub) or routing (`Core::route_own`: exempt from max_retained_messages).
//!
//! Differences from Mosquitto: `messages/received` and `messages/sent`
//! count PUBLISH packets (Mosquitto counts every packet); `heap/*` is not
//! published. These messages are the broker's own, so they are not counted
//! as received messages.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::core::Core;
use super::metrics::StatsHub;
use super::stats::CoreStats;
use crate::broker::message::Message;
use crate::codec::{Publish, TopicName};

/// Figures that get a 1/5/15-minute load average, with their topic part.
const LOADS: [&str; 9] = [
    "messages/received",
    "messages/sent",
    "publish/received",
    "publish/sent",
    "publish/dropped",
    "bytes/received",
    "bytes/sent",
    "connections",
    "sockets",
];

/// Running totals of the figures in [`LOADS`], in that order.
fn load_counters(hub: &StatsHub) -> [u64; 9] {
    let sum = |f: fn(&CoreStats) -> u64| hub.sum(f);
    let received = sum(|s| s.messages_received.get());
    let sent = sum(|s| s.messages_sent.get());
    [
        received,
        sent,
        received,
        sent,
        sum(|s| s.drops.iter().map(|d| d.get()).sum()),
        sum(|s| s.bytes_received.get()),
        sum(|s| s.bytes_sent.get()),
        sum(|s| s.connects.get()),
        sum(|s| s.connections_accepted.get()),
    ]
}

/// 1, 5 and 15-minute exponentially weighted rates (per minute).
#[derive(Debug, Default, Clone)]
pub struct LoadAverages {
    previous: Option<[u64; 9]>,
    averages: [[f64; 3]; 9],
}

impl LoadAverages {
    /// Folds in the totals after `elapsed`.
    pub fn update(&mut self, totals: [u64; 9], elapsed: Duration) {
        let secs = elapsed.as_secs_f64().max(0.001);
        if let Some(previous) = self.previous {
            for (i, total) in totals.iter().enumerate() {
                let per_minute = total.saturating_sub(previous[i]) as f64 * 60.0 / secs;
                for (j, minutes) in [1.0f64, 5.0, 15.0].iter().enumerate() {
                    let decay = (-secs / (60.0 * minutes)).exp();
                    let avg = &mut self.averages[i][j];
                    *avg = per_minute + decay * (*avg - per_minute);
                }
            }
        }
        self.previous = Some(totals);
    }

    pub fn get(&self, figure: usize, window: usize) -> f64 {
        self.averages[figure][window]
    }
}

/// Every `$SYS` topic and its value now.
pub fn figures(hub: &StatsHub, loads: &LoadAverages, max_clients: u64) -> Vec<(String, String)> {
    let sum = |f: fn(&CoreStats) -> u64| hub.sum(f);
    let connected = sum(|s| s.sessions_online.get());
    let disconnected = sum(|s| s.sessions_offline.get());
    let retained = hub
        .cores
        .iter()
        .map(|s| s.retained_messages.get())
        .max()
        .unwrap_or(0);
    let stored = retained + sum(|s| s.queued.get() + s.inflight.get());
    let received = sum(|s| s.messages_received.get());
    let sent = sum(|s| s.messages_sent.get());
    let mut out: Vec<(String, String)> = vec![
        (
            "version",
            format!("vane version {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "uptime",
            format!("{} seconds", hub.started.elapsed().as_secs()),
        ),
        ("clients/connected", connected.to_string()),
        ("clients/disconnected", disconnected.to_string()),
        ("clients/total", (connected + disconnected).to_string()),
        ("clients/maximum", max_clients.to_string()),
        (
            "clients/expired",
            sum(|s| s.sessions_expired.get()).to_string(),
        ),
        ("messages/received", received.to_string()),
        ("messages/sent", sent.to_string()),
        ("messages/stored", stored.to_string()),
        ("store/messages/count", stored.to_string()),
        ("publish/messages/received", received.to_string()),
        ("publish/messages/sent", sent.to_string()),
        (
            "publish/messages/dropped",
            sum(|s| s.drops.iter().map(|d| d.get()).sum()).to_string(),
        ),
        (
            "publish/bytes/received",
            sum(|s| s.received_bytes_by_qos.iter().map(|c| c.get()).sum()).to_string(),
        ),
        (
            "publish/bytes/sent",
            sum(|s| s.sent_bytes_by_qos.iter().map(|c| c.get()).sum()).to_string(),
        ),
        (
            "bytes/received",
            sum(|s| s.bytes_received.get()).to_string(),
        ),
        ("bytes/sent", sum(|s| s.bytes_sent.get()).to_string()),
        (
            "subscriptions/count",
            sum(|s| s.subscriptions.get()).to_string(),
        ),
        (
            "shared_subscriptions/count",
            sum(|s| s.shared_subscriptions.get()).to_string(),
        ),
        ("retained messages/count", retained.to_string()),
    ]
    .into_iter()
    .map(|(topic, value)| (format!("$SYS/broker/{topic}"), value))
    .collect();
    for (i, figure) in LOADS.iter().enumerate() {
        for (j, window) in ["1min", "5min", "15min"].iter().enumerate() {
            out.push((
                format!("$SYS/broker/load/{figure}/{window}"),
                format!("{:.2}", loads.get(i, j)),
            ));
        }
    }
    out
}

/// Core 0's task: publishes the figures every `interval`.
pub async fn run(core: Rc<Core>, hub: Arc<StatsHub>, interval: Duration) {
    let mut loads = LoadAverages::default();
    let mut max_clients = 0;
    let mut last = Instant::now();
    loads.update(load_counters(&hub), Duration::ZERO);
    loop {
        glommio::timer::sleep(interval).await;
        let now = Instant::now();
        loads.update(load_counters(&hub), now - last);
        last = now;
        max_clients = max_clients.max(hub.sum(|s| s.sessions_online.get()));
        for (topic, value) in figures(&hub, &loads, max_clients) {
            let Ok(topic) = TopicName::try_from(topic.as_str()) else {
                continue;
            };
            let mut publish = Publish::new(topic, Bytes::from(value));
            publish.retain = true;
            let message = Message::from_publish(&publish, None, now);
            core.route_own(&message, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_rate_converges_on_its_per_minute_value() {
        let mut loads = LoadAverages::default();
        let mut totals = [0u64; 9];
        loads.update(totals, Duration::ZERO);
        for _ in 0..600 {
            totals[0] += 100; // 100 per 10 s: 600 per minute
            loads.update(totals, Duration::from_secs(10));
        }
        assert!((loads.get(0, 0) - 600.0).abs() < 1.0);
        assert!((loads.get(0, 2) - 600.0).abs() < 5.0);
        assert_eq!(loads.get(1, 0), 0.0);
    }

    #[test]
    fn topics_use_mosquitto_names() {
        let hub = StatsHub::new(2, false);
        let topics: Vec<String> = figures(&hub, &LoadAverages::default(), 0)
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        for name in [
            "$SYS/broker/clients/connected",
            "$SYS/broker/messages/received",
            "$SYS/broker/load/messages/received/1min",
            "$SYS/broker/uptime",
            "$SYS/broker/version",
        ] {
            assert!(topics.iter().any(|t| t == name), "{name} missing");
        }
    }
}
