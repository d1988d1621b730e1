//! Test fixtures shared by every integration test: private `nats-server` and
//! `redis-server` processes on free ports, started and stopped by the test that owns
//! them, so tests run in parallel and can kill and restart their servers.
//!
//! Also the lean Socket.IO client ([`sio`]) that tests and the load generator drive edges
//! with. Not used by the product: a dev-dependency, and a dependency of `loadtest`.

pub mod sio;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn which(bin: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(bin)).find(|f| f.is_file()))
        .or_else(|| {
            ["/usr/sbin", "/usr/bin", "/usr/local/bin"]
                .iter()
                .map(|d| PathBuf::from(d).join(bin))
                .find(|f| f.is_file())
        })
        .unwrap_or_else(|| panic!("{bin} is not installed: run scripts/install-deps.sh"))
}

/// Waits until something listens on `port`, or panics after `within`.
pub async fn wait_for_port(port: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "nothing listens on port {port} after {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A private `nats-server` with JetStream, on a free port, with its own storage
/// directory. Killed when dropped.
pub struct NatsServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra: Vec<String>,
    jetstream: bool,
}

impl NatsServer {
    pub async fn start() -> NatsServer {
        NatsServer::start_with(&[]).await
    }

    /// Starts one with extra command-line flags (e.g. `--user`/`--pass`).
    pub async fn start_with(extra: &[&str]) -> NatsServer {
        NatsServer::launch(extra, true).await
    }

    /// A plain server without JetStream, as the NATS Helm chart deploys by default.
    pub async fn plain() -> NatsServer {
        NatsServer::launch(&[], false).await
    }

    async fn launch(extra: &[&str], jetstream: bool) -> NatsServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let extra = extra.iter().map(|a| a.to_string()).collect();
        let mut s = NatsServer { port: free_port(), dir, child: None, extra, jetstream };
        s.restart().await;
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it again (same port, same storage) after [`NatsServer::kill`].
    pub async fn restart(&mut self) {
        let mut cmd = Command::new(which("nats-server"));
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        if self.jetstream {
            cmd.arg("-js").arg("-sd").arg(self.dir.path());
        }
        let child = cmd
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10)).await;
    }

    /// Kills it like a crash (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Awaits `cond` by polling every 10 ms, failing with `what` after `within`. For
/// conditions no event announces; a test that can await an event should.
pub async fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
