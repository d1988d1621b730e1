//! Smoke run of the load generator, for CI: starts `switchboard dev` (the debug build next
//! to this test's `loadtest` binary, or `$SWITCHBOARD_BIN`), then runs small scenarios with
//! the real `loadtest` binary and checks what they report: a few hundred connections, a
//! few seconds, zero loss. When `node` is installed, the same fan-out runs against the
//! reference Node peer too (its packages are installed with `npm ci` if missing).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const ADMIN_TOKEN: &str = "loadtest-smoke-admin-token";

/// A server process, killed when dropped.
struct Server {
    child: Child,
    lines: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn field(&self, name: &str) -> String {
        let prefix = format!("{name}: ");
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no `{name}` in the banner: {:?}", self.lines))
            .to_string()
    }
}

fn loadtest() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_loadtest"))
}

/// Starts `cmd` and reads stdout lines until one starts with `until`.
fn start(mut cmd: Command, until: &str) -> Server {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("starting the server");
    let stdout = child.stdout.take().expect("server stdout");
    let mut server = Server { child, lines: Vec::new() };
    let mut reader = BufReader::new(stdout);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("reading the banner");
        assert!(n > 0, "the server exited before printing `{until}`: {:?}", server.lines);
        let line = line.trim_end().to_string();
        let done = line.starts_with(until);
        server.lines.push(line);
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "no `{until}` within 30 s");
    }
    // Keep draining stdout so that the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in reader.lines() {});
    server
}

fn switchboard() -> Server {
    let bin = std::env::var_os("SWITCHBOARD_BIN").map(PathBuf::from).unwrap_or_else(|| {
        loadtest().parent().expect("target dir").join(format!("switchboard{}", std::env::consts::EXE_SUFFIX))
    });
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p switchboard) or set SWITCHBOARD_BIN",
        bin.display()
    );
    let mut cmd = Command::new(bin);
    cmd.args([
        "dev",
        "--edge-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--admin-token",
        ADMIN_TOKEN,
        "--handshake-rate-per-ip",
        "0",
        "--handshake-rate-per-tenant",
        "0",
    ])
    .env_remove("SWITCHBOARD_REDIS_URL")
    .env_remove("SWITCHBOARD_NATS_URL");
    start(cmd, "client token:")
}

fn secret_of(server: &Server) -> String {
    let key = server.field("demo key");
    key.split_whitespace()
        .find_map(|w| w.strip_prefix("secret="))
        .expect("secret in the demo key line")
        .to_string()
}

/// Runs one scenario and returns its JSON report.
fn run(dir: &Path, name: &str, args: &[&str]) -> Value {
    let json = dir.join(format!("{name}.json"));
    let out = Command::new(loadtest())
        .args(args)
        .arg("--json")
        .arg(&json)
        .arg("--no-progress")
        .output()
        .expect("running loadtest");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "loadtest {name} failed:\n{text}");
    eprintln!("{text}");
    serde_json::from_str(&std::fs::read_to_string(&json).expect("report written")).expect("report is JSON")
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("loadtest-smoke-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// `subscribers` connected; each message owed to `per_message` of them.
fn assert_no_loss(r: &Value, subscribers: u64, per_message: u64) {
    assert_eq!(r["conns"]["failed"], 0, "{r:#}");
    assert_eq!(r["conns"]["connected"], subscribers, "{r:#}");
    let d = &r["delivery"];
    let acked = d["acked"].as_u64().expect("acked");
    assert!(acked > 0, "nothing was published: {d:#}");
    assert_eq!(d["published"], acked, "every publish is acknowledged: {d:#}");
    assert_eq!(d["expected"].as_u64(), Some(acked * per_message), "{d:#}");
    assert_eq!(d["lost"], 0, "{d:#}");
    assert_eq!(d["duplicates"], 0, "{d:#}");
    assert_eq!(d["received"], d["expected"], "{d:#}");
    assert!(d["latency_us"]["p99"].as_u64().is_some_and(|v| v > 0), "{d:#}");
}

#[test]
fn smoke_against_switchboard_dev() {
    let server = switchboard();
    let url = server.field("socket.io");
    let admin = server.field("admin");
    let secret = secret_of(&server);
    let pid = server.child.id().to_string();
    let dir = tmpdir("switchboard");
    let common = ["--url", &url, "--secret", &secret, "--server-pid", &pid];

    let fanout = run(
        &dir,
        "fanout",
        &[&["fanout", "--conns", "300", "--rate", "40", "--duration", "2"][..], &common[..]].concat(),
    );
    assert_no_loss(&fanout, 300, 300);
    assert!(fanout["server"]["rss_bytes_peak"].as_u64().is_some_and(|v| v > 0), "{fanout:#}");

    let rooms = run(
        &dir,
        "rooms",
        &[&["rooms", "--conns", "200", "--rooms", "20", "--rate", "60", "--duration", "2"][..], &common[..]]
            .concat(),
    );
    assert_no_loss(&rooms, 200, 10);

    for (name, extra) in [("handshake", None), ("handshake-ticket", Some("--ticket"))] {
        let mut args = vec!["handshake", "--conns", "200"];
        args.extend(extra);
        let r = run(&dir, name, &[&args[..], &common[..]].concat());
        assert_eq!(r["conns"]["failed"], 0, "{r:#}");
        assert_eq!(r["handshake"]["count"], 200, "{r:#}");
    }

    let rev = run(
        &dir,
        "revocation",
        &[
            &["revocation", "--conns", "50", "--revocations", "10", "--rate", "20"][..],
            &["--admin-url", &admin, "--admin-token", ADMIN_TOKEN][..],
            &common[..],
        ]
        .concat(),
    );
    assert_eq!(rev["revocation"]["observed"], 10, "{rev:#}");
    assert_eq!(rev["revocation"]["missed"], 0, "{rev:#}");

    // Two generator processes, merged.
    let split = run(
        &dir,
        "fanout-2procs",
        &[&["fanout", "--procs", "2", "--conns", "200", "--rate", "20", "--duration", "1"][..], &common[..]]
            .concat(),
    );
    assert_no_loss(&split, 200, 200);
    assert_eq!(split["conns"]["generator_processes"], 2);

    let out = dir.join("cmp.svg");
    let status = Command::new(loadtest())
        .arg("plot")
        .arg(dir.join("fanout.json"))
        .arg(dir.join("fanout-2procs.json"))
        .arg("--out")
        .arg(&out)
        .status()
        .expect("running loadtest plot");
    assert!(status.success());
    assert!(std::fs::read_to_string(&out).expect("svg").starts_with("<svg"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn smoke_against_the_node_peer() {
    let peer = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/socketio-node");
    if Command::new("node").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        eprintln!("node is not installed: skipping the Node peer smoke run");
        return;
    }
    if !peer.join("node_modules/socket.io").exists() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&peer)
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("npm ci failed in {}: skipping the Node peer smoke run", peer.display());
            return;
        }
    }
    let secret = "loadtest-smoke-node-secret";
    let mut cmd = Command::new("node");
    cmd.arg("server.mjs")
        .current_dir(&peer)
        .env("PORT", "0")
        .env("SECRET", secret)
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env_remove("REDIS_URL");
    let server = start(cmd, "adapter:");
    let url = server.field("socket.io");
    let pid = server.child.id().to_string();
    let dir = tmpdir("node");
    let fanout = run(
        &dir,
        "fanout",
        &[
            "fanout",
            "--target",
            "node",
            "--url",
            &url,
            "--secret",
            secret,
            "--server-pid",
            &pid,
            "--conns",
            "200",
        ]
        .into_iter()
        .chain(["--rate", "40", "--duration", "2"])
        .collect::<Vec<_>>(),
    );
    assert_no_loss(&fanout, 200, 200);
    let admin = format!("{}/v1", url.trim_end_matches("/demo"));
    let rev = run(
        &dir,
        "revocation",
        &[
            "revocation",
            "--target",
            "node",
            "--url",
            &url,
            "--secret",
            secret,
            "--conns",
            "30",
            "--revocations",
            "5",
            "--admin-url",
            &admin,
            "--admin-token",
            ADMIN_TOKEN,
        ],
    );
    assert_eq!(rev["revocation"]["missed"], 0, "{rev:#}");
    let _ = std::fs::remove_dir_all(&dir);
}
