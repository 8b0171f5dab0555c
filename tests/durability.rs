//! What survives a crash or a restart of the real binary on its SQLite store (and
//! for the stream of sends, on PostgreSQL too): acked messages with their numbers, channels, held names; plus exact resumption, retried
//! sends stored once, owned names, and the ping-based cut-off of silent connections.
//! Each test starts its own server on loopback and talks to it over HTTP and
//! WebSocket only.

mod common;

use common::pg_server::Postgres;
use common::{
    CLOSE_NAME_GIVEN_UP, Client, Joined, RECV_TIMEOUT, Server, assert_hello_refused, now_ms,
};
use hearth::protocol::{ApiError, Channel, ChatMessage, ClientFrame, NameGrant, Seq, ServerFrame};
use reqwest::StatusCode;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::time::timeout;

/// How long a client keeps trying to reconnect while the server is down; a restart
/// of the debug binary on a loaded machine takes well under this.
const RECONNECT_WITHIN: Duration = Duration::from_secs(15);

async fn list_channels(server: &Server) -> Vec<Channel> {
    let (status, channels) = server.call::<Vec<Channel>>("channels", &[]).await;
    assert_eq!(status, StatusCode::OK);
    channels.expect("channels are listed")
}

async fn create_channel_as(
    server: &Server,
    name: &str,
    as_name: &str,
    token: &str,
) -> (StatusCode, Result<Channel, ApiError>) {
    server
        .call::<Channel>(
            "create_channel",
            &[("name", name), ("as_name", as_name), ("token", token)],
        )
        .await
}

async fn claim_with(
    server: &Server,
    name: &str,
    token: Option<&str>,
) -> Result<NameGrant, ApiError> {
    let mut form = vec![("name", name)];
    form.extend(token.map(|t| ("token", t)));
    let (status, result) = server.call::<NameGrant>("claim_name", &form).await;
    match &result {
        Ok(_) => assert_eq!(status, StatusCode::OK, "claiming {name:?}"),
        Err(error) => assert_eq!(status.as_u16(), error.http_status(), "claiming {name:?}"),
    }
    result
}

fn seqs(messages: &[ChatMessage]) -> Vec<Seq> {
    messages.iter().map(|m| m.seq).collect()
}

// --- 1. kill -9 in the middle of a stream of sends -------------------------------

const SENDERS: usize = 8;
const PER_SENDER: usize = 200;
const TOTAL: usize = SENDERS * PER_SENDER;
/// Sends a tab has out before it waits for acknowledgements, like a fast typist
/// or a reconnect flushing an outbox.
const IN_FLIGHT: usize = 20;

/// Shared between the senders and the test, which kills the server part way.
#[derive(Default)]
struct Progress {
    acks: AtomicUsize,
    /// Set just before the kill, so an ack seen while it is false certainly came
    /// from the server that is about to die.
    killing: AtomicBool,
}

/// What one sending tab saw.
struct SenderReport {
    name: String,
    /// Client id to the number its acknowledgement carried.
    acks: HashMap<String, Seq>,
    acked_before_kill: HashMap<String, Seq>,
    /// Client ids sent again on a later connection because no ack had come.
    resent: Vec<String>,
    connections: usize,
}

/// What one tab has shown of the channel.
struct View {
    me: String,
    /// The last number shown; every message is shown once, in order.
    last_seen: Seq,
    /// Own messages as shown, to match against their acknowledgements.
    shown_own: HashMap<String, Seq>,
}

impl View {
    fn show(&mut self, message: &ChatMessage, acks: &HashMap<String, Seq>) {
        let me = &self.me;
        assert_eq!(
            message.seq,
            self.last_seen + 1,
            "[{me}] shows {} after {}: a gap or a repeat",
            message.seq,
            self.last_seen
        );
        self.last_seen = message.seq;
        if message.author == *me {
            if let Some(&acked) = acks.get(&message.client_id) {
                assert_eq!(acked, message.seq, "[{me}] ack and message disagree");
            }
            self.shown_own
                .insert(message.client_id.clone(), message.seq);
        }
    }
}

/// Opens a session the way the page does on every (re)connect: hello with the held
/// name, then join with the last number seen. `None` if the connection drops first.
async fn open_session(
    ws_url: &str,
    grant: &NameGrant,
    since: Option<Seq>,
) -> Option<(Client, Joined)> {
    let mut client = Client::connect_retrying(ws_url, RECONNECT_WITHIN).await;
    client.name = grant.name.clone();
    let hello = ClientFrame::Hello {
        name: grant.name.clone(),
        token: grant.token.clone(),
        channels_version: None,
    };
    if !client.try_send(&hello).await {
        return None;
    }
    match client.next_or_end().await? {
        ServerFrame::Welcome { .. } => {}
        ServerFrame::Error { code, message } => {
            panic!("[{}] hello refused: {code:?}: {message}", grant.name)
        }
        other => panic!("[{}] {other:?} before Welcome", grant.name),
    }
    let join = ClientFrame::Join {
        channel: "General".into(),
        since,
    };
    if !client.try_send(&join).await {
        return None;
    }
    loop {
        match client.next_or_end().await? {
            ServerFrame::Joined {
                channel,
                history,
                reset,
                online,
                online_count,
            } => {
                let joined = Joined {
                    channel,
                    history,
                    reset,
                    online,
                    online_count,
                };
                return Some((client, joined));
            }
            // Outside any room, nothing but presence news may come first.
            frame @ (ServerFrame::Message { .. } | ServerFrame::Error { .. }) => {
                panic!("[{}] {frame:?} before Joined", grant.name)
            }
            _ => {}
        }
    }
}

/// One tab sending `PER_SENDER` messages with up to `IN_FLIGHT` unacknowledged,
/// reconnecting whenever the connection drops and resending what was not acked,
/// until its messages are acknowledged and it has seen all `TOTAL` messages.
async fn run_sender(ws_url: String, grant: NameGrant, progress: Arc<Progress>) -> SenderReport {
    let me = grant.name.clone();
    let ids: Vec<String> = (0..PER_SENDER)
        .map(|i| format!("{}-{i}", me.replace(' ', "-")))
        .collect();
    let index: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let text = |i: usize| format!("{me} says {i}");

    let mut report = SenderReport {
        name: me.clone(),
        acks: HashMap::new(),
        acked_before_kill: HashMap::new(),
        resent: Vec::new(),
        connections: 0,
    };
    // Sent at least once and not yet acknowledged.
    let mut unacked: BTreeSet<usize> = BTreeSet::new();
    let mut next_new = 0;
    let mut view = View {
        me: me.clone(),
        last_seen: 0,
        shown_own: HashMap::new(),
    };

    while !(unacked.is_empty() && next_new == PER_SENDER && view.last_seen == TOTAL as Seq) {
        let since = (view.last_seen > 0).then_some(view.last_seen);
        let Some((mut client, joined)) = open_session(&ws_url, &grant, since).await else {
            continue;
        };
        report.connections += 1;
        if since.is_some() {
            assert!(
                !joined.reset,
                "[{me}] resuming after {since:?} within a 5000-message window reset"
            );
        } else if let Some(first) = joined.history.first() {
            assert_eq!(first.seq, 1, "[{me}] nothing is pruned from a 5000 window");
        }
        for message in &joined.history {
            view.show(message, &report.acks);
        }

        // Whatever was sent on a dead connection goes again, oldest first.
        let mut resend: VecDeque<usize> = unacked.iter().copied().collect();
        let is_retry = report.connections > 1;
        let mut outstanding = 0;
        'connection: loop {
            while outstanding < IN_FLIGHT {
                let i = if let Some(i) = resend.pop_front() {
                    if is_retry {
                        report.resent.push(ids[i].clone());
                    }
                    i
                } else if next_new < PER_SENDER {
                    next_new += 1;
                    next_new - 1
                } else {
                    break;
                };
                unacked.insert(i);
                // Paced like a busy person rather than a benchmark, so the kill
                // reliably lands while every sender still has sends to make.
                tokio::time::sleep(Duration::from_millis(1)).await;
                let send = ClientFrame::Send {
                    channel: "General".into(),
                    client_id: ids[i].clone(),
                    text: text(i),
                };
                if !client.try_send(&send).await {
                    break 'connection;
                }
                outstanding += 1;
            }
            if unacked.is_empty() && next_new == PER_SENDER && view.last_seen == TOTAL as Seq {
                break;
            }
            let Some(frame) = client.next_or_end().await else {
                break;
            };
            match frame {
                ServerFrame::Message { message } => view.show(&message, &report.acks),
                ServerFrame::Ack {
                    client_id,
                    channel,
                    seq,
                } => {
                    assert_eq!(channel, "General");
                    let i = *index
                        .get(client_id.as_str())
                        .unwrap_or_else(|| panic!("[{me}] ack for a foreign id {client_id:?}"));
                    if let Some(&shown) = view.shown_own.get(&client_id) {
                        assert_eq!(shown, seq, "[{me}] ack and message disagree");
                    }
                    if let Some(earlier) = report.acks.insert(client_id.clone(), seq) {
                        assert_eq!(earlier, seq, "[{me}] {client_id:?} acked twice differently");
                    } else {
                        progress.acks.fetch_add(1, Ordering::SeqCst);
                        if !progress.killing.load(Ordering::SeqCst) {
                            report.acked_before_kill.insert(client_id, seq);
                        }
                    }
                    unacked.remove(&i);
                    outstanding -= 1;
                }
                ServerFrame::SendFailed {
                    client_id,
                    code,
                    message,
                } => {
                    assert!(
                        code.is_retryable(),
                        "[{me}] send {client_id:?} refused for good: {code:?}: {message}"
                    );
                    resend.push_back(index[client_id.as_str()]);
                    outstanding -= 1;
                }
                ServerFrame::Error { code, message } => {
                    panic!("[{me}] error while sending: {code:?}: {message}")
                }
                _ => {}
            }
        }
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9_mid_stream() {
    survive_kill_9_mid_stream(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9_mid_stream_on_postgresql() {
    let url = Postgres::shared().database();
    survive_kill_9_mid_stream(&[("HEARTH_DATABASE_URL", &url)]).await;
}

/// Senders stream messages, the server is killed a third of the way through and
/// restarted on the store `env` names: every acknowledged message is stored once
/// under its acknowledged number.
async fn survive_kill_9_mid_stream(env: &[(&str, &str)]) {
    let started = Instant::now();
    let mut env = env.to_vec();
    env.push(("HEARTH_HISTORY", "5000"));
    let mut server = Server::start_restartable(&env).await;
    let progress = Arc::new(Progress::default());
    let mut senders = Vec::new();
    for n in 1..=SENDERS {
        let grant = server.claim(&format!("Sender {n}")).await;
        senders.push(tokio::spawn(run_sender(
            server.ws_url(),
            grant,
            progress.clone(),
        )));
    }

    let kill_at = TOTAL * 3 / 10;
    timeout(Duration::from_secs(20), async {
        while progress.acks.load(Ordering::SeqCst) < kill_at {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "only {} of {kill_at} acks within 20 s",
            progress.acks.load(Ordering::SeqCst)
        )
    });
    progress.killing.store(true, Ordering::SeqCst);
    server.kill().await;
    let acks_before_kill = progress.acks.load(Ordering::SeqCst);
    let restarted_at = now_ms();
    server.restart().await;

    let mut reports = Vec::new();
    for sender in senders {
        let report = timeout(Duration::from_secs(30), sender)
            .await
            .expect("every sender finishes within 30 s of the restart")
            .expect("sender task");
        reports.push(report);
    }

    // A newcomer's view of the channel is the record of what was stored.
    let history = server
        .client("Auditor")
        .await
        .join("General", None)
        .await
        .history;
    assert_eq!(
        seqs(&history),
        (1..=TOTAL as Seq).collect::<Vec<_>>(),
        "all {TOTAL} messages, numbered without gaps or repeats"
    );
    let stored: HashMap<(&str, &str), &ChatMessage> = history
        .iter()
        .map(|m| ((m.author.as_str(), m.client_id.as_str()), m))
        .collect();
    assert_eq!(stored.len(), TOTAL, "no send is stored twice");

    let mut acked_before = 0;
    let mut resent = 0;
    let mut resent_already_stored = 0;
    // Messages stamped before the restart were stored by the killed server.
    let stored_before_crash = history.iter().filter(|m| m.sent_at < restarted_at).count() as Seq;
    for report in &reports {
        let me = report.name.as_str();
        assert_eq!(report.acks.len(), PER_SENDER, "[{me}] every send acked");
        for (client_id, &seq) in &report.acks {
            let message = stored
                .get(&(me, client_id.as_str()))
                .unwrap_or_else(|| panic!("[{me}] acked {client_id:?} as {seq} is not stored"));
            assert_eq!(
                message.seq, seq,
                "[{me}] {client_id:?} stored under its ack"
            );
            let i: usize = client_id
                .rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("client ids end in their index");
            assert_eq!(message.text, format!("{me} says {i}"));
        }
        for (client_id, &seq) in &report.acked_before_kill {
            assert_eq!(
                stored[&(me, client_id.as_str())].seq,
                seq,
                "[{me}] {client_id:?} was acked as {seq} before the crash"
            );
            assert!(
                seq <= stored_before_crash,
                "[{me}] {client_id:?} acked before the crash as {seq}, but stored after it"
            );
        }
        // A sender that was done before the kill had nothing left to notice.
        if report.acked_before_kill.len() < PER_SENDER {
            assert!(report.connections >= 2, "[{me}] noticed the crash");
        }
        acked_before += report.acked_before_kill.len();
        resent += report.resent.len();
        resent_already_stored += report
            .resent
            .iter()
            .filter(|id| report.acks[*id] <= stored_before_crash)
            .count();
    }
    eprintln!(
        "kill -9 after {acks_before_kill} of {TOTAL} acks ({acked_before} seen before the kill \
         was signalled); {stored_before_crash} messages stored before the crash; \
         {resent} sends retried after reconnecting, {resent_already_stored} of them already \
         stored and acked with their original number; {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
}

// --- 2. a restart keeps everything -------------------------------------------

#[tokio::test]
async fn channels_names_and_messages_survive_sigterm_and_kill_9() {
    let mut server = Server::start_restartable(&[]).await;
    let ada = server.claim("Ada").await;
    let (_, created) = create_channel_as(&server, "Rust Talk", "Ada", &ada.token).await;
    created.expect("Ada may create a channel");
    let channels = list_channels(&server).await;
    assert_eq!(
        channels.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["General", "Rust Talk"]
    );

    let mut client = server.client("Ada").await;
    let mut expected: Vec<(&str, Vec<ChatMessage>)> = Vec::new();
    for (channel, texts) in [
        ("Rust Talk", ["borrowck <3", "lifetimes 🔥"]),
        ("General", ["hello", "anyone?"]),
    ] {
        client.join(channel, None).await;
        for (i, text) in texts.into_iter().enumerate() {
            client.say(channel, &format!("{channel}-{i}"), text).await;
        }
        let history = client.join(channel, None).await.history;
        assert_eq!(seqs(&history), [1, 2]);
        expected.push((channel, history));
    }

    for (round, how) in ["SIGTERM", "kill -9"].into_iter().enumerate() {
        if round == 0 {
            server.terminate().await;
        } else {
            server.kill().await;
        }
        // The tab open during the stop sees its connection end, so it reconnects.
        client.expect_closed().await;
        server.restart().await;

        assert_eq!(list_channels(&server).await, channels, "after {how}");
        assert_eq!(
            claim_with(&server, "ada", Some("another-browser")).await,
            Err(ApiError::NameTaken("ada".into())),
            "after {how}, Ada's name is still hers"
        );
        assert_hello_refused(&server, "Ada", "another-browser").await;

        client = Client::connect(&server).await;
        assert_eq!(
            client.hello("Ada", &ada.token).await,
            channels,
            "after {how}, the holder's token still works"
        );
        for (channel, history) in &mut expected {
            let joined = client.join(channel, None).await;
            assert_eq!(&joined.history, history, "{channel} after {how}");
            // Numbering carries on where it stopped.
            let next = history.last().unwrap().seq + 1;
            let client_id = format!("{channel}-after-{round}");
            let seq = client
                .say(channel, &client_id, &format!("after {how}"))
                .await;
            assert_eq!(seq, next, "{channel} after {how}");
            history.push(client.recv_message(&client_id).await);
        }
    }
}

// --- 3. resuming after a gap ----------------------------------------------------

#[tokio::test]
async fn a_resume_replays_exactly_what_was_missed_or_says_it_cannot() {
    let mut server = Server::start_restartable(&[("HEARTH_HISTORY", "10")]).await;
    let mut ann = server.client("Ann").await;
    ann.join("General", None).await;
    let mut ben = server.client("Ben").await;
    ben.join("General", None).await;

    for i in 1..=22 {
        ann.say("General", &format!("m{i}"), &format!("message {i}"))
            .await;
    }
    let mut seen = 0;
    for i in 1..=22 {
        let message = ben.recv_message(&format!("m{i}")).await;
        assert_eq!(message.seq, seen + 1, "shown live, in order");
        seen = message.seq;
    }
    // Ben's network drops; Ann carries on.
    drop(ben);
    for i in 23..=30 {
        ann.say("General", &format!("m{i}"), &format!("message {i}"))
            .await;
    }

    let check = |joined: &Joined, since: Option<Seq>, reset: bool, from: Seq, when: &str| {
        assert_eq!(joined.reset, reset, "since {since:?} {when}");
        assert_eq!(
            seqs(&joined.history),
            (from..=30).collect::<Vec<_>>(),
            "since {since:?} {when}"
        );
        for message in &joined.history {
            assert_eq!(message.text, format!("message {}", message.seq));
            assert_eq!(message.author, "Ann");
        }
    };
    for when in ["live", "after kill -9"] {
        if when != "live" {
            server.kill().await;
            server.restart().await;
        }
        check(
            &rejoin(&server, Some(seen)).await,
            Some(seen),
            false,
            seen + 1,
            when,
        );
        // The window holds 21..=30, so resuming after 20 is still exact, after 19 not.
        check(&rejoin(&server, Some(20)).await, Some(20), false, 21, when);
        check(&rejoin(&server, Some(19)).await, Some(19), true, 21, when);
        check(&rejoin(&server, Some(5)).await, Some(5), true, 21, when);
        check(&rejoin(&server, Some(30)).await, Some(30), false, 31, when);
        check(&rejoin(&server, None).await, None, true, 21, when);
    }
}

/// Ben's page reconnecting and resuming after `since`.
async fn rejoin(server: &Server, since: Option<Seq>) -> Joined {
    server.client("Ben").await.join("General", since).await
}

// --- 4. a retried send is stored once, across reconnects and restarts -----------

#[tokio::test]
async fn a_retry_is_acknowledged_with_its_number_across_reconnect_and_restart() {
    let mut server = Server::start_restartable(&[("HEARTH_HISTORY", "5")]).await;
    let mut ben = server.client("Ben").await;
    ben.join("General", None).await;
    let mut ann = server.client("Ann").await;
    ann.join("General", None).await;

    let x = ann.say("General", "x", "first words").await;
    assert_eq!(ben.recv_message("x").await.seq, x);

    // The ack was lost with the connection, so the page sends x again on a new one.
    drop(ann);
    let mut ann = server.client("Ann").await;
    assert!(ann.join("General", Some(x)).await.history.is_empty());
    assert_eq!(ann.say("General", "x", "first words").await, x);
    let y = ann.say("General", "y", "second words").await;
    assert_eq!(y, x + 1, "a retry takes no number of its own");
    assert_next_message(&mut ben, "y", y).await;

    server.kill().await;
    server.restart().await;
    let mut ben = server.client("Ben").await;
    let joined = ben.join("General", Some(y)).await;
    assert!(!joined.reset && joined.history.is_empty());
    let mut ann = server.client("Ann").await;
    ann.join("General", Some(y)).await;
    assert_eq!(ann.say("General", "y", "second words").await, y);
    assert_eq!(ann.say("General", "x", "first words").await, x);
    let z = ann.say("General", "z", "third words").await;
    assert_eq!(z, y + 1);
    assert_next_message(&mut ben, "z", z).await;

    // Push x out of the 5-message window; its id is still remembered after a crash.
    let mut last = z;
    for i in 0..6 {
        last = ann
            .say("General", &format!("w{i}"), &format!("filler {i}"))
            .await;
    }
    server.kill().await;
    server.restart().await;
    let mut ben = server.client("Ben").await;
    ben.join("General", Some(last)).await;
    let mut ann = server.client("Ann").await;
    ann.join("General", Some(last)).await;
    assert_eq!(ann.say("General", "x", "first words").await, x);
    let fresh = ann.say("General", "fresh", "new words").await;
    assert_eq!(fresh, last + 1);
    assert_next_message(&mut ben, "fresh", fresh).await;
    let window = server.client("Cy").await.join("General", None).await;
    assert_eq!(
        seqs(&window.history),
        (fresh - 4..=fresh).collect::<Vec<_>>()
    );
}

/// The next message `reader` is shown must be this one: a retried send that was
/// already stored must not be shown again.
async fn assert_next_message(reader: &mut Client, client_id: &str, seq: Seq) {
    let message = reader
        .recv_until(&format!("Message {client_id:?}"), |frame| match frame {
            ServerFrame::Message { message } => Some(message.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        (message.client_id.as_str(), message.seq),
        (client_id, seq),
        "a retried send was shown again"
    );
}

// --- 5. owned names -------------------------------------------------------------

#[tokio::test]
async fn a_name_belongs_to_the_browser_holding_its_token() {
    let server = Server::start().await;
    let ada = claim_with(&server, "Ada", None).await.expect("a free name");
    assert_eq!(ada.name, "Ada");
    assert!(
        ada.token.len() >= 32 && ada.token.chars().all(|c| c.is_ascii_hexdigit()),
        "a hard-to-guess token: {:?}",
        ada.token
    );
    assert_eq!(
        claim_with(&server, "ada", None).await,
        Err(ApiError::NameTaken("ada".into())),
        "another capitalisation is the same name"
    );
    // Names a reader cannot tell from "Ada" are Ada's too: a Cyrillic А and а,
    // fullwidth letters, a composed "Ádá" is not (its accents show).
    for look_alike in ["\u{410}d\u{430}", "Ａｄａ", " ADA\u{a0}"] {
        assert_eq!(
            claim_with(&server, look_alike, None).await,
            Err(ApiError::NameTaken(look_alike.trim().into())),
            "{look_alike:?} looks like Ada"
        );
        assert_hello_refused(&server, look_alike, "a-guess").await;
    }
    assert_eq!(
        claim_with(&server, "\u{410}da", Some(&ada.token)).await,
        Ok(ada.clone()),
        "the holder typing a look-alike keeps the name as held"
    );
    let accented = claim_with(&server, "Ádá", None).await;
    assert_eq!(accented.expect("a name of its own").name, "Ádá");
    assert_eq!(
        claim_with(&server, "Ada", Some("a-guess")).await,
        Err(ApiError::NameTaken("Ada".into()))
    );
    assert_eq!(
        claim_with(&server, "Ada", Some(&ada.token)).await,
        Ok(ada.clone()),
        "the holder claims again (another tab) and keeps the token"
    );

    assert_hello_refused(&server, "Ada", "a-guess").await;
    assert_hello_refused(&server, "ADA", "").await;
    let mut tab = Client::connect(&server).await;
    tab.hello("Ada", &ada.token).await;
    tab.join("General", None).await;

    let (status, refused) = create_channel_as(&server, "Ada's", "Ada", "a-guess").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(refused, Err(ApiError::NotIdentified));
    let (_, refused) = create_channel_as(&server, "Nobodys", "Nobody", "any").await;
    assert_eq!(refused, Err(ApiError::NotIdentified), "an unclaimed name");
    let (_, created) = create_channel_as(&server, "Adas", "Ada", &ada.token).await;
    assert_eq!(created.expect("the holder may").name, "Adas");

    let (status, refused) = server
        .call::<()>("release_name", &[("name", "Ada"), ("token", "a-guess")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(refused, Err(ApiError::NotIdentified));
    assert_hello_refused(&server, "Ada", "a-guess").await;
    let (status, released) = server
        .call::<()>("release_name", &[("name", "Ada"), ("token", &ada.token)])
        .await;
    assert_eq!((status, released), (StatusCode::OK, Ok(())));
    // Ada's other tab no longer chats as a name that is free to take.
    assert_eq!(tab.close_code().await, Some(CLOSE_NAME_GIVEN_UP));

    let other = claim_with(&server, "ADA", None)
        .await
        .expect("a released name is free");
    assert_eq!(other.name, "ADA");
    assert_ne!(other.token, ada.token);
    assert_hello_refused(&server, "Ada", &ada.token).await;
    let (_, refused) = create_channel_as(&server, "Too late", "Ada", &ada.token).await;
    assert_eq!(refused, Err(ApiError::NotIdentified));
    let mut newcomer = Client::connect(&server).await;
    assert_eq!(
        names(&newcomer.hello("ada", &other.token).await),
        ["General", "Adas"]
    );
}

fn names(channels: &[Channel]) -> Vec<&str> {
    channels.iter().map(|c| c.name.as_str()).collect()
}

// --- 6. pings -------------------------------------------------------------------

#[tokio::test]
async fn a_tab_that_stops_reading_is_dropped_and_one_that_reads_stays() {
    let server = Server::start_with(&[
        ("HEARTH_PING_INTERVAL_SECS", "1"),
        ("HEARTH_IDLE_TIMEOUT_SECS", "3"),
    ])
    .await;
    let mut ann = server.client("Ann").await;
    ann.join("General", None).await;
    let mut frozen = server.client("Zed").await;
    frozen.join("General", None).await;
    // Neither tab sends anything from here on.
    let silent_since = Instant::now();
    ann.recv_until("Presence joined Zed", |frame| match frame {
        ServerFrame::Presence { joined, .. } if joined.iter().any(|n| n == "Zed") => Some(()),
        _ => None,
    })
    .await;

    // Zed's tab is frozen: its socket is never read again, so its pings go unanswered.
    ann.recv_until_within(
        "Presence left Zed",
        Duration::from_secs(9),
        |frame| match frame {
            ServerFrame::Presence { left, .. } if left.iter().any(|n| n == "Zed") => Some(()),
            ServerFrame::Presence { left, .. } if left.iter().any(|n| n == "Ann") => {
                panic!("a tab that answers pings was dropped")
            }
            _ => None,
        },
    )
    .await;
    let dropped_after = silent_since.elapsed();
    assert!(
        (Duration::from_millis(2_500)..=Duration::from_secs(8)).contains(&dropped_after),
        "Zed was dropped {dropped_after:?} after going silent; the idle timeout is 3 s"
    );

    // Ann has sent nothing for longer than the idle timeout, yet answering pings
    // keeps her connected and able to send.
    let quiet_for = Duration::from_secs(6).saturating_sub(silent_since.elapsed());
    ann.keep_reading(quiet_for).await;
    assert!(silent_since.elapsed() > Duration::from_secs(5));
    let seq = ann.say("General", "still-here", "still here").await;
    assert_eq!(ann.recv_message("still-here").await.seq, seq);
    assert_eq!(
        server.client("Cy").await.join("General", None).await.online,
        ["Ann", "Cy"]
    );

    // The frozen tab, once it reads again, finds what was queued before it froze
    // (the room's presence) and then its connection closed.
    let backlog = timeout(RECV_TIMEOUT, async {
        let mut backlog = Vec::new();
        while let Some(frame) = frozen.next_or_end().await {
            backlog.push(frame);
        }
        backlog
    })
    .await
    .expect("the frozen tab's socket was closed");
    assert!(
        backlog
            .iter()
            .all(|frame| matches!(frame, ServerFrame::Presence { .. })),
        "only presence was queued for the frozen tab: {backlog:?}"
    );
}

/// A name's holder may say hello under any capitalisation of it (the token is
/// checked against the name's key), but the server then treats each spelling as a
/// different person: retries are matched by the spelling, so one is stored twice,
/// and presence lists one person twice.
#[tokio::test]
async fn one_holder_under_two_capitalisations_is_one_person() {
    let server = Server::start().await;
    let ada = server.claim("Ada").await;
    let mut tab = Client::connect(&server).await;
    tab.hello("Ada", &ada.token).await;
    tab.join("General", None).await;
    let x = tab.say("General", "x", "once").await;

    // The page reconnects after Ada re-entered her name as "ada" (her token keeps it)
    // and retries the send whose ack it never saw.
    let mut again = Client::connect(&server).await;
    again.hello("ada", &ada.token).await;
    let online = again.join("General", Some(x)).await.online;
    assert_eq!(
        again.say("General", "x", "once").await,
        x,
        "a retry is stored once"
    );
    assert_eq!(online, ["Ada"], "two tabs of one person are one person");
}
