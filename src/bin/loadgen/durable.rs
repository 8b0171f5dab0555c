//! Acknowledged sends: how many messages per second the server stores durably and
//! acknowledges, and how long the acknowledgement takes.

use super::Target;
use super::client::{self, ClientError};
use super::stats;
use hearth::protocol::{ClientFrame, ServerFrame};
use serde_json::json;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct AcksArgs {
    #[command(flatten)]
    pub target: Target,
    /// Connections, each posting to its own channel.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Sends per second over all connections (open loop).
    #[arg(long, default_value_t = 10_000.0)]
    pub rate: f64,
    /// Bytes of text per message.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// A label for the report (e.g. the store the server runs with).
    #[arg(long, default_value = "hearth")]
    pub label: String,
}

pub async fn run(args: AcksArgs) -> Result<String, ClientError> {
    let target = args.target.clone();
    let clients = args.clients.clamp(1, 5_000);
    let rate = args.rate.clamp(1.0, 10_000_000.0);
    let http = reqwest::Client::builder().no_proxy().build()?;
    let run_id = std::process::id();
    let mut sockets = Vec::with_capacity(clients);
    for i in 0..clients {
        let grant = client::claim(&http, target.addr, &format!("lg{run_id}-{i}")).await?;
        let channel = format!("bench {run_id}-{i}");
        client::create_channel(&http, target.addr, &channel, &grant).await?;
        sockets.push((
            client::connect_and_join(target.addr, &grant, &channel).await?,
            channel,
        ));
    }

    let interval = Duration::from_secs_f64(clients as f64 / rate);
    let duration = target.duration();
    let warmup = target.warmup();
    let histogram = Arc::new(Mutex::new(stats::latency_histogram()));
    let sent = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let acked_measured = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let text = "x".repeat(args.size.clamp(1, 2_000));
    let start = Instant::now() + Duration::from_millis(200);
    let measured_cpu = target.cpu_between(start + warmup, start + duration);
    let mut tasks = Vec::new();
    for (index, (mut socket, channel)) in sockets.into_iter().enumerate() {
        // Spread the clients' schedules evenly over one interval.
        let offset = interval.mul_f64(index as f64 / clients as f64);
        let first = start + offset;
        let total = (duration.as_secs_f64() / interval.as_secs_f64()).floor() as u64;
        // After the last send, the last acknowledgements get this long to arrive.
        let drained_by = first + interval.mul_f64(total as f64) + Duration::from_secs(2);
        let text = text.clone();
        let (histogram, sent, acked, acked_measured, failed) = (
            histogram.clone(),
            sent.clone(),
            acked.clone(),
            acked_measured.clone(),
            failed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut local = stats::latency_histogram();
            let (mut next, mut answered) = (0u64, 0u64);
            while answered < total {
                let due = if next < total {
                    first + interval.mul_f64(next as f64)
                } else {
                    drained_by
                };
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => {
                        if next == total {
                            break;
                        }
                        let frame = ClientFrame::Send {
                            channel: channel.clone(),
                            client_id: next.to_string(),
                            text: text.clone(),
                        };
                        if socket.send_text(&client::encode(&frame)).await.is_err() {
                            break;
                        }
                        sent.fetch_add(1, Ordering::Relaxed);
                        next += 1;
                    }
                    frame = client::next_frame(&mut socket) => match frame {
                        Some(ServerFrame::Ack { client_id, .. }) => {
                            let Ok(k) = client_id.parse::<u64>() else {
                                continue;
                            };
                            answered += 1;
                            let scheduled = first + interval.mul_f64(k as f64);
                            acked.fetch_add(1, Ordering::Relaxed);
                            if scheduled >= start + warmup {
                                stats::record(&mut local, scheduled.elapsed());
                                acked_measured.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Some(ServerFrame::SendFailed { .. }) => {
                            answered += 1;
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(_) => {}
                        None => break,
                    },
                }
            }
            let _ = socket.close().await;
            let _ = histogram
                .lock()
                .expect("no task panics holding it")
                .add(&local);
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let after = target.sample();
    let measured_secs = (duration - warmup).as_secs_f64().max(0.001);
    let acked_total = acked.load(Ordering::Relaxed);
    let sent_total = sent.load(Ordering::Relaxed);
    let measured_acks = acked_measured.load(Ordering::Relaxed);
    let cpu_us_per_ack = match measured_cpu.await {
        Ok(Some(cpu)) if measured_acks > 0 => Some(cpu.as_secs_f64() * 1e6 / measured_acks as f64),
        _ => None,
    };
    let histogram = histogram.lock().expect("every task has finished");
    Ok(json!({
        "system": args.label,
        "scenario": "durable_sends",
        "connections": clients,
        "offered_per_s": rate,
        "acked_per_s": acked_measured.load(Ordering::Relaxed) as f64 / measured_secs,
        "sent": sent_total,
        "acked": acked_total,
        "unacked": sent_total.saturating_sub(acked_total + failed.load(Ordering::Relaxed)),
        "failed": failed.load(Ordering::Relaxed),
        "p50_ms": stats::ms(&histogram, 0.5),
        "p99_ms": stats::ms(&histogram, 0.99),
        "p999_ms": stats::ms(&histogram, 0.999),
        "max_ms": histogram.max() as f64 / 1000.0,
        "cpu_us_per_delivery": cpu_us_per_ack,
        "rss_bytes": after.map(|s| s.rss_bytes),
    })
    .to_string())
}
