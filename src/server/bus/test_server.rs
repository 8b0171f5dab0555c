//! A private `redis-server` for tests: the library's unit tests use it here, and
//! the integration tests include this file (by path), so both kinds of test start
//! Redis the same way.

// The integration tests use all of it; the unit tests, part.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

pub use super::test_port::restartable_port;

/// A private `redis-server` for tests: a free loopback port, its own
/// directory, the append-only file fsynced on every write (so a crash of Redis loses
/// nothing it acknowledged), killed when dropped.
pub struct Redis {
    pub port: u16,
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Self {
        let mut redis = Self {
            port: restartable_port(),
            child: None,
            dir: tempfile::tempdir().expect("create a Redis directory"),
        };
        redis.spawn();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/setup.sh installs it)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server started");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills Redis with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Deletes Redis's files (while it is stopped), as a lost disk would: it comes
    /// back empty.
    pub fn forget_everything(&self) {
        for entry in std::fs::read_dir(self.dir.path()).expect("Redis's directory") {
            let path = entry.expect("an entry").path();
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }

    /// Starts Redis again on the same port and data.
    pub fn restart(&mut self) {
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
