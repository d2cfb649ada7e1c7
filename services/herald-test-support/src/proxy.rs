//! A TCP proxy in front of a stack server whose client-to-server direction can be cut: what a
//! client sees when its requests are lost on the way (they time out, and the server never
//! acts on them), which freezing the server cannot show (a frozen server acts on every request
//! it had received once it runs again).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Debug)]
pub struct TcpProxy {
    pub addr: SocketAddr,
    dropping: Arc<AtomicBool>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dropping = Arc::new(AtomicBool::new(false));
        let accept = tokio::spawn({
            let dropping = dropping.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        continue;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::spawn(forward(client_read, server_write, Some(dropping.clone())));
                    tokio::spawn(forward(server_read, client_write, None));
                }
            }
        });
        Self {
            addr,
            dropping,
            accept,
        }
    }

    /// While set, bytes from clients are read and thrown away instead of forwarded; answers
    /// to what was forwarded before still reach the clients.
    pub fn drop_requests(&self, dropping: bool) {
        self.dropping.store(dropping, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    dropping: Option<Arc<AtomicBool>>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if dropping.as_ref().is_some_and(|d| d.load(Ordering::SeqCst)) {
            continue;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// A CQL session whose every connection goes through `proxy` (in front of the node at
/// `node`), with the given request timeout. The driver connects to the addresses nodes
/// advertise, so the node's address is translated to the proxy's.
pub async fn cql_session_via(
    proxy: &TcpProxy,
    node: SocketAddr,
    request_timeout: std::time::Duration,
) -> scylla::client::session::Session {
    let profile = scylla::client::execution_profile::ExecutionProfile::builder()
        .request_timeout(Some(request_timeout))
        .build();
    // The proxy's own address is what the driver knows the node by until it reads the
    // node's advertised one.
    let translation: std::collections::HashMap<SocketAddr, SocketAddr> =
        [(node, proxy.addr), (proxy.addr, proxy.addr)].into();
    scylla::client::session_builder::SessionBuilder::new()
        .known_node_addr(proxy.addr)
        .address_translator(Arc::new(translation))
        .default_execution_profile_handle(profile.into_handle())
        .build()
        .await
        .unwrap()
}
