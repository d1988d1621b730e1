//! `switchboard`: parses the command line, installs telemetry, and runs the role.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = switchboard::Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let telemetry = telemetry::init(&cli.log, cli.log_format, rt.handle().clone(), cli.node_id())?;
    let result = rt.block_on(switchboard::run(cli));
    // Spans still queued leave before the process does (bounded by the exporter timeout).
    telemetry.shutdown();
    result
}
