//! `loadtest`: see `loadtest --help` and loadtest/README.md.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use loadtest::{chaos, compare, fleet, plot, scenario};

#[derive(Debug, Parser)]
#[command(name = "loadtest", version, about = "Load generator for Switchboard and Socket.IO servers")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Handshake storm: N connections as fast as --concurrency allows (token or --ticket).
    Handshake(scenario::HandshakeArgs),
    /// Fan-out: N subscribers of one room, publishers at --rate.
    Fanout(scenario::FanoutArgs),
    /// Many rooms: N subscribers spread over --rooms rooms, publishers round-robin.
    Rooms(scenario::FanoutArgs),
    /// Churn: N connections that keep disconnecting and reconnecting while messages flow.
    Churn(scenario::ChurnArgs),
    /// Revocation latency: revoke users through the admin API, time the `session_end`.
    Revocation(scenario::RevocationArgs),
    /// Resume after drops: connections drop and reconnect with `auth.resume`.
    Resume(scenario::ResumeArgs),
    /// Server publish: N subscribers of one room, messages POSTed through the admin API
    /// with --concurrency requests in flight (optionally capped at --rate).
    ServerPublish(scenario::ServerPublishArgs),
    /// Hold N idle connections; report server RSS per connection.
    Idle(scenario::IdleArgs),
    /// Compare result files side by side (ratio of each target to the baseline).
    Compare {
        /// Result JSON files.
        files: Vec<PathBuf>,
        #[arg(long, default_value = "switchboard")]
        baseline: String,
        /// Write the comparison as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write the comparison as a Markdown table here.
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Attach this JSON file (machine, commit) to the comparison.
        #[arg(long)]
        machine: Option<PathBuf>,
    },
    /// Plot the main latency of result files of one scenario into one SVG.
    Plot {
        files: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Summarise fault runs (run-local.sh's chaos scenario): each case is
    /// `RUN.json:FAULT.json`.
    Chaos {
        cases: Vec<String>,
        #[arg(long)]
        json: Option<PathBuf>,
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Write one timeline plot per fault (chaos-<fault>.svg) into this directory.
        #[arg(long)]
        plots: Option<PathBuf>,
    },
    /// Internal: one shard of connections for a coordinating `loadtest` process.
    #[command(hide = true)]
    Worker,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // A connection is a file: take every descriptor the hard limit allows.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("could not raise the open-files limit: {e}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Handshake(a) => scenario::handshake(a).await.map(drop),
            Cmd::Fanout(a) => scenario::fanout(a, "fanout").await.map(drop),
            Cmd::Rooms(a) => scenario::fanout(a, "rooms").await.map(drop),
            Cmd::Churn(a) => scenario::churn(a).await.map(drop),
            Cmd::Revocation(a) => scenario::revocation(a).await.map(drop),
            Cmd::Resume(a) => scenario::resume(a).await.map(drop),
            Cmd::ServerPublish(a) => scenario::server_publish(a).await.map(drop),
            Cmd::Idle(a) => scenario::idle(a).await.map(drop),
            Cmd::Compare { files, baseline, json, markdown, machine } => {
                let reports = compare::load(&files)?;
                let mut s = compare::summarize(&reports, &baseline, &files);
                if let Some(m) = machine {
                    s.machine = Some(serde_json::from_str(&std::fs::read_to_string(m)?)?);
                }
                print!("{}", compare::markdown(&s));
                compare::write(&s, json.as_deref(), markdown.as_deref())
            }
            Cmd::Plot { files, out } => {
                let reports = compare::load(&files)?;
                plot::reports(&out, &reports)
            }
            Cmd::Chaos { cases, json, markdown, plots } => {
                print!(
                    "{}",
                    chaos::summarize(&cases, json.as_deref(), markdown.as_deref(), plots.as_deref())?
                );
                Ok(())
            }
            Cmd::Worker => fleet::worker_main().await,
        }
    })
}
