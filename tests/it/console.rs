//! The operator console in a real browser: headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`, installed when missing), against a suite, the
//! lag exporter and the console, all started by the test. It asserts what a person sees:
//! lag rising on the lag page while a consumer is stopped and falling after it restarts; a
//! saga's timeline on its page; a poison message on the dead-letter page, then replayed.
//!
//! Each page's screenshot is saved under `<target dir>/console-artifacts/`; with
//! `SAGA_CONSOLE_DOCS=1` also as docs/console/*.png (how the docs' pictures are refreshed).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use rdkafka::producer::FutureRecord;
use saga_contracts::messages::inventory::ReleaseStock;
use saga_contracts::{Codec, Metadata, OrderId};
use saga_e2e::{Service, Suite, SuiteOptions, eur};
use saga_kafka::topics;
use saga_service_kit::HttpConfig;
use saga_service_kit::app::RegistryConfig;
use saga_service_kit::auth::AuthConfig;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// How long a page may take to show what the test waits for (a lag poll, a saga, a
/// dead letter), on a machine shared with other builds.
const PAGE_DEADLINE: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_console_in_headless_chromium() {
    let mut suite = Suite::start_with(SuiteOptions::default()).await;
    let shutdown = CancellationToken::new();
    let exporter = start_exporter(&suite, &shutdown).await;
    let console = start_console(&suite, &exporter, &shutdown).await;
    let browser = Browser::start().await;
    browser.login(&console, suite.admin_token()).await;

    // ---- a saga page shows its timeline ----
    suite.set_price("SKU-C", eur(250)).await;
    suite.seed_stock("SKU-C", 100).await;
    suite.set_credit("cust-c", eur(100_000)).await;
    let order = suite.place_order("cust-c", &[("SKU-C", 2)], "DE").await;
    suite.wait_final(order).await;
    browser
        .open_until(&format!("{console}/sagas/{order}"), "#saga-state", |text| {
            text == "completed"
        })
        .await;
    let steps = browser
        .texts("#timeline tr.transition td:nth-child(4)")
        .await;
    assert!(steps.len() >= 4, "timeline rows: {steps:?}");
    assert!(
        steps.iter().any(|s| s.contains("completed")),
        "the timeline ends completed: {steps:?}"
    );
    let causes = browser
        .texts("#timeline tr.transition td:nth-child(6)")
        .await;
    for message in ["OrderPlaced", "StockReserved", "PaymentCharged"] {
        assert!(
            causes.iter().any(|c| c.contains(message)),
            "{message} behind a transition: {causes:?}"
        );
    }
    let services_logged = browser.attrs("#logs tr.log", "data-service").await;
    assert!(
        !services_logged.is_empty(),
        "the saga's log lines (by its trace id) are shown"
    );
    browser.screenshot("saga").await;
    browser
        .open_until(&format!("{console}/sagas"), "#saga-table", |_| true)
        .await;
    browser.screenshot("sagas").await;

    // ---- the lag page: lag rises while inventory is stopped, falls after restart ----
    let group = format!("{}inventory-service", suite.prefix);
    let lag_of = format!("tr.group[data-group=\"{group}\"]");
    browser
        .open_until_attr(&format!("{console}/lag"), &lag_of, "data-lag-sum", |v| {
            v == 0
        })
        .await;
    suite.stop_service(Service::Inventory).await;
    let mut stuck = Vec::new();
    for _ in 0..3 {
        stuck.push(suite.place_order("cust-c", &[("SKU-C", 1)], "DE").await);
    }
    // Each order sends one ReserveStock that nobody consumes now.
    browser
        .open_until_attr(&format!("{console}/lag"), &lag_of, "data-lag-sum", |v| {
            v >= 3
        })
        .await;
    browser.screenshot("lag-rising").await;
    suite.restart(Service::Inventory).await;
    browser
        .open_until_attr(&format!("{console}/lag"), &lag_of, "data-lag-sum", |v| {
            v == 0
        })
        .await;
    suite.wait_all_final(&stuck).await;
    browser.screenshot("lag").await;

    // ---- reprocessing from the lag page: a dry run, then the rewind itself ----
    // Payment's group (inventory was restarted on another port than the console knows).
    let payment_group = format!("{}payment-service", suite.prefix);
    let payment_lag = format!("tr.group[data-group=\"{payment_group}\"]");
    let charged_before = suite.account("cust-c").await.charged;
    browser
        .open_until(&format!("{console}/lag/rewind"), "#rewind-form", |_| true)
        .await;
    browser
        .client
        .find(Locator::Css("#rewind-form select[name=group]"))
        .await
        .expect("group select")
        .select_by_value(&payment_group)
        .await
        .expect("choose the group");
    browser
        .client
        .find(Locator::Css("#rewind-form input[name=to]"))
        .await
        .expect("target input")
        .send_keys("0")
        .await
        .expect("type the offset");
    browser.click("#rewind-dry-run").await;
    browser
        .wait_for("#rewind-plan", |t| t.contains("already applied"))
        .await;
    let planned = browser.attrs("#rewind-result", "data-reprocessed").await;
    assert!(
        planned
            .first()
            .and_then(|n| n.parse::<i64>().ok())
            .is_some_and(|n| n >= 4),
        "the four ChargePayment commands are planned again: {planned:?}"
    );
    browser.screenshot("rewind").await;
    browser.click("#rewind-confirm").await;
    browser
        .wait_for("#rewind-result", |t| t.starts_with("Rewound"))
        .await;
    // Delivered again, dropped by the inbox: the group is back at the log end, and no
    // order was charged twice.
    browser
        .open_until_attr(
            &format!("{console}/lag"),
            &payment_lag,
            "data-lag-sum",
            |v| v == 0,
        )
        .await;
    assert_eq!(
        suite.account("cust-c").await.charged,
        charged_before,
        "nothing charged twice"
    );

    // ---- the dead-letter page shows a poison message and replays it ----
    // A valid message on a topic that does not carry its type: the payment consumer
    // dead-letters it (decode), and the console decodes it through the registry.
    let poison = ReleaseStock {
        meta: Metadata::first(OrderId::new()),
    };
    let bytes = Codec::new(&suite.registry_url)
        .encode(&poison)
        .await
        .expect("encode the poison");
    let target = suite.kafka.topic(topics::PAYMENT_COMMANDS);
    let key = poison.meta.order_id.to_string();
    suite
        .kafka
        .producer()
        .expect("producer")
        .send(
            FutureRecord::to(&target).key(&key).payload(&bytes),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("publish the poison");
    let row = format!("tr.dead-letter[data-source=\"{target}\"]");
    browser
        .open_until(&format!("{console}/dead-letters"), &row, |_| true)
        .await;
    let first = browser.attrs(&row, "data-id").await;
    assert_eq!(first.len(), 1, "one dead letter: {first:?}");
    let error = browser.texts(&format!("{row} td.error")).await;
    assert!(
        error[0].contains("does not carry"),
        "the error header is shown: {error:?}"
    );
    let summary = browser.texts(&format!("{row} details summary")).await;
    assert!(
        summary[0].contains("ReleaseStock"),
        "the payload is decoded through the registry: {summary:?}"
    );
    browser.screenshot("dead-letters").await;
    browser
        .click(&format!("{row}[data-id=\"{}\"] button.replay", first[0]))
        .await;
    // The click submits a form; the page it leads to may still be loading.
    browser.wait_for("#flash", |f| f.contains("replayed")).await;
    // The replayed record went back to its topic, failed the same way, and is here again
    // with the dead letter it came from.
    let replayed = format!("{row} td.replayed");
    browser
        .open_until(&format!("{console}/dead-letters"), &replayed, |t| {
            t == first[0]
        })
        .await;
    browser.screenshot("dead-letters-replayed").await;

    browser.close().await;
    shutdown.cancel();
    suite.stop().await;
}

async fn start_exporter(suite: &Suite, shutdown: &CancellationToken) -> String {
    let config = lag_exporter::Config {
        http: HttpConfig::default(),
        kafka: suite.kafka.clone(),
        lag: lag_exporter::LagConfig {
            poll_interval_ms: 500,
            group_prefix: suite.prefix.clone(),
            topic_prefix: suite.prefix.clone(),
            // Assign-mode groups are not in tansu's ListGroups answer (docs/lag.md).
            groups: suite
                .consumer_groups()
                .into_iter()
                .map(|(g, _)| g)
                .collect(),
            ..lag_exporter::LagConfig::default()
        },
    };
    let app = lag_exporter::App::build(config)
        .await
        .expect("lag exporter");
    let url = format!("http://{}", app.local_addr());
    tokio::spawn(app.run(shutdown.clone()));
    url
}

async fn start_console(suite: &Suite, exporter: &str, shutdown: &CancellationToken) -> String {
    let services = Service::ALL
        .into_iter()
        .map(|s| {
            let name = s.bin().trim_end_matches("-service").to_owned();
            (name, suite.url(s))
        })
        .collect();
    let config = console::Config {
        http: HttpConfig::default(),
        kafka: suite.kafka.clone(),
        registry: RegistryConfig::new(suite.registry_url.clone()),
        auth: AuthConfig::with_admin_token(suite.admin_token()),
        console: console::ConsoleConfig {
            services,
            exporter_url: exporter.to_owned(),
            // No Prometheus here: the page says so and shows the exporter's figures.
            prometheus_url: String::new(),
            ..console::ConsoleConfig::default()
        },
    };
    let app = console::App::build(config).await.expect("console");
    let url = format!("http://{}", app.local_addr());
    tokio::spawn(app.run(shutdown.clone()));
    url
}

/// Chromium under chromedriver, and a WebDriver session on it.
struct Browser {
    client: Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        if !saga_stack::apt::on_path("chromedriver") {
            tokio::task::spawn_blocking(|| {
                saga_stack::apt::install("console browser tests", &["chromium", "chromium-driver"])
            })
            .await
            .expect("install task")
            .expect("install chromium and chromium-driver");
        }
        let port = saga_stack::free_port().expect("a free port");
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        saga_testkit::wait_until(Duration::from_secs(30), || async {
            http.get(format!("{url}/status"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await
        .expect("chromedriver answers /status");
        let profile = tempfile::tempdir().expect("profile dir");
        // Flags per STACK-FACTS: without them Chromium keeps trying the closed network.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1400,1000",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({ "goog:chromeOptions": { "args": args } });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a WebDriver session on headless Chromium");
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    async fn login(&self, console: &str, token: &str) {
        self.client
            .goto(&format!("{console}/lag"))
            .await
            .expect("open the console");
        let url = self.client.current_url().await.expect("url");
        assert_eq!(url.path(), "/login", "pages need a login first");
        self.client
            .find(Locator::Css("#token"))
            .await
            .expect("token field")
            .send_keys(token)
            .await
            .expect("type the token");
        self.click("#login").await;
        // The form's answer is a redirect: wait for it rather than read the URL at once.
        let deadline = tokio::time::Instant::now() + PAGE_DEADLINE;
        loop {
            let url = self.client.current_url().await.expect("url");
            if url.path() == "/lag" {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the login leads back to the page asked for; still on {url}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default()
        {
            out.push(e.text().await.unwrap_or_default());
        }
        out
    }

    async fn attrs(&self, css: &str, attr: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default()
        {
            if let Ok(Some(v)) = e.attr(attr).await {
                out.push(v);
            }
        }
        out
    }

    /// Waits, on the current page (no reload), until the text of a `css` element satisfies
    /// `ok`: after a click that navigates, the next page may not be there yet.
    async fn wait_for(&self, css: &str, ok: impl Fn(&str) -> bool) {
        self.until(None, css, None, ok).await
    }

    /// Loads `url` again and again until the text of a `css` element satisfies `ok`.
    async fn open_until(&self, url: &str, css: &str, ok: impl Fn(&str) -> bool) {
        self.until(Some(url), css, None, ok).await
    }

    /// Loads `url` until the first `css` element's integer attribute satisfies `ok`.
    async fn open_until_attr(&self, url: &str, css: &str, attr: &str, ok: impl Fn(i64) -> bool) {
        self.until(Some(url), css, Some(attr), |v| {
            v.parse::<i64>().is_ok_and(&ok)
        })
        .await
    }

    /// Reads the `css` elements (their text, or `attr`) until one satisfies `ok`, or fails
    /// with a screenshot at `PAGE_DEADLINE`. With `reload`, the page is loaded again before
    /// each read (a server-rendered page does not refresh itself); without, the current page
    /// is read as it changes.
    async fn until(
        &self,
        reload: Option<&str>,
        css: &str,
        attr: Option<&str>,
        ok: impl Fn(&str) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + PAGE_DEADLINE;
        let pause = Duration::from_millis(if reload.is_some() { 500 } else { 100 });
        let seen = loop {
            if let Some(url) = reload {
                self.client.goto(url).await.expect("open page");
            }
            let seen = match attr {
                Some(attr) => self.attrs(css, attr).await,
                None => self.texts(css).await,
            };
            if seen.iter().any(|t| ok(t)) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                break seen;
            }
            tokio::time::sleep(pause).await;
        };
        self.screenshot("failed").await;
        let url = self.client.current_url().await.map(|u| u.to_string());
        panic!("{css} never as expected on {url:?}; last seen {seen:?}");
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).expect("artifacts dir");
        std::fs::write(dir.join(format!("{name}.png")), &png).expect("save screenshot");
        if std::env::var_os("SAGA_CONSOLE_DOCS").is_some() && name != "failed" {
            let docs = saga_stack::workspace_root().join("docs/console");
            std::fs::create_dir_all(&docs).expect("docs/console");
            std::fs::write(docs.join(format!("{name}.png")), &png).expect("save docs screenshot");
        }
    }

    async fn close(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill().await;
    }
}

fn artifacts_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| saga_stack::workspace_root().join("target"))
        .join("console-artifacts")
}
