//! Every message kept: the `history` server function pages through a channel far
//! longer than the window in memory, each message exactly once and in order, both
//! ways, and nothing acknowledged is lost to a kill -9 or a restart.

mod common;

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

    let mut forward: Vec<Seq> = Vec::new();
    loop {
        let after = forward.last().copied().unwrap_or(0).to_string();
        let current = page(
            server,
            &[("channel", "general"), ("after", &after), ("limit", "100")],
        )
        .await;
        forward.extend(current.messages.iter().map(|m| m.seq));
        if !current.more {
            break;
        }
    }
    assert_eq!(forward, back);
}

#[tokio::test]
async fn ten_thousand_messages_page_both_ways_and_survive_a_kill() {
    let mut server = Server::start_restartable(&[]).await;
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
