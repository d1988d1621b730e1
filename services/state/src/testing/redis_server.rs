//! Private Redis servers for tests: a `redis-server` on a free port of 127.0.0.1 without
//! persistence, or a three-node Redis Cluster, killed when dropped.
//!
//! The binary is `$REDIS_SERVER` if set, else `redis-server` on `PATH` (or in `/usr/sbin`,
//! `/usr/local/bin`). Without one, starting panics with a clear message.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer its first command, and a cluster to form.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Redis Cluster's bus listens on the client port plus this.
const CLUSTER_BUS_OFFSET: u16 = 10_000;

/// A `redis-server` child process.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    /// Extra arguments (cluster mode), kept for [`restart`](Self::restart).
    extra: Vec<String>,
    /// A private working directory, removed on drop.
    dir: Option<PathBuf>,
}

impl RedisServer {
    /// Starts a standalone server on a free port and waits until it answers.
    pub fn start() -> RedisServer {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port(false);
            match spawn(port, &[], &std::env::temp_dir()) {
                Ok(child) => return RedisServer { child: Some(child), port, extra: Vec::new(), dir: None },
                // Most likely the port was taken between choosing and binding it: try another.
                Err(e) => last = e,
            }
        }
        panic!("could not start redis-server: {last}");
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye, like a crash) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-CONT", &c.id().to_string()]).status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts an empty server again on the same port, after [`stop`](Self::stop).
    pub fn restart(&mut self) {
        self.stop();
        let dir = self.dir.clone().unwrap_or_else(std::env::temp_dir);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match spawn(self.port, &self.extra, &dir) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(e) if Instant::now() > deadline => panic!("could not restart redis-server: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a [`pause`](Self::pause)d server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("redis-server is running").id().to_string();
        let ok = Command::new("kill").args([sig, &pid]).status().is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid} failed");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A Redis Cluster of three primaries (no replicas), slots split evenly between them.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers, assigns the slots, joins them and waits until
    /// every node reports `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        const NODES: u16 = 3;
        let mut nodes = Vec::new();
        for _ in 0..NODES {
            nodes.push(start_cluster_node());
        }
        for (i, n) in nodes.iter().enumerate() {
            let i = i as u32;
            let (from, to) = (i * 16384 / u32::from(NODES), (i + 1) * 16384 / u32::from(NODES) - 1);
            call(n.port, &["CLUSTER", "ADDSLOTSRANGE", &from.to_string(), &to.to_string()])
                .unwrap_or_else(|e| panic!("CLUSTER ADDSLOTSRANGE: {e} (needs Redis 7+)"));
        }
        for n in &nodes[1..] {
            call(nodes[0].port, &["CLUSTER", "MEET", "127.0.0.1", &n.port.to_string()])
                .unwrap_or_else(|e| panic!("CLUSTER MEET: {e}"));
        }
        let deadline = Instant::now() + START_TIMEOUT;
        while !nodes.iter().all(|n| {
            call(n.port, &["CLUSTER", "INFO"]).is_ok_and(|i| {
                i.contains("cluster_state:ok") && i.contains(&format!("cluster_known_nodes:{NODES}"))
            })
        }) {
            assert!(Instant::now() < deadline, "the redis cluster did not form within {START_TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        RedisCluster { nodes }
    }

    /// `redis-cluster://127.0.0.1:<port>?node=127.0.0.1:<port>&...`.
    pub fn url(&self) -> String {
        let rest: Vec<String> =
            self.nodes[1..].iter().map(|n| format!("node=127.0.0.1:{}", n.port)).collect();
        format!("redis-cluster://127.0.0.1:{}?{}", self.nodes[0].port, rest.join("&"))
    }

    /// How many keys each node holds (DBSIZE), in node order.
    pub fn key_counts(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| call(n.port, &["DBSIZE"]).expect("DBSIZE").parse().expect("a number"))
            .collect()
    }
}

fn start_cluster_node() -> RedisServer {
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port(true);
        let dir = std::env::temp_dir().join(format!("sb-redis-cluster-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cluster node directory");
        let extra: Vec<String> = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            .into_iter()
            .map(String::from)
            .collect();
        match spawn(port, &extra, &dir) {
            Ok(child) => return RedisServer { child: Some(child), port, extra, dir: Some(dir) },
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                last = e;
            }
        }
    }
    panic!("could not start a redis cluster node: {last}");
}

/// A free port on 127.0.0.1; for a cluster node, one whose bus port is free as well.
fn free_port(with_bus: bool) -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local addr").port();
        if !with_bus {
            return port;
        }
        if let Some(bus) = port.checked_add(CLUSTER_BUS_OFFSET)
            && TcpListener::bind(("127.0.0.1", bus)).is_ok()
        {
            return port;
        }
    }
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("REDIS_SERVER") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/bin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "redis-server not found: the Redis store tests need Redis 7+ on PATH or in $REDIS_SERVER \
                 (Debian/Ubuntu: apt-get install redis-server)"
            )
        })
}

fn spawn(port: u16, extra: &[String], dir: &std::path::Path) -> Result<Child, String> {
    let bin = binary();
    let mut child = Command::new(&bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {} ({e}): the Redis store tests need Redis 7+", bin.display())
        });
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("redis-server on port {port} exited: {status}"));
        }
        // The process that answers must be ours, not another test's that took the port.
        if call(port, &["INFO", "server"])
            .is_ok_and(|i| i.contains(&format!("process_id:{}\r\n", child.id())))
        {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("redis-server on port {port} did not answer within {START_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends one command over a fresh connection; the reply as text (simple, bulk or integer),
/// or the error reply / IO failure as `Err`.
fn call(port: u16, args: &[&str]) -> Result<String, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_millis(1000))).map_err(|e| e.to_string())?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(reply) = parse(&got) {
            return reply;
        }
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        got.extend_from_slice(&buf[..n]);
    }
}

/// A complete simple, error, integer or bulk reply at the start of `b`, if there is one.
fn parse(b: &[u8]) -> Option<Result<String, String>> {
    let end = b.windows(2).position(|w| w == b"\r\n")?;
    let line = String::from_utf8_lossy(&b[1..end]).into_owned();
    match b.first()? {
        b'+' | b':' => Some(Ok(line)),
        b'-' => Some(Err(line)),
        b'$' => {
            let Ok(len) = line.parse::<usize>() else { return Some(Ok(String::new())) };
            let body = b.get(end + 2..end + 2 + len)?;
            Some(Ok(String::from_utf8_lossy(body).into_owned()))
        }
        _ => Some(Err(format!("unexpected reply {line}"))),
    }
}
