//! The `switchboard` binary's roles: the command line, typed configuration per role
//! (validated before anything starts), and the wiring of store, bus, edge and admin.
//! Nothing here decides policy or speaks Socket.IO; it only assembles the crates that do.

mod config;
mod dev;
mod serve;

use clap::{Parser, Subcommand};

pub use config::{AdminArgs, CommonArgs, EdgeArgs, OperatorArgs, TokenArgs};

/// Switchboard: multi-tenant real-time messaging for unmodified Socket.IO v4 clients.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about)]
pub struct Cli {
    /// Log filter (tracing env-filter syntax).
    #[arg(long, env = "SWITCHBOARD_LOG", default_value = "info", global = true)]
    pub log: String,
    /// Log format: text or json.
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: telemetry::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Edge and admin API in one process, with a demo tenant; in-memory unless
    /// --redis-url/--nats-url are given.
    Dev(config::DevArgs),
    /// One edge node (Socket.IO, tickets, health, metrics).
    Edge(config::EdgeArgs),
    /// The tenant admin HTTP API.
    Admin(config::AdminArgs),
    /// The Kubernetes controller for Tenant resources (leader-elected; needs Redis and NATS).
    Operator(config::OperatorArgs),
    /// Prints the Tenant CustomResourceDefinition (YAML), as the Helm chart installs it.
    Crd,
    /// Mints a client token from a key given on the command line.
    Token(config::TokenArgs),
    /// Validates the configuration of a role and exits.
    CheckConfig {
        #[command(subcommand)]
        role: config::CheckRole,
    },
}

impl Cli {
    /// The node id given by flag or environment, if any: telemetry's `service.instance.id`.
    pub fn node_id(&self) -> Option<&str> {
        match &self.command {
            Command::Dev(a) => a.common.node_id.as_deref(),
            Command::Edge(a) => a.common.node_id.as_deref(),
            Command::Admin(a) => a.common.node_id.as_deref(),
            _ => None,
        }
    }
}

/// Runs the chosen role until it ends (or a signal ends it).
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev(a) => dev::run(a.validate()?).await,
        Command::Edge(a) => serve::edge(a.validate()?).await,
        Command::Admin(a) => serve::admin(a.validate()?).await,
        Command::Operator(a) => serve::operator(a.validate()?).await,
        Command::Crd => {
            print!("{}", operator::crd_yaml());
            Ok(())
        }
        Command::Token(a) => {
            println!("{}", a.mint()?);
            Ok(())
        }
        Command::CheckConfig { role } => {
            let summary = role.check()?;
            println!("configuration ok: {summary}");
            Ok(())
        }
    }
}
