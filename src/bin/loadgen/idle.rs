//! Idle connections: how much memory each costs the server, how much CPU the server
//! spends keeping them (pings), and how fast they were opened (the connect storm).

use super::Target;
use super::client::{self, ClientError};
use super::crowd::{self, CrowdArgs};
use super::session::{self, Received};
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
    /// Afterwards, a newcomer joins a few rooms through the last node and must see
    /// every member online, wherever they are connected (cluster presence).
    #[arg(long)]
    pub check_presence: bool,
    /// Hold the connections without reading (nor answering pings): a crowd that
    /// costs the server its pings but this process almost nothing, so another load
    /// generator on the same core measures the server alone.
    #[arg(long)]
    pub silent: bool,
}

pub async fn run(args: IdleArgs) -> Result<String, ClientError> {
    let target = args.target.clone();
    let dialect = args.crowd.dialect;
    let before = target.sample();
    let crowd = crowd::gather(&target, &args.crowd).await?;
    let connections = crowd.members.len();
    let deadline = Instant::now() + target.duration();
    let mut tasks = Vec::with_capacity(connections);
    for member in crowd.members {
        let mut socket = member.socket;
        let silent = args.silent;
        tasks.push(tokio::spawn(async move {
            if silent {
                tokio::time::sleep_until(deadline.into()).await;
                return Some(socket);
            }
            // Reading answers the server's WebSocket pings, and Engine.IO pings are
            // answered here. A connection still open at the deadline counts as held.
            loop {
                let text = tokio::select! {
                    text = socket.next_text() => text,
                    _ = tokio::time::sleep_until(deadline.into()) => return Some(socket),
                };
                let Ok(Some(text)) = text else {
                    return None;
                };
                if matches!(session::classify(dialect, text), Received::Ping)
                    && socket.send_text(session::PONG).await.is_err()
                {
                    return None;
                }
            }
        }));
    }
    // Let set-up traffic (presence announcements) settle before measuring.
    tokio::time::sleep(Duration::from_secs(1).min(target.duration() / 4)).await;
    let settled = target.sample();
    let presence = if args.check_presence {
        // Presence crosses nodes within a second or two; wait that out first.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let last_node = *target.addrs().last().expect("at least one node");
        Some(check_presence(last_node, &crowd.rooms, args.crowd.members).await?)
    } else {
        None
    };
    let settled_at = Instant::now();
    let mut open = Vec::with_capacity(connections);
    for task in tasks {
        if let Ok(Some(socket)) = task.await {
            open.push(socket);
        }
    }
    let after = target.sample();
    let held_secs = settled_at.elapsed().as_secs_f64().max(0.001);
    let still_open = open.len();
    drop(open);
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
        "cpu_us_per_connect": crowd.cpu_us_per_connect,
        "rss_per_conn_bytes": rss_per_conn,
        "server_rss_bytes": settled.map(|s| s.rss_bytes),
        "idle_cpu_percent": idle_cpu_percent,
        "presence_rooms_checked": presence.map(|(checked, _)| checked),
        "presence_rooms_correct": presence.map(|(_, correct)| correct),
    })
    .to_string())
}

/// Joins up to five rooms as a newcomer through `node`; returns how many rooms were
/// checked and in how many the online count held every member and the newcomer.
async fn check_presence(
    node: std::net::SocketAddr,
    rooms: &[String],
    members: usize,
) -> Result<(usize, usize), ClientError> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let mut correct = 0;
    let sample: Vec<&String> = rooms
        .iter()
        .step_by((rooms.len() / 5).max(1))
        .take(5)
        .collect();
    for (i, room) in sample.iter().enumerate() {
        let grant =
            client::claim(&http, node, &format!("checker {}-{i}", std::process::id())).await?;
        let (_, online) = client::join_counting_online(node, &grant, room).await?;
        if online == members + 1 {
            correct += 1;
        } else {
            eprintln!(
                "loadgen: {room:?} shows {} online, expected {}",
                online,
                members + 1
            );
        }
    }
    Ok((sample.len(), correct))
}
