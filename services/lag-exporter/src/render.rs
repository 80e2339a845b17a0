//! The Prometheus text exposition of one evaluation, under the names kafka-exporter,
//! kminion and kafka-lag-exporter use, so existing dashboards and alerts fit.

use std::fmt::Write as _;

use crate::model::{GroupLag, GroupStatus};

/// What the last poll produced, plus the exporter's own health.
#[derive(Debug, Default, Clone)]
pub struct Exposition {
    pub groups: Vec<GroupLag>,
    pub polls_total: u64,
    pub poll_errors_total: u64,
    pub last_success_unix: f64,
    pub last_poll_seconds: f64,
}

/// Label values escaped as the text format requires.
fn esc(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn family<'a>(out: &mut String, name: &'a str, help: &str, kind: &str) -> &'a str {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    name
}

pub fn render(e: &Exposition) -> String {
    let mut out = String::new();
    let n = family(
        &mut out,
        "kafka_consumergroup_lag",
        "Messages after the group's committed offset, per partition.",
        "gauge",
    );
    for g in &e.groups {
        for p in &g.partitions {
            let _ = writeln!(
                out,
                "{n}{{group=\"{}\",topic=\"{}\",partition=\"{}\"}} {}",
                esc(&g.group),
                esc(&p.topic),
                p.partition,
                p.lag
            );
        }
    }
    let n = family(
        &mut out,
        "kafka_consumergroup_lag_seconds",
        "Age of the oldest message the group has not committed, per partition (offset/time table).",
        "gauge",
    );
    for g in &e.groups {
        for p in &g.partitions {
            let _ = writeln!(
                out,
                "{n}{{group=\"{}\",topic=\"{}\",partition=\"{}\"}} {:.3}",
                esc(&g.group),
                esc(&p.topic),
                p.partition,
                p.lag_seconds
            );
        }
    }
    let n = family(
        &mut out,
        "kafka_consumergroup_current_offset",
        "The group's committed offset, per partition (absent: never committed).",
        "gauge",
    );
    for g in &e.groups {
        for p in &g.partitions {
            if let Some(c) = p.committed {
                let _ = writeln!(
                    out,
                    "{n}{{group=\"{}\",topic=\"{}\",partition=\"{}\"}} {c}",
                    esc(&g.group),
                    esc(&p.topic),
                    p.partition
                );
            }
        }
    }
    let n = family(
        &mut out,
        "kafka_consumergroup_lag_sum",
        "Messages the group has not committed, over all its partitions.",
        "gauge",
    );
    for g in &e.groups {
        let _ = writeln!(out, "{n}{{group=\"{}\"}} {}", esc(&g.group), g.lag_sum);
    }
    let n = family(
        &mut out,
        "kafka_consumergroup_max_lag_seconds",
        "The group's largest lag in seconds over its partitions.",
        "gauge",
    );
    for g in &e.groups {
        let _ = writeln!(
            out,
            "{n}{{group=\"{}\"}} {:.3}",
            esc(&g.group),
            g.max_lag_seconds
        );
    }
    let n = family(
        &mut out,
        "kafka_consumergroup_status",
        "Burrow-style evaluation: 1 for the group's current status, 0 for the others.",
        "gauge",
    );
    for g in &e.groups {
        for status in GroupStatus::ALL {
            let _ = writeln!(
                out,
                "{n}{{group=\"{}\",status=\"{}\"}} {}",
                esc(&g.group),
                status.as_str(),
                u8::from(g.status == status)
            );
        }
    }
    for (name, help, kind, value) in [
        (
            "lag_exporter_polls_total",
            "Broker polls attempted.",
            "counter",
            e.polls_total as f64,
        ),
        (
            "lag_exporter_poll_errors_total",
            "Broker polls that failed (the previous figures stay exported).",
            "counter",
            e.poll_errors_total as f64,
        ),
        (
            "lag_exporter_last_success_timestamp_seconds",
            "Wall time of the last successful poll.",
            "gauge",
            e.last_success_unix,
        ),
        (
            "lag_exporter_poll_duration_seconds",
            "How long the last poll took.",
            "gauge",
            e.last_poll_seconds,
        ),
    ] {
        let n = family(&mut out, name, help, kind);
        let _ = writeln!(out, "{n} {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PartitionLag;

    #[test]
    fn renders_conventional_names_with_escaped_labels() {
        let text = render(&Exposition {
            groups: vec![GroupLag {
                group: "a\"b".into(),
                status: GroupStatus::Stalled,
                lag_sum: 3,
                max_lag_seconds: 1.5,
                partitions: vec![PartitionLag {
                    topic: "t".into(),
                    partition: 2,
                    committed: Some(4),
                    log_end: 7,
                    lag: 3,
                    lag_seconds: 1.5,
                    stuck_seconds: 0.0,
                }],
            }],
            ..Exposition::default()
        });
        assert!(
            text.contains(
                "kafka_consumergroup_lag{group=\"a\\\"b\",topic=\"t\",partition=\"2\"} 3\n"
            )
        );
        assert!(text.contains("kafka_consumergroup_lag_sum{group=\"a\\\"b\"} 3\n"));
        assert!(text.contains(
            "kafka_consumergroup_lag_seconds{group=\"a\\\"b\",topic=\"t\",partition=\"2\"} 1.500\n"
        ));
        assert!(
            text.contains("kafka_consumergroup_status{group=\"a\\\"b\",status=\"STALLED\"} 1\n")
        );
        assert!(text.contains("kafka_consumergroup_status{group=\"a\\\"b\",status=\"OK\"} 0\n"));
    }
}
