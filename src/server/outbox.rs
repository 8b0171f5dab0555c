//! A connection's outgoing frames, shared by the hub and the connection's task.
//!
//! Whoever queues the first frame for a connection with nothing waiting writes it:
//! the hub, once it lets go of its lock, writes each recipient's frames straight to
//! the socket, many per system call, and no task wakes up. The connection's task
//! steps in only when the socket is full (it waits until the socket takes the rest)
//! or when the hub asks it to close. Waking a task per recipient per message cost
//! more than a microsecond a delivery, a fifth of what the whole delivery costs.

use super::frame;
use bytes::Bytes;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Most frames handed to one `sendmsg`.
const WRITE_BATCH: usize = 64;
/// The first byte of an unfragmented pong.
const PONG_HEAD: u8 = 0x80 | frame::OP_PONG;

/// Why writing stopped.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the client stopped reading")]
    Stalled,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The queue is at its limit: the client has stopped reading.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// Why the connection's task was woken, besides a full socket.
#[derive(Debug, PartialEq, Eq)]
pub enum Signal {
    /// Close with this code and reason.
    Close(u16, &'static str),
    /// Writing failed: the client is gone.
    Broken,
}

pub struct Outbox {
    /// `None` for a connection with no socket (the hub's unit tests read the queue).
    stream: Option<Arc<TcpStream>>,
    queue: Mutex<Queue>,
    /// Wakes the connection's task: the socket is full, or the hub wants it closed.
    attention: Notify,
    /// When the client was last heard from, in `monotonic_ms`.
    last_heard: AtomicU64,
    /// Frames the hub may queue before the connection counts as too slow.
    limit: usize,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    /// How much of the first frame has gone out.
    written_of_first: usize,
    /// Since when the socket has taken nothing, while frames wait.
    stalled_since: Option<Instant>,
    signal: Option<Signal>,
    /// A close frame is queued: nothing may follow it (RFC 6455 section 5.5.1).
    closing: bool,
}

impl Outbox {
    pub fn new(stream: Arc<TcpStream>, limit: usize) -> Arc<Self> {
        Self::with_stream(Some(stream), limit)
    }

    /// An outbox whose frames stay queued until taken with `try_recv`.
    #[cfg(test)]
    pub fn detached(limit: usize) -> Arc<Self> {
        Self::with_stream(None, limit)
    }

    fn with_stream(stream: Option<Arc<TcpStream>>, limit: usize) -> Arc<Self> {
        Arc::new(Self {
            stream,
            queue: Mutex::default(),
            attention: Notify::new(),
            last_heard: AtomicU64::new(monotonic_ms()),
            limit,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Each change to the queue leaves it consistent, so a poisoned lock is fine.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame from the hub; `Ok(true)` when nothing was waiting before it,
    /// so the caller must `flush_now` (frames behind others go out with them).
    pub fn push(&self, frame: Bytes) -> Result<bool, Full> {
        let mut queue = self.lock();
        if queue.closing {
            return Ok(false);
        }
        if queue.frames.len() >= self.limit {
            return Err(Full);
        }
        queue.frames.push_back(frame);
        Ok(queue.frames.len() == 1)
    }

    /// Queues a frame from the connection itself (a welcome, an answer): never
    /// refused, as the client asked for it and reads it soon or is cut off by the
    /// write timeout. `true` when nothing was waiting before it.
    pub fn push_own(&self, frame: Bytes) -> bool {
        let mut queue = self.lock();
        if queue.closing {
            return false;
        }
        queue.frames.push_back(frame);
        queue.frames.len() == 1
    }

    /// Queues the answer to a ping. A pong still waiting behind others is replaced
    /// (RFC 6455 allows answering only the latest ping), so a client that pings
    /// without reading cannot grow the queue.
    pub fn push_pong(&self, pong: Bytes) {
        let mut queue = self.lock();
        if queue.closing {
            return;
        }
        let untouched = queue.frames.len() > 1 || queue.written_of_first == 0;
        if untouched
            && let Some(last) = queue.frames.back_mut()
            && last.first() == Some(&PONG_HEAD)
        {
            *last = pong;
            return;
        }
        queue.frames.push_back(pong);
    }

    /// Queues the close frame; nothing queued after it is sent.
    pub fn push_close(&self, frame: Bytes) {
        let mut queue = self.lock();
        if !queue.closing {
            queue.closing = true;
            queue.frames.push_back(frame);
        }
    }

    /// Writes what the socket takes now (for the hub). What it does not take waits
    /// for the connection's task, which is woken to wait for room.
    pub fn flush_now(&self) {
        let mut queue = self.lock();
        match self.write_now(&mut queue) {
            Ok(true) => {}
            Ok(false) => {
                drop(queue);
                self.attention.notify_one();
            }
            Err(_) => {
                queue.signal.get_or_insert(Signal::Broken);
                drop(queue);
                self.attention.notify_one();
            }
        }
    }

    /// Writes what the socket takes now (for the connection's own task, which
    /// waits for room itself when frames are left: waking it would only spin it).
    pub fn write_pending(&self) -> io::Result<()> {
        self.write_now(&mut self.lock()).map(|_| ())
    }

    /// Writes everything queued, waiting for the socket as needed, until `timeout`
    /// after it first stalled: a client that stops reading cannot hold the
    /// connection forever, however often this is retried. Cancel-safe.
    pub async fn flush(&self, timeout: Duration) -> Result<(), WriteError> {
        let Some(stream) = &self.stream else {
            return std::future::pending().await;
        };
        loop {
            let deadline = {
                let mut queue = self.lock();
                if self.write_now(&mut queue)? {
                    return Ok(());
                }
                queue.stalled_since.unwrap_or_else(Instant::now) + timeout
            };
            match tokio::time::timeout_at(deadline.into(), stream.writable()).await {
                Ok(ready) => ready?,
                Err(_) => return Err(WriteError::Stalled),
            }
        }
    }

    /// Whether frames are waiting for the socket to take them.
    pub fn is_waiting(&self) -> bool {
        !self.lock().frames.is_empty()
    }

    /// Whether the socket refused frames that still wait: the client is not
    /// taking what it was sent.
    pub fn is_stalled(&self) -> bool {
        self.lock().stalled_since.is_some()
    }

    /// Asks the connection's task to close (the first request stands).
    pub fn request_close(&self, code: u16, reason: &'static str) {
        self.lock()
            .signal
            .get_or_insert(Signal::Close(code, reason));
        self.attention.notify_one();
    }

    /// What the connection should do: close as asked, or end as its socket broke.
    pub fn take_signal(&self) -> Option<Signal> {
        self.lock().signal.take()
    }

    /// Resolves when the socket stalled or a request came (or spuriously: check).
    pub async fn attention(&self) {
        self.attention.notified().await;
    }

    /// Notes that the client was heard from.
    pub fn heard(&self) {
        self.last_heard.store(monotonic_ms(), Ordering::Relaxed);
    }

    /// How long since the client was last heard from.
    pub fn quiet_for(&self) -> Duration {
        let last = self.last_heard.load(Ordering::Relaxed);
        Duration::from_millis(monotonic_ms().saturating_sub(last))
    }

    /// Writes as much as the socket takes without waiting; `Ok(true)` once all has
    /// gone.
    fn write_now(&self, queue: &mut Queue) -> io::Result<bool> {
        let Some(stream) = &self.stream else {
            return Ok(queue.frames.is_empty());
        };
        while !queue.frames.is_empty() {
            let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
            let mut count = 0;
            for (i, frame) in queue.frames.iter().take(WRITE_BATCH).enumerate() {
                let skip = if i == 0 { queue.written_of_first } else { 0 };
                slices[i] = IoSlice::new(&frame[skip..]);
                count += 1;
            }
            match send(stream, &slices[..count]) {
                Ok(written) => {
                    // The timeout counts time without progress: a client that
                    // reads, if slowly, is limited by the queue's length instead.
                    queue.stalled_since = None;
                    queue.advance(written);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    queue.stalled_since.get_or_insert_with(Instant::now);
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        // Give the memory back: idle connections hold no queue.
        queue.frames = VecDeque::new();
        queue.stalled_since = None;
        Ok(true)
    }

    /// The next queued frame (tests read what the hub queued).
    #[cfg(test)]
    pub fn try_recv(&self) -> Option<Bytes> {
        self.lock().frames.pop_front()
    }

    /// Waits for the next queued frame.
    #[cfg(test)]
    pub async fn recv(&self) -> Bytes {
        loop {
            let notified = self.attention.notified();
            if let Some(frame) = self.try_recv() {
                return frame;
            }
            notified.await;
        }
    }
}

/// Writes `slices` to the socket without waiting, as `send`, or `sendmsg` for
/// several. tokio's `writev` goes through the file layer first (its position lock
/// and checks): 6 % of the server's time at 150,000 deliveries a second in `perf`,
/// which the socket calls skip.
fn send(stream: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    stream.try_io(Interest::WRITABLE, || {
        let socket = socket2::SockRef::from(stream);
        match slices {
            [one] => socket.send(one),
            many => socket.send_vectored(many),
        }
    })
}

impl Queue {
    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let Some(first) = self.frames.front() else {
                return;
            };
            let left = first.len() - self.written_of_first;
            if written < left {
                self.written_of_first += written;
                return;
            }
            written -= left;
            self.written_of_first = 0;
            self.frames.pop_front();
        }
    }
}

/// Milliseconds on a clock that never goes back, shared by every connection.
fn monotonic_ms() -> u64 {
    static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
    EPOCH.elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::socket::tests::pair;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    fn numbered_frame(i: usize, size: usize) -> Bytes {
        frame::text(format!("{i:0size$}").as_bytes())
    }

    fn numbered(count: usize, size: usize) -> Vec<Bytes> {
        (0..count).map(|i| numbered_frame(i, size)).collect()
    }

    #[tokio::test]
    async fn queued_frames_leave_together_and_in_order() {
        let (server, mut client) = pair().await;
        let outbox = Outbox::new(Arc::new(server), 1_000);
        let frames = numbered(200, 3);
        let firsts: Vec<bool> = frames
            .iter()
            .map(|f| outbox.push(f.clone()).unwrap())
            .collect();
        // Only the first frame asks its sender to write; the rest go with it.
        assert_eq!(firsts.iter().filter(|first| **first).count(), 1);
        assert!(firsts[0]);
        outbox.flush_now();
        assert!(!outbox.is_waiting());
        let mut got = vec![0u8; frames.iter().map(Bytes::len).sum()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, frames.concat());
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_fills_its_queue_and_then_stalls() {
        let (server, mut client) = pair().await;
        let outbox = Outbox::new(Arc::new(server), 100);
        // The client reads nothing yet: the socket's buffers fill, then the queue.
        let mut sent = Vec::new();
        let full = (0..10_000).map(|i| numbered_frame(i, 60_000)).find(|f| {
            let Ok(first) = outbox.push(f.clone()) else {
                return true;
            };
            sent.push(f.clone());
            if first {
                outbox.flush_now();
            }
            false
        });
        assert!(full.is_some(), "the queue never filled");
        assert!(outbox.is_waiting());
        // The task is told to wait for room, and gives up after the timeout.
        tokio::time::timeout(Duration::from_secs(1), outbox.attention())
            .await
            .expect("the task is woken when the socket is full");
        assert!(matches!(
            outbox.flush(Duration::from_millis(50)).await,
            Err(WriteError::Stalled)
        ));
        // Once the client reads, everything queued arrives whole and in order.
        let reading = tokio::spawn(async move {
            let mut got = vec![0u8; sent.iter().map(Bytes::len).sum()];
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(got, sent.concat());
        });
        outbox.flush(Duration::from_secs(10)).await.unwrap();
        reading.await.unwrap();
    }

    #[tokio::test]
    async fn a_client_that_reads_slowly_but_steadily_is_not_timed_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dialer = tokio::net::TcpSocket::new_v4().unwrap();
        dialer.set_recv_buffer_size(4096).unwrap();
        let mut client = dialer
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        socket2::SockRef::from(&server)
            .set_send_buffer_size(4096)
            .unwrap();
        let outbox = Outbox::new(Arc::new(server), 1_000);
        let frames = numbered(200, 1_000);
        for f in &frames {
            outbox.push(f.clone()).unwrap();
        }
        let total: usize = frames.iter().map(Bytes::len).sum();
        // Reading all of it takes several times the timeout, with progress throughout.
        let reading = tokio::spawn(async move {
            let mut got = Vec::with_capacity(total);
            let mut chunk = [0u8; 2048];
            while got.len() < total {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let n = client.read(&mut chunk).await.unwrap();
                got.extend_from_slice(&chunk[..n]);
            }
            got
        });
        let started = Instant::now();
        outbox.flush(Duration::from_millis(100)).await.unwrap();
        let got = reading.await.unwrap();
        assert!(
            started.elapsed() > Duration::from_millis(200),
            "too fast to tell"
        );
        assert_eq!(got, frames.concat());
    }

    #[test]
    fn a_ping_flood_leaves_one_pong_waiting_and_nothing_follows_a_close() {
        let outbox = Outbox::detached(16);
        outbox.push(frame::text(b"a")).unwrap();
        outbox.push_pong(frame::pong(b"1"));
        outbox.push_pong(frame::pong(b"2"));
        outbox.push(frame::text(b"b")).unwrap();
        outbox.push_pong(frame::pong(b"3"));
        outbox.push_close(frame::close(1000, ""));
        assert_eq!(outbox.push(frame::text(b"late")), Ok(false));
        assert!(!outbox.push_own(frame::text(b"late too")));
        outbox.push_pong(frame::pong(b"4"));
        let queued: Vec<Bytes> = std::iter::from_fn(|| outbox.try_recv()).collect();
        assert_eq!(
            queued,
            [
                frame::text(b"a"),
                frame::pong(b"2"),
                frame::text(b"b"),
                frame::pong(b"3"),
                frame::close(1000, ""),
            ]
        );
    }

    #[tokio::test]
    async fn a_close_request_wakes_the_task_and_the_first_request_stands() {
        let outbox = Outbox::detached(4);
        outbox.request_close(1012, "restarting");
        outbox.request_close(4008, "too slow");
        tokio::time::timeout(Duration::from_secs(1), outbox.attention())
            .await
            .unwrap();
        assert_eq!(
            outbox.take_signal(),
            Some(Signal::Close(1012, "restarting"))
        );
        assert_eq!(outbox.take_signal(), None);
    }

    #[tokio::test]
    async fn writing_to_a_closed_connection_asks_the_task_to_end() {
        let (server, client) = pair().await;
        drop(client);
        let outbox = Outbox::new(Arc::new(server), 4);
        // The first write may still be taken; a later one meets the reset.
        for _ in 0..50 {
            outbox.push(frame::text(b"hi")).unwrap();
            outbox.flush_now();
            if outbox.lock().signal.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(outbox.take_signal(), Some(Signal::Broken));
    }
}
