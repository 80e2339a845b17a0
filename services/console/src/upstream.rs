//! What the console reads and calls: the services' HTTP APIs, the lag exporter, Prometheus'
//! HTTP API, and the dead-letter topic through `saga_consumer::dead_letters`. Never a
//! database.

use std::collections::BTreeMap;
use std::time::Duration;

use saga_consumer::dead_letters::{self, DeadLetter};
use saga_contracts::Codec;
use saga_kafka::KafkaConfig;
use saga_service_kit::logs::{LogLine, LogPage};
use serde::Deserialize;
use serde_json::Value;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{what} is not configured")]
    NotConfigured { what: String },
    #[error("{what}: {source}")]
    Http {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    /// The upstream answered, but not with success; `detail` is its problem detail or body.
    #[error("{what}: {status} {detail}")]
    Status {
        what: String,
        status: reqwest::StatusCode,
        detail: String,
    },
    #[error("dead letters: {0}")]
    DeadLetters(#[from] dead_letters::DeadLetterError),
}

impl UpstreamError {
    pub fn status(&self) -> Option<reqwest::StatusCode> {
        match self {
            UpstreamError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The JSON of the exporter's `GET /lag` (services/lag-exporter), as far as the console uses it.
#[derive(Debug, Clone, Deserialize)]
pub struct LagReport {
    pub polled_at_unix: f64,
    pub groups: Vec<GroupLag>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GroupLag {
    pub group: String,
    pub status: String,
    pub lag_sum: i64,
    pub max_lag_seconds: f64,
    pub partitions: Vec<PartitionLag>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed: Option<i64>,
    pub log_end: i64,
    pub lag: i64,
    pub lag_seconds: f64,
}

/// One series of a Prometheus range query: its labels and `(unix seconds, value)` points.
#[derive(Debug, Clone)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

/// The outbox gauges of one service's `/metrics` (crates/outbox relay).
#[derive(Debug, Clone, Default)]
pub struct OutboxFigures {
    pub pending: Option<f64>,
    pub oldest_age_seconds: Option<f64>,
    pub published_total: Option<f64>,
}

/// A dead letter with its payload decoded through the registry (or why it could not be).
#[derive(Debug, Clone)]
pub struct ShownLetter {
    pub letter: DeadLetter,
    pub decoded: Result<(u32, String, Value), String>,
}

#[derive(Clone)]
pub struct Upstream {
    http: reqwest::Client,
    config: Config,
    codec: Codec,
}

impl Upstream {
    pub fn new(config: Config) -> Upstream {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(
                config.console.request_timeout_ms.max(100),
            ))
            .no_proxy()
            .build()
            .unwrap_or_default();
        let codec = Codec::new(&config.registry.url);
        Upstream {
            http,
            config,
            codec,
        }
    }

    pub fn service_names(&self) -> impl Iterator<Item = &str> {
        self.config.console.services.keys().map(String::as_str)
    }

    fn service_url(&self, name: &str) -> Result<&str, UpstreamError> {
        self.config
            .console
            .services
            .get(name)
            .map(|u| u.trim_end_matches('/'))
            .ok_or_else(|| UpstreamError::NotConfigured {
                what: format!("service {name}"),
            })
    }

    fn orchestrator(&self) -> Result<&str, UpstreamError> {
        self.service_url(&self.config.console.orchestrator)
    }

    fn admin_token(&self) -> &str {
        self.config
            .auth
            .admin_token
            .as_ref()
            .map_or("", |t| t.expose().trim())
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, UpstreamError> {
        let http = |source| UpstreamError::Http {
            what: what.to_owned(),
            source,
        };
        let resp = request.send().await.map_err(http)?;
        let resp = check(what, resp).await?;
        resp.json().await.map_err(http)
    }

    pub async fn lag(&self) -> Result<LagReport, UpstreamError> {
        let base = nonempty("the lag exporter", &self.config.console.exporter_url)?;
        self.get_json("lag exporter", self.http.get(format!("{base}/lag")))
            .await
    }

    /// `query` over the last `console.chart_minutes`, one point per `step` seconds.
    pub async fn prometheus_range(&self, query: &str) -> Result<Vec<Series>, UpstreamError> {
        let base = nonempty("Prometheus", &self.config.console.prometheus_url)?;
        let end = chrono::Utc::now().timestamp() as f64;
        let minutes = f64::from(self.config.console.chart_minutes.max(1));
        let start = end - minutes * 60.0;
        let step = (minutes * 60.0 / 180.0).max(2.0).round();
        let body: Value = self
            .get_json(
                "Prometheus",
                self.http.get(format!(
                    "{base}/api/v1/query_range?{}",
                    query_string(&[
                        ("query", query),
                        ("start", &start.to_string()),
                        ("end", &end.to_string()),
                        ("step", &step.to_string()),
                    ])
                )),
            )
            .await?;
        Ok(parse_matrix(&body))
    }

    /// `GET /sagas?state=&stuck_for=` of the orchestrator: the `items` of one page.
    pub async fn sagas(
        &self,
        state: Option<&str>,
        stuck_for_secs: Option<u64>,
    ) -> Result<Vec<Value>, UpstreamError> {
        let base = self.orchestrator()?;
        let stuck_for = stuck_for_secs.map(|s| format!("{s}s"));
        let mut query: Vec<(&str, &str)> = vec![("limit", "200")];
        if let Some(s) = state {
            query.push(("state", s));
        }
        if let Some(s) = &stuck_for {
            query.push(("stuck_for", s));
        }
        let page: Value = self
            .get_json(
                "orchestrator",
                self.http
                    .get(format!("{base}/sagas?{}", query_string(&query))),
            )
            .await?;
        Ok(page["items"].as_array().cloned().unwrap_or_default())
    }

    pub async fn saga(&self, id: &str) -> Result<Value, UpstreamError> {
        let base = self.orchestrator()?;
        self.get_json("orchestrator", self.http.get(format!("{base}/sagas/{id}")))
            .await
    }

    /// `POST /sagas/{id}/{action}` with the admin token.
    pub async fn saga_action(
        &self,
        id: &str,
        action: &str,
        reason: &str,
    ) -> Result<Value, UpstreamError> {
        let base = self.orchestrator()?;
        self.get_json(
            "orchestrator",
            self.http
                .post(format!("{base}/sagas/{id}/{action}"))
                .bearer_auth(self.admin_token())
                .json(&serde_json::json!({ "reason": reason })),
        )
        .await
    }

    pub async fn outbox(&self, service: &str) -> Result<OutboxFigures, UpstreamError> {
        let base = self.service_url(service)?;
        let what = format!("{service} /metrics");
        let http = |source| UpstreamError::Http {
            what: what.clone(),
            source,
        };
        let resp = self
            .http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .map_err(http)?;
        let text = check(&what, resp).await?.text().await.map_err(http)?;
        Ok(OutboxFigures {
            pending: metric(&text, "outbox_pending_messages"),
            oldest_age_seconds: metric(&text, "outbox_oldest_pending_age_seconds"),
            published_total: metric(&text, "outbox_published_total"),
        })
    }

    /// One service's kept log lines matching `filter` (`trace_id` or `order_id`).
    pub async fn logs(
        &self,
        service: &str,
        filter: (&str, &str),
    ) -> Result<Vec<LogLine>, UpstreamError> {
        let base = self.service_url(service)?;
        let page: LogPage = self
            .get_json(
                &format!("{service} /admin/logs"),
                self.http
                    .get(format!(
                        "{base}/admin/logs?{}",
                        query_string(&[filter, ("limit", "1000")])
                    ))
                    .bearer_auth(self.admin_token()),
            )
            .await?;
        Ok(page.lines)
    }

    fn kafka(&self) -> (&KafkaConfig, String) {
        let kafka = &self.config.kafka;
        (kafka, kafka.topic(&self.config.console.dead_letter_topic))
    }

    pub async fn dead_letters(&self) -> Result<Vec<ShownLetter>, UpstreamError> {
        let (kafka, topic) = self.kafka();
        let letters = dead_letters::list(kafka, &topic).await?;
        let mut shown = Vec::with_capacity(letters.len());
        for letter in letters {
            let decoded = match letter.payload.as_deref() {
                None => Err("no payload".to_owned()),
                Some(bytes) => self
                    .codec
                    .decode_json(bytes)
                    .await
                    .map_err(|e| e.to_string()),
            };
            shown.push(ShownLetter { letter, decoded });
        }
        Ok(shown)
    }

    /// `POST /admin/rewind` on the service that runs `group` (each service answers 404 for
    /// groups it does not run). `to` is an offset or an RFC 3339 time. Returns the service's
    /// answer: the plan, what it reprocesses, and its text summary.
    pub async fn rewind(
        &self,
        group: &str,
        to: &str,
        dry_run: bool,
    ) -> Result<Value, UpstreamError> {
        let mut body = serde_json::json!({ "group": group, "dry_run": dry_run });
        match to.trim().parse::<i64>() {
            Ok(offset) => body["to_offset"] = offset.into(),
            Err(_) => body["to_time"] = to.trim().into(),
        }
        // Every service is asked; the one that runs the group answers (the others say 404).
        // When none does, every service's answer is reported: the owner may be unreachable.
        let mut answers = Vec::new();
        let mut any_unreachable = false;
        for (name, base) in &self.config.console.services {
            let answer = self
                .get_json::<Value>(
                    name,
                    self.http
                        .post(format!("{}/admin/rewind", base.trim_end_matches('/')))
                        .bearer_auth(self.admin_token())
                        .json(&body),
                )
                .await;
            match answer {
                Err(e) if e.status() == Some(reqwest::StatusCode::NOT_FOUND) => {
                    answers.push(e.to_string())
                }
                Err(e @ UpstreamError::Http { .. }) => {
                    any_unreachable = true;
                    answers.push(e.to_string())
                }
                other => return other,
            }
        }
        Err(UpstreamError::Status {
            what: format!("no service took the rewind of {group}"),
            status: if any_unreachable {
                reqwest::StatusCode::BAD_GATEWAY
            } else {
                reqwest::StatusCode::NOT_FOUND
            },
            detail: answers.join("; "),
        })
    }

    /// Replays the dead letter `partition:offset` to its source topic.
    pub async fn replay(&self, id: &str) -> Result<Option<String>, UpstreamError> {
        let (kafka, topic) = self.kafka();
        let letters = dead_letters::list(kafka, &topic).await?;
        let Some(letter) = letters.into_iter().find(|l| l.id() == id) else {
            return Ok(None);
        };
        dead_letters::replay(kafka, &letter).await?;
        Ok(Some(letter.source_topic().unwrap_or("?").to_owned()))
    }
}

/// `a=1&b=x%20y` (reqwest's `query` is behind a feature the workspace does not enable).
fn query_string(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                crate::session::urlencode(k),
                crate::session::urlencode(v)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn nonempty<'a>(what: &str, url: &'a str) -> Result<&'a str, UpstreamError> {
    let url = url.trim().trim_end_matches('/');
    if url.is_empty() {
        Err(UpstreamError::NotConfigured {
            what: what.to_owned(),
        })
    } else {
        Ok(url)
    }
}

async fn check(what: &str, resp: reqwest::Response) -> Result<reqwest::Response, UpstreamError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    // problem+json: show its detail; anything else: the start of the body.
    let detail = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect());
    Err(UpstreamError::Status {
        what: what.to_owned(),
        status,
        detail,
    })
}

/// The sum of every sample of `name` in Prometheus text format (labels ignored).
pub fn metric(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(v) = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// `data.result` of a `query_range` answer (`resultType: matrix`).
fn parse_matrix(body: &Value) -> Vec<Series> {
    let Some(results) = body["data"]["result"].as_array() else {
        return Vec::new();
    };
    results
        .iter()
        .map(|r| Series {
            labels: r["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
            points: r["values"]
                .as_array()
                .map(|vs| {
                    vs.iter()
                        .filter_map(|p| {
                            let t = p[0].as_f64()?;
                            let v = p[1].as_str()?.parse::<f64>().ok()?;
                            Some((t, v))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_samples_of_the_name_only() {
        let text = "# TYPE outbox_pending_messages gauge\n\
                    outbox_pending_messages 3\n\
                    outbox_pending_messages_total 99\n\
                    outbox_oldest_pending_age_seconds{x=\"a b\"} 1.5\n";
        assert_eq!(metric(text, "outbox_pending_messages"), Some(3.0));
        assert_eq!(metric(text, "outbox_oldest_pending_age_seconds"), Some(1.5));
        assert_eq!(metric(text, "nothing"), None);
    }

    #[test]
    fn matrix_is_parsed() {
        let body = serde_json::json!({"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"group":"g"},"values":[[1.0,"2"],[3.5,"4"]]}]}});
        let s = parse_matrix(&body);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].labels["group"], "g");
        assert_eq!(s[0].points, vec![(1.0, 2.0), (3.5, 4.0)]);
    }
}
