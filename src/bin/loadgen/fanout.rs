//! Fan-out: one publisher per room sends at a fixed rate (open loop, the scheduled
//! time in the text), every member receives, and the latency to the last recipient
//! of each message is what counts.

use super::Target;
use super::client::ClientError;
use super::crowd::{self, CrowdArgs};
use super::session::{self, Received};
use super::stats;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

#[derive(clap::Args, Debug)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub crowd: CrowdArgs,
    /// Messages per second over all rooms; deliveries are this times `members`.
    #[arg(long, default_value_t = 1_000.0)]
    pub rate: f64,
    /// Bytes of text per message.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    #[arg(long, default_value = "hearth")]
    pub label: String,
}

/// Microseconds since the Unix epoch: comparable across processes on one machine.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Per message: how many members have it, and the worst latency so far.
type Arrivals = Mutex<HashMap<u64, (usize, u64)>>;

pub async fn run(args: FanoutArgs) -> Result<String, ClientError> {
    let target = args.target.clone();
    let before = target.sample();
    let crowd = crowd::gather(&target, &args.crowd).await?;
    let connected = target.sample();
    let members_per_room = args.crowd.members.max(1);
    let rooms = crowd.rooms.len();
    let dialect = args.crowd.dialect;
    let rate_per_room = (args.rate / rooms as f64).max(0.1);
    let interval = Duration::from_secs_f64(1.0 / rate_per_room);
    let duration = target.duration();
    let warmup = target.warmup();
    let start = Instant::now() + Duration::from_millis(300);
    let start_us = now_us() + 300_000;
    let measure_from_us = start_us + warmup.as_micros() as u64;
    let arrivals: Arc<Vec<Arrivals>> = Arc::new((0..rooms).map(|_| Mutex::default()).collect());
    let last_recipient = Arc::new(Mutex::new(stats::latency_histogram()));
    let deliveries = Arc::new(AtomicU64::new(0));
    let published = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let run_for = duration + Duration::from_secs(2);
    let padding = "x".repeat(args.size.saturating_sub(40).max(1));

    let total = (duration.as_secs_f64() / interval.as_secs_f64()) as u64;
    // Stagger rooms so their publishers do not fire at the same instant.
    let offset = move |room: usize| interval.mul_f64(room as f64 / rooms as f64);
    let scheduled_at = move |room: usize, k: u64| offset(room) + interval.mul_f64(k as f64);
    let mut publish_orders: Vec<Option<_>> = Vec::with_capacity(rooms);
    let mut pacer_queues = Vec::with_capacity(rooms);
    for _ in 0..rooms {
        let (orders, receive) = tokio::sync::mpsc::unbounded_channel::<u64>();
        pacer_queues.push(orders);
        publish_orders.push(Some(receive));
    }
    std::thread::spawn(move || pace(start, rooms, total, scheduled_at, pacer_queues));

    // One task per member: it reads what the room publishes and, for the room's
    // publisher, sends on the pacer's orders. Tasks are stopped from here at the
    // deadline rather than each racing a timer on every frame.
    let mut tasks = Vec::with_capacity(crowd.members.len());
    for member in crowd.members {
        let (room, mut socket) = (member.room, member.socket);
        let (arrivals, last_recipient, deliveries, completed, published) = (
            arrivals.clone(),
            last_recipient.clone(),
            deliveries.clone(),
            completed.clone(),
            published.clone(),
        );
        let room_name = crowd.rooms[room].clone();
        let mut orders = if member.index == 0 {
            publish_orders[room].take()
        } else {
            None
        };
        let padding = padding.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(k) = next_order(&mut orders) => {
                        let scheduled = start_us + scheduled_at(room, k).as_micros() as u64;
                        let text = format!("{scheduled} {room} {k} {padding}");
                        let frame = session::publish(dialect, &room_name, &format!("{room}-{k}"), &text);
                        if socket.send_text(&frame).await.is_err() {
                            break;
                        }
                        published.fetch_add(1, Ordering::Relaxed);
                    }
                    text = socket.next_text() => {
                        let Ok(Some(text)) = text else { break };
                        match session::classify(dialect, text) {
                            Received::Text(text) => {
                                let Some((scheduled, k)) = scheduled_and_number(text) else {
                                    continue;
                                };
                                if scheduled < measure_from_us {
                                    continue;
                                }
                                deliveries.fetch_add(1, Ordering::Relaxed);
                                let latency = now_us().saturating_sub(scheduled);
                                let mut room_arrivals = arrivals[room].lock().expect("never poisoned");
                                let entry = room_arrivals.entry(k).or_insert((0, 0));
                                entry.0 += 1;
                                entry.1 = entry.1.max(latency);
                                if entry.0 == members_per_room {
                                    let worst = entry.1;
                                    room_arrivals.remove(&k);
                                    drop(room_arrivals);
                                    completed.fetch_add(1, Ordering::Relaxed);
                                    stats::record(
                                        &mut last_recipient.lock().expect("never poisoned"),
                                        Duration::from_micros(worst),
                                    );
                                }
                            }
                            Received::Ping => {
                                if socket.send_text(session::PONG).await.is_err() {
                                    break;
                                }
                            }
                            Received::Other => {}
                        }
                    }
                }
            }
        }));
    }
    let measured_cpu = target.cpu_between(start + warmup, start + duration);
    tokio::time::sleep_until((start + run_for).into()).await;
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
    let measured_secs = (duration - warmup).as_secs_f64().max(0.001);
    let incomplete: usize = arrivals
        .iter()
        .map(|room| room.lock().expect("every task has stopped").len())
        .sum();
    let delivered = deliveries.load(Ordering::Relaxed);
    let connections = rooms * members_per_room;
    let rss_per_conn = match (before, connected) {
        (Some(b), Some(c)) => Some(c.rss_bytes.saturating_sub(b.rss_bytes) / connections as u64),
        _ => None,
    };
    let cpu_us_per_delivery = match measured_cpu.await {
        Ok(Some(cpu)) if delivered > 0 => Some(cpu.as_secs_f64() * 1e6 / delivered as f64),
        _ => None,
    };
    let histogram = last_recipient.lock().expect("every task has stopped");
    Ok(json!({
        "system": args.label,
        "scenario": "fanout",
        "connections": connections,
        "rooms": rooms,
        "offered_msgs_per_s": args.rate,
        "offered_deliveries_per_s": args.rate * members_per_room as f64,
        "deliveries_per_s": delivered as f64 / measured_secs,
        "published": published.load(Ordering::Relaxed),
        "completed_messages": completed.load(Ordering::Relaxed),
        "incomplete_messages": incomplete,
        "p50_ms": stats::ms(&histogram, 0.5),
        "p99_ms": stats::ms(&histogram, 0.99),
        "p999_ms": stats::ms(&histogram, 0.999),
        "max_ms": histogram.max() as f64 / 1000.0,
        "connects_per_s": crowd.connects_per_s,
        "rss_per_conn_bytes": rss_per_conn,
        "cpu_us_per_delivery": cpu_us_per_delivery,
    })
    .to_string())
}

/// The scheduled time and the message's number from a published text
/// ("SCHEDULED ROOM K PADDING").
fn scheduled_and_number(text: &str) -> Option<(u64, u64)> {
    let mut parts = text.split(' ');
    let scheduled = parts.next()?.parse().ok()?;
    let k = parts.nth(1)?.parse().ok()?;
    Some((scheduled, k))
}

/// The next publish order for a publisher; never resolves for other members.
async fn next_order(orders: &mut Option<UnboundedReceiver<u64>>) -> Option<u64> {
    match orders {
        Some(orders) => orders.recv().await,
        None => std::future::pending().await,
    }
}

/// Tells each room's publisher when to publish, from a thread of its own: the
/// runtime's timers fire up to a millisecond or two late, which would show up as
/// latency the server never caused; a thread sleeps to within tens of microseconds.
fn pace(
    start: Instant,
    rooms: usize,
    total: u64,
    scheduled_at: impl Fn(usize, u64) -> Duration,
    queues: Vec<UnboundedSender<u64>>,
) {
    let mut plan: Vec<(Duration, usize, u64)> = (0..total)
        .flat_map(|k| (0..rooms).map(move |room| (room, k)))
        .map(|(room, k)| (scheduled_at(room, k), room, k))
        .collect();
    plan.sort_unstable();
    for (at, room, k) in plan {
        let when = start + at;
        let now = Instant::now();
        if when > now {
            std::thread::sleep(when - now);
        }
        if queues[room].send(k).is_err() {
            return;
        }
    }
}
