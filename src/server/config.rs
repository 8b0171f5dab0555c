//! Runtime configuration: `Leptos.toml`, then environment variables, then flags, each
//! overriding the one before.

use super::store::Durability;
use clap::Parser;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Command-line flags; each also reads the environment variable named beside it.
#[derive(Debug, Default, Parser)]
#[command(name = "hearth", version, about = "Self-hosted real-time group chat")]
pub struct Flags {
    /// Configuration file. Without this, `Leptos.toml` in the working directory is
    /// read if it exists; a file named here must exist (`/dev/null` for none).
    #[arg(long, env = "HEARTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "LEPTOS_SITE_ADDR")]
    pub site_addr: Option<SocketAddr>,
    /// Directory of the built site (the WASM client, CSS and assets).
    #[arg(long, env = "LEPTOS_SITE_ROOT")]
    pub site_root: Option<String>,
    /// Directory the store keeps its files in.
    #[arg(long, env = "HEARTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Messages kept per channel.
    #[arg(long, env = "HEARTH_HISTORY")]
    pub history: Option<usize>,
    /// Most people in one room at once.
    #[arg(long, env = "HEARTH_ROOM_CAPACITY")]
    pub room_capacity: Option<usize>,
    /// Where data is kept: `sqlite` (durable, in the data directory) or `memory`
    /// (gone when the process ends; for tests and benchmarks).
    #[arg(long, env = "HEARTH_STORE")]
    pub store: Option<StoreKind>,
    /// Redis shared by every node of a cluster (`redis://host:port/db`); when set,
    /// it keeps the data instead of the embedded store.
    #[arg(long, env = "HEARTH_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Seconds after which a cluster node that stopped renewing its presence (it
    /// died, or lost Redis) no longer counts anyone as online.
    #[arg(long, env = "HEARTH_PRESENCE_TTL_SECS")]
    pub presence_ttl_secs: Option<u64>,
    /// What a stored message survives: `full` (power loss; an fsync per commit) or
    /// `normal` (the process being killed; fsync at checkpoints).
    #[arg(long, env = "HEARTH_DURABILITY")]
    pub durability: Option<Durability>,
    /// Seconds between the server's pings to each connection.
    #[arg(long, env = "HEARTH_PING_INTERVAL_SECS")]
    pub ping_interval_secs: Option<u64>,
    /// Seconds of silence (no frame, no pong) after which a connection is closed.
    #[arg(long, env = "HEARTH_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Days a display name may go unused before someone else may claim it.
    #[arg(long, env = "HEARTH_NAME_IDLE_DAYS")]
    pub name_idle_days: Option<u64>,
    /// Messages per second one connection (and one person) may send, steadily.
    #[arg(long, env = "HEARTH_SEND_RATE")]
    pub send_rate: Option<f64>,
    /// Messages one connection (and one person) may send at once before the steady
    /// rate applies.
    #[arg(long, env = "HEARTH_SEND_BURST")]
    pub send_burst: Option<u32>,
    /// Chat connections one source address may hold open.
    #[arg(long, env = "HEARTH_MAX_CONNS_PER_IP")]
    pub max_conns_per_ip: Option<usize>,
    /// Chat connections the server holds open in total.
    #[arg(long, env = "HEARTH_MAX_CONNS")]
    pub max_conns: Option<usize>,
    /// Name claims plus channel creations one address may make per minute.
    #[arg(long, env = "HEARTH_CLAIMS_PER_MINUTE")]
    pub claims_per_minute: Option<u32>,
    /// Seconds a client has to send a request's headers, then its body, and a
    /// WebSocket its hello; and the longest it may leave an answer unread.
    #[arg(long, env = "HEARTH_HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: Option<u64>,
    /// Extra origins allowed to open the WebSocket, comma-separated
    /// (e.g. `https://chat.example.org`). The page's own origin is always allowed.
    #[arg(long, env = "HEARTH_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// Addresses of proxies in front of Hearth, comma-separated (e.g. `127.0.0.1`):
    /// behind them, per-address limits count the address they forward in
    /// `X-Forwarded-For` (or `X-Real-IP`) rather than the proxy's own.
    #[arg(long, env = "HEARTH_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<IpAddr>>,
    /// Frames queued for one connection before it counts as too slow and is cut off.
    #[arg(long, env = "HEARTH_OUTBOUND_QUEUE")]
    pub outbound_queue: Option<usize>,
    /// Sends waiting to be stored before new ones are refused as busy.
    #[arg(long, env = "HEARTH_COMMIT_QUEUE")]
    pub commit_queue: Option<usize>,
    /// Plain HTTP connections open at once (WebSockets are counted apart).
    #[arg(long, env = "HEARTH_MAX_HTTP_CONNECTIONS")]
    pub max_http_connections: Option<usize>,
    /// Plain HTTP connections (or, through a trusted proxy, requests) one address
    /// may have open at once: its share of `max_http_connections`.
    #[arg(long, env = "HEARTH_MAX_HTTP_CONNECTIONS_PER_IP")]
    pub max_http_connections_per_ip: Option<usize>,
    /// The address people open Hearth at (e.g. `https://chat.example.org`): requests
    /// naming any other host are refused (DNS rebinding). Without it, only IP
    /// addresses and `localhost` are answered.
    #[arg(long, env = "HEARTH_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Server-function calls one address may make per minute.
    #[arg(long, env = "HEARTH_API_PER_MINUTE")]
    pub api_per_minute: Option<u32>,
    /// Channels one person, and one address, may create per hour.
    #[arg(long, env = "HEARTH_CHANNELS_PER_HOUR")]
    pub channels_per_hour: Option<u32>,
    /// Most channels the server keeps.
    #[arg(long, env = "HEARTH_MAX_CHANNELS")]
    pub max_channels: Option<usize>,
    /// Chat connections (tabs) one person may hold open at once on this node.
    #[arg(long, env = "HEARTH_MAX_TABS_PER_PERSON")]
    pub max_tabs_per_person: Option<usize>,
    /// People from one address who may be in one room at once on this node.
    #[arg(long, env = "HEARTH_ROOM_SEATS_PER_ADDRESS")]
    pub room_seats_per_address: Option<usize>,
}

/// Which store keeps the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Sqlite,
    Memory,
}

/// The file's keys; all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    site_addr: Option<SocketAddr>,
    site_root: Option<String>,
    data_dir: Option<PathBuf>,
    history: Option<usize>,
    room_capacity: Option<usize>,
    allowed_origins: Option<Vec<String>>,
    trusted_proxies: Option<Vec<IpAddr>>,
    store: Option<StoreKind>,
    redis_url: Option<String>,
    presence_ttl_secs: Option<u64>,
    durability: Option<Durability>,
    outbound_queue: Option<usize>,
    commit_queue: Option<usize>,
    ping_interval_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    name_idle_days: Option<u64>,
    send_rate: Option<f64>,
    send_burst: Option<u32>,
    max_conns_per_ip: Option<usize>,
    max_conns: Option<usize>,
    claims_per_minute: Option<u32>,
    header_timeout_secs: Option<u64>,
    max_http_connections: Option<usize>,
    max_http_connections_per_ip: Option<usize>,
    public_url: Option<String>,
    api_per_minute: Option<u32>,
    channels_per_hour: Option<u32>,
    max_channels: Option<usize>,
    max_tabs_per_person: Option<usize>,
    room_seats_per_address: Option<usize>,
}

/// The settings Hearth runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub site_addr: SocketAddr,
    pub site_root: String,
    pub data_dir: PathBuf,
    pub history: usize,
    pub room_capacity: usize,
    pub allowed_origins: Vec<String>,
    /// Proxies whose forwarded client address is believed.
    pub trusted_proxies: Vec<IpAddr>,
    pub store: StoreKind,
    /// The cluster's Redis, if this node is part of one.
    pub redis_url: Option<String>,
    /// How long a silent cluster node's people stay online.
    pub presence_ttl: Duration,
    pub durability: Durability,
    /// Frames queued for one connection before it counts as too slow.
    pub outbound_queue: usize,
    /// Sends waiting to be stored before new ones are refused as "busy".
    pub commit_queue: usize,
    /// How often the server pings each connection.
    pub ping_interval: Duration,
    /// A connection silent this long (no frame, no pong) is closed.
    pub idle_timeout: Duration,
    /// A name unused this long may be claimed by someone else.
    pub name_idle: Duration,
    pub send_rate: f64,
    pub send_burst: u32,
    pub max_conns_per_ip: usize,
    pub max_conns: usize,
    pub claims_per_minute: u32,
    /// Time a client has to send a request's headers, and a WebSocket its hello.
    pub header_timeout: Duration,
    /// Plain HTTP connections open at once (WebSockets are counted by `max_conns`).
    pub max_http_connections: usize,
    /// One address's share of `max_http_connections`.
    pub max_http_connections_per_ip: usize,
    /// The address people open Hearth at, if the operator named one.
    pub public_url: Option<PublicUrl>,
    /// Server-function calls per address per minute.
    pub api_per_minute: u32,
    /// Channel creations per person, and per address, per hour.
    pub channels_per_hour: u32,
    pub max_channels: usize,
    pub max_tabs_per_person: usize,
    pub room_seats_per_address: usize,
}

/// Where people open Hearth: its origin (`https://chat.example.org`, as browsers
/// send it in `Origin`) and its host name, which every request must name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrl {
    pub origin: String,
    pub host: String,
    pub https: bool,
}

impl std::str::FromStr for PublicUrl {
    type Err = ConfigError;

    fn from_str(raw: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::PublicUrl(raw.to_owned());
        let uri: axum::http::Uri = raw.trim().parse().map_err(|_| bad())?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let authority = uri.authority().ok_or_else(bad)?;
        if !matches!(uri.path(), "" | "/")
            || uri.query().is_some()
            || authority.as_str().contains('@')
        {
            return Err(bad());
        }
        let scheme = if https { "https" } else { "http" };
        let host = authority.host().to_ascii_lowercase();
        // Browsers leave a scheme's own port out of `Origin`.
        let origin = match authority.port_u16() {
            Some(port) if port != if https { 443 } else { 80 } => {
                format!("{scheme}://{host}:{port}")
            }
            _ => format!("{scheme}://{host}"),
        };
        Ok(Self {
            origin,
            host,
            https,
        })
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("the configuration file {path} does not exist (use /dev/null for none)")]
    Missing { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("send_rate must be a number above 0")]
    Rate,
    #[error(
        "public_url {0:?} must be a site's address, such as https://chat.example.org \
         (a scheme and a host, an optional port, no path)"
    )]
    PublicUrl(String),
    #[error(
        "idle_timeout_secs ({idle}) must be longer than ping_interval_secs ({ping}): \
         a page that only reads answers nothing but the pings, and would be cut off"
    )]
    IdleBeforePing { idle: u64, ping: u64 },
}

impl Default for Config {
    fn default() -> Self {
        Self {
            site_addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
            site_root: "target/site".into(),
            data_dir: "data".into(),
            history: 100,
            room_capacity: 200,
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            store: StoreKind::Sqlite,
            redis_url: None,
            presence_ttl: Duration::from_secs(30),
            durability: Durability::Full,
            outbound_queue: 1_024,
            commit_queue: 65_536,
            // As Socket.IO: a ping every 25 s, and a tab silent 20 s past one is gone.
            ping_interval: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(45),
            name_idle: Duration::from_secs(30 * 24 * 3600),
            send_rate: 10.0,
            send_burst: 20,
            max_conns_per_ip: 100,
            // One process may hold 20,000 open files here; leave room for the rest.
            max_conns: 19_500,
            claims_per_minute: 30,
            header_timeout: Duration::from_secs(10),
            max_http_connections: 1_024,
            // An eighth each: a crowd behind one address still loads pages, and
            // one address alone cannot hold every slot.
            max_http_connections_per_ip: 128,
            public_url: None,
            api_per_minute: 120,
            channels_per_hour: 10,
            max_channels: 1_000,
            max_tabs_per_person: 20,
            room_seats_per_address: 20,
        }
    }
}

/// The file read when none is named, if it exists.
const DEFAULT_FILE: &str = "Leptos.toml";

impl Config {
    /// Reads flags and environment, then the file they name.
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_flags(Flags::parse())
    }

    pub fn from_flags(flags: Flags) -> Result<Self, ConfigError> {
        let file = match &flags.config {
            Some(named) => read_file(named)?,
            None => read_file(Path::new(DEFAULT_FILE)).or_else(|error| match error {
                ConfigError::Missing { .. } => Ok(FileConfig::default()),
                error => Err(error),
            })?,
        };
        let defaults = Config::default();
        let config = Config {
            site_addr: flags
                .site_addr
                .or(file.site_addr)
                .unwrap_or(defaults.site_addr),
            site_root: flags
                .site_root
                .or(file.site_root)
                .unwrap_or(defaults.site_root),
            data_dir: flags
                .data_dir
                .or(file.data_dir)
                .unwrap_or(defaults.data_dir),
            history: flags.history.or(file.history).unwrap_or(defaults.history),
            room_capacity: flags
                .room_capacity
                .or(file.room_capacity)
                .unwrap_or(defaults.room_capacity),
            // "a, b" is a natural way to write a list; the spaces are not part of it.
            allowed_origins: flags
                .allowed_origins
                .or(file.allowed_origins)
                .unwrap_or(defaults.allowed_origins)
                .into_iter()
                .map(|origin| origin.trim().to_owned())
                .filter(|origin| !origin.is_empty())
                .collect(),
            trusted_proxies: flags
                .trusted_proxies
                .or(file.trusted_proxies)
                .unwrap_or(defaults.trusted_proxies),
            store: flags.store.or(file.store).unwrap_or(defaults.store),
            redis_url: flags
                .redis_url
                .or(file.redis_url)
                .filter(|url| !url.trim().is_empty()),
            presence_ttl: flags
                .presence_ttl_secs
                .or(file.presence_ttl_secs)
                .map_or(defaults.presence_ttl, |secs| {
                    Duration::from_secs(secs.max(3))
                }),
            durability: flags
                .durability
                .or(file.durability)
                .unwrap_or(defaults.durability),
            outbound_queue: flags
                .outbound_queue
                .or(file.outbound_queue)
                .unwrap_or(defaults.outbound_queue),
            commit_queue: flags
                .commit_queue
                .or(file.commit_queue)
                .unwrap_or(defaults.commit_queue),
            ping_interval: flags
                .ping_interval_secs
                .or(file.ping_interval_secs)
                .map_or(defaults.ping_interval, Duration::from_secs),
            idle_timeout: flags
                .idle_timeout_secs
                .or(file.idle_timeout_secs)
                .map_or(defaults.idle_timeout, Duration::from_secs),
            name_idle: flags
                .name_idle_days
                .or(file.name_idle_days)
                .map_or(defaults.name_idle, |days| {
                    Duration::from_secs(days.saturating_mul(24 * 3600))
                }),
            send_rate: flags
                .send_rate
                .or(file.send_rate)
                .unwrap_or(defaults.send_rate),
            send_burst: flags
                .send_burst
                .or(file.send_burst)
                .unwrap_or(defaults.send_burst),
            max_conns_per_ip: flags
                .max_conns_per_ip
                .or(file.max_conns_per_ip)
                .unwrap_or(defaults.max_conns_per_ip),
            max_conns: flags
                .max_conns
                .or(file.max_conns)
                .unwrap_or(defaults.max_conns),
            claims_per_minute: flags
                .claims_per_minute
                .or(file.claims_per_minute)
                .unwrap_or(defaults.claims_per_minute),
            header_timeout: flags
                .header_timeout_secs
                .or(file.header_timeout_secs)
                .map_or(defaults.header_timeout, Duration::from_secs),
            max_http_connections: flags
                .max_http_connections
                .or(file.max_http_connections)
                .unwrap_or(defaults.max_http_connections),
            max_http_connections_per_ip: flags
                .max_http_connections_per_ip
                .or(file.max_http_connections_per_ip)
                .unwrap_or(defaults.max_http_connections_per_ip),
            public_url: flags
                .public_url
                .or(file.public_url)
                .filter(|url| !url.trim().is_empty())
                .map(|url| url.parse())
                .transpose()?,
            api_per_minute: flags
                .api_per_minute
                .or(file.api_per_minute)
                .unwrap_or(defaults.api_per_minute),
            channels_per_hour: flags
                .channels_per_hour
                .or(file.channels_per_hour)
                .unwrap_or(defaults.channels_per_hour),
            max_channels: flags
                .max_channels
                .or(file.max_channels)
                .unwrap_or(defaults.max_channels),
            max_tabs_per_person: flags
                .max_tabs_per_person
                .or(file.max_tabs_per_person)
                .unwrap_or(defaults.max_tabs_per_person),
            room_seats_per_address: flags
                .room_seats_per_address
                .or(file.room_seats_per_address)
                .unwrap_or(defaults.room_seats_per_address),
        };
        if !(config.send_rate > 0.0 && config.send_rate.is_finite()) {
            return Err(ConfigError::Rate);
        }
        if config.idle_timeout <= config.ping_interval {
            return Err(ConfigError::IdleBeforePing {
                idle: config.idle_timeout.as_secs(),
                ping: config.ping_interval.as_secs(),
            });
        }
        for (value, name) in [
            (config.history, "history"),
            (config.room_capacity, "room_capacity"),
            (config.outbound_queue, "outbound_queue"),
            (config.commit_queue, "commit_queue"),
            (
                config.ping_interval.as_secs() as usize,
                "ping_interval_secs",
            ),
            (config.idle_timeout.as_secs() as usize, "idle_timeout_secs"),
            (config.send_burst as usize, "send_burst"),
            (config.max_conns_per_ip, "max_conns_per_ip"),
            (config.max_conns, "max_conns"),
            (config.claims_per_minute as usize, "claims_per_minute"),
            (
                config.header_timeout.as_secs() as usize,
                "header_timeout_secs",
            ),
            (config.max_http_connections, "max_http_connections"),
            (
                config.max_http_connections_per_ip,
                "max_http_connections_per_ip",
            ),
            (config.api_per_minute as usize, "api_per_minute"),
            (config.channels_per_hour as usize, "channels_per_hour"),
            (config.max_channels, "max_channels"),
            (config.max_tabs_per_person, "max_tabs_per_person"),
            (config.room_seats_per_address, "room_seats_per_address"),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(config)
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ConfigError::Missing {
            path: path.to_owned(),
        }),
        Err(source) => Err(ConfigError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags_with_file(contents: &str) -> (tempfile::NamedTempFile, Flags) {
        use std::io::Write;
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(contents.as_bytes()).unwrap();
        let flags = Flags {
            config: Some(file.path().to_owned()),
            ..Flags::default()
        };
        (file, flags)
    }

    #[test]
    fn the_public_address_is_an_origin_as_browsers_write_it() {
        let public: PublicUrl = "https://Chat.Example.org:443/".parse().unwrap();
        assert_eq!(public.origin, "https://chat.example.org");
        assert_eq!(public.host, "chat.example.org");
        let local: PublicUrl = "http://127.0.0.1:3000".parse().unwrap();
        assert_eq!(local.origin, "http://127.0.0.1:3000");
        assert_eq!(
            "http://[::1]:80".parse::<PublicUrl>().unwrap().origin,
            "http://[::1]"
        );
        for bad in [
            "chat.example.org",
            "ftp://chat.example.org",
            "https://chat.example.org/chat",
            "https://u@chat.example.org",
        ] {
            assert!(bad.parse::<PublicUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn no_file_means_defaults() {
        let config = Config::from_flags(Flags {
            config: Some("/dev/null".into()),
            ..Flags::default()
        })
        .unwrap();
        assert_eq!(config.history, 100);
        assert_eq!(config.room_capacity, 200);
    }

    #[test]
    fn a_named_file_that_is_missing_is_an_error() {
        let error = Config::from_flags(Flags {
            config: Some("/nonexistent/hearth.toml".into()),
            ..Flags::default()
        })
        .unwrap_err();
        assert!(matches!(error, ConfigError::Missing { .. }));
        assert!(
            error
                .to_string()
                .contains("/nonexistent/hearth.toml does not exist")
        );
    }

    #[test]
    fn flags_override_the_file() {
        let (_file, mut flags) =
            flags_with_file("history = 50\nroom_capacity = 3\noutbound_queue = 10\n");
        flags.room_capacity = Some(7);
        flags.outbound_queue = Some(20);
        let config = Config::from_flags(flags).unwrap();
        assert_eq!(config.history, 50);
        assert_eq!(config.room_capacity, 7);
        assert_eq!(config.outbound_queue, 20);
    }

    #[test]
    fn bad_files_are_reported() {
        let (_file, flags) = flags_with_file("histroy = 5\n");
        let err = Config::from_flags(flags).unwrap_err().to_string();
        assert!(err.contains("histroy"), "{err}");
        let (_file, flags) = flags_with_file("room_capacity = 0\n");
        assert!(matches!(
            Config::from_flags(flags),
            Err(ConfigError::Zero("room_capacity"))
        ));
        let (_file, flags) = flags_with_file("ping_interval_secs = 15\nidle_timeout_secs = 10\n");
        let err = Config::from_flags(flags).unwrap_err().to_string();
        assert!(
            err.contains("must be longer than ping_interval_secs (15)"),
            "{err}"
        );
    }
}
