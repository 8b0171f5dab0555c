//! Ports for the tests' own servers (Redis, PostgreSQL): one module beside the
//! test servers that use it, in the library's tests and (by path) in the integration tests.

use std::sync::atomic::{AtomicU16, Ordering};

/// A free port below the kernel's ephemeral range (Linux: 32768 and up), so that
/// while a restarting server is down, no outgoing connection or port-0 listener of a
/// concurrent test can be handed its port.
pub fn restartable_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    const FIRST: u16 = 20_000;
    const COUNT: u16 = 12_000;
    // Spread by process so that two test binaries rarely probe the same ports.
    let offset = (std::process::id() % u32::from(COUNT)) as u16;
    for _ in 0..COUNT {
        let step = NEXT.fetch_add(1, Ordering::Relaxed) % COUNT;
        let port = FIRST + (offset + step) % COUNT;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT);
}
