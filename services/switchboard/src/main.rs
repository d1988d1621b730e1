//! `switchboard`: parses the command line, installs telemetry, and runs the role.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = switchboard::Cli::parse();
    telemetry::init_logging(&cli.log, cli.log_format)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(switchboard::run(cli))
}
