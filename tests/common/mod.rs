//! Helpers that drive the real `hearth` binary over HTTP and WebSocket, the way a
//! browser would, so the tests exercise the whole stack rather than the hub alone.

#![allow(dead_code)] // Each test binary uses a different subset of these helpers.

pub mod bystanders;
#[path = "../../src/server/store/postgres/test_server.rs"]
pub mod pg_server;
#[path = "../../src/server/bus/test_server.rs"]
pub mod redis_server;
#[path = "../../src/server/store/test_port.rs"]
pub mod test_port;
use redis_server::restartable_port;

use futures_util::{SinkExt, StreamExt};
use hearth::protocol::{
    ApiError, Channel, ChatMessage, ClientFrame, ErrorCode, NameGrant, Seq, ServerFrame,
};
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Long enough for a loaded CI machine, short enough that a missing frame fails the
/// test quickly instead of hanging it.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// The close code of a tab whose name was given up (in another tab, or through
/// another node).
pub const CLOSE_NAME_GIVEN_UP: u16 = 4001;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
const READY_PREFIX: &str = "hearth listening on http://";

/// A running server, killed when dropped. Its data directory lives as long as this
/// value, so a test can stop the process and start it again on the same data.
pub struct Server {
    pub addr: SocketAddr,
    http: reqwest::Client,
    /// `None` while stopped.
    process: Option<Process>,
    env: Vec<(String, String)>,
    data_dir: tempfile::TempDir,
}

struct Process {
    child: Child,
    // The server prints to stdout after startup too (in principle); keeping the pipe
    // open means such a write can never fail with a broken pipe and kill it.
    _stdout: Lines<BufReader<ChildStdout>>,
}

/// A refusal over HTTP says what it is three ways that must agree: its status (the
/// one table, `ErrorCode::http_status`), its code's word in `Hearth-Error` (the
/// socket's word), and `Retry-After` exactly when waiting is what cures it.
pub fn assert_described(
    url: &str,
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    error: &ApiError,
) {
    assert_eq!(
        status.as_u16(),
        error.http_status(),
        "{url} refused {error:?} with {status}"
    );
    assert_eq!(
        headers.get("hearth-error").and_then(|v| v.to_str().ok()),
        Some(error.code().as_str()),
        "{url} refused {error:?} without its code"
    );
    let retry_after = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if matches!(status.as_u16(), 429 | 503) {
        assert!(
            retry_after.is_some_and(|s| s >= 1),
            "{url} answered {status} without a Retry-After in seconds"
        );
    } else {
        assert_eq!(
            retry_after, None,
            "{url} answered {status} with a Retry-After"
        );
    }
}

impl Server {
    /// A server with default settings.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A server with extra environment variables, e.g. `("HEARTH_HISTORY", "100")`.
    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        Self::launch(SocketAddr::from(([127, 0, 0, 1], 0)), env).await
    }

    /// A server that [`Server::restart`] brings back on the same address, as a
    /// reconnecting browser expects after the host comes back.
    pub async fn start_restartable(env: &[(&str, &str)]) -> Self {
        Self::launch(SocketAddr::from(([127, 0, 0, 1], restartable_port())), env).await
    }

    async fn launch(addr: SocketAddr, env: &[(&str, &str)]) -> Self {
        let mut server = Self {
            addr,
            http: http_client(),
            process: None,
            env: env
                .iter()
                .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            data_dir: tempfile::tempdir().expect("create a data directory"),
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        assert!(self.process.is_none(), "the server is already running");
        let mut command = Command::new(env!("CARGO_BIN_EXE_hearth"));
        command
            .current_dir(self.data_dir.path())
            .env("LEPTOS_SITE_ADDR", self.addr.to_string())
            .env("HEARTH_DATA_DIR", self.data_dir.path())
            // A developer's own Leptos.toml must not change what the tests see.
            .env("HEARTH_CONFIG", "/dev/null")
            .env_remove("HEARTH_HISTORY")
            .env_remove("HEARTH_ROOM_CAPACITY")
            .env_remove("HEARTH_ALLOWED_ORIGINS")
            .env_remove("HEARTH_STORE")
            .env_remove("HEARTH_PING_INTERVAL_SECS")
            .env_remove("HEARTH_IDLE_TIMEOUT_SECS")
            .env_remove("HEARTH_MAX_CONNS")
            .env_remove("HEARTH_MAX_CONNS_PER_IP")
            .env_remove("HEARTH_HEADER_TIMEOUT_SECS")
            .env_remove("HEARTH_PUBLIC_URL")
            .env_remove("HEARTH_TRUSTED_PROXIES")
            .env_remove("HEARTH_MAX_TABS_PER_PERSON")
            .env_remove("HEARTH_MAX_CHANNELS")
            .env_remove("HEARTH_FRAME_ANCESTORS")
            .env_remove("HEARTH_ASSET_HASHES")
            .env_remove("HEARTH_DATABASE_URL")
            .env_remove("HEARTH_REDIS_URL")
            .env_remove("HEARTH_RETENTION")
            .env_remove("LEPTOS_SITE_ROOT")
            // These tests send, claim and connect far faster than people, and put
            // dozens of people in a room from one address; the limits have tests
            // of their own, which set them here explicitly.
            .env("HEARTH_SEND_RATE", "1000000")
            .env("HEARTH_SEND_BURST", "1000000")
            .env("HEARTH_CLAIMS_PER_MINUTE", "1000000")
            .env("HEARTH_API_PER_MINUTE", "1000000")
            .env("HEARTH_CHANNELS_PER_HOUR", "1000000")
            .env("HEARTH_ROOM_SEATS_PER_ADDRESS", "1000000")
            .env("HEARTH_MAX_HTTP_CONNECTIONS_PER_IP", "1000000")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Server logs only clutter test output; set HEARTH_TEST_LOGS=1 to see them.
            .stderr(if std::env::var_os("HEARTH_TEST_LOGS").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn the hearth binary");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let addr = timeout(STARTUP_TIMEOUT, async {
            while let Some(line) = stdout.next_line().await.expect("read server stdout") {
                if let Some(addr) = line.strip_prefix(READY_PREFIX) {
                    return addr.trim().parse::<SocketAddr>().unwrap_or_else(|e| {
                        panic!("server announced an unparsable address {line:?}: {e}")
                    });
                }
            }
            panic!(
                "server exited before printing {READY_PREFIX:?} (run with HEARTH_TEST_LOGS=1 to see why)"
            );
        })
        .await
        .unwrap_or_else(|_| panic!("server did not print {READY_PREFIX:?} within {STARTUP_TIMEOUT:?}"));
        if self.addr.port() != 0 {
            assert_eq!(addr, self.addr, "the server came back on another address");
        }
        self.addr = addr;
        // Pooled keep-alive connections to a previous process are dead.
        self.http = http_client();
        self.process = Some(Process {
            child,
            _stdout: stdout,
        });
    }

    /// Kills the server with SIGKILL, as a crash or an OOM kill would, and waits
    /// until the process is gone.
    pub async fn kill(&mut self) {
        let mut process = self.process.take().expect("the server is running");
        process
            .child
            .start_kill()
            .expect("send SIGKILL to the server");
        timeout(STARTUP_TIMEOUT, process.child.wait())
            .await
            .expect("a killed server exits at once")
            .expect("wait for the killed server");
    }

    /// Asks the server to stop with SIGTERM, as a service manager does, and waits
    /// until it has exited cleanly.
    pub async fn terminate(&mut self) {
        self.signal_terminate().await;
        let exit = self.wait_exit(STARTUP_TIMEOUT).await;
        assert!(
            exit.success(),
            "server stopped by SIGTERM exited with {exit}"
        );
    }

    /// Sends SIGTERM and returns at once, so a test can watch what clients see
    /// while the server stops; [`Server::wait_exit`] then reaps it.
    pub async fn signal_terminate(&self) {
        let pid = self.pid();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .expect("run kill(1)");
        assert!(status.success(), "kill -TERM {pid} failed: {status}");
    }

    /// Waits at most `limit` for the server to exit by itself, returning how it
    /// exited.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let mut process = self.process.take().expect("the server is running");
        timeout(limit, process.child.wait())
            .await
            .unwrap_or_else(|_| panic!("server did not exit within {limit:?}"))
            .expect("wait for the server to exit")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process
            .as_ref()
            .and_then(|process| process.child.id())
            .expect("the server is running")
    }

    /// The server's resident memory in bytes, as the kernel counts it (`VmRSS`).
    pub fn rss_bytes(&self) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        let kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no VmRSS in {path}: {status}"));
        kib * 1024
    }

    /// Starts the server again on the same address and data directory.
    pub async fn restart(&mut self) {
        self.spawn().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The embedded store's file, for tests that look inside it.
    pub fn data_file(&self) -> std::path::PathBuf {
        self.data_dir.path().join("hearth.db")
    }

    /// Sets an environment variable for the next start (after [`Server::kill`]).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Calls a server function the way the page does (a url-encoded POST), returning
    /// the HTTP status and either the decoded value or the decoded `ApiError`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        form: &[(&str, &str)],
    ) -> (reqwest::StatusCode, Result<T, ApiError>) {
        self.call_via(&self.http, endpoint, form).await
    }

    /// [`Server::call`] through a given HTTP client, such as one from
    /// [`http_client_from`] that plays another machine.
    pub async fn call_via<T: DeserializeOwned>(
        &self,
        http: &reqwest::Client,
        endpoint: &str,
        form: &[(&str, &str)],
    ) -> (reqwest::StatusCode, Result<T, ApiError>) {
        let url = self.url(&format!("/api/{endpoint}"));
        let response = http
            .post(&url)
            .form(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("read the body of POST {url}: {e}"));
        // A refusal that something is not found names its code; a missing route
        // does not.
        assert!(
            status != reqwest::StatusCode::NOT_FOUND || headers.contains_key("hearth-error"),
            "server function {url} is not routed: {body}"
        );
        let result = if status.is_success() {
            Ok(serde_json::from_str(&body).unwrap_or_else(|e| {
                panic!("POST {url} answered {status} with an unexpected body {body:?}: {e}")
            }))
        } else {
            let error: ApiError = serde_json::from_str(&body).unwrap_or_else(|e| {
                panic!(
                    "POST {url} answered {status} with a body that is not an ApiError {body:?}: {e}"
                )
            });
            assert_described(&url, status, &headers, &error);
            Err(error)
        };
        (status, result)
    }

    /// Claims a display name the way the page does, returning its token. Claiming a
    /// name this test already claimed returns the same grant (a second tab).
    pub async fn claim(&self, name: &str) -> NameGrant {
        let token = test_token(name);
        let (_, grant) = self
            .call::<NameGrant>("claim_name", &[("name", name), ("token", &token)])
            .await;
        grant.unwrap_or_else(|e| panic!("claiming {name:?} refused: {e}"))
    }

    /// Creates a channel as a person who holds their name, as the page does.
    pub async fn create_channel(
        &self,
        name: &str,
    ) -> (reqwest::StatusCode, Result<Channel, ApiError>) {
        let maker = self.claim("Channel Maker").await;
        self.call::<Channel>(
            "create_channel",
            &[
                ("name", name),
                ("as_name", &maker.name),
                ("token", &maker.token),
            ],
        )
        .await
    }

    /// Claims the name, opens a socket and says hello, returning the client once
    /// welcomed.
    pub async fn client(&self, name: &str) -> Client {
        let grant = self.claim(name).await;
        let mut client = Client::connect(self).await;
        client.hello(&grant.name, &grant.token).await;
        client
    }

    /// [`Server::client`] on a socket opened as `dial` says.
    pub async fn client_dialed(&self, name: &str, dial: &Dial) -> Client {
        let grant = self.claim(name).await;
        let (mut client, _) = Client::dial(self, dial)
            .await
            .unwrap_or_else(|e| panic!("WebSocket connect as {name:?} with {dial:?}: {e}"));
        client.hello(&grant.name, &grant.token).await;
        client
    }
}

/// How to open a WebSocket when a browser's defaults are not what a test needs.
#[derive(Clone, Debug, Default)]
pub struct Dial {
    /// The local address to connect from. Every 127.x.y.z is loopback on Linux, so
    /// one machine can play several.
    pub from: Option<IpAddr>,
    /// The socket's receive buffer: a small one makes a client that stops reading
    /// push back on the server after a few kilobytes instead of megabytes.
    pub recv_buffer: Option<u32>,
    /// Extra request headers, such as `origin` (names in lower case).
    pub headers: Vec<(&'static str, String)>,
}

impl Dial {
    pub fn from(ip: impl Into<IpAddr>) -> Self {
        Self {
            from: Some(ip.into()),
            ..Self::default()
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// Attempts a WebSocket upgrade as `dial` says: the client and the server's `101`
/// response, or the refusal's HTTP status and body.
pub async fn upgrade(server: &Server, dial: &Dial) -> Result<(Client, Response), (u16, String)> {
    match Client::dial(server, dial).await {
        Ok(accepted) => Ok(accepted),
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((response.status().as_u16(), body))
        }
        Err(e) => panic!("WebSocket upgrade with {dial:?} failed oddly: {e}"),
    }
}

/// One browser tab's WebSocket.
pub struct Client {
    pub name: String,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames received but not yet consumed by a test, oldest first.
    backlog: VecDeque<ServerFrame>,
}

impl Client {
    /// Opens `/ws` as `dial` says, without saying hello; returns the server's
    /// `101` response too.
    pub async fn dial(
        server: &Server,
        dial: &Dial,
    ) -> Result<(Self, Response), tungstenite::Error> {
        let mut request = server
            .ws_url()
            .into_client_request()
            .expect("a valid WebSocket URL");
        for (name, value) in &dial.headers {
            request.headers_mut().insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).expect("a valid header value"),
            );
        }
        let socket = TcpSocket::new_v4()?;
        if let Some(size) = dial.recv_buffer {
            socket.set_recv_buffer_size(size)?;
        }
        if let Some(ip) = dial.from {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let opened = timeout(RECV_TIMEOUT, async {
            let stream = socket.connect(server.addr).await?;
            // As a browser does; and Nagle's wait would count against the server.
            stream.set_nodelay(true)?;
            tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)).await
        })
        .await
        .unwrap_or_else(|_| panic!("WebSocket upgrade with {dial:?} timed out"));
        let (ws, response) = opened?;
        Ok((
            Self {
                name: String::new(),
                ws,
                backlog: VecDeque::new(),
            },
            response,
        ))
    }

    /// Opens `/ws` without saying hello.
    pub async fn connect(server: &Server) -> Self {
        Self::try_connect(&server.ws_url())
            .await
            .unwrap_or_else(|e| panic!("WebSocket connect to {}: {e}", server.ws_url()))
    }

    /// Opens a WebSocket at `ws_url`, or says why it could not.
    pub async fn try_connect(ws_url: &str) -> Result<Self, String> {
        let (ws, _) = timeout(RECV_TIMEOUT, tokio_tungstenite::connect_async(ws_url))
            .await
            .map_err(|_| format!("no answer within {RECV_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        Ok(Self {
            name: String::new(),
            ws,
            backlog: VecDeque::new(),
        })
    }

    /// Opens a WebSocket at `ws_url`, retrying with backoff as the page does while
    /// the server is down, for at most `within`.
    pub async fn connect_retrying(ws_url: &str, within: Duration) -> Self {
        let deadline = tokio::time::Instant::now() + within;
        let mut backoff = Duration::from_millis(20);
        loop {
            match Self::try_connect(ws_url).await {
                Ok(client) => return client,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    panic!("could not reconnect to {ws_url} within {within:?}: {e}")
                }
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    /// Says hello and checks the welcome; returns the channels it lists.
    pub async fn hello(&mut self, name: &str, token: &str) -> Vec<hearth::protocol::Channel> {
        self.send(&ClientFrame::Hello {
            name: name.into(),
            token: token.into(),
            channels_version: None,
        })
        .await;
        let (welcomed, channels) = self
            .recv_until("Welcome", |frame| match frame {
                ServerFrame::Welcome { name, channels, .. } => Some((
                    name.clone(),
                    channels
                        .clone()
                        .expect("a tab that shows no list is sent the list"),
                )),
                ServerFrame::Error { code, message } => {
                    panic!("hello as {name:?} refused: {code:?}: {message}")
                }
                _ => None,
            })
            .await;
        self.name = welcomed;
        channels
    }

    pub async fn send(&mut self, frame: &ClientFrame) {
        let json = serde_json::to_string(frame).expect("client frames serialize");
        self.send_raw(&json).await;
    }

    pub async fn send_raw(&mut self, text: &str) {
        timeout(RECV_TIMEOUT, self.ws.send(Message::text(text)))
            .await
            .expect("WebSocket send timed out")
            .expect("WebSocket send");
    }

    /// Sends several frames in one write, so that the server reads them together,
    /// as from a client that pipelines.
    pub async fn send_batch(&mut self, frames: &[ClientFrame]) {
        assert!(
            self.try_send_batch(frames).await,
            "[{}] WebSocket send failed",
            self.name
        );
    }

    /// [`Client::send_batch`] that returns false when the connection is gone.
    pub async fn try_send_batch(&mut self, frames: &[ClientFrame]) -> bool {
        timeout(RECV_TIMEOUT, async {
            for frame in frames {
                let json = serde_json::to_string(frame).expect("client frames serialize");
                self.ws.feed(Message::text(json)).await?;
            }
            self.ws.flush().await
        })
        .await
        .expect("WebSocket send timed out")
        .is_ok()
    }

    /// Sends any WebSocket message, hand-made frames included, and says whether the
    /// connection took it.
    pub async fn send_ws(&mut self, message: Message) -> Result<(), tungstenite::Error> {
        timeout(RECV_TIMEOUT, self.ws.send(message))
            .await
            .expect("WebSocket send timed out")
    }

    /// Writes bytes to the TCP stream under the WebSocket, bypassing the framing:
    /// what a hostile client can send that no WebSocket library would.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let MaybeTlsStream::Plain(stream) = self.ws.get_mut() else {
            panic!("tests use plain TCP")
        };
        timeout(RECV_TIMEOUT, stream.write_all(bytes))
            .await
            .expect("raw write timed out")
    }

    /// The TCP stream under the WebSocket.
    pub fn tcp(&self) -> &TcpStream {
        let MaybeTlsStream::Plain(stream) = self.ws.get_ref() else {
            panic!("tests use plain TCP")
        };
        stream
    }

    /// Reads until the connection ends, keeping the frames on the way for later
    /// calls, and returns the code of the server's close frame, or `None` when it
    /// hung up without one. Panics if it does not end within `limit`.
    pub async fn close_code_within(&mut self, limit: Duration) -> Option<u16> {
        let name = self.name.clone();
        timeout(limit, async {
            loop {
                match self.next_event().await {
                    Event::Frame(frame) => self.backlog.push_back(frame),
                    Event::Closed(code) => return code,
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("[{name}] the server did not close within {limit:?}"))
    }

    /// [`Client::close_code_within`] with the usual time limit.
    pub async fn close_code(&mut self) -> Option<u16> {
        self.close_code_within(RECV_TIMEOUT).await
    }

    /// Frames received but not yet consumed, oldest first, taken out.
    pub fn take_backlog(&mut self) -> Vec<ServerFrame> {
        self.backlog.drain(..).collect()
    }

    /// Sends a frame; returns false when the connection is gone (as when the server
    /// died), which a reconnecting client has to expect rather than fail on.
    pub async fn try_send(&mut self, frame: &ClientFrame) -> bool {
        let json = serde_json::to_string(frame).expect("client frames serialize");
        self.try_send_raw(&json).await
    }

    /// [`Client::try_send`] for any text, frames that are not frames included.
    pub async fn try_send_raw(&mut self, text: &str) -> bool {
        timeout(RECV_TIMEOUT, self.ws.send(Message::text(text)))
            .await
            .expect("WebSocket send timed out")
            .is_ok()
    }

    /// The next not yet consumed frame, or `None` once the connection has ended.
    /// Panics when nothing arrives within `RECV_TIMEOUT`.
    pub async fn next_or_end(&mut self) -> Option<ServerFrame> {
        if let Some(frame) = self.backlog.pop_front() {
            return Some(frame);
        }
        timeout(RECV_TIMEOUT, self.next_frame())
            .await
            .unwrap_or_else(|_| panic!("[{}] no frame within {RECV_TIMEOUT:?}", self.name))
    }

    /// Keeps reading for `duration`, as an open page does, queueing what arrives for
    /// later calls. Reading is what answers the server's pings. Panics if the
    /// connection ends meanwhile.
    pub async fn keep_reading(&mut self, duration: Duration) {
        let name = self.name.clone();
        let _ = timeout(duration, async {
            loop {
                match self.next_frame().await {
                    Some(frame) => self.backlog.push_back(frame),
                    None => panic!("[{name}] connection closed while it kept reading"),
                }
            }
        })
        .await;
    }

    /// The next frame. Panics on timeout or close.
    pub async fn recv(&mut self) -> ServerFrame {
        self.recv_until("any frame", |frame| Some(frame.clone()))
            .await
    }

    /// The first not yet consumed frame, in arrival order, for which `pick` returns
    /// `Some`. Frames passed over stay queued for later calls, so awaiting an Ack
    /// cannot swallow the Message a test looks for next. `pick` may panic to reject
    /// a frame that must not arrive before the awaited one. `what` names the awaited
    /// frame in failures.
    pub async fn recv_until<T>(
        &mut self,
        what: &str,
        pick: impl FnMut(&ServerFrame) -> Option<T>,
    ) -> T {
        self.recv_until_within(what, RECV_TIMEOUT, pick).await
    }

    /// [`Client::recv_until`] with its own time limit.
    pub async fn recv_until_within<T>(
        &mut self,
        what: &str,
        limit: Duration,
        mut pick: impl FnMut(&ServerFrame) -> Option<T>,
    ) -> T {
        if let Some(index) = self.backlog.iter().position(|frame| pick(frame).is_some()) {
            let frame = self.backlog.remove(index).expect("index from position");
            return pick(&frame).expect("the same frame matches again");
        }
        let passed_over = self.backlog.len();
        let found = timeout(limit, async {
            while let Some(frame) = self.next_frame().await {
                if let Some(found) = pick(&frame) {
                    return Some(found);
                }
                self.backlog.push_back(frame);
            }
            None
        })
        .await;
        let (name, seen) = (&self.name, &self.backlog);
        match found {
            Ok(Some(found)) => found,
            Ok(None) => panic!(
                "[{name}] connection closed while waiting for {what}; \
                 unconsumed frames ({passed_over} older): {seen:#?}"
            ),
            Err(_) => panic!(
                "[{name}] no {what} within {limit:?}; \
                 unconsumed frames ({passed_over} older): {seen:#?}"
            ),
        }
    }

    /// Joins a channel and returns the `Joined` answer's fields.
    pub async fn join(&mut self, channel: &str, since: Option<Seq>) -> Joined {
        self.send(&ClientFrame::Join {
            channel: channel.into(),
            since,
        })
        .await;
        self.recv_until(&format!("Joined {channel:?}"), |frame| match frame {
            ServerFrame::Joined {
                channel,
                history,
                reset,
                online,
                online_count,
            } => Some(Joined {
                channel: channel.clone(),
                history: history.clone(),
                reset: *reset,
                online: online.clone(),
                online_count: *online_count,
            }),
            ServerFrame::Error { code, message } => {
                panic!("join {channel:?} refused: {code:?}: {message}")
            }
            _ => None,
        })
        .await
    }

    /// Sends a message and waits for its acknowledgement, returning its number.
    pub async fn say(&mut self, channel: &str, client_id: &str, text: &str) -> Seq {
        self.say_within(channel, client_id, text, RECV_TIMEOUT)
            .await
    }

    /// Like `say`, but the acknowledgement must come within `limit`.
    pub async fn say_within(
        &mut self,
        channel: &str,
        client_id: &str,
        text: &str,
        limit: Duration,
    ) -> Seq {
        self.send(&ClientFrame::Send {
            channel: channel.into(),
            client_id: client_id.into(),
            text: text.into(),
        })
        .await;
        let who = self.name.clone();
        self.recv_until_within(
            &format!("Ack for {client_id:?}"),
            limit,
            |frame| match frame {
                ServerFrame::Ack {
                    client_id: acked,
                    seq,
                    ..
                } if acked == client_id => Some(*seq),
                ServerFrame::SendFailed {
                    client_id: failed,
                    code,
                    message,
                } if failed == client_id => {
                    panic!("[{who}] send {client_id:?} refused: {code:?}: {message}")
                }
                _ => None,
            },
        )
        .await
    }

    /// Waits for a refusal with `code` and returns its words; an answer to a join
    /// meanwhile means the request was not refused, which fails the test.
    pub async fn refusal(&mut self, code: ErrorCode) -> String {
        self.recv_until(&format!("a refusal with {code:?}"), |frame| match frame {
            ServerFrame::Error { code: got, message } if *got == code => Some(message.clone()),
            ServerFrame::Joined { channel, .. } => {
                panic!("the join of {channel:?} was answered, not refused with {code:?}")
            }
            _ => None,
        })
        .await
    }

    /// Waits for the message with this client id to be delivered to this client.
    pub async fn recv_message(&mut self, client_id: &str) -> ChatMessage {
        self.recv_until(&format!("Message {client_id:?}"), |frame| match frame {
            ServerFrame::Message { message } if message.client_id == client_id => {
                Some(message.clone())
            }
            _ => None,
        })
        .await
    }

    /// Asserts that the server closes this connection without sending anything more.
    pub async fn expect_closed(&mut self) {
        let name = self.name.clone();
        let ended = timeout(RECV_TIMEOUT, async {
            if let Some(frame) = self.next_frame().await {
                panic!("[{name}] expected the server to close, got {frame:?}");
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "[{name}] server did not close within {RECV_TIMEOUT:?}"
        );
    }

    /// Closes this tab cleanly and waits until the server has hung up. The server
    /// takes a connection out of the hub before dropping its socket, so once this
    /// returns, the server has forgotten this tab.
    pub async fn close(mut self) {
        // The server may already be gone; only the end of the stream matters.
        let _ = self.ws.close(None).await;
        let name = self.name.clone();
        let drained = timeout(RECV_TIMEOUT, async {
            while self.next_frame().await.is_some() {}
        })
        .await;
        assert!(
            drained.is_ok(),
            "[{name}] server did not hang up within {RECV_TIMEOUT:?}"
        );
    }

    /// The next text frame decoded; `None` once the connection has ended.
    async fn next_frame(&mut self) -> Option<ServerFrame> {
        match self.next_event().await {
            Event::Frame(frame) => Some(frame),
            Event::Closed(_) => None,
        }
    }

    async fn next_event(&mut self) -> Event {
        loop {
            let Some(message) = self.ws.next().await else {
                return Event::Closed(None);
            };
            match message {
                Ok(Message::Text(text)) => {
                    return Event::Frame(serde_json::from_str(&text).unwrap_or_else(|e| {
                        panic!("[{}] undecodable server frame {text:?}: {e}", self.name)
                    }));
                }
                Ok(Message::Close(frame)) => {
                    return Event::Closed(frame.map(|f| u16::from(f.code)));
                }
                Ok(Message::Binary(bytes)) => {
                    panic!("[{}] unexpected binary frame {bytes:?}", self.name)
                }
                Ok(_) => {}
                // A server hanging up without a close handshake still ends the stream.
                Err(
                    tungstenite::Error::ConnectionClosed
                    | tungstenite::Error::AlreadyClosed
                    | tungstenite::Error::Protocol(_)
                    | tungstenite::Error::Io(_),
                ) => return Event::Closed(None),
                Err(e) => panic!("[{}] WebSocket error: {e}", self.name),
            }
        }
    }
}

/// What reading a WebSocket yields.
enum Event {
    Frame(ServerFrame),
    /// The connection ended, with the code of the server's close frame if it sent one.
    Closed(Option<u16>),
}

/// The fields of a `Joined` frame.
#[derive(Debug)]
pub struct Joined {
    pub channel: String,
    pub history: Vec<ChatMessage>,
    pub reset: bool,
    pub online: Vec<String>,
    pub online_count: usize,
}

impl Joined {
    pub fn seqs(&self) -> Vec<Seq> {
        self.history.iter().map(|m| m.seq).collect()
    }

    pub fn client_ids(&self) -> Vec<&str> {
        self.history.iter().map(|m| m.client_id.as_str()).collect()
    }
}

/// Attempts a WebSocket upgrade with an `Origin` header; returns the refusal's HTTP
/// status, or `None` when the upgrade succeeded.
pub async fn upgrade_with_origin(server: &Server, origin: &str) -> Option<u16> {
    upgrade(server, &Dial::default().header("origin", origin))
        .await
        .err()
        .map(|(status, _)| status)
}

/// Says hello with a token that does not hold `name` and expects to be refused and
/// disconnected, as a second browser trying to pass for the holder would be.
pub async fn assert_hello_refused(server: &Server, name: &str, token: &str) {
    let mut client = Client::connect(server).await;
    client
        .send(&ClientFrame::Hello {
            name: name.into(),
            token: token.into(),
            channels_version: None,
        })
        .await;
    client
        .recv_until("NameTaken", |frame| match frame {
            ServerFrame::Error {
                code: ErrorCode::NameTaken,
                ..
            } => Some(()),
            other => panic!("hello as {name:?} with token {token:?} answered {other:?}"),
        })
        .await;
    client.expect_closed().await;
}

/// The token [`Server::claim`] presents for `name`, the same for every spelling of it.
pub fn test_token(name: &str) -> String {
    format!(
        "test-token-{}",
        hearth::server::name_key::name_key(name.trim())
    )
}

/// An HTTP client whose connections come from `ip`, to play another machine.
pub fn http_client_from(ip: impl Into<IpAddr>) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(RECV_TIMEOUT)
        .local_address(ip.into())
        .build()
        .expect("build an HTTP client")
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(RECV_TIMEOUT)
        .build()
        .expect("build an HTTP client")
}

/// Milliseconds since the Unix epoch, as the server stamps messages.
pub fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since_epoch.as_millis()).expect("a sane clock")
}
