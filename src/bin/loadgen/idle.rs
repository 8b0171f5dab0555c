//! Idle connections: how much memory each costs the server, how much CPU the server
//! spends keeping them (pings), and how fast they were opened (the connect storm).

use super::Target;
use super::client::ClientError;
use super::crowd::{self, CrowdArgs};
use super::session::{self, Received};
use super::stats;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct IdleArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub crowd: CrowdArgs,
    #[arg(long, default_value = "hearth")]
    pub label: String,
}

pub async fn run(args: IdleArgs) -> Result<String, ClientError> {
    let target = args.target.clone();
    let dialect = args.crowd.dialect;
    let before = target.server_pid.and_then(stats::sample);
    let crowd = crowd::gather(target.addr, &args.crowd).await?;
    let connections = crowd.members.len();
    let deadline = Instant::now() + target.duration();
    let mut tasks = Vec::with_capacity(connections);
    for member in crowd.members {
        let (mut writer, mut reader) = (member.writer, member.reader);
        tasks.push(tokio::spawn(async move {
            // Reading keeps answering the server's pings (tungstenite does it for
            // WebSocket pings; Engine.IO pings are answered here).
            loop {
                let frame = tokio::select! {
                    frame = reader.next() => frame,
                    _ = tokio::time::sleep_until(deadline.into()) => break,
                };
                let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) = frame else {
                    match frame {
                        Some(Ok(_)) => continue,
                        _ => break,
                    }
                };
                if matches!(session::classify(dialect, &text), Received::Ping)
                    && writer.send(session::pong()).await.is_err()
                {
                    break;
                }
            }
            writer
        }));
    }
    // Let set-up traffic (presence announcements) settle before measuring.
    tokio::time::sleep(Duration::from_secs(1).min(target.duration() / 4)).await;
    let settled = target.server_pid.and_then(stats::sample);
    let settled_at = Instant::now();
    let mut writers = Vec::with_capacity(connections);
    for task in tasks {
        if let Ok(writer) = task.await {
            writers.push(writer);
        }
    }
    let after = target.server_pid.and_then(stats::sample);
    let held_secs = settled_at.elapsed().as_secs_f64().max(0.001);
    let still_open = writers.len();
    drop(writers);
    let rss_per_conn = match (before, settled) {
        (Some(b), Some(s)) => {
            Some(s.rss_bytes.saturating_sub(b.rss_bytes) / connections.max(1) as u64)
        }
        _ => None,
    };
    let idle_cpu_percent = match (settled, after) {
        (Some(s), Some(a)) => Some((a.cpu - s.cpu).as_secs_f64() / held_secs * 100.0),
        _ => None,
    };
    Ok(json!({
        "system": args.label,
        "scenario": "idle",
        "connections": connections,
        "still_open": still_open,
        "rooms": crowd.rooms.len(),
        "connects_per_s": crowd.connects_per_s,
        "rss_per_conn_bytes": rss_per_conn,
        "server_rss_bytes": settled.map(|s| s.rss_bytes),
        "idle_cpu_percent": idle_cpu_percent,
    })
    .to_string())
}
