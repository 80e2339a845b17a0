//! Starting a registry for one test and talking to it.

use saga_service_kit::{DatabaseConfig, HttpConfig};
use saga_testkit::TestStack;
use schema_registry::{App, Config};
use serde_json::{Value, json};
use tokio_util::sync::{CancellationToken, DropGuard};

pub const CT: &str = "application/vnd.schemaregistry.v1+json";

/// The write password of every test registry.
pub const PASSWORD: &str = "test-registry-password";

pub struct Registry {
    /// With the write credential in its user info (`http://registry:pw@host:port`): reqwest
    /// and the converter send it as basic auth, so every call of a test may write.
    pub base: String,
    /// Without a credential: what an anonymous client sees.
    pub anonymous_base: String,
    pub http: reqwest::Client,
    pub token: CancellationToken,
    pub task: Option<tokio::task::JoinHandle<()>>,
    _guard: DropGuard,
}

/// A registry on its own fresh database.
pub async fn start() -> Registry {
    let db = TestStack::get().await.fresh_database().await;
    let config = Config {
        http: HttpConfig::default(),
        database: DatabaseConfig::new(db.url.clone()),
        auth: schema_registry::auth::AuthConfig::with_password(PASSWORD),
    };
    let app = App::build(config).await.expect("registry builds");
    let anonymous_base = format!("http://{}", app.local_addr());
    let base = format!(
        "http://{}:{PASSWORD}@{}",
        schema_registry::auth::DEFAULT_USERNAME,
        app.local_addr()
    );
    let token = CancellationToken::new();
    let run_token = token.clone();
    let task = tokio::spawn(async move { app.run(run_token).await.expect("registry runs") });
    Registry {
        base,
        anonymous_base,
        http: reqwest::Client::new(),
        _guard: token.clone().drop_guard(),
        token,
        task: Some(task),
    }
}

impl Registry {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        decode(r).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let r = self.http.delete(self.url(path)).send().await.unwrap();
        decode(r).await
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .request(method, self.url(path))
            .header("content-type", CT)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        decode(r).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, body).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, body).await
    }

    /// Registers `schema` under `subject`; returns (status, body).
    pub async fn register(&self, subject: &str, schema: &str) -> (u16, Value) {
        self.post(
            &format!("/subjects/{subject}/versions"),
            &json!({ "schema": schema }),
        )
        .await
    }

    pub async fn register_ok(&self, subject: &str, schema: &str) -> i64 {
        let (status, body) = self.register(subject, schema).await;
        assert_eq!(status, 200, "register {subject}: {body}");
        body["id"].as_i64().expect("id")
    }

    pub async fn set_level(&self, subject: &str, level: &str) {
        let (status, body) = self
            .put(
                &format!("/config/{subject}"),
                &json!({ "compatibility": level }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

/// Status and JSON body; asserts Confluent's content type on every response.
pub async fn decode(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(ct, CT, "content type of a {status} response");
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, body)
}

/// Asserts a Confluent error response.
pub fn assert_error(resp: &(u16, Value), status: u16, code: i64) {
    assert_eq!(resp.0, status, "{}", resp.1);
    assert_eq!(resp.1["error_code"], code, "{}", resp.1);
    assert!(resp.1["message"].as_str().is_some_and(|m| !m.is_empty()));
}

pub fn unique_subject(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A record `name` with the given fields (JSON field objects).
pub fn record(name: &str, fields: Value) -> String {
    json!({ "type": "record", "name": name, "namespace": "com.example.test", "fields": fields })
        .to_string()
}
