//! A private PostgreSQL for tests: its own cluster in a temporary directory, on a
//! free loopback port, run as the `postgres` user when the tests run as root
//! (PostgreSQL refuses to run as root). The library's unit tests use it here, and
//! the integration tests include this file (by path).
//!
//! A watchdog beside it stops the cluster once the test process is gone, so a test
//! binary that ends (or panics, or is killed) leaves no server behind.

// The integration tests use all of it; the unit tests, part.
#![allow(dead_code)]

use super::test_port;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Where Debian keeps the server's programs (`initdb`, `pg_ctl`, `postgres`).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/setup.sh installs it)")
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("a PostgreSQL server version is installed")
}

/// Whether this process runs as root (`/proc/self` belongs to its user).
fn as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program` with `args`, as the `postgres` user when running as root.
fn as_postgres(program: &Path) -> Command {
    if as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Runs `command` to its end; a failure fails the test with what it said.
fn succeed(command: &mut Command, what: &str) {
    let out = command
        .stdout(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what} runs: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Postgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

impl Postgres {
    /// A cluster of its own (for tests that stop and restart it).
    pub fn start() -> Self {
        let port = test_port::restartable_port();
        let dir = std::env::temp_dir().join(format!(
            "hearth-pg-{}-{port}-{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the cluster's directory");
        if as_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown runs");
            assert!(status.success(), "the postgres user owns {}", dir.display());
        }
        let bin = bin_dir();
        let data = dir.join("data");
        succeed(
            as_postgres(&bin.join("initdb")).arg("-D").arg(&data).args([
                "-A",
                "trust",
                "-U",
                "hearth",
                "--no-sync",
                "-E",
                "UTF8",
            ]),
            "initdb",
        );
        let postgres = Self { port, dir, bin };
        postgres.launch();
        postgres.watch(std::process::id());
        postgres
    }

    /// One cluster for the whole test binary; each test takes a database of its own.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(Self::start)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn launch(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.display()
        );
        succeed(
            as_postgres(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .args(["-o", &options, "-l"])
                .arg(self.dir.join("log"))
                .args(["-w", "start"]),
            "pg_ctl start",
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "PostgreSQL started");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the cluster when process `pid` is gone, and removes its directory.
    fn watch(&self, pid: u32) {
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 0.5; done; \
             {ctl} -D {data} stop -m immediate >/dev/null 2>&1; rm -rf {dir}",
            ctl = self.bin.join("pg_ctl").display(),
            data = self.data().display(),
            dir = self.dir.display(),
        );
        // Never waited for: it outlives this process, which is its whole point.
        #[allow(clippy::zombie_processes)]
        as_postgres(Path::new("sh"))
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the watchdog starts");
    }

    /// A new, empty database in this cluster, by its address.
    pub fn database(&self) -> String {
        let name = format!("t{}", NEXT_DB.fetch_add(1, Ordering::Relaxed));
        succeed(
            as_postgres(&self.bin.join("createdb"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", "hearth"])
                .arg(&name),
            "createdb",
        );
        self.url(&name)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://hearth@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server at once, as a crash would (`immediate`: no checkpoint).
    pub fn kill(&self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Starts the server again on the same port and data.
    pub fn restart(&self) {
        self.launch();
    }
}

/// Numbers databases (and directories) apart within one process.
static NEXT_DB: AtomicU32 = AtomicU32::new(1);

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
