//! Every refusal of every server function, over real HTTP: the status a client
//! expects (a name held or a channel that exists is a conflict, bad input is the
//! caller's, a limit says how long to wait, a store away is 503), the same code the
//! socket uses, and the typed body the page decodes. `Server::call` checks status,
//! `Hearth-Error` and `Retry-After` against one another for every refusal
//! (`common::assert_described`); these tests check the numbers themselves.

mod common;

use common::pg_server::Postgres;
use common::{Server, test_token};
use hearth::protocol::{ApiError, Channel, ChannelNameError, NameError, NameGrant};
use reqwest::StatusCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn claim(
    server: &Server,
    name: &str,
    token: &str,
) -> (StatusCode, Result<NameGrant, ApiError>) {
    server
        .call("claim_name", &[("name", name), ("token", token)])
        .await
}

async fn create(
    server: &Server,
    channel: &str,
    grant: &NameGrant,
) -> (StatusCode, Result<Channel, ApiError>) {
    server
        .call(
            "create_channel",
            &[
                ("name", channel),
                ("as_name", &grant.name),
                ("token", &grant.token),
            ],
        )
        .await
}

/// A POST the way a script would make it, returning the status and two headers.
async fn post(
    server: &Server,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> (StatusCode, Option<String>, Option<String>, String) {
    let mut request = server
        .http()
        .post(server.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the server answers");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (code, retry) = (header("hearth-error"), header("retry-after"));
    (
        response.status(),
        code,
        retry,
        response.text().await.expect("the body"),
    )
}

#[tokio::test]
async fn claiming_and_releasing_names_answer_what_happened() {
    let server = Server::start().await;
    let ada = server.claim("Ada").await;

    // Claimed, and claimed again by its holder (another tab): 200.
    assert_eq!(claim(&server, "Ada", &ada.token).await.0, StatusCode::OK);
    // Held by someone else: a conflict, not a fault.
    let (status, refused) = claim(&server, "ADA", "someone-else").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(refused, Err(ApiError::NameTaken("ADA".into())));
    // Not a name anyone may hold: the request is the caller's to fix.
    for (name, why) in [
        ("", NameError::Empty),
        (&*"n".repeat(33), NameError::TooLong),
    ] {
        let (status, refused) = claim(&server, name, "t").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name:?}");
        assert_eq!(refused, Err(ApiError::Name(why)));
    }
    // A request without the arguments the function takes: 400, in words.
    let (status, refused) = server
        .call::<NameGrant>("claim_name", &[("nom", "Ada")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let Err(ApiError::BadRequest(why)) = refused else {
        panic!("{refused:?}")
    };
    assert!(why.contains("name"), "says what is missing: {why}");

    // Releasing with a token that does not hold the name: forbidden.
    let (status, refused) = server
        .call::<()>("release_name", &[("name", "Ada"), ("token", "a-guess")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(refused, Err(ApiError::NotIdentified));
    let (status, refused) = server
        .call::<()>("release_name", &[("name", ""), ("token", "a-guess")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused, Err(ApiError::Name(NameError::Empty)));
    let (status, released) = server
        .call::<()>("release_name", &[("name", "Ada"), ("token", &ada.token)])
        .await;
    assert_eq!((status, released), (StatusCode::OK, Ok(())));
}

#[tokio::test]
async fn too_many_claims_say_how_long_to_wait() {
    let server = Server::start_with(&[("HEARTH_CLAIMS_PER_MINUTE", "2")]).await;
    server.claim("Ada").await;
    server.claim("Bob").await;
    let (status, refused) = claim(&server, "Cleo", &test_token("Cleo")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused, Err(ApiError::TooFast));
    // Two a minute: one more is allowed within 30 seconds.
    let (_, code, retry, _) = post(&server, "/api/claim_name", &[], "name=Cleo".into()).await;
    assert_eq!(code.as_deref(), Some("rate_limited"));
    assert_eq!(retry.as_deref(), Some("30"));
    // Releases count too.
    let (status, _) = server
        .call::<()>("release_name", &[("name", "Ada"), ("token", "t")])
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn creating_channels_answers_what_happened() {
    let server = Server::start_with(&[("HEARTH_MAX_CHANNELS", "3")]).await;
    let ada = server.claim("Ada").await;

    let (status, created) = create(&server, "Rust", &ada).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(created.unwrap().name, "Rust");
    let (status, refused) = create(&server, "rust", &ada).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(refused, Err(ApiError::ChannelExists("Rust".into())));
    let (status, refused) = create(&server, "a<b>", &ada).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        refused,
        Err(ApiError::ChannelName(ChannelNameError::BadCharacter))
    );
    let stranger = NameGrant {
        name: "Ada".into(),
        token: "a-guess".into(),
    };
    let (status, refused) = create(&server, "Mine", &stranger).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(refused, Err(ApiError::NotIdentified));

    // General, Rust, and one more: then the server's list is full.
    assert_eq!(create(&server, "Go", &ada).await.0, StatusCode::OK);
    let (status, refused) = create(&server, "Zig", &ada).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(refused, Err(ApiError::TooManyChannels(3)));
}

#[tokio::test]
async fn too_many_channels_an_hour_say_how_long_to_wait() {
    let server = Server::start_with(&[("HEARTH_CHANNELS_PER_HOUR", "2")]).await;
    let ada = server.claim("Ada").await;
    assert_eq!(create(&server, "One", &ada).await.0, StatusCode::OK);
    assert_eq!(create(&server, "Two", &ada).await.0, StatusCode::OK);
    let (status, refused) = create(&server, "Three", &ada).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused, Err(ApiError::ChannelsTooFast(2)));
    // Two an hour: the next one is due within half an hour.
    let body = format!("name=Three&as_name=Ada&token={}", ada.token);
    let (_, code, retry, _) = post(&server, "/api/create_channel", &[], body).await;
    assert_eq!(code.as_deref(), Some("rate_limited"));
    assert_eq!(retry.as_deref(), Some("1800"));
}

#[tokio::test]
async fn the_gate_answers_every_function_alike() {
    let server = Server::start_with(&[("HEARTH_API_PER_MINUTE", "4")]).await;
    let (status, channels) = server.call::<Vec<Channel>>("channels", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(channels.unwrap()[0].name, "General");

    let (status, code, _, body) = post(
        &server,
        "/api/channels",
        &[("origin", "https://elsewhere.example")],
        String::new(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(code.as_deref(), Some("cross_site"));
    assert_eq!(
        serde_json::from_str::<ApiError>(&body).unwrap(),
        ApiError::CrossSite
    );

    let (status, code, _, _) = post(
        &server,
        "/api/channels",
        &[("host", "rebound.example")],
        String::new(),
    )
    .await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(code.as_deref(), Some("wrong_host"));

    let (status, code, _, _) = post(&server, "/api/claim_name", &[], "x".repeat(17 * 1024)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code.as_deref(), Some("too_large"));

    // Four calls a minute from one address: the refusal of the body too large
    // counted; those of a foreign site or host came before counting.
    for _ in 0..2 {
        assert_eq!(
            server.call::<Vec<Channel>>("channels", &[]).await.0,
            StatusCode::OK
        );
    }
    let (status, code, retry, _) = post(&server, "/api/channels", &[], String::new()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(code.as_deref(), Some("rate_limited"));
    assert_eq!(retry.as_deref(), Some("15"));
}

#[tokio::test]
async fn a_body_that_never_arrives_is_a_timeout() {
    let server = Server::start_with(&[("HEARTH_HEADER_TIMEOUT_SECS", "1")]).await;
    let addr = server.addr;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!(
            "POST /api/claim_name HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 20\r\n\r\nname="
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
        .await
        .expect("answered and closed")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 408"), "{answer}");
    assert!(answer.contains("hearth-error: too_slow"), "{answer}");
}

#[tokio::test]
async fn a_store_away_is_unavailable_for_a_while_not_a_fault() {
    let postgres = Postgres::start();
    let server = Server::start_with(&[("HEARTH_DATABASE_URL", &postgres.database())]).await;
    let ada = server.claim("Ada").await;
    postgres.kill();

    let (status, refused) = claim(&server, "Bob", &test_token("Bob")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused, Err(ApiError::Unavailable));
    let (status, refused) = create(&server, "Outage", &ada).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused, Err(ApiError::Unavailable));
    let (status, refused) = server
        .call::<()>("release_name", &[("name", "Ada"), ("token", &ada.token)])
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused, Err(ApiError::Unavailable));
    let (_, code, retry, _) = post(&server, "/api/claim_name", &[], "name=Bob".into()).await;
    assert_eq!(code.as_deref(), Some("unavailable"));
    assert_eq!(retry.as_deref(), Some("5"));
}

#[tokio::test]
async fn metrics_count_answers_by_class() {
    let server = Server::start().await;
    let ada = server.claim("Ada").await;
    server.claim("Bob").await;
    assert_eq!(
        claim(&server, "Ada", "someone-else").await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        create(&server, "General", &ada).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        claim(&server, "", "t").await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let metrics = server
        .http()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hearth_api_answers_total{class=\"2xx\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hearth_api_answers_total{class=\"4xx\"} 3"),
        "{metrics}"
    );
    assert!(!metrics.contains("class=\"5xx\""), "{metrics}");
}
