//! Several Hearth nodes on one PostgreSQL (the records) and one Redis (the bus),
//! each a real process, driven over HTTP and WebSocket like browsers on either side
//! of a load balancer.

mod common;

use common::pg_server::Postgres;
use common::redis_server::Redis;
use common::{CLOSE_NAME_GIVEN_UP, Client, Server, assert_hello_refused};
use hearth::protocol::{ApiError, Channel, ClientFrame, ErrorCode, NameGrant, Seq, ServerFrame};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Presence of a dead node expires this fast in these tests (30 s by default).
const PRESENCE_TTL_SECS: &str = "3";

/// What a cluster's nodes share: a database of their own in the tests' PostgreSQL,
/// and a Redis of their own.
struct Cluster {
    database: String,
    redis: Redis,
}

impl Cluster {
    fn start() -> Self {
        Self {
            database: Postgres::shared().database(),
            redis: Redis::start(),
        }
    }
}

async fn node(cluster: &Cluster) -> Server {
    node_with(cluster, &[]).await
}

async fn node_with(cluster: &Cluster, extra: &[(&str, &str)]) -> Server {
    let url = cluster.redis.url();
    let mut env = vec![
        ("HEARTH_DATABASE_URL", cluster.database.as_str()),
        ("HEARTH_REDIS_URL", url.as_str()),
        ("HEARTH_PRESENCE_TTL_SECS", PRESENCE_TTL_SECS),
    ];
    env.extend_from_slice(extra);
    Server::start_with(&env).await
}

/// Who a client sees online in a room: its `Joined` list, then every presence
/// update, as the page keeps it.
struct Online {
    names: BTreeSet<String>,
}

impl Online {
    fn from(online: &[String]) -> Self {
        Self {
            names: online.iter().cloned().collect(),
        }
    }

    /// Reads presence updates until the list is `expected`, within `limit`.
    async fn wait_for(&mut self, client: &mut Client, expected: &[&str], limit: Duration) {
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        let deadline = tokio::time::Instant::now() + limit;
        while self.names != expected {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "[{}] online is {:?}, expected {:?} within {limit:?}",
                client.name,
                self.names,
                expected
            );
            let (joined, gone, replace) = client
                .recv_until_within("a presence update", left, |frame| match frame {
                    ServerFrame::Presence {
                        joined,
                        left,
                        replace,
                        ..
                    } => Some((joined.clone(), left.clone(), *replace)),
                    _ => None,
                })
                .await;
            if replace {
                self.names.clear();
            }
            self.names.extend(joined);
            for name in gone {
                self.names.remove(&name);
            }
        }
    }
}

fn names(channels: &[Channel]) -> Vec<&str> {
    channels.iter().map(|c| c.name.as_str()).collect()
}

#[tokio::test]
async fn people_on_two_nodes_share_channels_messages_and_names() {
    let cluster = Cluster::start();
    let (a, b) = (node(&cluster).await, node(&cluster).await);
    let mut ada = a.client("Ada").await;
    let mut bob = b.client("Bob").await;
    ada.join("General", None).await;
    bob.join("General", None).await;

    // A name held through one node is held on every node.
    let (_, taken) = b
        .call::<NameGrant>(
            "claim_name",
            &[("name", "ADA"), ("token", "another-browser")],
        )
        .await;
    assert_eq!(taken, Err(ApiError::NameTaken("ADA".into())));
    let (_, look_alike) = b
        .call::<NameGrant>("claim_name", &[("name", "\u{410}da"), ("token", "another")])
        .await;
    assert_eq!(
        look_alike,
        Err(ApiError::NameTaken("\u{410}da".into())),
        "a Cyrillic А makes no other name"
    );

    // A channel made on A appears live on B.
    let (_, created) = a.create_channel("Rust").await;
    let created = created.expect("a new channel");
    let announced = bob
        .recv_until("ChannelCreated on B", |frame| match frame {
            ServerFrame::ChannelCreated { channel } => Some(channel.clone()),
            _ => None,
        })
        .await;
    assert_eq!(announced, created);
    // And a channel that would pass for it cannot be made on B.
    let (_, look_alike) = b.create_channel("R\u{3c5}st").await;
    assert_eq!(
        look_alike,
        Err(ApiError::ChannelExists("Rust".into())),
        "a Greek υ makes no other channel"
    );

    // Messages cross in both directions, numbered once for everyone.
    let first = ada.say("General", "a1", "hello from A").await;
    let seen_on_b = bob.recv_message("a1").await;
    assert_eq!(
        (
            seen_on_b.seq,
            seen_on_b.author.as_str(),
            seen_on_b.channel.as_str()
        ),
        (first, "Ada", "General")
    );
    let second = bob.say("General", "b1", "hello from B").await;
    assert_eq!(second, first + 1);
    let seen_on_a = ada.recv_message("b1").await;
    assert_eq!(
        (seen_on_a.seq, seen_on_a.text.as_str()),
        (second, "hello from B")
    );

    // Someone arriving later on either node sees the same history.
    for server in [&a, &b] {
        let mut late = server.client("Cy").await;
        let joined = late.join("General", None).await;
        assert_eq!(joined.seqs(), [first, second]);
        let (_, listed) = server.call::<Vec<Channel>>("channels", &[]).await;
        assert_eq!(names(&listed.unwrap()), ["General", "Rust"]);
    }
}

#[tokio::test]
async fn a_name_given_up_through_one_node_is_let_go_of_on_every_node() {
    let cluster = Cluster::start();
    let (a, b) = (node(&cluster).await, node(&cluster).await);
    let ada = a.claim("Ada").await;
    // Ada's tabs through B: one as Ada, and one as the name she takes next, from
    // the same browser (the page claims the new name, then gives up the old one).
    let mut old_tab = Client::connect(&b).await;
    old_tab.hello(&ada.name, &ada.token).await;
    old_tab.join("General", None).await;
    let (_, renamed) = a
        .call::<NameGrant>(
            "claim_name",
            &[("name", "Ada L"), ("token", ada.token.as_str())],
        )
        .await;
    let renamed = renamed.expect("a free name");
    let mut new_tab = Client::connect(&b).await;
    new_tab.hello(&renamed.name, &renamed.token).await;
    new_tab.join("General", None).await;

    let (_, released) = a
        .call::<()>("release_name", &[("name", "Ada"), ("token", &ada.token)])
        .await;
    assert_eq!(released, Ok(()));
    assert_eq!(
        old_tab.close_code().await,
        Some(CLOSE_NAME_GIVEN_UP),
        "B lets go of the tab under the name given up on A"
    );
    // B had checked Ada's token a moment ago; it checks afresh now.
    assert_hello_refused(&b, "Ada", &ada.token).await;
    new_tab.say("General", "l1", "still here as Ada L").await;

    // Whoever takes the name next chats through B undisturbed.
    let (_, taken) = b
        .call::<NameGrant>("claim_name", &[("name", "Ada"), ("token", "another")])
        .await;
    let next = taken.expect("a name given up is free");
    let mut next_tab = Client::connect(&b).await;
    next_tab.hello(&next.name, &next.token).await;
    next_tab.join("General", None).await;
    next_tab
        .say("General", "n1", "hello, I am the new Ada")
        .await;
}

#[tokio::test]
async fn a_name_taken_over_through_one_node_closes_its_old_holders_tabs_on_every_node() {
    let cluster = Cluster::start();
    // No idle days: another browser may take a name at once.
    let idle = [("HEARTH_NAME_IDLE_DAYS", "0")];
    let (a, b) = (
        node_with(&cluster, &idle).await,
        node_with(&cluster, &idle).await,
    );
    let ada = a.claim("Ada").await;
    let mut old_tab = Client::connect(&b).await;
    old_tab.hello(&ada.name, &ada.token).await;
    old_tab.join("General", None).await;
    let (_, taken) = a
        .call::<NameGrant>(
            "claim_name",
            &[("name", "Ada"), ("token", "the next browser")],
        )
        .await;
    taken.expect("a name unused for its idle days is free");
    assert_eq!(
        old_tab.close_code().await,
        Some(CLOSE_NAME_GIVEN_UP),
        "B lets go of the old holder's tab when the name is taken over through A"
    );
    assert_hello_refused(&b, "Ada", &ada.token).await;
    let mut new_tab = Client::connect(&b).await;
    new_tab.hello("Ada", "the next browser").await;
    new_tab.join("General", None).await;
    new_tab.say("General", "t1", "the name is mine now").await;
}

#[tokio::test]
async fn the_same_channel_created_on_two_nodes_at_once_is_made_once() {
    let cluster = Cluster::start();
    let (a, b) = (node(&cluster).await, node(&cluster).await);
    for round in 0..5 {
        let name = format!("Launch {round}");
        let (on_a, on_b) = tokio::join!(a.create_channel(&name), b.create_channel(&name));
        let outcomes = [on_a.1, on_b.1];
        let made = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(made, 1, "exactly one node makes {name:?}: {outcomes:?}");
        assert!(
            outcomes
                .iter()
                .any(|o| *o == Err(ApiError::ChannelExists(name.clone()))),
            "the other is told it exists: {outcomes:?}"
        );
    }
    // The node that lost each race learns of the winner's channel from Redis within
    // moments, and lists each once.
    for server in [&a, &b] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let (_, listed) = server.call::<Vec<Channel>>("channels", &[]).await;
            let listed = listed.unwrap();
            let launches = listed
                .iter()
                .filter(|c| c.name.starts_with("Launch"))
                .count();
            if launches == 5 {
                break;
            }
            assert!(launches < 5, "a channel listed twice: {:?}", names(&listed));
            assert!(
                tokio::time::Instant::now() < deadline,
                "still {:?} after 5 s",
                names(&listed)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn a_client_resumes_on_another_node_exactly_where_it_was() {
    let cluster = Cluster::start();
    let (a, b) = (node(&cluster).await, node(&cluster).await);
    let mut ada = a.client("Ada").await;
    ada.join("General", None).await;
    let mut cy = a.client("Cy").await;
    cy.join("General", None).await;
    for i in 1..=3 {
        ada.say("General", &format!("early-{i}"), "before the switch")
            .await;
    }
    let last_seen = cy.recv_message("early-3").await.seq;
    drop(cy);
    for i in 1..=4 {
        ada.say("General", &format!("late-{i}"), "while away").await;
    }

    // Cy's browser reconnects through the balancer and lands on B.
    let mut cy = b.client("Cy").await;
    let joined = cy.join("General", Some(last_seen)).await;
    assert!(!joined.reset, "a resume within the window is exact");
    assert_eq!(
        joined.client_ids(),
        ["late-1", "late-2", "late-3", "late-4"]
    );
    assert_eq!(
        joined.seqs(),
        (last_seen + 1..=last_seen + 4).collect::<Vec<Seq>>()
    );
}

/// Redis holds no message that exists nowhere else: while it is down, sends are
/// stored in PostgreSQL and acknowledged, and the other node reads them from there.
#[tokio::test]
async fn while_redis_is_down_sends_are_stored_and_reach_the_other_node_from_postgresql() {
    let mut cluster = Cluster::start();
    let (a, b) = (node(&cluster).await, node(&cluster).await);
    let mut ada = a.client("Ada").await;
    ada.join("General", None).await;
    let mut bob = b.client("Bob").await;
    bob.join("General", None).await;
    let before = ada.say("General", "before", "before the outage").await;
    assert_eq!(bob.recv_message("before").await.seq, before);

    cluster.redis.kill();
    let during = ada.say("General", "during", "sent during the outage").await;
    assert_eq!(during, before + 1, "acknowledged: PostgreSQL has it");
    let seen = bob
        .recv_until_within(
            "the message through PostgreSQL",
            Duration::from_secs(15),
            |frame| match frame {
                ServerFrame::Message { message } if message.client_id == "during" => {
                    Some(message.seq)
                }
                _ => None,
            },
        )
        .await;
    assert_eq!(seen, during);
    let from_b = bob.say("General", "from-b", "also during the outage").await;
    assert_eq!(from_b, during + 1);

    cluster.redis.restart();
    let after = ada.say("General", "after", "after the outage").await;
    assert_eq!(after, from_b + 1);
    // Bob saw each once, in order.
    let mut cy = b.client("Cy").await;
    assert_eq!(
        cy.join("General", None).await.client_ids(),
        ["before", "during", "from-b", "after"]
    );
    let seen_by_ada = ada.recv_message("after").await;
    assert_eq!(seen_by_ada.seq, after);
}

/// Reproduced on the Redis-only cluster: with two members in General, five
/// messages sent, then the channel's stream and counter deleted as a lost tail
/// would, the next three sends were numbered 1, 2 and 3 again and the other member
/// received none of them. Numbers now come from PostgreSQL.
#[tokio::test]
async fn when_redis_loses_a_channels_tail_numbering_goes_on_and_the_other_member_sees_it() {
    let cluster = Cluster::start();
    let (a, b) = (node(&cluster).await, node(&cluster).await);
    let mut ada = a.client("Ada").await;
    ada.join("General", None).await;
    let mut bob = b.client("Bob").await;
    bob.join("General", None).await;
    for i in 1..=5 {
        let id = format!("m{i}");
        ada.say("General", &id, "before").await;
        bob.recv_message(&id).await;
    }
    let mut redis = redis::Client::open(cluster.redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let deleted: i64 = redis::cmd("DEL")
        .arg("hearth:log:general")
        .arg("hearth:seq:general")
        .query(&mut redis)
        .unwrap();
    assert_eq!(deleted, 1, "the stream was there to lose");
    for i in 6..=8 {
        let id = format!("m{i}");
        assert_eq!(ada.say("General", &id, "after").await, i);
        assert_eq!(bob.recv_message(&id).await.seq, i);
    }
}

/// Redis restarted empty (its files lost) while both nodes' people send: every
/// acknowledged message ends up shown once, in order, to a member on each node;
/// names and channels are intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_mid_stream_loses_nothing_and_repeats_nothing() {
    const PER_SENDER: usize = 200;
    let mut cluster = Cluster::start();
    let history = [("HEARTH_HISTORY", "1000")];
    let a = node_with(&cluster, &history).await;
    let b = node_with(&cluster, &history).await;
    a.create_channel("Rust").await.1.expect("a new channel");
    let mut watchers = Vec::new();
    for server in [&a, &b] {
        let mut watcher = server.client("Watcher").await;
        watcher.join("General", None).await;
        watchers.push(watcher);
    }
    let progress = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for (n, server) in [&a, &b].into_iter().enumerate() {
        let grant = server.claim(&format!("Sender {n}")).await;
        let ids = (0..PER_SENDER).map(|i| format!("s{n}-{i}")).collect();
        senders.push(tokio::spawn(send_all(
            vec![server.ws_url()],
            grant,
            ids,
            progress.clone(),
        )));
    }
    tokio::time::timeout(Duration::from_secs(20), async {
        while progress.load(Ordering::SeqCst) < PER_SENDER / 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("a quarter of the sends acknowledged within 20 s");
    cluster.redis.kill();
    cluster.redis.forget_everything();
    cluster.redis.restart();

    let mut acks = Acks::new();
    for sender in senders {
        let finished = tokio::time::timeout(Duration::from_secs(30), sender)
            .await
            .expect("every sender finishes")
            .expect("sender task");
        acks.extend(finished);
    }
    let total = 2 * PER_SENDER;
    assert_eq!(acks.len(), total, "every send acknowledged");

    for watcher in &mut watchers {
        let mut shown: Vec<(Seq, String)> = Vec::new();
        watcher
            .recv_until_within("every message shown", Duration::from_secs(20), |frame| {
                if let ServerFrame::Message { message } = frame {
                    shown.push((message.seq, message.client_id.clone()));
                }
                (shown.len() >= total).then_some(())
            })
            .await;
        assert_eq!(
            shown.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
            (1..=total as Seq).collect::<Vec<_>>(),
            "each once, in order"
        );
        for (seq, client_id) in &shown {
            assert_eq!(acks.get(client_id), Some(seq), "{client_id} under its ack");
        }
    }
    for server in [&a, &b] {
        let (_, listed) = server.call::<Vec<Channel>>("channels", &[]).await;
        assert_eq!(names(&listed.unwrap()), ["General", "Rust"]);
        let (_, taken) = server
            .call::<NameGrant>("claim_name", &[("name", "Sender 0"), ("token", "another")])
            .await;
        assert_eq!(taken, Err(ApiError::NameTaken("Sender 0".into())));
    }
}

#[tokio::test]
async fn a_node_stays_ready_while_redis_is_away() {
    let mut cluster = Cluster::start();
    let a = node(&cluster).await;
    let status = |path: &'static str| {
        let request = a.http().get(a.url(path));
        async move { request.send().await.expect("GET").status().as_u16() }
    };
    assert_eq!(
        (status("/healthz").await, status("/readyz").await),
        (200, 200)
    );
    cluster.redis.kill();
    // Sends are stored in PostgreSQL and reach the other nodes from there.
    assert_eq!(status("/readyz").await, 200);
    let mut ada = a.client("Ada").await;
    ada.join("General", None).await;
    ada.say("General", "while-away", "stored all the same")
        .await;
    cluster.redis.restart();
}

#[tokio::test]
async fn presence_and_capacity_count_every_node_and_a_dead_node_drops_out() {
    let cluster = Cluster::start();
    let capacity = [("HEARTH_ROOM_CAPACITY", "2")];
    let a = node_with(&cluster, &capacity).await;
    let mut b = node_with(&cluster, &capacity).await;
    let mut ada = a.client("Ada").await;
    let mut ada_sees = Online::from(&ada.join("General", None).await.online);
    let mut bob = b.client("Bob").await;
    let mut bob_sees = Online::from(&bob.join("General", None).await.online);
    let within = Duration::from_secs(5);
    ada_sees.wait_for(&mut ada, &["Ada", "Bob"], within).await;
    bob_sees.wait_for(&mut bob, &["Ada", "Bob"], within).await;

    // The room holds two people, whichever nodes they are on.
    let mut cy = a.client("Cy").await;
    cy.send(&ClientFrame::Join {
        channel: "General".into(),
        since: None,
    })
    .await;
    let refusal = cy
        .recv_until("the join refused", |frame| match frame {
            ServerFrame::Error { code, .. } => Some(*code),
            ServerFrame::Joined { .. } => panic!("a third person got into a room for two"),
            _ => None,
        })
        .await;
    assert_eq!(refusal, ErrorCode::RoomFull);

    // B dies without a word; its people leave everyone's presence within the TTL.
    b.kill().await;
    ada_sees
        .wait_for(&mut ada, &["Ada"], Duration::from_secs(8))
        .await;
    // Bob's browser reconnects through the balancer to A and is back.
    let mut bob = a.client("Bob").await;
    bob.join("General", None).await;
    ada_sees.wait_for(&mut ada, &["Ada", "Bob"], within).await;
}

/// A node cut off from Redis cannot hear of people leaving other nodes: it stops
/// showing them once they would have expired in Redis, and shows them again when
/// Redis is back.
#[tokio::test]
async fn without_redis_a_node_forgets_the_other_nodes_people_and_relearns_them() {
    let mut cluster = Cluster::start();
    let a = node(&cluster).await;
    let b = node(&cluster).await;
    let mut ada = a.client("Ada").await;
    let mut ada_sees = Online::from(&ada.join("General", None).await.online);
    let mut bob = b.client("Bob").await;
    bob.join("General", None).await;
    let within = Duration::from_secs(5);
    ada_sees.wait_for(&mut ada, &["Ada", "Bob"], within).await;

    cluster.redis.kill();
    ada_sees
        .wait_for(&mut ada, &["Ada"], Duration::from_secs(10))
        .await;
    cluster.redis.restart();
    ada_sees
        .wait_for(&mut ada, &["Ada", "Bob"], Duration::from_secs(10))
        .await;
    bob.keep_reading(Duration::from_millis(10)).await;
}

/// What a sending tab ends with: each client id's acknowledged number.
type Acks = HashMap<String, Seq>;

/// A tab sending `ids` with up to 10 unacknowledged, acks counted in `progress`;
/// when its node dies it reconnects to the next node and sends again whatever was
/// not acknowledged, as the page's outbox does.
async fn send_all(
    urls: Vec<String>,
    grant: NameGrant,
    ids: Vec<String>,
    progress: Arc<AtomicUsize>,
) -> Acks {
    let mut acks = Acks::new();
    let mut node = 0;
    while acks.len() < ids.len() {
        let url = &urls[node.min(urls.len() - 1)];
        let Ok(mut client) = Client::try_connect(url).await else {
            node += 1;
            continue;
        };
        client.name = grant.name.clone();
        let hello = ClientFrame::Hello {
            name: grant.name.clone(),
            token: grant.token.clone(),
            channels_version: None,
        };
        let join = ClientFrame::Join {
            channel: "General".into(),
            since: None,
        };
        if !(client.try_send(&hello).await && client.try_send(&join).await) {
            node += 1;
            continue;
        }
        let mut waiting: Vec<&String> = ids.iter().filter(|id| !acks.contains_key(*id)).collect();
        waiting.reverse();
        let mut outstanding = 0;
        let connection_lost = loop {
            while outstanding < 10 {
                let Some(id) = waiting.pop() else { break };
                let send = ClientFrame::Send {
                    channel: "General".into(),
                    client_id: id.clone(),
                    text: format!("text of {id}"),
                };
                if !client.try_send(&send).await {
                    break;
                }
                outstanding += 1;
            }
            if outstanding == 0 {
                break false;
            }
            match client.next_or_end().await {
                None => break true,
                Some(ServerFrame::Ack { client_id, seq, .. }) => {
                    if acks.insert(client_id, seq).is_none() {
                        progress.fetch_add(1, Ordering::SeqCst);
                    }
                    outstanding -= 1;
                }
                Some(ServerFrame::SendFailed {
                    client_id, code, ..
                }) => {
                    assert!(code.is_retryable(), "{client_id:?} refused: {code:?}");
                    outstanding -= 1;
                }
                Some(ServerFrame::Error { code, message }) => panic!("{code:?}: {message}"),
                Some(_) => {}
            }
        };
        if connection_lost {
            node += 1;
        }
    }
    acks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_node_is_killed_mid_stream_its_clients_finish_on_another_and_nothing_repeats() {
    const SENDERS: usize = 4;
    const PER_SENDER: usize = 150;
    let cluster = Cluster::start();
    let history = [("HEARTH_HISTORY", "1000")];
    let mut a = node_with(&cluster, &history).await;
    let b = node_with(&cluster, &history).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for n in 0..SENDERS {
        let grant = a.claim(&format!("Sender {n}")).await;
        let ids = (0..PER_SENDER).map(|i| format!("s{n}-{i}")).collect();
        senders.push(tokio::spawn(send_all(
            vec![a.ws_url(), b.ws_url()],
            grant,
            ids,
            progress.clone(),
        )));
    }
    let kill_at = SENDERS * PER_SENDER / 3;
    tokio::time::timeout(Duration::from_secs(20), async {
        while progress.load(Ordering::SeqCst) < kill_at {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("a third of the sends acknowledged within 20 s");
    a.kill().await;

    let mut acks = Acks::new();
    for sender in senders {
        let finished = tokio::time::timeout(Duration::from_secs(30), sender)
            .await
            .expect("every sender finishes on node B")
            .expect("sender task");
        acks.extend(finished);
    }
    assert_eq!(acks.len(), SENDERS * PER_SENDER, "every send acknowledged");

    let mut auditor = b.client("Auditor").await;
    let stored = auditor.join("General", None).await.history;
    let total = (SENDERS * PER_SENDER) as Seq;
    assert_eq!(
        stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "numbered without gaps: nothing stored twice"
    );
    for message in &stored {
        assert_eq!(
            acks.get(&message.client_id),
            Some(&message.seq),
            "{:?} stored under the number its ack carried",
            message.client_id
        );
    }
}
