//! An echo server on Hearth's own WebSocket layer (`socket`, `reader`, `frame`, the
//! same code that serves `/ws`), for the Autobahn|Testsuite conformance run
//! (`scripts/autobahn.sh`). Text is echoed; binary is refused with 1003, as Hearth
//! refuses it. Messages may be far larger than Hearth's 16 KiB, so that the suite's
//! large-message cases (section 9) exercise the same paths.
//!
//! Usage: `wsecho [ADDR]` (default `127.0.0.1:9001`); it serves, through Hearth's
//! accept loop, until killed.

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hearth::server::config::Config;
use hearth::server::frame;
use hearth::server::limits::Guards;
use hearth::server::listen;
use hearth::server::socket::{self, Incoming, Socket, close_code};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;

/// Autobahn's largest messages are 16 MiB.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into())
        .parse()
        .expect("an address such as 127.0.0.1:9001");
    // Hearth's own accept loop, as `/ws` is served.
    let listener = listen::bind(addr).expect("bind the echo server");
    println!("wsecho listening on ws://{addr}");
    let app = Router::new().fallback(get(upgrade));
    let limits = listen::ListenLimits {
        header_timeout: Duration::from_secs(10),
        drain_timeout: Duration::from_secs(1),
    };
    let guards = Guards::new(&Config::default());
    listen::serve(listener, app, limits, guards, std::future::pending()).await;
}

async fn upgrade(mut request: Request) -> Response {
    let switching = match socket::accept(request.headers()) {
        Ok(response) => response,
        Err(refusal) => return refusal.into_response(),
    };
    let upgraded = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgraded.await else { return };
        let Ok(parts) = upgraded.downcast::<TokioIo<listen::WriteDeadline>>() else {
            eprintln!("an upgraded connection was not a TCP stream");
            return;
        };
        let socket = Socket::new(
            parts.io.into_inner().into_inner(),
            &parts.read_buf,
            MAX_MESSAGE,
            usize::MAX,
        );
        echo(socket).await;
    });
    switching
}

async fn echo(mut socket: Socket) {
    let (code, reason) = loop {
        match socket.recv().await {
            Ok(Incoming::Text(text)) => {
                socket.outbox.push_own(frame::text(text.as_bytes()));
            }
            Ok(Incoming::Binary) => break (close_code::UNSUPPORTED, "text frames only"),
            Ok(Incoming::Close(_)) => break (close_code::NORMAL, ""),
            Ok(Incoming::Alive) => {}
            Err(error) => match error.close_code() {
                Some(close) => break close,
                None => return,
            },
        }
        if socket.outbox.flush(WRITE_TIMEOUT).await.is_err() {
            return;
        }
    };
    socket.close(code, reason).await;
}
