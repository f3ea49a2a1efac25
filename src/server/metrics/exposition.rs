//! Writes the families out: Prometheus text and OpenMetrics through
//! prometheus-client's collector interface (summaries, which it lacks, by
//! hand), and the JSON of `/stats`.
//!
//! Owns: the encodings. Does not own: what the figures are
//! (`families.rs`) or HTTP (`http.rs`).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::families::{Family, Kind, Latest, Value};
use super::{core_ready, StatsHub, QUANTILES};

/// The families as a prometheus-client collector.
#[derive(Debug)]
struct Exposition(Vec<Family>);

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            let (name, kind) = match family.kind {
                // prometheus-client appends `_total` to counter samples.
                Kind::Counter => (
                    family.name.strip_suffix("_total").unwrap_or(family.name),
                    MetricType::Counter,
                ),
                Kind::Gauge => (family.name, MetricType::Gauge),
                Kind::Histogram => (family.name, MetricType::Histogram),
                Kind::Summary => continue,
            };
            let mut metric = encoder.encode_descriptor(name, family.help, None, kind)?;
            for sample in &family.samples {
                if sample.labels.is_empty() {
                    encode_value(family.kind, &sample.value, &mut metric)?;
                } else {
                    let mut labelled = metric.encode_family(&sample.labels)?;
                    encode_value(family.kind, &sample.value, &mut labelled)?;
                }
            }
        }
        Ok(())
    }
}

fn encode_value(
    kind: Kind,
    value: &Value,
    encoder: &mut MetricEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    match value {
        Value::Int(v) if kind == Kind::Counter => {
            encoder.encode_counter::<NoLabelSet, _, u64>(v, None)
        }
        Value::Int(v) => encoder.encode_gauge(&i64::try_from(*v).unwrap_or(i64::MAX)),
        Value::Float(v) if kind == Kind::Counter => {
            encoder.encode_counter::<NoLabelSet, _, f64>(v, None)
        }
        Value::Float(v) => encoder.encode_gauge(v),
        Value::Histogram {
            sum,
            count,
            buckets,
        } => encoder.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None),
        Value::Summary { .. } => Ok(()),
    }
}

/// Appends a summary family in the text format (the same in OpenMetrics
/// and in 0.0.4 for summaries).
fn write_summary(out: &mut String, family: &Family) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
    let _ = writeln!(out, "# TYPE {} summary", family.name);
    for sample in &family.samples {
        let Value::Summary {
            sum,
            count,
            quantiles,
        } = &sample.value
        else {
            continue;
        };
        let labels: Vec<String> = sample
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
            .collect();
        let labels = labels.join(",");
        let sep = if labels.is_empty() { "" } else { "," };
        for (q, v) in quantiles {
            let _ = writeln!(out, "{}{{{labels}{sep}quantile=\"{q}\"}} {v}", family.name);
        }
        let _ = writeln!(out, "{}_sum{{{labels}}} {sum}", family.name);
        let _ = writeln!(out, "{}_count{{{labels}}} {count}", family.name);
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// OpenMetrics text (what prometheus-client writes, plus the summaries),
/// for scrapers that ask for `application/openmetrics-text`.
pub fn openmetrics(families: Vec<Family>) -> String {
    let summaries: Vec<Family> = families
        .iter()
        .filter(|f| f.kind == Kind::Summary)
        .cloned()
        .collect();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exposition(families)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode_registry(&mut out, &registry)
        .expect("writing to a String");
    for family in &summaries {
        write_summary(&mut out, family);
    }
    prometheus_client::encoding::text::encode_eof(&mut out).expect("writing to a String");
    out
}

/// The Prometheus text format 0.0.4, for everyone else (curl, promtool):
/// the same encoding, with counter families named as their samples are
/// (`_total`) and without the OpenMetrics `# EOF` line.
pub fn prometheus_text(families: Vec<Family>) -> String {
    let counters: Vec<&'static str> = families
        .iter()
        .filter(|f| f.kind == Kind::Counter)
        .filter_map(|f| f.name.strip_suffix("_total"))
        .collect();
    let om = openmetrics(families);
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The same figures as JSON: each family with its samples and their sum,
/// and per core its readiness and latency quantiles.
pub fn json(hub: &StatsHub, families: &[Family], latest: &Latest) -> serde_json::Value {
    use serde_json::{json, Map, Value as J};
    let mut metrics = Map::new();
    for family in families {
        let mut total = 0.0;
        let samples: Vec<J> = family
            .samples
            .iter()
            .map(|s| {
                let labels: Map<String, J> = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), J::String(v.clone())))
                    .collect();
                let value = match &s.value {
                    Value::Int(v) => {
                        total += *v as f64;
                        json!(v)
                    }
                    Value::Float(v) => {
                        total += v;
                        json!(v)
                    }
                    Value::Histogram { sum, count, .. } => {
                        total += *count as f64;
                        json!({ "sum": sum, "count": count })
                    }
                    Value::Summary {
                        sum,
                        count,
                        quantiles,
                    } => {
                        total += *count as f64;
                        let q: Map<String, J> = quantiles
                            .iter()
                            .map(|(q, v)| (q.to_string(), json!(v)))
                            .collect();
                        json!({ "sum": sum, "count": count, "quantiles": q })
                    }
                };
                json!({ "labels": labels, "value": value })
            })
            .collect();
        let kind = match family.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        };
        metrics.insert(
            family.name.to_string(),
            json!({ "type": kind, "help": family.help, "total": total, "samples": samples }),
        );
    }
    let now_ms = hub.started.elapsed().as_millis() as u64;
    let cores: Vec<J> = hub
        .cores
        .iter()
        .enumerate()
        .map(|(id, s)| {
            let latency = latest.get(id).and_then(Option::as_ref).map(|snap| {
                let q: Map<String, J> = QUANTILES
                    .iter()
                    .map(|q| {
                        (
                            format!("p{}", q * 100.0),
                            json!(snap.window.value_at_quantile(*q) as f64 / 1e3),
                        )
                    })
                    .collect();
                json!({ "window_samples": snap.window.len(), "total_samples": snap.total.len(), "quantiles_us": q })
            });
            json!({
                "core": id,
                "ready": core_ready(s, now_ms),
                "connections_current": s.connections_current.get(),
                "sessions_online": s.sessions_online.get(),
                "sessions_offline": s.sessions_offline.get(),
                "connections_parked": s.connections_parked.get(),
                "messages_received": s.messages_received.get(),
                "messages_sent": s.messages_sent.get(),
                "executor_lag_us": s.loop_lag_ns.get() as f64 / 1e3,
                "latency": latency,
            })
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": hub.started.elapsed().as_secs_f64(),
        "ready": hub.ready(),
        "metrics": metrics,
        "cores": cores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::QoS;
    use crate::server::metrics::collect;

    #[test]
    fn text_format_names_counter_families_like_their_samples() {
        let hub = StatsHub::new(2, true);
        hub.cores[1].received(QoS::AtLeastOnce, 12);
        let text = prometheus_text(collect(&hub, &vec![None, None]));
        assert!(text.contains("# TYPE vane_messages_received_total counter\n"));
        assert!(text.contains("vane_messages_received_total{core=\"1\",qos=\"1\"} 1\n"));
        assert!(text.contains("# TYPE vane_connections_current gauge\n"));
        assert!(!text.contains("# EOF"));
        let om = openmetrics(collect(&hub, &vec![None, None]));
        assert!(om.contains("# TYPE vane_messages_received counter\n"));
        assert!(om.ends_with("# EOF\n"));
    }
}
