//! The pages, as maud templates (escaped by construction). Data attributes (`data-lag`,
//! `data-state`, ...) carry raw values for the browser tests and for scripts.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use saga_service_kit::logs::LogLine;
use serde_json::Value;

use crate::upstream::{GroupLag, OutboxFigures, Series, ShownLetter, UpstreamError};

/// The states an operator filters by (the orchestrator's `state` values).
pub const SAGA_STATES: &[&str] = &[
    "running",
    "compensating",
    "completed",
    "aborted",
    "incident",
];

pub fn layout(title: &str, refresh_secs: Option<u32>, flash: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                @if let Some(s) = refresh_secs { meta http-equiv="refresh" content=(s); }
                title { (title) " · saga console" }
                link rel="stylesheet" href="/assets/console.css";
                link rel="stylesheet" href="/assets/uPlot.min.css";
            }
            body {
                nav {
                    a.brand href="/" { "saga console" }
                    a href="/lag" { "Lag" }
                    a href="/sagas" { "Sagas" }
                    a href="/dead-letters" { "Dead letters" }
                    a href="/outbox" { "Outbox" }
                    form.logout method="post" action="/logout" { button type="submit" { "Log out" } }
                }
                main {
                    h1 { (title) }
                    @if let Some(f) = flash { p.flash #flash { (f) } }
                    (body)
                }
            }
        }
    }
}

pub fn login(next: &str, failed: bool) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Log in · saga console" } link rel="stylesheet" href="/assets/console.css"; }
            body {
                main.login {
                    h1 { "saga console" }
                    p { "The console is for operators: log in with the suite's admin token (" code { ".stack/secrets/admin-token" } ", or " code { "SAGA_ADMIN_TOKEN" } " in " code { ".stack/stack.env" } ")." }
                    @if failed { p.error #login-error { "That is not the admin token." } }
                    form method="post" action="/login" {
                        input type="hidden" name="next" value=(next);
                        label { "Admin token " input #token type="password" name="token" required autofocus; }
                        button #login type="submit" { "Log in" }
                    }
                }
            }
        }
    }
}

/// A section that could not be loaded: say why, keep the rest of the page.
pub fn unavailable(what: &str, e: &UpstreamError) -> Markup {
    html! { p.unavailable { (what) " unavailable: " (e.to_string()) } }
}

fn status_class(status: &str) -> &'static str {
    match status {
        "OK" => "ok",
        "WARNING" => "warn",
        _ => "bad",
    }
}

pub fn lag_table(groups: &[GroupLag]) -> Markup {
    html! {
        table #lag-table {
            thead { tr { th { "group" } th { "status" } th { "topic" } th { "partition" } th { "committed" } th { "log end" } th { "lag" } th { "lag (s)" } } }
            tbody {
                @for g in groups {
                    tr.group data-group=(g.group) data-status=(g.status) data-lag-sum=(g.lag_sum) {
                        td { strong { (g.group) } }
                        td { span class=(format!("status {}", status_class(&g.status))) { (g.status) } }
                        td colspan="4" { "all partitions" }
                        td.lag { strong { (g.lag_sum) } }
                        td { (format!("{:.1}", g.max_lag_seconds)) }
                    }
                    @for p in &g.partitions {
                        tr.partition data-group=(g.group) data-topic=(p.topic) data-partition=(p.partition) data-lag=(p.lag) {
                            td {} td {}
                            td { (p.topic) }
                            td { (p.partition) }
                            td { @if let Some(c) = p.committed { (c) } @else { "-" } }
                            td { (p.log_end) }
                            td.lag { (p.lag) }
                            td { (format!("{:.1}", p.lag_seconds)) }
                        }
                    }
                }
            }
        }
    }
}

/// Reprocessing: rewind a group to an offset (the next message to read) or a time. The
/// service that runs the group carries it out (`POST /admin/rewind`).
pub fn rewind_form(groups: &[GroupLag]) -> Markup {
    html! {
        h2 { "Reprocess: rewind a consumer group" }
        form #rewind-form method="post" action="/lag/rewind" {
            label { "group " select name="group" {
                @for g in groups { option value=(g.group) { (g.group) } }
            } }
            " "
            label { "to " input name="to" required placeholder="offset, or a time such as 2026-12-05T10:00:00Z"; }
            " "
            button #rewind-dry-run type="submit" name="action" value="dry-run" { "Dry run" }
            " "
            button #rewind-now type="submit" name="action" value="rewind" { "Rewind" }
        }
        p.hint { "A rewind delivers the range again; the inbox drops every message the group already applied, so no effect happens twice. Try a dry run first." }
    }
}

/// The lag chart: uPlot over aligned series (`console.js` draws it from the JSON).
pub fn lag_chart(series: &[Series], label: &str) -> Markup {
    // One x axis for all series: the union of their timestamps.
    let mut xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let columns: Vec<Vec<Option<f64>>> = series
        .iter()
        .map(|s| {
            xs.iter()
                .map(|x| s.points.iter().find(|p| p.0 == *x).map(|p| p.1))
                .collect()
        })
        .collect();
    let names: Vec<String> = series
        .iter()
        .map(|s| s.labels.get(label).cloned().unwrap_or_else(|| "?".into()))
        .collect();
    let data = serde_json::json!({ "x": xs, "series": columns, "names": names });
    html! {
        @if xs.is_empty() {
            p.unavailable { "No lag history in Prometheus yet." }
        } @else {
            div #lag-chart {}
            script type="application/json" #lag-chart-data { (PreEscaped(script_safe(&data))) }
            script src="/assets/uPlot.iife.min.js" {}
            script src="/assets/console.js" {}
        }
    }
}

/// JSON inside a `<script>` element: `<` escaped so no `</script>` can end it early.
fn script_safe(v: &Value) -> String {
    v.to_string().replace('<', "\\u003c")
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

pub fn state_filter(current: Option<&str>) -> Markup {
    html! {
        p.filters {
            "State: "
            a href="/sagas" class=[current.is_none().then_some("current")] { "all" }
            @for st in SAGA_STATES {
                " · "
                a href=(format!("/sagas?state={st}")) class=[(current == Some(*st)).then_some("current")] { (st) }
            }
        }
    }
}

/// Sagas, stuck ones first (`stuck` holds their ids).
pub fn saga_list(items: &[Value], stuck: &[String]) -> Markup {
    html! {
        @if items.is_empty() { p #no-sagas { "No sagas." } }
        @else {
            table #saga-table {
                thead { tr { th { "saga" } th { "order" } th { "state" } th { "step" } th { "attempts" } th { "since" } th { "updated" } th { "reason" } } }
                tbody {
                    @for item in items {
                        @let id = s(item, "saga_id");
                        @let is_stuck = stuck.iter().any(|x| x == id);
                        tr.saga data-saga=(id) data-state=(s(item, "state")) data-stuck=(is_stuck) class=[is_stuck.then_some("stuck")] {
                            td { a href=(format!("/sagas/{id}")) { (short(id)) } }
                            td { (short(s(item, "order_id"))) }
                            td { span class=(format!("state {}", s(item, "state"))) { (s(item, "state")) } @if is_stuck { " " span.stuck-mark { "stuck" } } }
                            td { (s(item, "current_step")) }
                            td { (item["attempts"]) }
                            td { (s(item, "step_started_at")) }
                            td { (s(item, "updated_at")) }
                            td { (s(item, "failure_reason")) }
                        }
                    }
                }
            }
        }
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Which operator actions apply in `state` (the orchestrator decides; this only hides
/// buttons that cannot work).
fn actions_for(state: &str) -> &'static [&'static str] {
    match state {
        "incident" => &["retry", "skip", "abort"],
        "running" | "compensating" => &["retry", "abort"],
        _ => &[],
    }
}

pub fn saga_page(saga: &Value, logs: &Markup) -> Markup {
    let id = s(saga, "saga_id");
    let state = s(saga, "state");
    html! {
        dl.summary #saga-summary data-state=(state) {
            dt { "saga" } dd { code { (id) } }
            dt { "order" } dd { code #order-id { (s(saga, "order_id")) } }
            dt { "type" } dd { (s(saga, "saga_type")) }
            dt { "state" } dd { span #saga-state class=(format!("state {state}")) { (state) } }
            dt { "current step" } dd { (s(saga, "current_step")) }
            dt { "completed steps" } dd { (saga["completed_steps"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
            dt { "attempts" } dd { (saga["attempts"]) }
            dt { "failure reason" } dd { (s(saga, "failure_reason")) }
            dt { "created" } dd { (s(saga, "created_at")) }
            dt { "finished" } dd { (s(saga, "finished_at")) }
        }
        @if !saga["incident"].is_null() {
            h2 { "Incident" }
            pre.json #incident { (pretty(&saga["incident"])) }
        }
        @let actions = actions_for(state);
        @if !actions.is_empty() {
            h2 { "Operator actions" }
            div.actions {
                @for action in actions {
                    form.action method="post" action=(format!("/sagas/{id}/{action}")) {
                        input type="text" name="reason" placeholder="reason (required)" required;
                        button type="submit" class=(format!("act {action}")) { (action) }
                    }
                }
            }
        }
        h2 { "Timeline" }
        table #timeline {
            thead { tr { th { "#" } th { "at" } th { "outcome" } th { "state" } th { "step" } th { "caused by" } th { "commands sent" } th { "detail" } } }
            tbody {
                @for t in saga["timeline"].as_array().into_iter().flatten() {
                    tr.transition data-to-state=(s(t, "to_state")) data-caused-by=(s(t, "caused_by_type")) {
                        td { (t["seq"]) }
                        td { (s(t, "at")) }
                        td { (s(t, "outcome")) }
                        td { (s(t, "from_state")) " → " strong { (s(t, "to_state")) } }
                        td { (s(t, "from_step")) " → " (s(t, "to_step")) }
                        td { (s(t, "caused_by_type")) br; small { code { (s(t, "caused_by_message_id")) } } }
                        td.commands { @for c in t["commands"].as_array().into_iter().flatten() {
                            div { @if let Some(text) = c.as_str() { (text) } @else { code { (c.to_string()) } } }
                        } }
                        td { (s(t, "detail")) }
                    }
                }
            }
        }
        h2 { "Log lines of this saga's trace" }
        (logs)
    }
}

/// Every service's lines of one trace, merged by time.
pub fn log_lines(trace_ids: &[String], lines: &[(String, LogLine)], errors: &[Markup]) -> Markup {
    html! {
        @if trace_ids.is_empty() {
            p.unavailable { "No trace id found for this saga in the orchestrator's recent log lines (they are kept in memory, newest " (saga_service_kit::logs::CAPACITY) " per service)." }
        } @else {
            p { "Trace " @for t in trace_ids { code.trace { (t) } " " } }
        }
        @for e in errors { (e) }
        @if !lines.is_empty() {
            table #logs {
                thead { tr { th { "at" } th { "service" } th { "level" } th { "line" } } }
                tbody {
                    @for (service, l) in lines {
                        tr.log data-service=(service) {
                            td { (l.at.format("%H:%M:%S%.3f").to_string()) }
                            td { (service) }
                            td { (l.level) }
                            td { code { (l.text) } }
                        }
                    }
                }
            }
        }
    }
}

pub fn dead_letters(letters: &[ShownLetter]) -> Markup {
    html! {
        @if letters.is_empty() { p #no-dead-letters { "No dead letters." } }
        @else {
            table #dead-letters {
                thead { tr { th { "id" } th { "source" } th { "group" } th { "kind" } th { "error" } th { "replayed from" } th { "payload" } th {} } }
                tbody {
                    @for l in letters {
                        @let d = &l.letter;
                        tr.dead-letter data-id=(d.id()) data-source=(d.source_topic().unwrap_or("")) {
                            td { code { (d.id()) } }
                            td { (d.source_topic().unwrap_or("?")) ":" (d.header(saga_consumer::dead_letters::SOURCE_PARTITION).unwrap_or("?")) ":" (d.header(saga_consumer::dead_letters::SOURCE_OFFSET).unwrap_or("?")) }
                            td { (d.header(saga_consumer::dead_letters::CONSUMER_GROUP).unwrap_or("?")) }
                            td { (d.header(saga_consumer::dead_letters::KIND).unwrap_or("?")) }
                            td.error { (d.error().unwrap_or("?")) }
                            td.replayed { (d.header(saga_consumer::dead_letters::REPLAYED_FROM).unwrap_or("")) }
                            td {
                                details {
                                    summary { @match &l.decoded { Ok((id, name, _)) => { (name) " (schema " (id) ")" } Err(e) => { "undecodable: " (e) } } }
                                    @if let Ok((_, _, json)) = &l.decoded { pre.json { (pretty(json)) } }
                                    h4 { "headers" }
                                    pre.json { (serde_json::to_string_pretty(&d.headers).unwrap_or_default()) }
                                    p { "key " code { (d.key.as_deref().unwrap_or("")) } ", " (d.payload_len) " bytes" }
                                }
                            }
                            td {
                                form method="post" action=(format!("/dead-letters/{}/replay", d.id())) {
                                    button.replay type="submit" { "Replay" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn outbox(rows: &[(String, Result<OutboxFigures, UpstreamError>)]) -> Markup {
    let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
    html! {
        table #outbox {
            thead { tr { th { "service" } th { "pending" } th { "oldest pending (s)" } th { "published" } } }
            tbody {
                @for (service, figures) in rows {
                    @match figures {
                        Ok(f) => {
                            tr.outbox data-service=(service) data-pending=(f.pending.unwrap_or(0.0)) {
                                td { (service) }
                                td { (fmt(f.pending)) }
                                td { (f.oldest_age_seconds.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))) }
                                td { (fmt(f.published_total)) }
                            }
                        }
                        Err(e) => { tr.outbox data-service=(service) { td { (service) } td colspan="3" { (unavailable("metrics", e)) } } }
                    }
                }
            }
        }
    }
}
