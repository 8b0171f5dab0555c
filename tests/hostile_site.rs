//! Hostile input, round two: what no single address, site or page may take from
//! everyone else. HTTP slots held with bodies that never come, forms posted from
//! other sites, DNS-rebinding pages, channel spam, megabyte names, seats and tabs
//! squatted, names that only look like others, frames that are not sends in a loop,
//! and names taken over from a holder still connected. Each attack is answered as
//! documented while two people on the same server chat on.

mod common;

use common::bystanders::Bystanders;
use common::{Client, Dial, RECV_TIMEOUT, Server, http_client_from, test_token, upgrade};
use hearth::protocol::{
    ApiError, Channel, ChannelNameError, ClientFrame, ErrorCode, NameError, NameGrant, ServerFrame,
};
use reqwest::StatusCode;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

const SECOND_MACHINE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const THIRD_MACHINE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 66);
const CLOSE_POLICY: u16 = 1008;
const CLOSE_NAME_GIVEN_UP: u16 = 4001;

// --- raw HTTP, as an attacker writes it -------------------------------------------

/// A TCP connection to `server` from `from`.
async fn connect_from(from: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(from), 0))
        .expect("bind a loopback address");
    socket.connect(server).await.expect("connect")
}

/// The status of the response the server writes on `stream`, if one comes within
/// `limit` (`None`: none came, the connection still open).
async fn status_within(stream: &mut TcpStream, limit: Duration) -> Option<u16> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let read = timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
            if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                return;
            }
        }
    })
    .await;
    if read.is_err() && seen.is_empty() {
        return None;
    }
    let head = String::from_utf8_lossy(&seen);
    head.split(' ').nth(1).and_then(|code| code.parse().ok())
}

/// The headers of a server-function call whose body is announced but not sent.
fn slow_post(endpoint: &str, extra_headers: &str, content_length: usize) -> Vec<u8> {
    format!(
        "POST /api/{endpoint} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n{extra_headers}\
         Content-Length: {content_length}\r\n\r\nname="
    )
    .into_bytes()
}

// --- 1. HTTP slots ----------------------------------------------------------------

#[tokio::test]
async fn one_address_holding_requests_open_gets_its_share_and_everyone_else_gets_in() {
    let server = Server::start_with(&[
        ("HEARTH_MAX_HTTP_CONNECTIONS", "40"),
        ("HEARTH_MAX_HTTP_CONNECTIONS_PER_IP", "10"),
        ("HEARTH_HEADER_TIMEOUT_SECS", "2"),
    ])
    .await;
    let mut people = Bystanders::arrive(&server).await;
    // Twelve requests whose bodies never come, from one address.
    let mut held = Vec::new();
    for _ in 0..12 {
        let mut stream = connect_from(ATTACKER, server.addr).await;
        stream
            .write_all(&slow_post("claim_name", "", 100))
            .await
            .expect("write the headers");
        held.push(stream);
    }
    let started = Instant::now();
    let mut refused = 0;
    for stream in &mut held[10..] {
        let status = status_within(stream, Duration::from_secs(1)).await;
        assert_eq!(status, Some(429), "past the address's share");
        refused += 1;
    }
    assert_eq!(refused, 2);
    // Meanwhile, another machine loads the page and opens a chat connection.
    let visitor = http_client_from(SECOND_MACHINE);
    let page = visitor
        .get(server.url("/"))
        .send()
        .await
        .expect("the page loads");
    assert_eq!(page.status(), StatusCode::OK);
    let (mut client, _) = upgrade(&server, &Dial::from(SECOND_MACHINE))
        .await
        .expect("a chat connection from another machine");
    let grant = server.claim("Visitor").await;
    client.hello(&grant.name, &grant.token).await;
    people.still_chat().await;
    // The held ones are answered and let go once their body is overdue.
    for stream in &mut held[..10] {
        let status = status_within(stream, Duration::from_secs(5)).await;
        assert_eq!(status, Some(408), "a body that never came");
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "held {:?}; the body deadline is 2 s",
        started.elapsed()
    );
    // Its share is its own again.
    let mut again = connect_from(ATTACKER, server.addr).await;
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status_within(&mut again, RECV_TIMEOUT).await, Some(200));
}

#[tokio::test]
async fn a_body_sent_a_byte_at_a_time_is_cut_off() {
    let server = Server::start_with(&[("HEARTH_HEADER_TIMEOUT_SECS", "2")]).await;
    let mut people = Bystanders::arrive(&server).await;
    let mut stream = connect_from(ATTACKER, server.addr).await;
    stream
        .write_all(&slow_post("claim_name", "", 60))
        .await
        .unwrap();
    let started = Instant::now();
    let trickled = async {
        // A byte every 400 ms: each arrives well within any pause a per-read
        // timeout would allow.
        for byte in b"Mallory&token=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" {
            tokio::time::sleep(Duration::from_millis(400)).await;
            if stream.write_all(&[*byte]).await.is_err() {
                break;
            }
        }
    };
    let _ = timeout(Duration::from_secs(3), trickled).await;
    let status = status_within(&mut stream, Duration::from_secs(3)).await;
    assert_eq!(status, Some(408));
    assert!(started.elapsed() < Duration::from_secs(5));
    people.still_chat().await;
}

#[tokio::test]
async fn a_client_that_leaves_its_answers_unread_is_dropped() {
    let server = Server::start_with(&[
        ("HEARTH_MAX_HTTP_CONNECTIONS_PER_IP", "1"),
        ("HEARTH_HEADER_TIMEOUT_SECS", "2"),
    ])
    .await;
    let mut people = Bystanders::arrive_dialed(
        &server,
        &Dial::from(SECOND_MACHINE),
        &Dial::from(THIRD_MACHINE),
    )
    .await;
    // Thousands of pages asked for at once, through a tiny window, none read: the
    // server's writes stop making progress once the buffers are full.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .bind(SocketAddr::new(IpAddr::V4(ATTACKER), 0))
        .unwrap();
    let mut hoarder = socket.connect(server.addr).await.unwrap();
    let asks = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(4_000);
    hoarder.write_all(asks.as_bytes()).await.unwrap();
    // Its one connection is its whole share while it lasts ...
    let started = Instant::now();
    let mut next = connect_from(ATTACKER, server.addr).await;
    assert_eq!(status_within(&mut next, RECV_TIMEOUT).await, Some(429));
    // ... which is until its answers have sat unread for the deadline.
    loop {
        let mut again = connect_from(ATTACKER, server.addr).await;
        again
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        if status_within(&mut again, RECV_TIMEOUT).await == Some(200) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the unread connection still holds the address's share"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    people.still_chat().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_address_has_its_share_of_requests() {
    let server = Server::start_with(&[
        ("HEARTH_TRUSTED_PROXIES", "127.0.0.1"),
        ("HEARTH_MAX_HTTP_CONNECTIONS_PER_IP", "3"),
        ("HEARTH_HEADER_TIMEOUT_SECS", "2"),
    ])
    .await;
    let mut people = Bystanders::arrive(&server).await;
    let forwarded = |ip: &str| format!("X-Forwarded-For: {ip}\r\n");
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(&slow_post("claim_name", &forwarded("203.0.113.5"), 100))
            .await
            .unwrap();
        held.push(stream);
        // In order, so that the fourth is the one past the share.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status_within(&mut held[3], Duration::from_secs(1)).await,
        Some(429)
    );
    // The proxy's other clients are served: its connections are not one address.
    let mut other = TcpStream::connect(server.addr).await.unwrap();
    other
        .write_all(
            format!(
                "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n{}\r\n",
                forwarded("203.0.113.6")
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(status_within(&mut other, RECV_TIMEOUT).await, Some(200));
    people.still_chat().await;
    for stream in &mut held[..3] {
        assert_eq!(
            status_within(stream, Duration::from_secs(5)).await,
            Some(408)
        );
    }
}

// --- 2. other sites -----------------------------------------------------------------

#[tokio::test]
async fn server_functions_refuse_other_sites_and_serve_this_one_and_programs() {
    let server = Server::start().await;
    let ours = format!("http://{}", server.addr);
    // The name claimed, the headers a browser (or not) sends, the answer.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], StatusCode);
    let cases: [Case; 6] = [
        (
            "Mallory1",
            &[("origin", "https://evil.example")],
            StatusCode::FORBIDDEN,
        ),
        ("Mallory2", &[("origin", "null")], StatusCode::FORBIDDEN),
        (
            "Mallory3",
            &[("sec-fetch-site", "cross-site")],
            StatusCode::FORBIDDEN,
        ),
        (
            "Page",
            &[("origin", &ours), ("sec-fetch-site", "same-origin")],
            StatusCode::OK,
        ),
        ("Typed", &[("sec-fetch-site", "none")], StatusCode::OK),
        ("Program", &[], StatusCode::OK),
    ];
    for (name, headers, expected) in cases {
        let token = test_token(name);
        let mut request = server
            .http()
            .post(server.url("/api/claim_name"))
            .form(&[("name", name), ("token", token.as_str())]);
        for (header, value) in headers {
            request = request.header(*header, *value);
        }
        let response = request.send().await.expect("an answer");
        assert_eq!(response.status(), expected, "{name} with {headers:?}");
        let body = response.text().await.unwrap();
        if expected == StatusCode::FORBIDDEN {
            let error: ApiError = serde_json::from_str(&body).expect("a typed refusal");
            assert_eq!(error, ApiError::CrossSite);
            assert_eq!(
                error.to_string(),
                "Requests from other sites are not accepted."
            );
        } else {
            let grant: NameGrant = serde_json::from_str(&body).expect("a grant");
            assert_eq!(grant.name, name);
        }
    }
    // What the refused requests asked for never happened: the names are free.
    let (status, grant) = server
        .call::<NameGrant>(
            "claim_name",
            &[("name", "Mallory1"), ("token", "someone else's")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{grant:?}");
}

// --- 3. channel spam ---------------------------------------------------------------

#[tokio::test]
async fn channel_creations_are_limited_per_person_and_address_and_capped_in_total() {
    let server = Server::start_with(&[
        ("HEARTH_CHANNELS_PER_HOUR", "2"),
        ("HEARTH_MAX_CHANNELS", "5"),
    ])
    .await;
    let mut people = Bystanders::arrive(&server).await;
    for name in ["Cy", "Dee"] {
        server.claim(name).await;
    }
    let create = |channel: &'static str, as_name: &'static str, from: Ipv4Addr| {
        let server = &server;
        async move {
            let token = test_token(as_name);
            server
                .call_via::<Channel>(
                    &http_client_from(from),
                    "create_channel",
                    &[("name", channel), ("as_name", as_name), ("token", &token)],
                )
                .await
                .1
        }
    };
    let localhost = Ipv4Addr::LOCALHOST;
    assert!(create("Ann 1", "Ann", localhost).await.is_ok());
    // A creation that does not happen costs nothing.
    assert_eq!(
        create("ann 1", "Ann", localhost).await,
        Err(ApiError::ChannelExists("Ann 1".into()))
    );
    assert!(create("Ann 2", "Ann", localhost).await.is_ok());
    assert_eq!(
        create("Ann 3", "Ann", localhost).await,
        Err(ApiError::ChannelsTooFast(2))
    );
    // The same person from another address is still the same person.
    assert_eq!(
        create("Ann 3", "Ann", SECOND_MACHINE).await,
        Err(ApiError::ChannelsTooFast(2))
    );
    // And another person from the same address is still the same address.
    assert_eq!(
        create("Cy 1", "Cy", localhost).await,
        Err(ApiError::ChannelsTooFast(2))
    );
    assert!(create("Cy 1", "Cy", THIRD_MACHINE).await.is_ok());
    assert!(create("Cy 2", "Cy", THIRD_MACHINE).await.is_ok());
    // General and four more: as many as there may be.
    assert_eq!(
        create("Dee 1", "Dee", SECOND_MACHINE).await,
        Err(ApiError::TooManyChannels(5))
    );
    assert_eq!(
        ApiError::TooManyChannels(5).to_string(),
        "This server has reached its limit of 5 channels."
    );
    let (_, listed) = server.call::<Vec<Channel>>("channels", &[]).await;
    assert_eq!(listed.expect("the list").len(), 5);
    // A new tab is welcomed with all five.
    let mut late = server.client("Late").await;
    late.join("General", None).await;
    people.still_chat().await;
}

/// The welcome to `hello`: the channels it lists (`None`: the tab has them) and the
/// list's version.
async fn welcome_to(server: &Server, hello: ClientFrame) -> (Option<Vec<String>>, String) {
    let mut tab = Client::connect(server).await;
    tab.send(&hello).await;
    tab.recv_until("Welcome", |frame| match frame {
        ServerFrame::Welcome {
            channels,
            channels_version,
            ..
        } => Some((
            channels
                .as_ref()
                .map(|all| all.iter().map(|c| c.name.clone()).collect()),
            channels_version.clone(),
        )),
        _ => None,
    })
    .await
}

/// A crowd coming back after a restart already shows the channel list: its
/// welcomes do not carry the list, so a hello costs the same however many channels
/// there are.
#[tokio::test]
async fn a_tab_that_shows_the_channel_list_is_welcomed_without_it() {
    let server = Server::start().await;
    for i in 0..30 {
        let (status, created) = server.create_channel(&format!("Room {i:02}")).await;
        assert_eq!(status, StatusCode::OK, "{created:?}");
    }
    let grant = server.claim("Ada").await;
    let hello = |channels_version: Option<String>| ClientFrame::Hello {
        name: grant.name.clone(),
        token: grant.token.clone(),
        channels_version,
    };
    let mut expected = vec!["General".to_owned()];
    expected.extend((0..30).map(|i| format!("Room {i:02}")));
    let (listed, version) = welcome_to(&server, hello(None)).await;
    assert_eq!(listed, Some(expected.clone()));
    let (listed, same) = welcome_to(&server, hello(Some(version.clone()))).await;
    assert_eq!((listed, &same), (None, &version));
    // Once the list has changed, the version a tab shows is stale: it gets the list.
    server
        .create_channel("Room 30")
        .await
        .1
        .expect("a new room");
    expected.push("Room 30".into());
    let (listed, newer) = welcome_to(&server, hello(Some(version.clone()))).await;
    assert_eq!(listed, Some(expected));
    assert_ne!(newer, version);
}

// --- 4. unbounded work in a server function --------------------------------------

#[tokio::test]
async fn megabyte_names_are_refused_before_any_work() {
    let server = Server::start().await;
    let mut people = Bystanders::arrive(&server).await;
    let huge = "\u{FDFA}".repeat(200_000);
    let body = format!("name={huge}&token=t");
    let started = Instant::now();
    for _ in 0..20 {
        let mut stream = connect_from(ATTACKER, server.addr).await;
        // Announced: refused from the headers, before a byte of the body is read.
        stream
            .write_all(&slow_post("release_name", "", body.len()))
            .await
            .unwrap();
        assert_eq!(status_within(&mut stream, RECV_TIMEOUT).await, Some(413));
    }
    // Sent in chunks, unannounced: refused once it passes the limit.
    let mut stream = connect_from(ATTACKER, server.addr).await;
    let chunk = "x".repeat(20_000);
    let chunked = format!(
        "POST /api/release_name HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{chunk}\r\n",
        chunk.len()
    );
    stream.write_all(chunked.as_bytes()).await.unwrap();
    assert_eq!(status_within(&mut stream, RECV_TIMEOUT).await, Some(413));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    // Within the size limit, a name too long is refused by its length, with the
    // reason, and costs no store work.
    let (_, released) = server
        .call::<()>(
            "release_name",
            &[("name", &"\u{FDFA}".repeat(1_000)), ("token", "t")],
        )
        .await;
    assert_eq!(released, Err(ApiError::Name(NameError::TooLong)));
    people.still_chat().await;
}

// --- 5. seats and tabs ---------------------------------------------------------------

#[tokio::test]
async fn one_person_holds_only_so_many_tabs() {
    let server = Server::start_with(&[("HEARTH_MAX_TABS_PER_PERSON", "3")]).await;
    let mut tabs = Vec::new();
    for _ in 0..3 {
        tabs.push(server.client("Ada").await);
    }
    let grant = server.claim("Ada").await;
    let hello = ClientFrame::Hello {
        name: grant.name.clone(),
        token: grant.token.clone(),
        channels_version: None,
    };
    // Welcomed (`Ok`), or refused with these words.
    let another_tab = || async {
        let mut tab = Client::connect(&server).await;
        tab.send(&hello).await;
        let answer = tab
            .recv_until("the answer to a hello", |frame| match frame {
                ServerFrame::Welcome { .. } => Some(Ok(())),
                ServerFrame::Error {
                    code: ErrorCode::TooManyTabs,
                    message,
                } => Some(Err(message.clone())),
                _ => None,
            })
            .await;
        (tab, answer)
    };
    let (mut fourth, refused) = another_tab().await;
    assert_eq!(
        refused,
        Err("This name is open in 3 tabs already. Close one and try again.".into())
    );
    assert_eq!(fourth.close_code().await, Some(CLOSE_POLICY));
    // Someone else is welcome; and once a tab closes (and the server has seen it
    // go), so is Ada's next one.
    server.client("Bob").await;
    tabs.pop().expect("a tab").close().await;
    let deadline = Instant::now() + RECV_TIMEOUT;
    while another_tab().await.1.is_err() {
        assert!(
            Instant::now() < deadline,
            "still refused after a tab closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The documented answer to "200 idle squatters in General": one address seats at
/// most `HEARTH_ROOM_SEATS_PER_ADDRESS` people in a room (20 by default), so a room
/// of 200 takes squatters on ten addresses, each of which may also claim only so
/// many names a minute and hold only so many connections.
#[tokio::test]
async fn squatters_from_one_address_fill_only_their_share_of_a_room() {
    let server = Server::start_with(&[
        ("HEARTH_ROOM_SEATS_PER_ADDRESS", "4"),
        ("HEARTH_ROOM_CAPACITY", "10"),
    ])
    .await;
    let mut people = Bystanders::arrive_dialed(
        &server,
        &Dial::from(SECOND_MACHINE),
        &Dial::from(SECOND_MACHINE),
    )
    .await;
    let mut squatters = Vec::new();
    for i in 0..4 {
        let mut squatter = server
            .client_dialed(&format!("Squatter {i}"), &Dial::from(ATTACKER))
            .await;
        squatter.join("General", None).await;
        squatters.push(squatter);
    }
    let mut fifth = server
        .client_dialed("Squatter 4", &Dial::from(ATTACKER))
        .await;
    fifth
        .send(&ClientFrame::Join {
            channel: "General".into(),
            since: None,
        })
        .await;
    let refused = fifth.refusal(ErrorCode::RoomFull).await;
    assert!(refused.contains("from your network"), "{refused}");
    // A squatter's second tab takes no seat; another machine still gets one.
    let mut second_tab = server
        .client_dialed("Squatter 0", &Dial::from(ATTACKER))
        .await;
    second_tab.join("General", None).await;
    let mut newcomer = server
        .client_dialed("Newcomer", &Dial::from(THIRD_MACHINE))
        .await;
    newcomer.join("General", None).await;
    people.still_chat().await;
}

// --- 6. names that look like others --------------------------------------------------

#[tokio::test]
async fn blank_and_ignorable_characters_make_no_second_ada() {
    let server = Server::start().await;
    let ada = server.claim("Ada").await;
    let claim = |name: String| {
        let server = &server;
        async move {
            server
                .call::<NameGrant>(
                    "claim_name",
                    &[("name", &name), ("token", "another browser")],
                )
                .await
                .1
        }
    };
    // A blank braille cell: drawn as nothing, keyed as a space.
    assert_eq!(
        claim("Ada\u{2800}".into()).await,
        Err(ApiError::NameTaken("Ada\u{2800}".into()))
    );
    assert_eq!(
        claim("\u{2800}".into()).await,
        Err(ApiError::Name(NameError::Invisible))
    );
    // Default ignorable: musical beam controls, shorthand format controls.
    for hidden in ['\u{1D173}', '\u{1D17A}', '\u{1BCA0}', '\u{1BCA3}'] {
        assert_eq!(
            claim(format!("A{hidden}da")).await,
            Err(ApiError::Name(NameError::Invisible)),
            "U+{:04X}",
            hidden as u32
        );
    }
    // The Hangul filler passes for a letter in a channel name; not any more.
    let (_, created) = server.create_channel("General\u{3164}").await;
    assert_eq!(
        created,
        Err(ApiError::ChannelName(ChannelNameError::BadCharacter))
    );
    // Ada is still Ada.
    let mut client = Client::connect(&server).await;
    client.hello(&ada.name, &ada.token).await;
}

// --- 7. DNS rebinding --------------------------------------------------------------------

/// A request to `path` naming `host`, answered with this status.
async fn status_for_host(server: &Server, path: &str, host: &str) -> u16 {
    let mut stream = TcpStream::connect(server.addr)
        .await
        .expect("the server accepts");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .expect("the request is written");
    status_within(&mut stream, RECV_TIMEOUT)
        .await
        .expect("an answer")
}

#[tokio::test]
async fn a_page_that_rebinds_its_name_to_hearth_is_refused_on_every_route() {
    let server = Server::start().await;
    let port = server.addr.port();
    let evil = format!("evil.example:{port}");
    for path in ["/", "/healthz", "/api/channels", "/pkg/hearth.css"] {
        assert_eq!(status_for_host(&server, path, &evil).await, 421, "{path}");
    }
    // The socket too, even with an Origin to match the Host, as a rebinding page has.
    let dial = Dial::default()
        .header("host", evil.clone())
        .header("origin", format!("http://{evil}"));
    match upgrade(&server, &dial).await {
        Err((421, body)) => assert!(body.contains("HEARTH_PUBLIC_URL"), "{body}"),
        Err((status, body)) => panic!("refused with {status}: {body}"),
        Ok(_) => panic!("a rebinding page opened a chat connection"),
    }
    // Addresses and localhost need no setting: the first run works anywhere.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(
            status_for_host(&server, "/healthz", &host).await,
            200,
            "{host}"
        );
    }
}

#[tokio::test]
async fn the_public_address_is_answered_and_no_other_name() {
    let server = Server::start_with(&[("HEARTH_PUBLIC_URL", "https://chat.example.org")]).await;
    assert_eq!(status_for_host(&server, "/", "chat.example.org").await, 200);
    assert_eq!(
        status_for_host(&server, "/", "chat.example.org.evil.example").await,
        421
    );
    // Behind its proxy, a page at the public address opens the socket.
    let dial = Dial::default()
        .header("host", "chat.example.org")
        .header("origin", "https://chat.example.org");
    assert!(upgrade(&server, &dial).await.is_ok());
    let downgraded = Dial::default()
        .header("host", "chat.example.org")
        .header("origin", "http://chat.example.org");
    assert!(matches!(upgrade(&server, &downgraded).await, Err((403, _))));
}

// --- 8. frames that are not sends ------------------------------------------------------

#[tokio::test]
async fn leaves_and_unreadable_frames_in_a_loop_are_refused_then_cut_off() {
    let server = Server::start_with(&[("HEARTH_SEND_BURST", "5"), ("HEARTH_SEND_RATE", "5")]).await;
    let mut people = Bystanders::arrive(&server).await;
    // Leaves are room changes (20 at once, then 5 a second, as joins); frames that
    // cannot be read take from the send budget (5 at once here).
    let floods = [
        (
            serde_json::to_string(&ClientFrame::Leave).unwrap(),
            "You are switching rooms too fast. Please wait a moment.",
        ),
        (
            r#"{"type":"no such thing"}"#.to_owned(),
            "You are sending too fast. Please wait a moment.",
        ),
    ];
    for (frame, expected) in floods {
        let mut looper = server.client("Lou").await;
        for _ in 0..25 {
            looper.send_raw(&frame).await;
        }
        let refused = looper.refusal(ErrorCode::RateLimited).await;
        assert_eq!(refused, expected, "{frame}");
        // Ignoring the refusals gets the connection cut off.
        for _ in 0..200 {
            if !looper.try_send_raw(&frame).await {
                break;
            }
        }
        assert_eq!(looper.close_code().await, Some(CLOSE_POLICY), "{frame}");
        people.still_chat().await;
    }
}

#[tokio::test]
async fn pings_take_from_the_send_budget_and_a_ping_flood_is_cut_off() {
    use tokio_tungstenite::tungstenite::Message;
    let server = Server::start_with(&[("HEARTH_SEND_BURST", "5"), ("HEARTH_SEND_RATE", "5")]).await;
    let mut people = Bystanders::arrive(&server).await;
    let mut pinger = server.client("Pip").await;
    for _ in 0..200 {
        if pinger.send_ws(Message::Ping(vec![1].into())).await.is_err() {
            break;
        }
    }
    assert_eq!(pinger.close_code().await, Some(CLOSE_POLICY));
    people.still_chat().await;
}

// --- 9. names taken over ---------------------------------------------------------------

#[tokio::test]
async fn a_name_taken_over_after_going_unused_closes_its_old_holders_tabs() {
    // No idle days: any other browser may take a name at once.
    let server = Server::start_with(&[("HEARTH_NAME_IDLE_DAYS", "0")]).await;
    let old = server.claim("Ada").await;
    let mut old_tab = Client::connect(&server).await;
    old_tab.hello(&old.name, &old.token).await;
    old_tab.join("General", None).await;
    let (status, taken) = server
        .call::<NameGrant>(
            "claim_name",
            &[("name", "ada"), ("token", "the next browser")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{taken:?}");
    assert_eq!(old_tab.close_code().await, Some(CLOSE_NAME_GIVEN_UP));
    // The new holder chats as Ada; the old token no longer says hello.
    let mut new_tab = Client::connect(&server).await;
    new_tab.hello("Ada", "the next browser").await;
    new_tab.join("General", None).await;
    common::assert_hello_refused(&server, "Ada", &old.token).await;
}
