//! What the exporter makes of successive broker observations: lag in messages, lag in
//! seconds from an offset/time table (as kafka-lag-exporter does), and a Burrow-style status
//! per group. Pure: the poller feeds it observations with their wall-clock time, so the
//! rules are unit-tested without a broker.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

/// One partition of one group as the broker reported it in one poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset (next offset it will read); `None`: never committed, the
    /// group starts at the log start.
    pub committed: Option<i64>,
    pub log_start: i64,
    pub log_end: i64,
}

/// Burrow's evaluation of a group, worst first when ordered descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GroupStatus {
    /// No lag, or the group commits and its lag is not growing.
    Ok,
    /// The group commits but its lag grew at every poll of the window.
    Warning,
    /// A partition has lag and its committed offset has not moved for `stall_after`.
    Stalled,
    /// No partition with lag has seen a commit for `stop_after`: nobody is consuming.
    Stopped,
}

impl GroupStatus {
    pub const ALL: [GroupStatus; 4] = [
        GroupStatus::Ok,
        GroupStatus::Warning,
        GroupStatus::Stalled,
        GroupStatus::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupStatus::Ok => "OK",
            GroupStatus::Warning => "WARNING",
            GroupStatus::Stalled => "STALLED",
            GroupStatus::Stopped => "STOPPED",
        }
    }
}

/// Thresholds of the status evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Committed offset unchanged this long while lag > 0: STALLED.
    pub stall_after_secs: f64,
    /// Every lagging partition without a commit this long: STOPPED.
    pub stop_after_secs: f64,
    /// Polls over which growing lag makes a WARNING.
    pub window: usize,
}

/// The lag of one partition for one group, as exported.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed: Option<i64>,
    pub log_end: i64,
    pub lag: i64,
    /// How long the oldest unconsumed message has been waiting (0 without lag).
    pub lag_seconds: f64,
    /// How long the committed offset has stood still while the partition had lag.
    pub stuck_seconds: f64,
}

/// One group's evaluation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupLag {
    pub group: String,
    pub status: GroupStatus,
    pub lag_sum: i64,
    pub max_lag_seconds: f64,
    pub partitions: Vec<PartitionLag>,
}

/// Per (group, topic, partition): what earlier polls saw.
#[derive(Debug, Default)]
struct PartitionHistory {
    last_committed: Option<i64>,
    /// Since when the committed offset stands still with lag > 0 (`None`: no lag, or moving).
    stuck_since: Option<f64>,
    /// (lag, committed) of the last `window` polls.
    recent: VecDeque<(i64, Option<i64>)>,
}

/// Every group's history and the per-partition offset/time table.
#[derive(Debug)]
pub struct LagModel {
    rules: Rules,
    partitions: BTreeMap<(String, String, i32), PartitionHistory>,
    /// (topic, partition) -> (wall time, log end) each time the log end was seen to move:
    /// the time the message at offset `o` was appended is at most the time of the first
    /// entry whose log end exceeds `o`.
    end_times: BTreeMap<(String, i32), VecDeque<(f64, i64)>>,
}

/// Entries kept per partition in the offset/time table; older ones are merged away.
const TABLE_LIMIT: usize = 4096;

impl LagModel {
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            partitions: BTreeMap::new(),
            end_times: BTreeMap::new(),
        }
    }

    /// Takes one poll's observations made at wall time `now` (seconds since the epoch) and
    /// returns every observed group's evaluation, sorted by group name. Groups and
    /// partitions absent from this poll are forgotten.
    pub fn observe(&mut self, now: f64, observations: &[Observation]) -> Vec<GroupLag> {
        for o in observations {
            let table = self
                .end_times
                .entry((o.topic.clone(), o.partition))
                .or_default();
            if table.back().is_none_or(|&(_, end)| end < o.log_end) {
                table.push_back((now, o.log_end));
            }
        }
        let mut groups: BTreeMap<String, Vec<PartitionLag>> = BTreeMap::new();
        let mut seen = std::collections::BTreeSet::new();
        for o in observations {
            let key = (o.group.clone(), o.topic.clone(), o.partition);
            seen.insert(key.clone());
            let next = o.committed.unwrap_or(o.log_start);
            let lag = (o.log_end - next).max(0);
            let history = self.partitions.entry(key).or_default();
            let moved = history.last_committed != o.committed;
            history.stuck_since = if lag == 0 {
                None
            } else if moved || history.stuck_since.is_none() {
                Some(now)
            } else {
                history.stuck_since
            };
            history.last_committed = o.committed;
            history.recent.push_back((lag, o.committed));
            while history.recent.len() > self.rules.window.max(2) {
                history.recent.pop_front();
            }
            let lag_seconds = if lag == 0 {
                0.0
            } else {
                self.end_times
                    .get(&(o.topic.clone(), o.partition))
                    .and_then(|t| t.iter().find(|&&(_, end)| end > next))
                    .map_or(0.0, |&(at, _)| (now - at).max(0.0))
            };
            groups
                .entry(o.group.clone())
                .or_default()
                .push(PartitionLag {
                    topic: o.topic.clone(),
                    partition: o.partition,
                    committed: o.committed,
                    log_end: o.log_end,
                    lag,
                    lag_seconds,
                    stuck_seconds: history.stuck_since.map_or(0.0, |s| now - s),
                });
        }
        self.partitions.retain(|k, _| seen.contains(k));
        self.prune_tables(observations);
        groups
            .into_iter()
            .map(|(group, partitions)| {
                let status = self.status(&group, &partitions);
                GroupLag {
                    lag_sum: partitions.iter().map(|p| p.lag).sum(),
                    max_lag_seconds: partitions.iter().map(|p| p.lag_seconds).fold(0.0, f64::max),
                    group,
                    status,
                    partitions,
                }
            })
            .collect()
    }

    fn status(&self, group: &str, partitions: &[PartitionLag]) -> GroupStatus {
        let lagging: Vec<&PartitionLag> = partitions.iter().filter(|p| p.lag > 0).collect();
        if lagging.is_empty() {
            return GroupStatus::Ok;
        }
        if lagging
            .iter()
            .all(|p| p.stuck_seconds >= self.rules.stop_after_secs)
        {
            return GroupStatus::Stopped;
        }
        if lagging
            .iter()
            .any(|p| p.stuck_seconds >= self.rules.stall_after_secs)
        {
            return GroupStatus::Stalled;
        }
        // Burrow's WARNING: over a full window the group kept committing, yet its total lag
        // never fell and ended higher than it began.
        let histories: Vec<&PartitionHistory> = partitions
            .iter()
            .filter_map(|p| {
                self.partitions
                    .get(&(group.to_owned(), p.topic.clone(), p.partition))
            })
            .collect();
        let window = self.rules.window.max(2);
        if histories.iter().any(|h| h.recent.len() < window) {
            return GroupStatus::Ok;
        }
        let totals: Vec<i64> = (0..window)
            .map(|i| histories.iter().map(|h| h.recent[i].0).sum())
            .collect();
        let committing = histories
            .iter()
            .any(|h| h.recent.front().map(|r| r.1) != h.recent.back().map(|r| r.1));
        let growing = totals.windows(2).all(|w| w[1] >= w[0]) && totals[window - 1] > totals[0];
        if committing && growing {
            GroupStatus::Warning
        } else {
            GroupStatus::Ok
        }
    }

    /// Drops table entries no group needs any more: those at or below the lowest committed
    /// offset of the partition (keeping the newest such entry), and the oldest beyond the
    /// size limit.
    fn prune_tables(&mut self, observations: &[Observation]) {
        let mut lowest: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for o in observations {
            let next = o.committed.unwrap_or(o.log_start);
            let entry = lowest.entry((o.topic.clone(), o.partition)).or_insert(next);
            *entry = (*entry).min(next);
        }
        self.end_times.retain(|k, _| lowest.contains_key(k));
        for (key, table) in &mut self.end_times {
            let low = lowest[key];
            while table.len() > 1 && table[1].1 <= low {
                table.pop_front();
            }
            while table.len() > TABLE_LIMIT {
                table.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        stall_after_secs: 10.0,
        stop_after_secs: 30.0,
        window: 3,
    };

    fn obs(partition: i32, committed: Option<i64>, end: i64) -> Observation {
        Observation {
            group: "g".into(),
            topic: "t".into(),
            partition,
            committed,
            log_start: 0,
            log_end: end,
        }
    }

    #[test]
    fn lag_is_log_end_minus_committed_and_from_log_start_without_commit() {
        let mut model = LagModel::new(RULES);
        let groups = model.observe(0.0, &[obs(0, Some(5), 12), obs(1, None, 3)]);
        assert_eq!(groups.len(), 1);
        let lags: Vec<i64> = groups[0].partitions.iter().map(|p| p.lag).collect();
        assert_eq!(lags, [7, 3]);
        assert_eq!(groups[0].lag_sum, 10);
    }

    #[test]
    fn lag_seconds_is_the_age_of_the_first_unconsumed_offset() {
        let mut model = LagModel::new(RULES);
        model.observe(100.0, &[obs(0, Some(10), 10)]);
        // Offsets 10..15 appended by t=105; the consumer stops at 10.
        model.observe(105.0, &[obs(0, Some(10), 15)]);
        let g = model.observe(107.0, &[obs(0, Some(10), 20)]);
        assert_eq!(g[0].partitions[0].lag_seconds, 2.0);
        let g = model.observe(160.0, &[obs(0, Some(10), 20)]);
        assert_eq!(g[0].partitions[0].lag_seconds, 55.0);
        // It consumed up to 15: the oldest waiting message was appended by t=107.
        let g = model.observe(161.0, &[obs(0, Some(15), 20)]);
        assert_eq!(g[0].partitions[0].lag_seconds, 54.0);
        let g = model.observe(162.0, &[obs(0, Some(20), 20)]);
        assert_eq!(g[0].partitions[0].lag_seconds, 0.0);
    }

    #[test]
    fn a_group_without_lag_is_ok_even_when_it_never_commits() {
        let mut model = LagModel::new(RULES);
        for t in 0..100 {
            let g = model.observe(f64::from(t), &[obs(0, Some(4), 4)]);
            assert_eq!(g[0].status, GroupStatus::Ok);
        }
    }

    #[test]
    fn a_consumer_that_stops_committing_goes_stalled_then_stopped_and_recovers() {
        let mut model = LagModel::new(RULES);
        let status = |g: Vec<GroupLag>| g[0].status;
        assert_eq!(
            status(model.observe(0.0, &[obs(0, Some(4), 4)])),
            GroupStatus::Ok
        );
        assert_eq!(
            status(model.observe(1.0, &[obs(0, Some(4), 6)])),
            GroupStatus::Ok
        );
        assert_eq!(
            status(model.observe(10.0, &[obs(0, Some(4), 7)])),
            GroupStatus::Ok
        );
        assert_eq!(
            status(model.observe(11.0, &[obs(0, Some(4), 7)])),
            GroupStatus::Stalled
        );
        assert_eq!(
            status(model.observe(31.0, &[obs(0, Some(4), 8)])),
            GroupStatus::Stopped
        );
        // Restarted: it commits again.
        assert_eq!(
            status(model.observe(32.0, &[obs(0, Some(6), 8)])),
            GroupStatus::Ok
        );
        assert_eq!(
            status(model.observe(33.0, &[obs(0, Some(8), 8)])),
            GroupStatus::Ok
        );
    }

    #[test]
    fn one_stuck_partition_is_stalled_while_another_still_commits() {
        let mut model = LagModel::new(RULES);
        model.observe(0.0, &[obs(0, Some(0), 5), obs(1, Some(0), 5)]);
        let g = model.observe(40.0, &[obs(0, Some(0), 5), obs(1, Some(3), 5)]);
        assert_eq!(g[0].status, GroupStatus::Stalled);
    }

    #[test]
    fn growing_lag_while_committing_is_a_warning() {
        let mut model = LagModel::new(RULES);
        model.observe(0.0, &[obs(0, Some(0), 10)]);
        model.observe(1.0, &[obs(0, Some(2), 14)]);
        let g = model.observe(2.0, &[obs(0, Some(4), 20)]);
        assert_eq!(g[0].status, GroupStatus::Warning);
        let g = model.observe(3.0, &[obs(0, Some(18), 20)]);
        assert_eq!(g[0].status, GroupStatus::Ok);
    }

    #[test]
    fn the_offset_time_table_stays_bounded() {
        let mut model = LagModel::new(RULES);
        for t in 0..10_000 {
            model.observe(
                f64::from(t),
                &[obs(0, Some(i64::from(t)), i64::from(t) + 1)],
            );
        }
        assert!(model.end_times[&("t".to_owned(), 0)].len() <= 2);
    }
}
