//! `herald api` in a test: a role process with its API address, and API keys made with
//! `herald apikey create`.

use std::net::SocketAddr;
use std::time::Duration;

use crate::{HeraldEnv, RoleProcess, free_local_port, wait_for};

/// A running `herald api` and where its API listens.
#[derive(Debug)]
pub struct ApiProcess {
    pub role: RoleProcess,
    pub addr: SocketAddr,
}

impl ApiProcess {
    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl HeraldEnv {
    /// Starts `herald api` on a free port with extra environment, and waits until it is ready
    /// (Kafka and the database answer).
    /// A free port can be taken by another process before the API binds it: then it is
    /// started again on another.
    pub fn spawn_api(&self, name: &str, envs: &[(&str, &str)]) -> ApiProcess {
        for _ in 0..3 {
            let addr = free_local_port();
            let listen = addr.to_string();
            let mut all = vec![("HERALD_API__LISTEN", listen.as_str())];
            all.extend_from_slice(envs);
            let mut role = self.spawn(name, &["api"], &all);
            let ready = wait_for(
                "herald api to be ready or to exit",
                Duration::from_secs(60),
                || match role.ready() {
                    Some(true) => Some(true),
                    _ if role.has_exited() => Some(false),
                    _ => None,
                },
            );
            if ready {
                return ApiProcess { role, addr };
            }
        }
        panic!(
            "herald api did not start in three tries; see the logs in {}",
            self.dir.display()
        );
    }

    /// A new API key of `tenant` with `scopes` (`send,manage`), as `herald apikey create`
    /// prints it.
    pub fn create_api_key(&self, tenant: &str, scopes: &str) -> String {
        let run = self.run(
            &["apikey", "create", "--tenant", tenant, "--scopes", scopes],
            None,
        );
        run.assert_code(0);
        run.stdout.trim().to_owned()
    }
}

const PROBLEM_JSON: &str = "application/problem+json";

/// What a request to `herald api` came back with.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: serde_json::Value,
}

impl Answer {
    /// Asserts an RFC 9457 problem with this status and returns it.
    pub fn problem(&self, status: u16) -> &serde_json::Value {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.content_type, PROBLEM_JSON, "{self:?}");
        assert_eq!(self.body["status"], status, "{self:?}");
        assert!(
            self.body["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:herald:problem:"),
            "{self:?}"
        );
        assert!(self.body["title"].is_string(), "{self:?}");
        &self.body
    }

    pub fn pointers(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["pointer"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct ApiClient {
    pub http: reqwest::Client,
    pub base: String,
}

impl ApiClient {
    pub fn new(api: &ApiProcess) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base: api.url(""),
        }
    }

    /// `POST <path>` with a JSON body, an optional bearer key and extra headers.
    pub async fn post(
        &self,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> Answer {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        Self::answer(request, key, headers).await
    }

    /// `POST <path>` with an `application/x-www-form-urlencoded` body, no key and extra headers
    /// (a provider's callback).
    pub async fn post_form(&self, path: &str, headers: &[(&str, &str)], body: String) -> Answer {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        Self::answer(request, None, headers).await
    }

    /// `GET`, `PUT` (with a JSON body) or `DELETE` `<path>` with a bearer key.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<&serde_json::Value>,
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        Self::answer(request, Some(key), &[]).await
    }

    async fn answer(
        mut request: reqwest::RequestBuilder,
        key: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Answer {
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let content_type = header("content-type").unwrap_or_default();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        Answer {
            status,
            content_type,
            body,
        }
    }

    pub async fn send(&self, key: &str, body: &serde_json::Value) -> Answer {
        self.post("/v1/notifications", Some(key), &[], body.to_string())
            .await
    }

    /// A send with an `Idempotency-Key`.
    pub async fn send_once(
        &self,
        key: &str,
        idempotency: &str,
        body: &serde_json::Value,
    ) -> Answer {
        let headers = [("idempotency-key", idempotency)];
        self.post("/v1/notifications", Some(key), &headers, body.to_string())
            .await
    }
}
