//! The daemon's Prometheus metrics (`GET /metrics`). Counters and histograms are recorded
//! where the work happens (the engine's settle and tool starts, webhook ingress, the
//! notification sender); the gauges (actions by status, inbox depth, slots) are read when a
//! scrape asks, so nothing is kept up to date between scrapes.
//!
//! Recording is an atomic add, plus a read-locked map lookup for a labelled series: nothing
//! that holds up a run. Label values are bounded: tool names and webhook routes are the
//! project's own (a request to an unknown path counts under `route=""`, so a flood of made-up
//! paths cannot grow the series), outcomes are fixed words.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::engine_stats::StatsSnapshot;
use crate::model::StatusKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    tool: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    tool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    route: String,
    outcome: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriterLabels {
    writer: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Who committed: the engine's settle (outcomes, claims, dispatch) or webhook ingress's
/// group commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    Engine,
    Ingest,
}

impl Writer {
    fn as_str(self) -> &'static str {
        match self {
            Writer::Engine => "engine",
            Writer::Ingest => "ingest",
        }
    }
}

/// What a scrape reads at its moment; None where it could not be read (the database is
/// down, no engine): those gauges keep their last reading.
#[derive(Debug, Default)]
pub struct ScrapeReading {
    pub actions_by_status: Option<Vec<(StatusKind, u64)>>,
    pub inbox_depth: Option<u64>,
    pub engine: Option<StatsSnapshot>,
}

/// Every metric the daemon exports; one per daemon, shared (`Arc`) by whoever records.
pub struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    run_duration: HistogramFamily<ToolLabels>,
    lateness: Histogram,
    deliveries: Family<DeliveryLabels, Counter>,
    commits: Family<WriterLabels, Counter>,
    commit_duration: HistogramFamily<WriterLabels>,
    notifications: Family<NotificationLabels, Counter>,
    plan_runs: Family<OutcomeLabels, Counter>,
    actions: Family<StatusLabels, Gauge>,
    inbox_depth: Gauge,
    slots_busy: Gauge,
    slots_max: Gauge,
    claimed_ahead: Gauge,
}

/// Tool runs: from a few milliseconds to an hour.
fn run_duration_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
        3600.0,
    ])
}

/// Commits: an fsync (redb) or a round trip (PostgreSQL), sub-millisecond to a second.
fn commit_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    ])
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let metrics = Metrics {
            registry: Registry::with_prefix("sdlc"),
            runs: Family::default(),
            run_duration: Family::new_with_constructor(run_duration_histogram),
            // Lateness is milliseconds when all is well; the tail shows a machine too busy.
            lateness: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
            ]),
            deliveries: Family::default(),
            commits: Family::default(),
            commit_duration: Family::new_with_constructor(commit_histogram),
            notifications: Family::default(),
            plan_runs: Family::default(),
            actions: Family::default(),
            inbox_depth: Gauge::default(),
            slots_busy: Gauge::default(),
            slots_max: Gauge::default(),
            claimed_ahead: Gauge::default(),
        };
        metrics.register()
    }

    fn register(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "build",
            "The version of the running daemon",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        r.register(
            "actions",
            "Actions in the database by status, read at the scrape",
            self.actions.clone(),
        );
        r.register(
            "runs",
            "Runs this daemon finished, by tool and outcome (completed, failed, retrying, awaiting_approval)",
            self.runs.clone(),
        );
        r.register_with_unit(
            "run_duration",
            "How long tools ran, by tool",
            Unit::Seconds,
            self.run_duration.clone(),
        );
        r.register_with_unit(
            "run_lateness",
            "From an action's due time to its tool's start",
            Unit::Seconds,
            self.lateness.clone(),
        );
        r.register(
            "webhook_deliveries",
            "Webhook requests by route, outcome and HTTP status (route is empty where no route has the path)",
            self.deliveries.clone(),
        );
        r.register(
            "webhook_inbox_depth",
            "Stored webhook deliveries not yet dispatched, read at the scrape",
            self.inbox_depth.clone(),
        );
        r.register("slots_busy", "Tools running now", self.slots_busy.clone());
        r.register(
            "slots_max",
            "Tools that may run at once (--max-concurrency)",
            self.slots_max.clone(),
        );
        r.register(
            "claimed_ahead",
            "Actions claimed ahead of a free slot, waiting for one",
            self.claimed_ahead.clone(),
        );
        r.register(
            "commits",
            "Database commits, by writer (engine: outcomes and claims; ingest: webhook deliveries)",
            self.commits.clone(),
        );
        r.register_with_unit(
            "commit_duration",
            "How long database commits took, by writer",
            Unit::Seconds,
            self.commit_duration.clone(),
        );
        r.register(
            "notifications",
            "Notifications by receiver kind and outcome (sent, retrying, failed)",
            self.notifications.clone(),
        );
        r.register(
            "plan_runs",
            "Plan runs that ended, by outcome",
            self.plan_runs.clone(),
        );
        self
    }

    /// A run of `tool` ended in `outcome` after `duration` (None: it never ran a process).
    pub fn run_finished(&self, tool: &str, outcome: &'static str, duration: Option<Duration>) {
        self.runs
            .get_or_create(&RunLabels {
                tool: tool.to_string(),
                outcome,
            })
            .inc();
        if let Some(duration) = duration {
            self.run_duration
                .get_or_create(&ToolLabels {
                    tool: tool.to_string(),
                })
                .observe(duration.as_secs_f64());
        }
    }

    /// A tool started `late` after its due time (negative: early, counted as on time).
    pub fn run_started(&self, late: chrono::Duration) {
        let seconds = late.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
        self.lateness.observe(seconds.max(0.0));
    }

    /// A webhook request to `route` (empty: no route) was answered `status`.
    pub fn delivery(&self, route: &str, outcome: &'static str, status: u16) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                route: route.to_string(),
                outcome,
                status,
            })
            .inc();
    }

    /// `writer` committed, taking `took`.
    pub fn committed(&self, writer: Writer, took: Duration) {
        let labels = WriterLabels {
            writer: writer.as_str(),
        };
        self.commits.get_or_create(&labels).inc();
        self.commit_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// A notification to a receiver of `kind` was sent, refused for now, or given up.
    pub fn notification(&self, kind: &'static str, outcome: &'static str) {
        self.notifications
            .get_or_create(&NotificationLabels { kind, outcome })
            .inc();
    }

    /// A plan run ended with `outcome` (its status: succeeded, failed, canceled).
    pub fn plan_run_finished(&self, outcome: &str) {
        self.plan_runs
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// The exposition of every metric, with the gauges from `reading`: the Prometheus text
    /// format, or OpenMetrics when the scraper asks for it.
    pub fn encode(&self, reading: &ScrapeReading, openmetrics: bool) -> String {
        if let Some(counts) = &reading.actions_by_status {
            for kind in StatusKind::ALL {
                let n = counts
                    .iter()
                    .find(|(k, _)| *k == kind)
                    .map_or(0, |(_, n)| *n);
                self.actions
                    .get_or_create(&StatusLabels {
                        status: kind.as_str(),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        if let Some(depth) = reading.inbox_depth {
            self.inbox_depth
                .set(i64::try_from(depth).unwrap_or(i64::MAX));
        }
        if let Some(engine) = &reading.engine {
            self.slots_busy.set(engine.busy as i64);
            self.slots_max.set(engine.max_concurrency as i64);
            self.claimed_ahead.set(engine.claimed_ahead as i64);
        }
        let mut out = String::new();
        let written = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        written.expect("writing to a String cannot fail");
        out
    }
}

/// The `Content-Type` of [`Metrics::encode`]'s answer.
pub fn content_type(openmetrics: bool) -> &'static str {
    if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE
    }
}

/// Shared handle, as the engine and the server hold it.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_named_with_the_prefix_and_units() {
        let metrics = Metrics::new();
        metrics.run_finished("build", "completed", Some(Duration::from_millis(30)));
        metrics.run_finished("build", "completed", Some(Duration::from_millis(30)));
        metrics.run_finished("build", "failed", None);
        metrics.delivery("github", "accepted", 202);
        metrics.delivery("", "no_route", 404);
        metrics.committed(Writer::Ingest, Duration::from_millis(2));
        metrics.plan_run_finished("succeeded");
        metrics.notification("slack", "sent");
        metrics.run_started(chrono::Duration::milliseconds(-3));
        let text = metrics.encode(
            &ScrapeReading {
                actions_by_status: Some(vec![(StatusKind::Pending, 4)]),
                inbox_depth: Some(2),
                engine: None,
            },
            false,
        );
        for line in [
            "sdlc_runs_total{tool=\"build\",outcome=\"completed\"} 2",
            "sdlc_runs_total{tool=\"build\",outcome=\"failed\"} 1",
            "sdlc_run_duration_seconds_count{tool=\"build\"} 2",
            "sdlc_run_duration_seconds_bucket{tool=\"build\",le=\"0.05\"} 2",
            "sdlc_run_lateness_seconds_bucket{le=\"0.001\"} 1",
            "sdlc_webhook_deliveries_total{route=\"github\",outcome=\"accepted\",status=\"202\"} 1",
            "sdlc_webhook_deliveries_total{route=\"\",outcome=\"no_route\",status=\"404\"} 1",
            "sdlc_commits_total{writer=\"ingest\"} 1",
            "sdlc_plan_runs_total{outcome=\"succeeded\"} 1",
            "sdlc_notifications_total{kind=\"slack\",outcome=\"sent\"} 1",
            "sdlc_actions{status=\"pending\"} 4",
            "sdlc_actions{status=\"failed\"} 0",
            "sdlc_webhook_inbox_depth 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line} in:\n{text}"
            );
        }
        let open = metrics.encode(&ScrapeReading::default(), true);
        assert!(open.ends_with("# EOF\n"), "{open}");
    }
}
