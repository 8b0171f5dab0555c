//! Hearth's load generator: drives a running server over loopback with real
//! WebSocket clients and prints what it measured as one JSON object per run.
//!
//! Every loop is bounded by a duration and a client count, and only loopback
//! addresses are accepted as targets.

mod chart;
mod client;
mod crowd;
mod durable;
mod fanout;
mod idle;
mod session;
mod stats;
mod wire;

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
    /// Draws the fan-out chart (SVG) from the bench results.
    Chart(chart::ChartArgs),
}

/// Where to aim, shared by every scenario.
#[derive(clap::Args, Clone, Debug)]
pub struct Target {
    /// The server's address; must be on loopback.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// Further nodes of the same cluster (comma-separated); connections are spread
    /// over `addr` and these. Loopback only.
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<SocketAddr>,
    /// The server processes' ids (comma-separated for a cluster), to sample their
    /// memory and CPU time from /proc; figures are their sums.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Initial seconds left out of the figures (connections settling, caches).
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
}

impl Target {
    /// Every node to connect to, `addr` first.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        std::iter::once(self.addr)
            .chain(self.nodes.iter().copied())
            .collect()
    }

    /// The servers' memory and CPU time now, summed; `None` without pids.
    pub fn sample(&self) -> Option<stats::ProcessSample> {
        if self.server_pid.is_empty() {
            return None;
        }
        self.server_pid.iter().map(|pid| stats::sample(*pid)).sum()
    }

    /// The server's CPU time between two instants, sampled at them from a task of
    /// its own: figures per delivery divide the CPU of the measured window only, not
    /// of the connecting, the warm-up or the draining around it.
    pub fn cpu_between(
        &self,
        from: std::time::Instant,
        to: std::time::Instant,
    ) -> tokio::task::JoinHandle<Option<Duration>> {
        let target = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(from.into()).await;
            let before = target.sample()?;
            tokio::time::sleep_until(to.into()).await;
            Some(target.sample()?.cpu.saturating_sub(before.cpu))
        })
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.seconds.clamp(0.1, 600.0))
    }

    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup.clamp(0.0, self.seconds))
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match Args::parse().scenario {
        Scenario::Chart(args) => chart::run(args),
        Scenario::Acks(args) => against(&args.target.clone(), durable::run(args)).await,
        Scenario::Fanout(args) => against(&args.target.clone(), fanout::run(args)).await,
        Scenario::Idle(args) => against(&args.target.clone(), idle::run(args)).await,
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

/// Runs a load scenario, but only against loopback.
async fn against(
    target: &Target,
    scenario: impl std::future::Future<Output = Result<String, client::ClientError>>,
) -> Result<String, String> {
    if let Some(away) = target.addrs().iter().find(|a| !a.ip().is_loopback()) {
        return Err(format!("{away} is not a loopback address; refusing"));
    }
    scenario.await.map_err(|e| e.to_string())
}
