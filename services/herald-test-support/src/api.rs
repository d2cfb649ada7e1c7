//! `herald api` in a test: a role process with its API address, and API keys made with
//! `herald apikey create`.

use std::net::SocketAddr;

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
    pub fn spawn_api(&self, name: &str, envs: &[(&str, &str)]) -> ApiProcess {
        let addr = free_local_port();
        let listen = addr.to_string();
        let mut all = vec![("HERALD_API__LISTEN", listen.as_str())];
        all.extend_from_slice(envs);
        let role = self.spawn(name, &["api"], &all);
        wait_for(
            "herald api to be ready",
            std::time::Duration::from_secs(60),
            || (role.ready() == Some(true)).then_some(()),
        );
        ApiProcess { role, addr }
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
