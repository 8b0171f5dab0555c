//! Hearth's load generator: drives a running server over loopback with real
//! WebSocket clients and prints what it measured as one JSON object per run.
//!
//! Every loop is bounded by a duration and a client count, and only loopback
//! addresses are accepted as targets.

mod client;
mod crowd;
mod durable;
mod fanout;
mod idle;
mod session;
mod stats;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "loadgen", about = "Load generator for Hearth (loopback only)")]
struct Args {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Acknowledged sends: each client posts to its own channel at a fixed total
    /// rate (open loop) and the latency from the scheduled send time to the
    /// acknowledgement is recorded.
    Acks(durable::AcksArgs),
    /// Fan-out: one publisher per room at a fixed total rate; latency to the last
    /// recipient of each message.
    Fanout(fanout::FanoutArgs),
    /// Idle connections: memory per connection, idle CPU, and the connect rate.
    Idle(idle::IdleArgs),
}

/// Where to aim, shared by every scenario.
#[derive(clap::Args, Clone, Debug)]
pub struct Target {
    /// The server's address; must be on loopback.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// The server's process id, to sample its memory and CPU time from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Initial seconds left out of the figures (connections settling, caches).
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
}

impl Target {
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.seconds.clamp(0.1, 600.0))
    }

    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup.clamp(0.0, self.seconds))
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let target = match &args.scenario {
        Scenario::Acks(a) => &a.target,
        Scenario::Fanout(a) => &a.target,
        Scenario::Idle(a) => &a.target,
    };
    if !target.addr.ip().is_loopback() {
        eprintln!(
            "loadgen: {} is not a loopback address; refusing",
            target.addr
        );
        return std::process::ExitCode::from(2);
    }
    let result = match args.scenario {
        Scenario::Acks(a) => durable::run(a).await,
        Scenario::Fanout(a) => fanout::run(a).await,
        Scenario::Idle(a) => idle::run(a).await,
    };
    match result {
        Ok(report) => {
            println!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
