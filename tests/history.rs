//! Every message kept: the `history` server function pages through a channel far
//! longer than the window in memory, each message exactly once and in order, both
//! ways, and nothing acknowledged is lost to a kill -9 or a restart.

mod common;

use common::pg_server::Postgres;
use common::{Client, Server};
use hearth::protocol::{ApiError, ClientFrame, HistoryPage, Seq, ServerFrame};
use reqwest::StatusCode;
use std::collections::HashSet;
use std::time::Duration;

const MESSAGES: Seq = 10_000;

/// Sends `count` messages to General in pipelined chunks, waiting for each chunk's
/// acknowledgements; returns the client ids acknowledged, by number.
async fn fill(client: &mut Client, from: Seq, count: Seq) {
    for chunk in (from..from + count).collect::<Vec<_>>().chunks(500) {
        let frames: Vec<ClientFrame> = chunk
            .iter()
            .map(|i| ClientFrame::Send {
                channel: "General".into(),
                client_id: format!("m{i}"),
                text: format!("message {i}"),
            })
            .collect();
        client.send_batch(&frames).await;
        let mut waiting: HashSet<String> = chunk.iter().map(|i| format!("m{i}")).collect();
        client
            .recv_until_within("the chunk's acks", Duration::from_secs(30), |frame| {
                if let ServerFrame::Ack { client_id, .. } = frame {
                    waiting.remove(client_id);
                }
                waiting.is_empty().then_some(())
            })
            .await;
    }
}

async fn page(server: &Server, form: &[(&str, &str)]) -> HistoryPage {
    let (status, page) = server.call::<HistoryPage>("history", form).await;
    assert_eq!(status, StatusCode::OK, "{form:?}");
    page.unwrap_or_else(|e| panic!("history {form:?}: {e}"))
}

/// Every number in `channel`, paged forward from its start 100 at a time.
async fn page_forward(server: &Server, channel: &str) -> Vec<Seq> {
    let mut forward: Vec<Seq> = Vec::new();
    loop {
        let after = forward.last().copied().unwrap_or(0).to_string();
        let current = page(
            server,
            &[("channel", channel), ("after", &after), ("limit", "100")],
        )
        .await;
        forward.extend(current.messages.iter().map(|m| m.seq));
        if !current.more {
            return forward;
        }
    }
}

/// Pages from the newest back to the start, then from the start forward, checking
/// that both meet every message once, in order, with its text.
async fn assert_every_message_pages(server: &Server, last: Seq) {
    let mut back: Vec<Seq> = Vec::new();
    let mut current = page(server, &[("channel", "General"), ("limit", "100")]).await;
    loop {
        for message in &current.messages {
            assert_eq!(message.text, format!("message {}", message.seq));
            assert_eq!(message.channel, "General");
        }
        back.splice(0..0, current.messages.iter().map(|m| m.seq));
        if !current.more {
            break;
        }
        let before = back[0].to_string();
        current = page(
            server,
            &[
                ("channel", "General"),
                ("before", &before),
                ("limit", "100"),
            ],
        )
        .await;
    }
    assert_eq!(back, (1..=last).collect::<Vec<_>>());

    // By key, in lower case: the channel is found all the same.
    assert_eq!(page_forward(server, "general").await, back);
}

#[tokio::test]
async fn ten_thousand_messages_page_both_ways_and_survive_a_kill() {
    pages_survive_a_kill_and_numbering_goes_on(&[]).await;
}

#[tokio::test]
async fn ten_thousand_messages_page_both_ways_and_survive_a_kill_on_postgresql() {
    let url = Postgres::shared().database();
    pages_survive_a_kill_and_numbering_goes_on(&[("HEARTH_DATABASE_URL", &url)]).await;
}

/// 10,000 messages page both ways, before and after a kill -9, on the store `env`
/// names; numbering goes on after them.
async fn pages_survive_a_kill_and_numbering_goes_on(env: &[(&str, &str)]) {
    let mut server = Server::start_restartable(env).await;
    let mut ada = server.client("Ada").await;
    ada.join("General", None).await;
    fill(&mut ada, 1, MESSAGES).await;

    // The window in memory is the newest 100; the page asks the store for the rest.
    assert_every_message_pages(&server, MESSAGES).await;

    // Killed without a chance to flush, then back: every acknowledged message.
    server.kill().await;
    server.restart().await;
    assert_every_message_pages(&server, MESSAGES).await;

    // And numbering goes on after them.
    let mut ada = server.client("Ada").await;
    let joined = ada.join("General", Some(MESSAGES)).await;
    assert!(joined.seqs().is_empty(), "nothing new since");
    assert_eq!(
        ada.say("General", "after", "after the restart").await,
        MESSAGES + 1
    );
}

#[tokio::test]
async fn history_refuses_what_it_cannot_answer_in_words() {
    let server = Server::start().await;
    let (status, refused) = server
        .call::<HistoryPage>("history", &[("channel", "Nowhere")])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(refused, Err(ApiError::NoSuchChannel("Nowhere".into())));

    for form in [
        &[("channel", "General"), ("before", "5"), ("after", "2")][..],
        &[("channel", "General"), ("limit", "0")],
        &[("channel", "General"), ("limit", "101")],
        &[("channel", "General"), ("before", "soon")],
    ] {
        let (status, refused) = server.call::<HistoryPage>("history", form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form:?}");
        assert!(matches!(refused, Err(ApiError::BadRequest(_))), "{form:?}");
    }
    let (status, _) = server
        .call::<HistoryPage>("history", &[("channel", "a<b>")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // An empty channel is one page, with nothing before it.
    let empty = page(&server, &[("channel", "General")]).await;
    assert_eq!(empty, HistoryPage::default());
}

/// The first page's numbers once the server has pruned to its retention: pruning
/// runs beside serving, so this waits for it.
async fn kept_after_pruning(server: &Server, oldest: Seq, last: Seq) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let first = page(
            server,
            &[("channel", "General"), ("after", "0"), ("limit", "1")],
        )
        .await;
        if first.messages.first().map(|m| m.seq) == Some(oldest) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pruned through {} within 20 s; the oldest kept is {:?}",
            oldest - 1,
            first.messages.first().map(|m| m.seq)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        page_forward(server, "General").await,
        (oldest..=last).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn retention_by_count_keeps_each_channels_newest_and_numbering_goes_on() {
    let mut server = Server::start_restartable(&[("HEARTH_RETENTION", "150 messages")]).await;
    let mut ada = server.client("Ada").await;
    ada.join("General", None).await;
    fill(&mut ada, 1, 300).await;
    // Pruned at start: the restart prunes what the last run kept.
    server.kill().await;
    server.restart().await;
    kept_after_pruning(&server, 151, 300).await;
    let mut ada = server.client("Ada").await;
    let joined = ada.join("General", None).await;
    assert_eq!(joined.seqs(), (201..=300).collect::<Vec<_>>());
    assert_eq!(ada.say("General", "next", "after pruning").await, 301);
}

#[tokio::test]
async fn retention_by_days_forgets_old_messages_everywhere_and_numbering_goes_on() {
    let mut server = Server::start_restartable(&[]).await;
    let mut ada = server.client("Ada").await;
    ada.join("General", None).await;
    fill(&mut ada, 1, 300).await;
    server.kill().await;
    // The first 250 were sent forty days ago.
    let forty_days_ms: i64 = 40 * 24 * 3600 * 1000;
    let db = rusqlite::Connection::open(server.data_file()).unwrap();
    let aged = db
        .execute(
            "UPDATE log SET sent_at = sent_at - ?1 WHERE seq <= 250",
            [forty_days_ms],
        )
        .unwrap();
    assert_eq!(aged, 250);
    drop(db);

    server.set_env("HEARTH_RETENTION", "30 days");
    server.restart().await;
    kept_after_pruning(&server, 251, 300).await;
    // The window in memory lets them go too: opening the channel shows the 50 kept.
    let mut ada = server.client("Ada").await;
    let joined = ada.join("General", None).await;
    assert_eq!(joined.seqs(), (251..=300).collect::<Vec<_>>());
    assert_eq!(ada.say("General", "next", "after pruning").await, 301);
}
