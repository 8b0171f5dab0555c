//! A node on PostgreSQL (`HEARTH_DATABASE_URL`) through a PostgreSQL outage: sends
//! are refused as retryable while it is away (the page keeps them and retries),
//! nothing is acknowledged that was not committed, and afterwards every message is
//! there once, numbered without a gap.

mod common;

use common::pg_server::Postgres;
use common::{Client, Server, test_token};
use hearth::protocol::{ClientFrame, ErrorCode, HistoryPage, ServerFrame};
use reqwest::StatusCode;
use std::time::Duration;

fn send(client_id: &str) -> ClientFrame {
    ClientFrame::Send {
        channel: "General".into(),
        client_id: client_id.into(),
        text: format!("text of {client_id}"),
    }
}

#[tokio::test]
async fn while_postgresql_is_down_sends_are_refused_as_retryable_and_land_once_after() {
    let postgres = Postgres::start();
    let url = postgres.database();
    let server = Server::start_with(&[("HEARTH_DATABASE_URL", &url)]).await;
    let mut ada = server.client("Ada").await;
    ada.join("General", None).await;
    let before = ada.say("General", "before", "before the outage").await;

    postgres.kill();
    ada.send(&send("during")).await;
    let refusal = ada
        .recv_until_within(
            "the send refused",
            Duration::from_secs(15),
            |frame| match frame {
                ServerFrame::Ack { client_id, .. } if client_id == "during" => {
                    panic!("a send was acknowledged while PostgreSQL was down")
                }
                ServerFrame::SendFailed {
                    client_id, code, ..
                } if client_id == "during" => Some(*code),
                _ => None,
            },
        )
        .await;
    assert_eq!(refusal, ErrorCode::Unavailable);
    assert!(refusal.is_retryable(), "the page keeps it and sends again");
    // Someone already here still reads the room from memory meanwhile.
    let mut again = Client::connect(&server).await;
    again.hello("Ada", &test_token("Ada")).await;
    assert_eq!(again.join("General", None).await.seqs(), [before]);

    postgres.restart();
    // The page retries what was refused; the store reconnects by itself.
    let during = loop {
        ada.send(&send("during")).await;
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
    // Sent again once more (as a page unsure of its ack would): stored once.
    ada.send(&send("during")).await;
    let repeat = ada
        .recv_until("the repeat acknowledged", |frame| match frame {
            ServerFrame::Ack { client_id, seq, .. } if client_id == "during" => Some(*seq),
            _ => None,
        })
        .await;
    assert_eq!(repeat, during);
    let after = ada.say("General", "after", "after the outage").await;
    assert_eq!(after, during + 1);

    let mut cy = server.client("Cy").await;
    assert_eq!(
        cy.join("General", None).await.client_ids(),
        ["before", "during", "after"]
    );
    let (status, page) = server
        .call::<HistoryPage>("history", &[("channel", "General")])
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<String> = page
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.client_id)
        .collect();
    assert_eq!(ids, ["before", "during", "after"]);
}

#[tokio::test]
async fn a_node_is_ready_only_while_postgresql_answers() {
    let postgres = Postgres::start();
    let url = postgres.database();
    let server = Server::start_with(&[("HEARTH_DATABASE_URL", &url)]).await;
    let ready = || {
        let request = server.http().get(server.url("/readyz"));
        async move { request.send().await.expect("GET").status() }
    };
    assert_eq!(ready().await, StatusCode::OK);
    postgres.kill();
    assert_eq!(
        ready().await,
        StatusCode::SERVICE_UNAVAILABLE,
        "a balancer stops sending people here"
    );
    postgres.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while ready().await != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_database_address_that_is_not_postgresql_is_refused_at_start() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .env("HEARTH_CONFIG", "/dev/null")
        .env("HEARTH_DATABASE_URL", "mysql://127.0.0.1/hearth")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("must be a PostgreSQL address"), "{said}");
}
