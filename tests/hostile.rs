//! Hostile input and failing clients against the real binary. Each attack gets its
//! documented answer (a refusal, an error frame or a close code), the server's memory
//! stays bounded, and two people chatting on the same server meanwhile still get their
//! acknowledgements and see each other's messages promptly. Everything runs on
//! loopback; other 127.x.y.z addresses play other machines.

mod common;

use common::bystanders::{Bystanders, NORMAL};
use common::{Client, Dial, Server, http_client_from, test_token, upgrade, upgrade_with_origin};
use hearth::protocol::{
    ApiError, Channel, ChatMessage, ClientFrame, ErrorCode, MAX_FRAME_BYTES, MESSAGE_MAX_CHARS,
    NameGrant, Seq, ServerFrame,
};
use reqwest::StatusCode;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

const CLOSE_PROTOCOL: u16 = 1002;
const CLOSE_UNSUPPORTED: u16 = 1003;
const CLOSE_INVALID: u16 = 1007;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_RESTART: u16 = 1012;
const CLOSE_TOO_SLOW: u16 = 4008;
/// Messages a channel keeps (the server's default window).
const HISTORY: usize = 100;

const SECOND_MACHINE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const THIRD_MACHINE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const FOURTH_MACHINE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);

const MIB: u64 = 1024 * 1024;

// --- helpers ----------------------------------------------------------------------

/// `count` sends to General with client ids `{prefix}-0`, `{prefix}-1`, ...
fn sends(prefix: &str, count: usize) -> Vec<ClientFrame> {
    (0..count)
        .map(|i| ClientFrame::Send {
            channel: "General".into(),
            client_id: format!("{prefix}-{i}"),
            text: format!("{prefix} number {i}"),
        })
        .collect()
}

fn index_in(client_id: &str, prefix: &str) -> Option<usize> {
    client_id
        .strip_prefix(prefix)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

/// The server's answer to one send.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    Ack(Seq),
    Refused(ErrorCode, String),
}

fn answer(frame: &ServerFrame) -> Option<(String, Answer)> {
    match frame {
        ServerFrame::Ack { client_id, seq, .. } => Some((client_id.clone(), Answer::Ack(*seq))),
        ServerFrame::SendFailed {
            client_id,
            code,
            message,
        } => Some((client_id.clone(), Answer::Refused(*code, message.clone()))),
        _ => None,
    }
}

/// Waits for the answer to each of `frames` (sends), keyed by client id.
async fn answers(client: &mut Client, frames: &[ClientFrame]) -> HashMap<String, Answer> {
    let wanted: HashSet<&str> = frames
        .iter()
        .map(|frame| match frame {
            ClientFrame::Send { client_id, .. } => client_id.as_str(),
            other => panic!("not a send: {other:?}"),
        })
        .collect();
    let mut got = HashMap::new();
    while got.len() < wanted.len() {
        let (id, answer) = client
            .recv_until("the answer to a send", |frame| {
                answer(frame).filter(|(id, _)| wanted.contains(id.as_str()))
            })
            .await;
        got.insert(id, answer);
    }
    got
}

fn is_rate_limited(answer: &Answer) -> bool {
    matches!(answer, Answer::Refused(ErrorCode::RateLimited, _))
}

/// A text message cut into frames of `size` bytes. With `finish` false the last
/// frame is not final either, as from a client that would go on forever.
fn fragments(payload: &[u8], size: usize, finish: bool) -> Vec<Message> {
    let chunks: Vec<&[u8]> = payload.chunks(size).collect();
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let opcode = OpCode::Data(if i == 0 { Data::Text } else { Data::Continue });
            let last = finish && i + 1 == chunks.len();
            Message::Frame(Frame::message(chunk.to_vec(), opcode, last))
        })
        .collect()
}

/// One text frame carrying `payload` as it is, valid UTF-8 or not.
fn raw_text(payload: &[u8], is_final: bool) -> Message {
    Message::Frame(Frame::message(
        payload.to_vec(),
        OpCode::Data(Data::Text),
        is_final,
    ))
}

async fn send_all(client: &mut Client, messages: Vec<Message>) {
    for message in messages {
        client
            .send_ws(message)
            .await
            .unwrap_or_else(|e| panic!("[{}] send a frame: {e}", client.name));
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

// --- 1. cross-site WebSocket hijacking --------------------------------------------

#[tokio::test]
async fn upgrades_from_other_sites_are_refused_and_programs_without_origin_are_not() {
    let server = Server::start_with(&[(
        "HEARTH_ALLOWED_ORIGINS",
        // The trailing slash of an origin copied from the address bar is forgiven.
        "https://chat.example.org/,https://team.example.net",
    )])
    .await;
    // The bystanders connect without an Origin header, as programs do: documented
    // as allowed, since no page can leave it out and a program could forge it anyway.
    let mut people = Bystanders::arrive(&server).await;
    let Ok(_) = upgrade(&server, &Dial::default()).await else {
        panic!("an upgrade without Origin was refused")
    };

    let port = server.addr.port();
    let own = format!("http://{}", server.addr);
    for origin in [
        own.as_str(),
        "https://chat.example.org",
        "https://team.example.net",
    ] {
        assert_eq!(
            upgrade_with_origin(&server, origin).await,
            None,
            "{origin:?} may open a chat connection"
        );
    }

    for origin in [
        "http://evil.example".to_owned(),
        // The site's own host and port as a prefix of someone else's name.
        format!("http://127.0.0.1:{port}.evil.com"),
        format!("http://127.0.0.1:{}", port ^ 1),
        "http://127.0.0.1".to_owned(),
        // Another name for this machine is another origin to a browser.
        format!("http://localhost:{port}"),
        // Sandboxed frames and local files.
        "null".to_owned(),
        "https://chat.example.org.evil.com".to_owned(),
        "http://chat.example.org".to_owned(),
        "https://team.example.net:8443".to_owned(),
    ] {
        match upgrade(&server, &Dial::default().header("origin", &origin)).await {
            Err((403, body)) => assert!(
                body.contains("origin"),
                "the refusal of {origin:?} says why: {body:?}"
            ),
            Err((status, body)) => {
                panic!("{origin:?} was refused with {status} instead of 403: {body:?}")
            }
            Ok(_) => panic!("{origin:?} opened a chat connection"),
        }
    }
    people.still_chat().await;
}

// --- 2. size ------------------------------------------------------------------------

#[tokio::test]
async fn messages_over_16_kib_close_with_1009_whole_or_in_fragments() {
    let server = Server::start().await;
    let mut people = Bystanders::arrive(&server).await;

    let mut eve = server.client("Eve").await;
    eve.join("General", None).await;
    // The largest message, padded with JSON whitespace to exactly the limit, is fine.
    let mut json = serde_json::to_string(&ClientFrame::Send {
        channel: "General".into(),
        client_id: "at-limit".into(),
        text: "🔥".repeat(MESSAGE_MAX_CHARS),
    })
    .expect("client frames serialize");
    json.push_str(&" ".repeat(MAX_FRAME_BYTES - json.len()));
    eve.send_raw(&json).await;
    people.ann.recv_message("at-limit").await;

    // One byte more is too big, whatever it says.
    json.push(' ');
    eve.send_raw(&json).await;
    assert_eq!(eve.close_code().await, Some(CLOSE_TOO_BIG));
    people.still_chat().await;

    // Fragments of a message under the limit are put together and handled.
    let mut pieces = server.client("Eve").await;
    pieces.join("General", None).await;
    let small = serde_json::to_string(&ClientFrame::Send {
        channel: "General".into(),
        client_id: "in-pieces".into(),
        text: "sent in pieces".into(),
    })
    .expect("client frames serialize");
    send_all(&mut pieces, fragments(small.as_bytes(), 10, true)).await;
    people.ben.recv_message("in-pieces").await;

    // Small fragments that add up past the limit, never finished: the server must
    // not wait for the end to refuse it.
    let padding = vec![b' '; MAX_FRAME_BYTES + 4096];
    send_all(&mut pieces, fragments(&padding, 4096, false)).await;
    assert_eq!(pieces.close_code().await, Some(CLOSE_TOO_BIG));
    people.still_chat().await;
}

/// A connection need not say hello to attack, so the frames refused after hello are
/// refused the same way before it.
#[tokio::test]
async fn before_hello_oversized_and_invalid_text_get_the_same_close_codes() {
    let server = Server::start().await;
    let mut people = Bystanders::arrive(&server).await;
    let mut closes = Vec::new();
    for (what, messages, code) in [
        (
            "a message over 16 KiB",
            vec![Message::text(" ".repeat(MAX_FRAME_BYTES + 1))],
            CLOSE_TOO_BIG,
        ),
        (
            "fragments adding up past 16 KiB",
            fragments(&vec![b' '; MAX_FRAME_BYTES + 16], 4096, false),
            CLOSE_TOO_BIG,
        ),
        (
            "text that is not UTF-8",
            vec![raw_text(b"{\"type\":\"hello\xff\"}", true)],
            CLOSE_INVALID,
        ),
    ] {
        let mut stranger = Client::connect(&server).await;
        send_all(&mut stranger, messages).await;
        closes.push((what, stranger.close_code().await, Some(code)));
    }
    let wrong: Vec<_> = closes.iter().filter(|(_, got, want)| got != want).collect();
    assert!(
        wrong.is_empty(),
        "before hello, (what, close code, documented code): {wrong:?}"
    );
    people.still_chat().await;
}

/// One connection that says hello and then sends one of three oversized shapes: a
/// whole frame over the limit, small fragments adding up past it, or a frame header
/// announcing a gigabyte that never comes.
async fn oversized_attempt(server: &Server, grant: &NameGrant, attempt: usize) {
    let mut client = Client::connect(server).await;
    client.hello(&grant.name, &grant.token).await;
    // Writes may fail once the server has hung up; only how it hung up matters.
    match attempt % 3 {
        0 => {
            let _ = client
                .send_ws(Message::text("x".repeat(4 * MAX_FRAME_BYTES)))
                .await;
        }
        1 => {
            for frame in fragments(&vec![b'x'; MAX_FRAME_BYTES + 4096], 2048, false) {
                if client.send_ws(frame).await.is_err() {
                    break;
                }
            }
        }
        _ => {
            // FIN + text, masked, 64-bit length 2^30, a mask key, then a few bytes.
            let mut header = vec![0x81, 0x80 | 127];
            header.extend_from_slice(&(1u64 << 30).to_be_bytes());
            header.extend_from_slice(&[0x12, 0x34, 0x56, 0x78]);
            header.extend_from_slice(&[0; 64]);
            let _ = client.write_raw(&header).await;
        }
    }
    assert_eq!(
        client.close_code().await,
        Some(CLOSE_TOO_BIG),
        "oversized attempt {attempt}"
    );
}

#[tokio::test]
async fn memory_stays_flat_while_oversized_messages_keep_coming() {
    const ATTEMPTS: usize = 200;
    const ALLOWED_GROWTH: u64 = 20 * MIB;
    let server = Server::start().await;
    let mut people = Bystanders::arrive(&server).await;
    let mallory = server.claim("Mallory").await;
    // The first connections grow the allocator's pools and the runtime's threads
    // once; only growth after that would be a leak.
    for attempt in 0..15 {
        oversized_attempt(&server, &mallory, attempt).await;
    }
    let before = server.rss_bytes();
    for attempt in 0..ATTEMPTS {
        oversized_attempt(&server, &mallory, attempt).await;
        if attempt % 50 == 0 {
            people.still_chat().await;
        }
    }
    let after = server.rss_bytes();
    assert!(
        after < before + ALLOWED_GROWTH,
        "resident memory grew from {:.1} MiB to {:.1} MiB over {ATTEMPTS} oversized messages",
        mib(before),
        mib(after)
    );
    people.still_chat().await;
}

// --- 3. malformed input -----------------------------------------------------------

#[tokio::test]
async fn malformed_frames_get_bad_frame_and_the_connection_stays() {
    let server = Server::start().await;
    let mut people = Bystanders::arrive(&server).await;
    let mut mallory = server.client("Mallory").await;
    mallory.join("General", None).await;

    // Far past serde_json's recursion limit: an error, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(6_000), "]".repeat(6_000));
    let garbage = [
        "",
        "{not json",
        "null",
        "[]",
        "42",
        r#""send""#,
        r#"{"type":"dance"}"#,
        r#"{"type":"SEND","channel":"General","client_id":"a","text":"b"}"#,
        r#"{"channel":"General","client_id":"a","text":"b"}"#,
        r#"{"type":"send","channel":"General","client_id":7,"text":"b"}"#,
        r#"{"type":"send","channel":"General","client_id":"a","text":null}"#,
        r#"{"type":"send","channel":["General"],"client_id":"a","text":"b"}"#,
        r#"{"type":"send","channel":"General","client_id":"a","text":"\ud800"}"#,
        r#"{"type":"join","channel":"General","since":"yesterday"}"#,
        r#"{"type":"join","channel":"General","since":-1}"#,
        r#"{"type":"join","channel":"General","since":1.5}"#,
        r#"{"type":"join","channel":"General","since":18446744073709551616}"#,
        r#"{"type":"join","channel":{"$gt":""}}"#,
        // Identity is settled by the first hello; a second cannot change it.
        r#"{"type":"hello","name":"Ann","token":"test-token-ann"}"#,
        deep.as_str(),
    ];
    for (i, text) in garbage.iter().enumerate() {
        mallory.send_raw(text).await;
        let message = mallory
            .recv_until(&format!("BadFrame for garbage #{i}"), |frame| match frame {
                ServerFrame::Error {
                    code: ErrorCode::BadFrame,
                    message,
                } => Some(message.clone()),
                ServerFrame::Error { code, message } => {
                    panic!("garbage #{i} answered {code:?}: {message}")
                }
                other @ (ServerFrame::Ack { .. }
                | ServerFrame::SendFailed { .. }
                | ServerFrame::Joined { .. }) => panic!("garbage #{i} answered {other:?}"),
                _ => None,
            })
            .await;
        assert!(
            !message.is_empty(),
            "garbage #{i}: the error explains itself"
        );
    }
    // Still connected, still Mallory, still in the room.
    let seq = mallory.say("General", "after-garbage", "still me").await;
    let seen = people.ann.recv_message("after-garbage").await;
    assert_eq!((seen.seq, seen.author.as_str()), (seq, "Mallory"));
    people.still_chat().await;

    // Below JSON: broken text, binary, broken framing. Each closes the connection
    // that did it, with the code that says why.
    for (what, messages, code) in [
        (
            "text that is not UTF-8",
            vec![raw_text(b"{\"type\":\"leave\"}\xff", true)],
            CLOSE_INVALID,
        ),
        (
            "a character split over fragments that does not continue",
            vec![
                raw_text(b"{\"type\":\"leave\",\"x\":\"\xc3", false),
                Message::Frame(Frame::message(
                    b"(\"}".to_vec(),
                    OpCode::Data(Data::Continue),
                    true,
                )),
            ],
            CLOSE_INVALID,
        ),
        (
            "a binary frame",
            vec![Message::binary(br#"{"type":"leave"}"#.to_vec())],
            CLOSE_UNSUPPORTED,
        ),
        (
            "a continuation with nothing to continue",
            vec![Message::Frame(Frame::message(
                b"{}".to_vec(),
                OpCode::Data(Data::Continue),
                true,
            ))],
            CLOSE_PROTOCOL,
        ),
    ] {
        let mut tab = server.client("Mallory").await;
        send_all(&mut tab, messages).await;
        assert_eq!(tab.close_code().await, Some(code), "{what}");
        people.still_chat().await;
    }
    // The first tab was not affected by the second's closes either.
    mallory.say("General", "last", "bye").await;
}

// --- 4. flooding ----------------------------------------------------------------------

const RATE_LIMITED: &[(&str, &str)] = &[("HEARTH_SEND_RATE", "5"), ("HEARTH_SEND_BURST", "5")];
const BURST: usize = 5;
/// Refusals in a row that cut a connection off: twice the burst, at least ten.
const STRIKES: usize = 2 * if BURST > 5 { BURST } else { 5 };

#[tokio::test]
async fn a_fast_sender_is_told_to_slow_down_and_may_go_on_after_a_pause() {
    let server = Server::start_with(RATE_LIMITED).await;
    let mut people = Bystanders::arrive(&server).await;
    let mut tess = server.client("Tess").await;
    tess.join("General", None).await;

    let burst = sends("tess", BURST + 1);
    tess.send_batch(&burst).await;
    let answered = answers(&mut tess, &burst).await;
    for i in 0..BURST {
        assert!(
            matches!(answered[&format!("tess-{i}")], Answer::Ack(_)),
            "send {i} of the burst: {:?}",
            answered[&format!("tess-{i}")]
        );
    }
    match &answered[&format!("tess-{BURST}")] {
        Answer::Refused(ErrorCode::RateLimited, message) => assert!(
            message.to_lowercase().contains("slow down"),
            "the refusal says what to do: {message:?}"
        ),
        other => panic!("the send past the burst was answered {other:?}"),
    }
    assert!(ErrorCode::RateLimited.is_retryable());
    people.still_chat().await;

    // At 5 per second the bucket holds a few again after a second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = sends("tess-again", 2);
    tess.send_batch(&again).await;
    let answered = answers(&mut tess, &again).await;
    assert!(
        answered.values().all(|a| matches!(a, Answer::Ack(_))),
        "{answered:?}"
    );
    people.still_chat().await;
}

#[tokio::test]
async fn a_flooder_that_ignores_refusals_is_cut_off_and_others_are_unaffected() {
    const FLOOD: usize = 60;
    let server = Server::start_with(RATE_LIMITED).await;
    let mut people = Bystanders::arrive(&server).await;
    let mut flo = server.client("Flo").await;
    flo.join("General", None).await;

    let flood = sends("flo", FLOOD);
    let flooding = async {
        flo.send_batch(&flood).await;
        flo.close_code().await
    };
    let (closed_with, ()) = tokio::join!(flooding, people.still_chat());
    assert_eq!(
        closed_with,
        Some(CLOSE_POLICY),
        "a flooder is closed for policy"
    );

    let mut acked = Vec::new();
    let mut refused = Vec::new();
    for frame in flo.take_backlog() {
        let Some((id, answer)) = answer(&frame) else {
            continue;
        };
        let i = index_in(&id, "flo").expect("one of the flood's ids");
        match answer {
            Answer::Ack(_) => acked.push(i),
            refusal if is_rate_limited(&refusal) => refused.push(i),
            other => panic!("flood send {i} answered {other:?}"),
        }
    }
    refused.sort_unstable();
    // The send after the last refusal is the one that used up the last strike.
    let cut_at = refused
        .last()
        .expect("the flooder was refused before the cut")
        + 1;
    assert!(
        (cut_at + 1 - STRIKES..cut_at).all(|i| refused.contains(&i)),
        "cut off after {} refusals in a row (the send after them is the last strike); \
         refused {refused:?}",
        STRIKES - 1
    );
    // Whatever got through before the cut is stored and delivered, acknowledged or
    // not (the cut may come before its acknowledgement); nothing after it is.
    let got_through: Vec<usize> = (0..cut_at).filter(|i| !refused.contains(i)).collect();
    assert!(
        got_through.starts_with(&(0..BURST).collect::<Vec<_>>()),
        "the first {BURST} sends are within the burst: {got_through:?}"
    );
    assert!(
        acked.iter().all(|i| got_through.contains(i)),
        "acked {acked:?}, got through {got_through:?}"
    );
    people.still_chat().await;
    let delivered: Vec<usize> = people
        .ben
        .take_backlog()
        .iter()
        .filter_map(|frame| match frame {
            ServerFrame::Message { message } if message.author == "Flo" => {
                index_in(&message.client_id, "flo")
            }
            _ => None,
        })
        .collect();
    assert_eq!(delivered, got_through, "what reached the room");
}

#[tokio::test]
async fn tabs_of_one_person_share_one_send_budget() {
    const PER_TAB: usize = 4;
    let server = Server::start_with(RATE_LIMITED).await;
    let mut people = Bystanders::arrive(&server).await;
    let mut tab1 = server.client("Cy").await;
    tab1.join("General", None).await;
    let mut tab2 = server.client("Cy").await;
    tab2.join("General", None).await;

    let (first, second) = (sends("cy1", PER_TAB), sends("cy2", PER_TAB));
    tokio::join!(tab1.send_batch(&first), tab2.send_batch(&second));
    let (one, two) = tokio::join!(answers(&mut tab1, &first), answers(&mut tab2, &second));
    let all: Vec<&Answer> = one.values().chain(two.values()).collect();
    let acked = all.iter().filter(|a| matches!(a, Answer::Ack(_))).count();
    assert_eq!(
        acked, BURST,
        "two tabs together get one burst: {one:?} {two:?}"
    );
    assert!(
        all.iter()
            .all(|a| matches!(a, Answer::Ack(_)) || is_rate_limited(a)),
        "{all:?}"
    );
    // Someone else's budget is their own.
    people.still_chat().await;
}

#[tokio::test]
async fn name_claims_and_releases_are_limited_per_address() {
    let server = Server::start_with(&[("HEARTH_CLAIMS_PER_MINUTE", "3")]).await;
    // Ann and Ben claiming their names use two of this address's three.
    let mut people = Bystanders::arrive(&server).await;
    // Creating a channel is limited apart (see the channel tests).
    let (status, created) = server
        .call::<Channel>(
            "create_channel",
            &[
                ("name", "Lobby"),
                ("as_name", "Ann"),
                ("token", &test_token("Ann")),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created:?}");
    let claim = |name: &'static str| {
        let server = &server;
        async move {
            server
                .call::<NameGrant>(
                    "claim_name",
                    &[("name", name), ("token", &test_token(name))],
                )
                .await
                .1
        }
    };
    assert!(claim("Cy").await.is_ok(), "the third claim in a minute");
    assert_eq!(
        claim("Dee").await,
        Err(ApiError::TooFast),
        "the fourth claim in a minute"
    );
    let (_, released) = server
        .call::<()>(
            "release_name",
            &[("name", "Cy"), ("token", &test_token("Cy"))],
        )
        .await;
    assert_eq!(released, Err(ApiError::TooFast), "releases count too");

    // Another machine has its own allowance.
    let (status, claimed) = server
        .call_via::<NameGrant>(
            &http_client_from(SECOND_MACHINE),
            "claim_name",
            &[("name", "Cy"), ("token", &test_token("Cy"))],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{claimed:?}");
    // People who hold their names chat on.
    people.still_chat().await;
}

// --- 5. too many connections, slow headers ----------------------------------------

/// Accepted within a second, as soon as the server has let go of a closed
/// connection's place.
async fn accepted_soon(server: &Server, dial: &Dial) -> Client {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match upgrade(server, dial).await {
            Ok((client, _)) => return client,
            Err((status, body)) if Instant::now() >= deadline => {
                panic!("still refused with {status}: {body:?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test]
async fn connections_are_capped_per_address_and_other_addresses_still_get_in() {
    let server = Server::start_with(&[("HEARTH_MAX_CONNS_PER_IP", "3")]).await;
    let mut people =
        Bystanders::arrive_dialed(&server, &Dial::default(), &Dial::from(SECOND_MACHINE)).await;
    // With Ann's, 127.0.0.1 holds three.
    let _tab2 = Client::connect(&server).await;
    let tab3 = Client::connect(&server).await;
    match upgrade(&server, &Dial::default()).await {
        Err((429, body)) => assert!(
            body.to_lowercase().contains("too many"),
            "the refusal says why: {body:?}"
        ),
        Err((status, body)) => panic!("refused with {status}, not 429: {body:?}"),
        Ok(_) => panic!("a fourth connection from one address got in"),
    }
    let Ok((_second_from_elsewhere, _)) = upgrade(&server, &Dial::from(SECOND_MACHINE)).await
    else {
        panic!("another address was refused because of 127.0.0.1's connections")
    };
    people.still_chat().await;

    // A closed tab gives its place back.
    tab3.close().await;
    let _tab4 = accepted_soon(&server, &Dial::default()).await;
    people.still_chat().await;
}

/// Behind a proxy every connection comes from the proxy's address: with the proxy
/// trusted, each client is counted by the address it forwards; from anyone else,
/// a forwarded address is not believed.
#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_address_has_its_own_cap() {
    let server = Server::start_with(&[
        ("HEARTH_MAX_CONNS_PER_IP", "1"),
        ("HEARTH_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let via_proxy = |client: &str| Dial::default().header("x-forwarded-for", client);
    let Ok((_first, _)) = upgrade(&server, &via_proxy("203.0.113.1")).await else {
        panic!("the first client through the proxy was refused");
    };
    let Ok((_second, _)) = upgrade(&server, &via_proxy("203.0.113.2")).await else {
        panic!("a second client through the proxy was refused: it has its own cap");
    };
    match upgrade(&server, &via_proxy("203.0.113.1")).await {
        Err((429, _)) => {}
        other => panic!(
            "a second tab of 203.0.113.1 past its cap of 1: {:?}",
            other.err()
        ),
    }
    // Not the proxy: its X-Forwarded-For is its own word, and it is counted as itself.
    let forging = |client: &str| Dial::from(SECOND_MACHINE).header("x-forwarded-for", client);
    let Ok((_third, _)) = upgrade(&server, &forging("203.0.113.3")).await else {
        panic!("a direct client was refused");
    };
    match upgrade(&server, &forging("203.0.113.4")).await {
        Err((429, _)) => {}
        other => panic!(
            "a forged X-Forwarded-For got past the cap: {:?}",
            other.err()
        ),
    }
}

#[tokio::test]
async fn connections_are_capped_in_total() {
    let server = Server::start_with(&[("HEARTH_MAX_CONNS", "3")]).await;
    let mut people =
        Bystanders::arrive_dialed(&server, &Dial::default(), &Dial::from(SECOND_MACHINE)).await;
    let Ok((_third, _)) = upgrade(&server, &Dial::from(THIRD_MACHINE)).await else {
        panic!("the third connection was refused")
    };
    for dial in [Dial::default(), Dial::from(FOURTH_MACHINE)] {
        match upgrade(&server, &dial).await {
            Err((503, body)) => assert!(
                body.to_lowercase().contains("full"),
                "the refusal says why: {body:?}"
            ),
            Err((status, body)) => panic!("refused with {status}, not 503: {body:?}"),
            Ok(_) => panic!("a fourth connection got into a server for three"),
        }
    }
    people.still_chat().await;
}

/// Writes `drip` one byte per second while reading, and returns how long after
/// `since` the server hung up, or `None` if it had not within `limit`.
async fn hung_up_after(
    mut stream: TcpStream,
    drip: &[u8],
    since: Instant,
    limit: Duration,
) -> Option<Duration> {
    let mut drip = drip.iter();
    let mut buf = [0u8; 1024];
    timeout(limit, async {
        loop {
            match timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return since.elapsed(),
                // A response (such as 408) before the close.
                Ok(Ok(_)) => {}
                Err(_) => {
                    if let Some(&byte) = drip.next()
                        && stream.write_all(&[byte]).await.is_err()
                    {
                        return since.elapsed();
                    }
                }
            }
        }
    })
    .await
    .ok()
}

const UPGRADE_HEADERS: &[u8] = b"Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    User-Agent: one byte at a time, forever and ever and ever and ever and ever\r\n\r\n";

#[tokio::test]
async fn a_client_dripping_its_headers_is_dropped_after_the_header_timeout() {
    let server = Server::start_with(&[("HEARTH_HEADER_TIMEOUT_SECS", "2")]).await;
    let mut people = Bystanders::arrive(&server).await;
    let loris = async {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        let since = Instant::now();
        stream
            .write_all(b"GET /ws HTTP/1.1\r\n")
            .await
            .expect("write the request line");
        hung_up_after(stream, UPGRADE_HEADERS, since, Duration::from_secs(10))
            .await
            .expect("still connected 10 s later")
    };
    let chatting = async {
        for _ in 0..3 {
            people.still_chat().await;
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    };
    let (dropped_after, ()) = tokio::join!(loris, chatting);
    assert!(
        (Duration::from_millis(1_500)..=Duration::from_secs(5)).contains(&dropped_after),
        "dropped {dropped_after:?} after connecting; the header timeout is 2 s"
    );
    people.still_chat().await;
}

/// Slow-loris before the request line: a connection that never sends a byte, and
/// one that drips the HTTP/2 preface. Each holds one of the server's places for
/// plain HTTP connections until it is dropped, so they must be dropped in time too.
#[tokio::test]
async fn connections_that_never_send_a_request_line_are_dropped_after_the_header_timeout() {
    const LIMIT: Duration = Duration::from_secs(8);
    let server = Server::start_with(&[("HEARTH_HEADER_TIMEOUT_SECS", "2")]).await;
    let mut people = Bystanders::arrive(&server).await;
    let loris = |drip: &'static [u8]| {
        let addr = server.addr;
        async move {
            let stream = TcpStream::connect(addr).await.expect("connect");
            hung_up_after(stream, drip, Instant::now(), LIMIT).await
        }
    };
    let (silent, preface, ()) = tokio::join!(
        loris(b""),
        loris(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        people.still_chat()
    );
    assert!(
        [silent, preface]
            .iter()
            .all(|dropped| dropped.is_some_and(|after| after <= Duration::from_secs(5))),
        "the header timeout is 2 s; dropped after: silent {silent:?}, \
         dripping the HTTP/2 preface {preface:?} (None: still connected after {LIMIT:?})"
    );
    people.still_chat().await;
}

/// The hello has the header timeout too, counted from the upgrade: pings do not
/// extend it, or a program pinging now and then would hold a place forever.
#[tokio::test]
async fn a_socket_that_pings_but_never_says_hello_is_closed_after_the_header_timeout() {
    let server = Server::start_with(&[("HEARTH_HEADER_TIMEOUT_SECS", "2")]).await;
    let mut people = Bystanders::arrive(&server).await;
    let mut lurker = Client::connect(&server).await;
    let since = Instant::now();
    let closed = loop {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "still open 10 s after upgrading without a hello"
        );
        lurker
            .send_ws(Message::Ping(b"still here".to_vec().into()))
            .await
            .expect("ping");
        let listening = lurker.close_code_within(Duration::from_secs(60));
        if let Ok(code) = timeout(Duration::from_millis(400), listening).await {
            break code;
        }
    };
    let after = since.elapsed();
    assert_eq!(closed, Some(1008), "closed with a policy violation");
    assert!(
        (Duration::from_millis(1_500)..=Duration::from_secs(5)).contains(&after),
        "closed {after:?} after upgrading; the header timeout is 2 s"
    );
    people.still_chat().await;
}

// --- 6. slow consumer -------------------------------------------------------------

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_the_room_goes_on() {
    const FLOOD: usize = 5_000;
    const IN_FLIGHT: usize = 64;
    const ALLOWED_GROWTH: u64 = 64 * MIB;
    // Memory keeps the test about fan-out, not fsync speed.
    let server = Server::start_with(&[("HEARTH_STORE", "memory")]).await;
    let mut rae = server.client("Rae").await;
    rae.join("General", None).await;
    let mut flo = server.client("Flo").await;
    flo.join("General", None).await;
    // A small receive buffer makes the server's writes block after kilobytes rather
    // than the megabytes loopback would otherwise absorb.
    let slow = Dial {
        recv_buffer: Some(4096),
        ..Dial::default()
    };
    let mut sid = server.client_dialed("Sid", &slow).await;
    sid.join("General", None).await;
    // A second reader that stops: while both wait for room on their sockets, the
    // server (two worker threads here) must go on serving everyone else.
    let mut sue = server.client_dialed("Sue", &slow).await;
    sue.join("General", None).await;
    // From here on Sid's and Sue's sockets are not read until the flood is over.
    // Arrivals close together may come in one presence update.
    let mut arrived: Vec<String> = Vec::new();
    while !["Flo", "Sid", "Sue"]
        .iter()
        .all(|name| arrived.iter().any(|a| a == name))
    {
        let joined = rae
            .recv_until("Presence joined Flo, Sid and Sue", |frame| match frame {
                ServerFrame::Presence { joined, .. } => Some(joined.clone()),
                _ => None,
            })
            .await;
        arrived.extend(joined);
    }
    let before = server.rss_bytes();

    // 5,000 of these make 8 MB, twice what Linux lets a socket's send buffer grow
    // to by default (tcp_wmem: 4 MiB), so the server must block on Sid mid-flood.
    let text = "x".repeat(1_600);
    let flooding = async {
        let mut next = 0;
        while next < FLOOD {
            let count = IN_FLIGHT.min(FLOOD - next);
            let batch: Vec<ClientFrame> = (next..next + count)
                .map(|i| ClientFrame::Send {
                    channel: "General".into(),
                    client_id: format!("flo-{i}"),
                    text: format!("{i} {text}"),
                })
                .collect();
            flo.send_batch(&batch).await;
            let mut acked = 0;
            while acked < count {
                // Flo's own copies of its messages are dropped as they come.
                let ack = flo
                    .recv_until("Flo's acks", |frame| match frame {
                        ServerFrame::Ack { .. } => Some(true),
                        ServerFrame::Message { .. } => Some(false),
                        ServerFrame::SendFailed {
                            client_id,
                            code,
                            message,
                        } => panic!("flood send {client_id} refused: {code:?}: {message}"),
                        _ => None,
                    })
                    .await;
                acked += usize::from(ack);
            }
            next += count;
        }
    };
    let reading = async {
        let mut last_seq: Seq = 0;
        let mut flood_seen = 0;
        let mut sid_left_after = None;
        let mut sue_left = false;
        let mut own_sent_at = None;
        let mut own_round_trip = None;
        while flood_seen < FLOOD || own_round_trip.is_none() {
            match rae.recv().await {
                ServerFrame::Message { message } => {
                    assert_eq!(message.seq, last_seq + 1, "Rae sees every message in order");
                    last_seq = message.seq;
                    if message.author == "Flo" {
                        flood_seen += 1;
                    } else if message.client_id == "rae-mid" {
                        let sent_at: Instant = own_sent_at.expect("sent before seen");
                        own_round_trip = Some(sent_at.elapsed());
                    }
                }
                ServerFrame::Presence { left, .. } if !left.is_empty() => {
                    for name in &left {
                        match name.as_str() {
                            "Sid" => sid_left_after = Some(flood_seen),
                            "Sue" => sue_left = true,
                            _ => panic!("{left:?} were cut off"),
                        }
                    }
                }
                _ => {}
            }
            if flood_seen == FLOOD / 2 && own_sent_at.is_none() {
                own_sent_at = Some(Instant::now());
                rae.send(&ClientFrame::Send {
                    channel: "General".into(),
                    client_id: "rae-mid".into(),
                    text: "anyone else here?".into(),
                })
                .await;
            }
        }
        (last_seq, sid_left_after, sue_left, own_round_trip)
    };
    let ((), (last_seq, sid_left_after, sue_left, own_round_trip)) =
        tokio::join!(flooding, reading);
    assert!(sue_left, "Sue was cut off during the flood too");
    drop(sue);
    assert_eq!(
        last_seq,
        FLOOD as Seq + 1,
        "the flood and Rae's own message"
    );
    let own_round_trip = own_round_trip.expect("Rae saw her own message");
    assert!(
        own_round_trip < NORMAL,
        "Rae's message took {own_round_trip:?} during the flood"
    );
    let sid_left_after = sid_left_after.expect("the slow reader was cut off during the flood");
    assert!(
        sid_left_after < FLOOD,
        "Sid was cut off before the flood ended"
    );
    let after = server.rss_bytes();
    assert!(
        after < before + ALLOWED_GROWTH,
        "resident memory grew from {:.1} MiB to {:.1} MiB while {FLOOD} messages piled up",
        mib(before),
        mib(after)
    );

    // Sid reads again and finds everything up to the cut, then the end: no message
    // was skipped silently, so a reconnect resumes after the last one shown.
    let code = sid.close_code_within(Duration::from_secs(30)).await;
    // 4008 when the reader comes back while the server is still trying to write to
    // it; a reader that stays stuck for the whole write timeout gets no close frame.
    assert!(
        matches!(code, Some(CLOSE_TOO_SLOW) | None),
        "Sid closed with {code:?}"
    );
    let seen: Vec<Seq> = sid
        .take_backlog()
        .iter()
        .filter_map(|frame| match frame {
            ServerFrame::Message { message } => Some(message.seq),
            _ => None,
        })
        .collect();
    assert!(seen.len() < FLOOD, "Sid got {} messages", seen.len());
    assert_eq!(
        seen,
        (1..=seen.len() as Seq).collect::<Vec<_>>(),
        "what reached Sid is a prefix without gaps"
    );

    let seq = rae.say("General", "after", "the flood is over").await;
    assert_eq!(seq, last_seq + 1);
    let mut cy = server.client("Cy").await;
    assert_eq!(cy.join("General", None).await.online, ["Cy", "Flo", "Rae"]);
}

// --- 8. presence under failure --------------------------------------------------------

/// Answers are queued for the client that asked, so one that asks without reading
/// could make the server hold any number of them: the server stops reading its
/// requests while answers wait, and answers every one once it reads again. Joins
/// are limited per connection, so the asking is spread over tabs, each within its
/// limit.
#[tokio::test]
async fn a_client_that_asks_without_reading_the_answers_cannot_pile_them_up() {
    const TABS: usize = 15;
    const ASKS_PER_TAB: usize = 20;
    const ALLOWED_GROWTH: u64 = 32 * MIB;
    let server = Server::start_with(&[("HEARTH_STORE", "memory")]).await;
    let mut people = Bystanders::arrive(&server).await;
    let mut flo = server.client("Flo").await;
    flo.join("General", None).await;
    // A full window of long messages, so each join is answered with about 200 KB.
    let text = "x".repeat(1_900);
    let posts: Vec<ClientFrame> = (0..HISTORY)
        .map(|i| ClientFrame::Send {
            channel: "General".into(),
            client_id: format!("flo-{i}"),
            text: format!("{i} {text}"),
        })
        .collect();
    flo.send_batch(&posts).await;
    for _ in 0..HISTORY {
        flo.recv_until("Flo's acks", |frame| {
            matches!(frame, ServerFrame::Ack { .. }).then_some(())
        })
        .await;
    }
    let slow = Dial {
        recv_buffer: Some(4096),
        ..Dial::default()
    };
    let mut tabs = Vec::with_capacity(TABS);
    for _ in 0..TABS {
        tabs.push(server.client_dialed("Mallory", &slow).await);
    }
    let before = server.rss_bytes();

    let asks = vec![
        ClientFrame::Join {
            channel: "General".into(),
            since: None,
        };
        ASKS_PER_TAB
    ];
    for tab in &mut tabs {
        tab.send_batch(&asks).await;
    }
    // Time enough to answer them all, were the server to go on reading.
    people.still_chat().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.rss_bytes();
    assert!(
        after < before + ALLOWED_GROWTH,
        "resident memory grew from {:.1} MiB to {:.1} MiB while {} unread answers \
         of 200 KB each were due",
        mib(before),
        mib(after),
        TABS * ASKS_PER_TAB
    );

    for tab in &mut tabs {
        for ask in 0..ASKS_PER_TAB {
            let history = tab
                .recv_until_within("the answer to a join", Duration::from_secs(10), |frame| {
                    match frame {
                        ServerFrame::Joined { history, .. } => Some(history.len()),
                        _ => None,
                    }
                })
                .await;
            assert_eq!(history, HISTORY, "answer {ask} carries the whole window");
        }
    }
    people.still_chat().await;
}

/// A join is answered with a window of history, copied while the hub waits, so a
/// tab may switch rooms as fast as a person clicks, but not in a loop.
#[tokio::test]
async fn joins_in_a_loop_are_refused_and_then_cut_off() {
    let server = Server::start_with(&[("HEARTH_SEND_BURST", "5")]).await;
    let mut people = Bystanders::arrive(&server).await;
    let mut looper = server.client("Lou").await;
    let asks = vec![
        ClientFrame::Join {
            channel: "General".into(),
            since: None,
        };
        20
    ];
    looper.send_batch(&asks).await;
    for _ in 0..20 {
        looper
            .recv_until("a join within the limit", |frame| match frame {
                ServerFrame::Joined { .. } => Some(()),
                _ => None,
            })
            .await;
    }
    looper.send_batch(&asks[..1]).await;
    // The 21st join at once is refused, not answered.
    let refused = looper.refusal(ErrorCode::RateLimited).await;
    assert_eq!(
        refused,
        "You are switching rooms too fast. Please wait a moment."
    );
    // A person waits and clicks again: five joins a second come back.
    tokio::time::sleep(Duration::from_millis(400)).await;
    looper.send_batch(&asks[..1]).await;
    looper
        .recv_until("a join after a pause", |frame| match frame {
            ServerFrame::Joined { .. } => Some(()),
            ServerFrame::Error { code, .. } => panic!("refused after a pause: {code:?}"),
            _ => None,
        })
        .await;
    // A loop that ignores the refusals is cut off; everyone else chats on.
    looper.send_batch(&vec![asks[0].clone(); 200]).await;
    assert_eq!(looper.close_code().await, Some(CLOSE_POLICY));
    people.still_chat().await;
}

#[tokio::test]
async fn people_whose_connection_dies_leave_the_online_list() {
    // By default pings go out every 15 s and 40 s of silence closes a connection, so
    // a client that vanishes without a trace (network cut, frozen machine) leaves
    // within 45 s: it answered a ping before vanishing, and the first check after 40
    // silent seconds comes at most one interval later. Scaled down here to 1 s and
    // 3 s, which bounds it at 4 s.
    let server = Server::start_with(&[
        ("HEARTH_PING_INTERVAL_SECS", "1"),
        ("HEARTH_IDLE_TIMEOUT_SECS", "3"),
    ])
    .await;
    let mut people = Bystanders::arrive(&server).await;
    let arrive = |name: &'static str| {
        let server = &server;
        async move {
            let mut client = server.client(name).await;
            client.join("General", None).await;
            client
        }
    };

    // A killed process: its kernel closes the socket (FIN), the server reads EOF.
    let eve = arrive("Eve").await;
    people.see_arrive("Eve").await;
    drop(eve);
    let took = people.see_leave("Eve", Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    people.still_chat().await;

    // A connection reset (RST), as from a crashed NAT box or a killed proxy.
    let rex = arrive("Rex").await;
    people.see_arrive("Rex").await;
    rex.tcp().set_zero_linger().expect("SO_LINGER 0");
    drop(rex);
    let took = people.see_leave("Rex", Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    people.still_chat().await;

    // Vanished: no FIN, no RST, no pongs; the socket is simply never touched again.
    let vic = arrive("Vic").await;
    people.see_arrive("Vic").await;
    let took = people.see_leave("Vic", Duration::from_secs(8)).await;
    assert!(
        (Duration::from_millis(2_500)..=Duration::from_secs(6)).contains(&took),
        "Vic left the list {took:?} after vanishing; the bound is 4 s"
    );
    drop(vic);
    people.still_chat().await;
    let mut cy = server.client("Cy").await;
    assert_eq!(cy.join("General", None).await.online, ["Ann", "Ben", "Cy"]);
}

// --- 9. permessage-deflate ----------------------------------------------------------

#[tokio::test]
async fn permessage_deflate_is_never_negotiated() {
    let server = Server::start().await;
    let mut people = Bystanders::arrive(&server).await;
    let offer = Dial::default().header(
        "sec-websocket-extensions",
        "permessage-deflate; client_max_window_bits",
    );
    let Ok((mut zip, response)) = upgrade(&server, &offer).await else {
        panic!("an upgrade offering permessage-deflate was refused")
    };
    assert_eq!(response.status().as_u16(), 101);
    assert_eq!(
        response.headers().get("sec-websocket-extensions"),
        None,
        "the server accepted an extension: {:?}",
        response.headers()
    );

    // Plain frames work on it.
    let grant = server.claim("Zip").await;
    zip.hello(&grant.name, &grant.token).await;
    zip.join("General", None).await;
    let seq = zip.say("General", "plain", "uncompressed").await;
    assert_eq!(people.ben.recv_message("plain").await.seq, seq);

    // A frame marked compressed anyway is a protocol error, never inflated. The
    // payload is RFC 7692's compressed "Hello".
    let mut compressed = Frame::message(
        vec![0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
        OpCode::Data(Data::Text),
        true,
    );
    compressed.header_mut().rsv1 = true;
    zip.send_ws(Message::Frame(compressed))
        .await
        .expect("send a compressed frame");
    assert_eq!(zip.close_code().await, Some(CLOSE_PROTOCOL));
    people.still_chat().await;
}

// --- 10. graceful shutdown ----------------------------------------------------------

#[tokio::test]
async fn sigterm_tells_everyone_to_reconnect_and_loses_nothing_acknowledged() {
    // An outbox flushed on reconnect. Many more at once would be cut off as "too
    // slow": each send queues two frames for its sender (its copy and its ack).
    const PIPELINED: usize = 100;
    let mut server = Server::start_restartable(&[("HEARTH_HISTORY", "1000")]).await;
    let mut people = Bystanders::arrive(&server).await;
    // Connected but in no room.
    let mut ida = server.client("Ida").await;
    let mut pat = server.client("Pat").await;
    pat.join("General", None).await;

    // Acknowledged well before the signal.
    let early = sends("early", PIPELINED);
    pat.send_batch(&early).await;
    let mut acked: HashMap<String, Seq> = answers(&mut pat, &early)
        .await
        .into_iter()
        .map(|(id, answer)| match answer {
            Answer::Ack(seq) => (id, seq),
            other => panic!("{id} answered {other:?}"),
        })
        .collect();
    // Still pipelining while the signal is on its way: some of these may be
    // acknowledged before the server stops, the rest refused or unanswered.
    let late = async {
        for batch in 0..PIPELINED / 10 {
            if !pat
                .try_send_batch(&sends(&format!("late{batch}"), 10))
                .await
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let signal = async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        server.signal_terminate().await;
        Instant::now()
    };
    let ((), signalled) = tokio::join!(late, signal);
    for client in [&mut pat, &mut ida, &mut people.ann, &mut people.ben] {
        assert_eq!(
            client.close_code().await,
            Some(CLOSE_RESTART),
            "[{}] is told to reconnect",
            client.name
        );
    }
    let exit = server.wait_exit(Duration::from_secs(5)).await;
    let stopped_in = signalled.elapsed();
    assert!(exit.success(), "exited with {exit}");

    for frame in pat.take_backlog() {
        match answer(&frame) {
            Some((id, Answer::Ack(seq))) => {
                acked.insert(id, seq);
            }
            Some((id, Answer::Refused(code, message))) => assert_eq!(
                code,
                ErrorCode::Unavailable,
                "{id} refused while stopping: {message}"
            ),
            None => {}
        }
    }
    let seen_by_ben: Vec<ChatMessage> = people
        .ben
        .take_backlog()
        .into_iter()
        .filter_map(|frame| match frame {
            ServerFrame::Message { message } if message.author == "Pat" => Some(message),
            _ => None,
        })
        .collect();

    server.restart().await;
    let mut people = Bystanders::arrive(&server).await;
    let history = server
        .client("Cy")
        .await
        .join("General", None)
        .await
        .history;
    assert_eq!(
        history.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=history.len() as Seq).collect::<Vec<_>>(),
        "the history has no gaps"
    );
    let stored: HashMap<&str, Seq> = history
        .iter()
        .map(|m| (m.client_id.as_str(), m.seq))
        .collect();
    assert_eq!(stored.len(), history.len(), "nothing stored twice");
    for (id, &seq) in &acked {
        assert_eq!(
            stored.get(id.as_str()),
            Some(&seq),
            "acknowledged {id} (number {seq}) survived the restart"
        );
    }
    for message in &seen_by_ben {
        assert_eq!(
            stored.get(message.client_id.as_str()),
            Some(&message.seq),
            "{} was delivered before the stop, so it was stored",
            message.client_id
        );
    }
    assert!(
        stopped_in < Duration::from_secs(5),
        "stopping took {stopped_in:?}"
    );
    people.still_chat().await;
}
