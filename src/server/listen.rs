//! The accept loop: TCP_NODELAY, a deadline for request headers (a client that sends
//! them a byte at a time is dropped) and for answers left unread, a cap on open HTTP
//! connections in total and per address, the client's address for handlers, and a
//! graceful stop.

use super::limits::{Guards, Refusal};
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Sleep;
use tower::ServiceExt;

/// Handshakes the kernel completes and holds until they are accepted. Past it, it
/// drops them and the client tries again a second later (then three, then seven):
/// tokio's default of 1,024 is soon full when thousands of tabs reconnect at once
/// after a restart. The kernel caps it at `net.core.somaxconn` (4,096 by default).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds the listening socket (address reuse on, so a restart finds the port free).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Settings of the accept loop.
#[derive(Clone, Debug)]
pub struct ListenLimits {
    /// Time a client has to send a request's headers, and the longest it may
    /// leave an answer unread.
    pub header_timeout: Duration,
    /// How long a stop waits for requests in flight.
    pub drain_timeout: Duration,
}

/// Serves `router` until `stop` completes, then stops accepting and lets requests in
/// flight finish (up to the drain timeout). Open HTTP connections (not counting
/// upgraded WebSockets, which the WebSocket handler counts) are capped by `guards`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ListenLimits,
    guards: Arc<Guards>,
    stop: impl Future<Output = ()>,
) {
    let (stopping, stop_seen) = watch::channel(());
    let mut stop = pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // Chat frames are small and must leave at once: without TCP_NODELAY, Nagle's
        // algorithm holds them until the peer's delayed ACK (tens of milliseconds).
        let _ = stream.set_nodelay(true);
        // Held until the connection ends, however its task ends.
        let counted = match guards.admit_http(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                tokio::spawn(refuse(stream, refusal));
                continue;
            }
        };
        let router = router.clone();
        let mut stop_seen = stop_seen.clone();
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let service = router.map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request.map(Body::new)
            });
            // HTTP/1 only: its header deadline starts when the connection opens. (A
            // server that also speaks cleartext HTTP/2 first waits, with no deadline,
            // to learn which the client speaks; browsers use HTTP/2 only over TLS.)
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let stream = WriteDeadline::new(stream, header_timeout);
            let connection = builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .with_upgrades();
            let mut connection = pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                }
                _ = stop_seen.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(counted);
        });
    }
    // No new handshakes while draining: clients told to reconnect would wait in
    // the backlog of a server that is going away.
    drop(listener);
    drop(stop_seen);
    let _ = stopping.send(());
    // Every connection task holds a receiver; they are all gone once drained.
    let _ = tokio::time::timeout(limits.drain_timeout, stopping.closed()).await;
}

/// A plain HTTP connection whose answers must be taken: a write that makes no
/// progress for `limit` fails, and the connection with it. Without it a client that
/// asks for pages and reads nothing (a tiny receive window) would hold its
/// connection, and its share of the server's, for as long as it liked. The timer
/// exists only while a write waits; an upgraded WebSocket leaves it behind
/// ([`WriteDeadline::into_inner`]) and has its own.
pub struct WriteDeadline {
    stream: TcpStream,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl WriteDeadline {
    pub fn new(stream: TcpStream, limit: Duration) -> Self {
        Self {
            stream,
            limit,
            stalled: None,
        }
    }

    pub fn into_inner(self) -> TcpStream {
        self.stream
    }

    /// What a write that returned `polled` means: done (the deadline is forgotten),
    /// or waiting (within the deadline, which starts with the first wait).
    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let limit = self.limit;
                let stalled = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match stalled.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client took nothing of its answer in time",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for WriteDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.progress(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.progress(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_flush(cx);
        self.progress(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// How long a refused connection is read from after its answer, so that the client
/// reads the answer rather than a reset (closing on unread bytes resets).
const REFUSAL_LINGER: Duration = Duration::from_millis(500);

/// Answers a connection beyond a cap (503 for the server's, 429 for its address's
/// share) and closes it, without looking at its request.
async fn refuse(mut stream: TcpStream, refusal: Refusal) {
    let (status, body) = match refusal {
        Refusal::ServerFull => (
            "503 Service Unavailable",
            "The server has too many open connections. Please try again shortly.",
        ),
        Refusal::TooManyFromAddress => (
            "429 Too Many Requests",
            "Too many connections from your address are open. Please try again shortly.",
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\nRetry-After: 5\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        stream.write_all(response.as_bytes()),
    )
    .await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_of_connections_is_held_until_accepted() {
        // More than tokio's default backlog of 1,024: with it, the kernel dropped the
        // handshakes past it and those clients waited a second to try again.
        const BURST: usize = 1_500;
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let connects = (0..BURST).map(|_| async move {
            tokio::time::timeout(Duration::from_millis(800), TcpStream::connect(addr)).await
        });
        let results = futures_util::future::join_all(connects).await;
        let held = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        assert_eq!(held, BURST, "handshakes completed before any was accepted");
        drop(listener);
    }
}
