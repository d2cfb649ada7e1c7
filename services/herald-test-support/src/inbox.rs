//! An env for the in-app inbox tests: users ada and bob of tenant acme, a category routed to
//! the inbox whose template has an action URL, `[api.inbox]` on, a router and an in-app worker
//! running.

use reqwest::Method;

use crate::api::ApiClient;
use crate::deliver::DELIVER_DEFAULTS;
use crate::{HeraldEnv, RoleProcess};

/// `api.inbox.token_secret`.
pub const TOKEN_SECRET: &str = "inbox-test-secret-0123456789abcdef0123";
/// The browser origin acme allows.
pub const ORIGIN: &str = "https://app.acme.example";

fn seed() -> String {
    serde_json::json!({
        "users": [{"tenant": "acme", "user_id": "ada", "time_zone": "UTC"},
                  {"tenant": "acme", "user_id": "bob", "time_zone": "UTC"}],
        "categories": [{"tenant": "acme", "category": "team.news", "channels": ["inapp"]}],
        "templates": [
            {"tenant": "acme", "template_id": "news", "version": 1, "channel": "inapp",
             "locale": "default", "subject": "News {{n}}", "text": "Item {{n}} is out",
             "json": "{\"action_url\": \"https://app.acme.example/news/{{n}}\", \"n\": \"{{n}}\"}"}
        ]
    })
    .to_string()
}

/// The request for news item `n` to `user` (event id `news-<user>-<n>`).
pub fn news(user: &str, n: usize) -> serde_json::Value {
    serde_json::json!({
        "event_id": format!("news-{user}-{n}"),
        "category": "team.news",
        "template": {"id": "news"},
        "recipient": {"user_id": user},
        "data": {"n": n.to_string()},
    })
}

/// A prepared env with the inbox on, its tenant key (`send,manage`), and the router and in-app
/// worker it runs (stopped when dropped).
#[derive(Debug)]
pub struct InboxEnv {
    pub env: HeraldEnv,
    pub key: String,
    pub roles: Vec<RoleProcess>,
}

impl InboxEnv {
    pub fn start(bin: &str, name: &str) -> Self {
        let env = HeraldEnv::new(bin, name);
        env.prepare(true);
        let seed = env.write("seed.json", &seed());
        env.run(&["seed", seed.to_str().unwrap()], None)
            .assert_code(0);
        env.append_config(&format!(
            "\n[deliver]\n{DELIVER_DEFAULTS}\n\
             [api.inbox]\ntoken_secret = \"{TOKEN_SECRET}\"\ntoken_ttl = \"10m\"\n\
             heartbeat = \"1s\"\n\n\
             [api.inbox.allowed_origins]\nacme = [\"{ORIGIN}\"]\n"
        ));
        let key = env.create_api_key("acme", "send,manage");
        let roles = vec![
            env.spawn("router", &["router"], &[]),
            env.spawn("deliver", &["deliver", "--channel", "inapp"], &[]),
        ];
        Self { env, key, roles }
    }

    /// A user token for `user`, issued through the API.
    pub async fn token(&self, client: &ApiClient, user: &str) -> String {
        let answer = client
            .call(
                Method::POST,
                &format!("/v1/users/{user}/inbox-token"),
                &self.key,
                None,
            )
            .await;
        assert_eq!(answer.status, 201, "{answer:?}");
        assert!(answer.body["expires_at"].is_string());
        answer.body["token"].as_str().unwrap().to_owned()
    }
}
