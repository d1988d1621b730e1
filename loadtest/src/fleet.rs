//! Runs a job's connections in this process or spread over worker processes (this same
//! binary, `loadtest worker`), and merges what they measured.
//!
//! The worker protocol is lines on stdio: the coordinator writes the job as one JSON line,
//! later `stop`; the worker prints `P <progress JSON>` every 200 ms and `R <result JSON>`
//! once it has stopped. A worker whose stdin closes stops too.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::procmon::Monitor;
use crate::shard::{self, ShardJob, ShardResult, Shared, Snap};

enum Handle {
    Local { shared: Arc<Shared>, join: JoinHandle<anyhow::Result<ShardResult>> },
    Remote(Box<Remote>),
}

struct Remote {
    snap: Arc<Mutex<Snap>>,
    result: Arc<Mutex<Option<ShardResult>>>,
    child: Child,
    stdin: Option<ChildStdin>,
    reader: JoinHandle<()>,
}

pub struct Fleet {
    shards: Vec<Handle>,
    stop_tx: watch::Sender<bool>,
    pub procs: usize,
}

impl Fleet {
    /// Starts `job` over `procs` processes (1: in this process).
    pub async fn launch(
        job: ShardJob,
        procs: u64,
        monitor: &Monitor,
        session_end_tx: Option<mpsc::UnboundedSender<(u64, u64, String)>>,
    ) -> anyhow::Result<Fleet> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let procs = procs.clamp(1, job.count.max(1));
        let mut shards = Vec::new();
        if procs == 1 {
            let shared = Shared::new(job.rooms);
            *shared.session_end_tx.lock() = session_end_tx;
            let join = tokio::spawn(shard::run(job, shared.clone(), stop_rx));
            shards.push(Handle::Local { shared, join });
        } else {
            anyhow::ensure!(session_end_tx.is_none(), "this scenario runs in one process");
            let exe = std::env::current_exe().context("locating the loadtest binary")?;
            for i in 0..procs {
                let start = job.start + job.count * i / procs;
                let end = job.start + job.count * (i + 1) / procs;
                let part = ShardJob { start, count: end - start, ..job.clone() };
                let mut child = tokio::process::Command::new(&exe)
                    .arg("worker")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .kill_on_drop(true)
                    .spawn()
                    .context("starting a worker process")?;
                if let Some(pid) = child.id() {
                    monitor.add_generator_pid(pid);
                }
                let mut stdin = child.stdin.take().context("worker stdin")?;
                let stdout = child.stdout.take().context("worker stdout")?;
                let mut line = serde_json::to_string(&part)?;
                line.push('\n');
                stdin.write_all(line.as_bytes()).await?;
                stdin.flush().await?;
                let snap = Arc::new(Mutex::new(Snap::default()));
                let result = Arc::new(Mutex::new(None));
                let (s, r) = (snap.clone(), result.clone());
                let reader = tokio::spawn(async move {
                    let mut lines = BufReader::new(stdout).lines();
                    while let Ok(Some(l)) = lines.next_line().await {
                        if let Some(j) = l.strip_prefix("P ") {
                            if let Ok(v) = serde_json::from_str(j) {
                                *s.lock() = v;
                            }
                        } else if let Some(j) = l.strip_prefix("R ") {
                            match serde_json::from_str(j) {
                                Ok(v) => *r.lock() = Some(v),
                                Err(e) => eprintln!("worker result unreadable: {e}"),
                            }
                        }
                    }
                });
                shards.push(Handle::Remote(Box::new(Remote {
                    snap,
                    result,
                    child,
                    stdin: Some(stdin),
                    reader,
                })));
            }
        }
        Ok(Fleet { shards, stop_tx, procs: procs as usize })
    }

    /// Progress summed over all shards.
    pub fn snap(&self) -> Snap {
        let mut total = Snap { ready: true, ..Snap::default() };
        for h in &self.shards {
            let s = match h {
                Handle::Local { shared, .. } => shared.progress.snap(),
                Handle::Remote(r) => *r.snap.lock(),
            };
            total.add(&s);
        }
        total
    }

    /// Tells every shard to stop and returns their merged results.
    pub async fn stop(self) -> anyhow::Result<ShardResult> {
        let _ = self.stop_tx.send(true);
        let mut merged = ShardResult::default();
        for h in self.shards {
            match h {
                Handle::Local { join, .. } => merged.merge(&join.await??),
                Handle::Remote(r) => {
                    let Remote { result, mut child, mut stdin, reader, .. } = *r;
                    if let Some(mut s) = stdin.take() {
                        let _ = s.write_all(b"stop\n").await;
                        let _ = s.flush().await;
                        drop(s);
                    }
                    match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
                        Ok(_) => {}
                        Err(_) => {
                            eprintln!("a worker did not stop within 60 s; killing it");
                            let _ = child.kill().await;
                        }
                    }
                    let _ = reader.await;
                    let r = result.lock().take().context("a worker ended without a result")?;
                    merged.merge(&r);
                }
            }
        }
        Ok(merged)
    }
}

/// `loadtest worker`: runs one shard for a coordinator.
pub async fn worker_main() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let first = lines.next_line().await?.context("no job on stdin")?;
    let job: ShardJob = serde_json::from_str(&first).context("reading the job")?;
    let shared = Shared::new(job.rooms);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        loop {
            match lines.next_line().await {
                Ok(Some(l)) if l.trim() != "stop" => continue,
                _ => break,
            }
        }
        let _ = stop_tx.send(true);
    });
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let printer = {
        let shared = shared.clone();
        let finished = finished.clone();
        tokio::spawn(async move {
            let mut out = tokio::io::stdout();
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if finished.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let Ok(j) = serde_json::to_string(&shared.progress.snap()) else { break };
                if out.write_all(format!("P {j}\n").as_bytes()).await.is_err() {
                    break;
                }
                let _ = out.flush().await;
            }
        })
    };
    let result = shard::run(job, shared, stop_rx).await?;
    finished.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = printer.await;
    let mut out = tokio::io::stdout();
    out.write_all(format!("R {}\n", serde_json::to_string(&result)?).as_bytes()).await?;
    out.flush().await?;
    Ok(())
}
