//! Runtime configuration: one definition per setting (below), read from
//! `Leptos.toml` (or the file `--config` names), then environment variables, then
//! flags, each overriding the one before. `hearth --print-config` shows every value
//! and where it came from; the repository's `Leptos.toml` is the defaults, written
//! out (a test holds the two equal).

mod public_url;
mod settings;

pub use public_url::{NotASite, PublicUrl};
pub use settings::Source;

use super::store::{Durability, Retention};
use serde::{Deserialize, Serialize};
use settings::settings;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

settings! {
    /// Address to listen on.
    site_addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 3000)), env = "LEPTOS_SITE_ADDR";
    /// Directory of the built site (the WASM client, CSS and assets).
    site_root: String = "target/site".into(), env = "LEPTOS_SITE_ROOT";
    /// Where data is kept: `sqlite` (durable, in the data directory) or `memory`
    /// (gone when the process ends; for tests and benchmarks).
    store: StoreKind = StoreKind::Sqlite, env = "HEARTH_STORE";
    /// Directory the store keeps its files in.
    data_dir: PathBuf = "data".into(), env = "HEARTH_DATA_DIR";
    /// What a stored message survives: `full` (power loss; an fsync per commit) or
    /// `normal` (the process being killed; fsync at checkpoints).
    durability: Durability = Durability::Full, env = "HEARTH_DURABILITY";
    /// Messages per channel kept in memory: what opening a channel, and resuming,
    /// are served from.
    history: usize = 100, env = "HEARTH_HISTORY";
    /// Messages the store keeps: `all`, those younger than a number of days
    /// (`90 days`), or each channel's newest so many (`100000 messages`, at least
    /// `history`). Pruned at start and every ten minutes; numbers never restart.
    retention: Retention = Retention::All, env = "HEARTH_RETENTION";
    /// Most people in one room at once.
    room_capacity: usize = 200, env = "HEARTH_ROOM_CAPACITY";
    /// Extra origins allowed to open the WebSocket and call server functions,
    /// comma-separated (e.g. `https://chat.example.org`). The page's own is always.
    #[arg(value_delimiter = ',')]
    allowed_origins: Vec<String> = Vec::new(), env = "HEARTH_ALLOWED_ORIGINS";
    /// Addresses of proxies in front of Hearth, comma-separated (e.g. `127.0.0.1`):
    /// behind them, per-address limits count the address they forward in
    /// `X-Forwarded-For` (or `X-Real-IP`) rather than the proxy's own.
    #[arg(value_delimiter = ',')]
    trusted_proxies: Vec<IpAddr> = Vec::new(), env = "HEARTH_TRUSTED_PROXIES";
    /// The address people open Hearth at (e.g. `https://chat.example.org`):
    /// requests naming any other host are refused (DNS rebinding). Without it, only
    /// IP addresses and `localhost` are answered.
    public_url: Option<PublicUrl> = None, env = "HEARTH_PUBLIC_URL";
    /// Sites that may show Hearth inside a frame, comma-separated (e.g.
    /// `https://intranet.example.org`): its Content-Security-Policy's
    /// `frame-ancestors`. None by default: no other site can frame the chat.
    #[arg(value_delimiter = ',')]
    frame_ancestors: Vec<String> = Vec::new(), env = "HEARTH_FRAME_ANCESTORS";
    /// The file naming the content hashes in the client's file names, which
    /// cargo-leptos writes beside the binary (`hash.txt`). Without it, the one
    /// beside the binary is read, if there is one.
    asset_hashes: Option<PathBuf> = None, env = "HEARTH_ASSET_HASHES";
    /// Seconds between the server's pings to each connection (as Socket.IO).
    ping_interval_secs: u64 = 25, env = "HEARTH_PING_INTERVAL_SECS";
    /// Seconds of silence (no frame, no pong) after which a connection is closed;
    /// longer than the ping interval.
    idle_timeout_secs: u64 = 45, env = "HEARTH_IDLE_TIMEOUT_SECS";
    /// Days a display name may go unused before someone else may claim it.
    name_idle_days: u64 = 30, env = "HEARTH_NAME_IDLE_DAYS";
    /// PostgreSQL to keep the data in (`postgres://user@host:port/database`)
    /// instead of the embedded store: a cluster's system of record, or a single
    /// node's. Tables are created and migrated at start.
    database_url: Option<String> = None, env = "HEARTH_DATABASE_URL";
    /// Redis shared by every node of a cluster (`redis://host:port/db`): the bus
    /// that carries each node's messages, channels and presence to the others.
    /// Needs `database_url`, where the cluster keeps its records.
    redis_url: Option<String> = None, env = "HEARTH_REDIS_URL";
    /// Seconds after which a cluster node that stopped renewing its presence (it
    /// died, or lost Redis) no longer counts anyone as online (at least 3).
    presence_ttl_secs: u64 = 30, env = "HEARTH_PRESENCE_TTL_SECS";
    /// Frames queued for one connection before it counts as too slow and is cut off.
    outbound_queue: usize = 1_024, env = "HEARTH_OUTBOUND_QUEUE";
    /// Sends waiting to be stored before new ones are refused as busy.
    commit_queue: usize = 65_536, env = "HEARTH_COMMIT_QUEUE";
    /// Messages per second one connection (and one person) may send, steadily.
    send_rate: f64 = 10.0, env = "HEARTH_SEND_RATE";
    /// Messages one connection (and one person) may send at once before the steady
    /// rate applies.
    send_burst: u32 = 20, env = "HEARTH_SEND_BURST";
    /// Chat connections one source address may hold open.
    max_conns_per_ip: usize = 100, env = "HEARTH_MAX_CONNS_PER_IP";
    /// Chat connections the server holds open in total (one process may hold
    /// 20,000 open files here; this leaves room for the rest).
    max_conns: usize = 19_500, env = "HEARTH_MAX_CONNS";
    /// Chat connections (tabs) one person may hold open at once on this node.
    max_tabs_per_person: usize = 20, env = "HEARTH_MAX_TABS_PER_PERSON";
    /// People from one address who may be in one room at once on this node.
    room_seats_per_address: usize = 20, env = "HEARTH_ROOM_SEATS_PER_ADDRESS";
    /// Name claims and releases one address may make per minute.
    claims_per_minute: u32 = 30, env = "HEARTH_CLAIMS_PER_MINUTE";
    /// Server-function calls one address may make per minute.
    api_per_minute: u32 = 120, env = "HEARTH_API_PER_MINUTE";
    /// Channels one person, and one address, may create per hour.
    channels_per_hour: u32 = 10, env = "HEARTH_CHANNELS_PER_HOUR";
    /// Most channels the server keeps.
    max_channels: usize = 1_000, env = "HEARTH_MAX_CHANNELS";
    /// Seconds a client has to send a request's headers, then its body, and a
    /// WebSocket its hello; and the longest it may leave an answer unread.
    header_timeout_secs: u64 = 10, env = "HEARTH_HEADER_TIMEOUT_SECS";
    /// Plain HTTP connections open at once (WebSockets are counted apart).
    max_http_connections: usize = 1_024, env = "HEARTH_MAX_HTTP_CONNECTIONS";
    /// Plain HTTP connections (or, through a trusted proxy, requests) one address
    /// may have open at once: its share of `max_http_connections` (an eighth: a
    /// crowd behind one address still loads pages, one address alone cannot hold
    /// every place).
    max_http_connections_per_ip: usize = 128, env = "HEARTH_MAX_HTTP_CONNECTIONS_PER_IP";
}

/// Which store keeps the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Sqlite,
    Memory,
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
    #[error(
        "frame_ancestors: {0:?} is not a site (e.g. https://intranet.example.org), \
         or contains a space, a comma, a semicolon or a quote"
    )]
    FrameAncestor(String),
    #[error(
        "retention keeps {kept} messages per channel, fewer than history ({history}) \
         keeps in memory: a restart would forget what people were just shown"
    )]
    RetentionBelowHistory { kept: u64, history: usize },
    #[error(
        "database_url must be a PostgreSQL address (postgres://user@host:port/database); \
         without it, the embedded store is used"
    )]
    DatabaseUrl,
    #[error(
        "redis_url needs database_url as well: a cluster keeps its records in PostgreSQL, \
         and Redis only carries them between the nodes"
    )]
    BusWithoutRecords,
    #[error("send_rate must be a number above 0")]
    Rate,
    #[error(
        "idle_timeout_secs ({idle}) must be longer than ping_interval_secs ({ping}): \
         a page that only reads answers nothing but the pings, and would be cut off"
    )]
    IdleBeforePing { idle: u64, ping: u64 },
}

/// What the command line asks for.
pub enum Startup {
    Serve(Box<Config>),
    /// `--print-config`: the settings in effect, to print.
    Print(String),
}

/// The file read when none is named, if it exists.
const DEFAULT_FILE: &str = "Leptos.toml";

/// How `Leptos.toml` (and `--print-config`) begins.
const HEADER: &str = "# Hearth's runtime configuration: every setting, with its default. Each can be\n\
# overridden by its environment variable or command-line flag (`hearth --help`);\n\
# `hearth --print-config` shows the values in effect and where each came from.\n\n";

impl Config {
    /// Reads flags and environment, then the file they name.
    pub fn load() -> Result<Startup, ConfigError> {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Flags::command().get_matches();
        let flags = Flags::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let print = flags.print_config;
        let (config, sources) = Self::from_sources(flags, Some(&matches))?;
        Ok(if print {
            Startup::Print(format!("{HEADER}{}", config.render(Some(&sources))))
        } else {
            Startup::Serve(Box::new(config))
        })
    }

    pub fn from_flags(flags: Flags) -> Result<Self, ConfigError> {
        Ok(Self::from_sources(flags, None)?.0)
    }

    fn from_sources(
        flags: Flags,
        matches: Option<&clap::ArgMatches>,
    ) -> Result<(Self, Sources), ConfigError> {
        let (file, path) = match &flags.config {
            Some(named) => (read_file(named)?, named.clone()),
            None => {
                let path = PathBuf::from(DEFAULT_FILE);
                let file = read_file(&path).or_else(|error| match error {
                    ConfigError::Missing { .. } => Ok(FileConfig::default()),
                    error => Err(error),
                })?;
                (file, path)
            }
        };
        let (config, sources) = Self::merge(flags, matches, file, &path);
        Ok((config.checked()?, sources))
    }

    /// The settings made whole and checked: "a, b" is a natural way to write a
    /// list (the spaces are not part of it), an empty Redis address is none.
    fn checked(mut self) -> Result<Self, ConfigError> {
        self.allowed_origins = std::mem::take(&mut self.allowed_origins)
            .into_iter()
            .map(|origin| origin.trim().to_owned())
            .filter(|origin| !origin.is_empty())
            .collect();
        self.redis_url = self.redis_url.take().filter(|url| !url.trim().is_empty());
        self.database_url = self
            .database_url
            .take()
            .filter(|url| !url.trim().is_empty());
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::DatabaseUrl);
        }
        if self.redis_url.is_some() && self.database_url.is_none() {
            return Err(ConfigError::BusWithoutRecords);
        }
        self.frame_ancestors = std::mem::take(&mut self.frame_ancestors)
            .into_iter()
            .map(|site| site.trim().to_owned())
            .filter(|site| !site.is_empty())
            .collect();
        // Each goes into a header as it is: nothing that could end the directive,
        // or the header.
        if let Some(site) = self.frame_ancestors.iter().find(|site| {
            !site
                .chars()
                .all(|c| c.is_ascii_graphic() && !matches!(c, ';' | ',' | '\''))
        }) {
            return Err(ConfigError::FrameAncestor(site.clone()));
        }
        if let Retention::PerChannel(kept) = self.retention
            && kept < self.history as u64
        {
            return Err(ConfigError::RetentionBelowHistory {
                kept,
                history: self.history,
            });
        }
        if !(self.send_rate > 0.0 && self.send_rate.is_finite()) {
            return Err(ConfigError::Rate);
        }
        if self.idle_timeout_secs <= self.ping_interval_secs {
            return Err(ConfigError::IdleBeforePing {
                idle: self.idle_timeout_secs,
                ping: self.ping_interval_secs,
            });
        }
        let counts = [
            (self.history as u64, "history"),
            (self.room_capacity as u64, "room_capacity"),
            (self.outbound_queue as u64, "outbound_queue"),
            (self.commit_queue as u64, "commit_queue"),
            (self.ping_interval_secs, "ping_interval_secs"),
            (u64::from(self.send_burst), "send_burst"),
            (self.max_conns_per_ip as u64, "max_conns_per_ip"),
            (self.max_conns as u64, "max_conns"),
            (u64::from(self.claims_per_minute), "claims_per_minute"),
            (self.header_timeout_secs, "header_timeout_secs"),
            (self.max_http_connections as u64, "max_http_connections"),
            (
                self.max_http_connections_per_ip as u64,
                "max_http_connections_per_ip",
            ),
            (u64::from(self.api_per_minute), "api_per_minute"),
            (u64::from(self.channels_per_hour), "channels_per_hour"),
            (self.max_channels as u64, "max_channels"),
            (self.max_tabs_per_person as u64, "max_tabs_per_person"),
            (self.room_seats_per_address as u64, "room_seats_per_address"),
        ];
        if let Some((_, name)) = counts.iter().find(|(value, _)| *value == 0) {
            return Err(ConfigError::Zero(name));
        }
        Ok(self)
    }

    /// How often the server pings each connection.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs)
    }

    /// A connection silent this long (no frame, no pong) is closed.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// A name unused this long may be claimed by someone else.
    pub fn name_idle(&self) -> Duration {
        Duration::from_secs(self.name_idle_days.saturating_mul(24 * 3600))
    }

    /// How long a silent cluster node's people stay online.
    pub fn presence_ttl(&self) -> Duration {
        Duration::from_secs(self.presence_ttl_secs.max(3))
    }

    /// Time a client has to send a request's headers, then its body, and a
    /// WebSocket its hello.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs)
    }

    /// The defaults, written out as the repository's `Leptos.toml` has them.
    pub fn defaults_file() -> String {
        format!("{HEADER}{}", Self::default().render(None))
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
    fn no_file_means_defaults() {
        let config = Config::from_flags(Flags {
            config: Some("/dev/null".into()),
            ..Flags::default()
        })
        .unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.history, 100);
        assert_eq!(config.room_capacity, 200);
    }

    #[test]
    fn the_repositorys_leptos_toml_is_the_defaults_written_out() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Leptos.toml");
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(
            text,
            Config::defaults_file(),
            "Leptos.toml has drifted from the defaults; write it anew from Config::defaults_file()"
        );
        let config = Config::from_flags(Flags {
            config: Some(path.into()),
            ..Flags::default()
        })
        .unwrap();
        assert_eq!(config, Config::default());
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
    fn flags_override_the_file_and_each_value_says_where_it_came_from() {
        let (file, mut flags) =
            flags_with_file("history = 50\nroom_capacity = 3\noutbound_queue = 10\n");
        flags.room_capacity = Some(7);
        flags.outbound_queue = Some(20);
        let (config, sources) = Config::from_sources(flags, None).unwrap();
        assert_eq!(config.history, 50);
        assert_eq!(config.room_capacity, 7);
        assert_eq!(config.outbound_queue, 20);
        assert_eq!(
            sources.of("history"),
            Some(&Source::File(file.path().to_owned()))
        );
        assert_eq!(
            sources.of("room_capacity"),
            Some(&Source::Flag("room_capacity"))
        );
        assert_eq!(sources.of("max_conns"), Some(&Source::Default));
        let shown = config.render(Some(&sources));
        assert!(
            shown.contains("room_capacity = 7  # flag --room-capacity"),
            "{shown}"
        );
        assert!(shown.contains("max_conns = 19500  # default"), "{shown}");
        assert!(
            shown.contains("# redis_url = (not set)  # default"),
            "{shown}"
        );
    }

    #[test]
    fn lists_are_trimmed_and_an_empty_redis_address_is_none() {
        let (_file, flags) = flags_with_file(
            "allowed_origins = [\" https://a.example \", \"\"]\nredis_url = \" \"\n",
        );
        let config = Config::from_flags(flags).unwrap();
        assert_eq!(config.allowed_origins, ["https://a.example"]);
        assert_eq!(config.redis_url, None);
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
        let (_file, flags) = flags_with_file("retention = \"50 messages\"\n");
        let err = Config::from_flags(flags).unwrap_err().to_string();
        assert!(err.contains("fewer than history (100)"), "{err}");
        let (_file, flags) = flags_with_file("retention = \"forever\"\n");
        let err = Config::from_flags(flags).unwrap_err().to_string();
        assert!(err.contains("a number of days"), "{err}");
        let (_file, flags) = flags_with_file("public_url = \"chat.example.org\"\n");
        let err = Config::from_flags(flags).unwrap_err().to_string();
        assert!(err.contains("must be a site's address"), "{err}");
    }
}
