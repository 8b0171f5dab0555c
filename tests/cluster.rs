//! Several Hearth nodes on one Redis, each a real process, driven over HTTP and
//! WebSocket like browsers on either side of a load balancer.

mod common;

use common::{Client, Redis, Server, test_token};
use hearth::protocol::{ApiError, Channel, ClientFrame, ErrorCode, NameGrant, Seq, ServerFrame};
use std::time::Duration;

async fn node(redis: &Redis) -> Server {
    Server::start_with(&[("HEARTH_REDIS_URL", &redis.url())]).await
}

fn names(channels: &[Channel]) -> Vec<&str> {
    channels.iter().map(|c| c.name.as_str()).collect()
}

#[tokio::test]
async fn people_on_two_nodes_share_channels_messages_and_names() {
    let redis = Redis::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
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

    // Messages cross in both directions, numbered once for everyone.
    let first = ada.say("General", "a1", "hello from A").await;
    let seen_on_b = bob.recv_message("a1").await;
    assert_eq!((seen_on_b.seq, seen_on_b.author.as_str()), (first, "Ada"));
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
async fn the_same_channel_created_on_two_nodes_at_once_is_made_once() {
    let redis = Redis::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
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
    let redis = Redis::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
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
        joined
            .history
            .iter()
            .map(|m| m.client_id.as_str())
            .collect::<Vec<_>>(),
        ["late-1", "late-2", "late-3", "late-4"]
    );
    assert_eq!(
        joined.seqs(),
        (last_seen + 1..=last_seen + 4).collect::<Vec<Seq>>()
    );
}

#[tokio::test]
async fn while_redis_is_down_nothing_is_acknowledged_and_afterwards_nothing_is_lost() {
    let mut redis = Redis::start();
    let a = node(&redis).await;
    let mut ada = a.client("Ada").await;
    ada.join("General", None).await;
    let before = ada.say("General", "before", "before the outage").await;

    redis.kill();
    ada.send(&ClientFrame::Send {
        channel: "General".into(),
        client_id: "during".into(),
        text: "sent during the outage".into(),
    })
    .await;
    let refusal = ada
        .recv_until_within(
            "the send refused",
            Duration::from_secs(10),
            |frame| match frame {
                ServerFrame::Ack { client_id, .. } if client_id == "during" => {
                    panic!("a send was acknowledged while Redis was down")
                }
                ServerFrame::SendFailed {
                    client_id, code, ..
                } if client_id == "during" => Some(*code),
                _ => None,
            },
        )
        .await;
    assert_eq!(refusal, ErrorCode::Unavailable);
    assert!(
        refusal.is_retryable(),
        "the page keeps it and sends it again"
    );

    redis.restart();
    // The page retries what was refused; the node reconnects by itself.
    let during = loop {
        ada.send(&ClientFrame::Send {
            channel: "General".into(),
            client_id: "during".into(),
            text: "sent during the outage".into(),
        })
        .await;
        let outcome = ada
            .recv_until("the retried send answered", |frame| match frame {
                ServerFrame::Ack { client_id, seq, .. } if client_id == "during" => {
                    Some(Some(*seq))
                }
                ServerFrame::SendFailed { client_id, .. } if client_id == "during" => Some(None),
                _ => None,
            })
            .await;
        if let Some(seq) = outcome {
            break seq;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(during, before + 1);
    let after = ada.say("General", "after", "after the outage").await;
    assert_eq!(after, during + 1);

    // A newcomer sees each message once, in order, including the one from before
    // the outage (kept by Redis's append-only file across its crash).
    let mut cy = a.client("Cy").await;
    let joined = cy.join("General", None).await;
    assert_eq!(
        joined
            .history
            .iter()
            .map(|m| m.client_id.as_str())
            .collect::<Vec<_>>(),
        ["before", "during", "after"]
    );
    // Hello still works for a name claimed before the outage.
    let grant = NameGrant {
        name: "Ada".into(),
        token: test_token("Ada"),
    };
    let mut again = Client::connect(&a).await;
    again.hello(&grant.name, &grant.token).await;
}

#[tokio::test]
async fn a_node_is_ready_only_while_redis_answers() {
    let mut redis = Redis::start();
    let a = node(&redis).await;
    let status = |path: &'static str| {
        let request = a.http().get(a.url(path));
        async move { request.send().await.expect("GET").status().as_u16() }
    };
    assert_eq!(
        (status("/healthz").await, status("/readyz").await),
        (200, 200)
    );
    redis.kill();
    assert_eq!(
        status("/readyz").await,
        503,
        "a balancer stops sending people here"
    );
    assert_eq!(status("/healthz").await, 200, "the process itself is fine");
    redis.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while status("/readyz").await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ready again by itself once Redis is back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
