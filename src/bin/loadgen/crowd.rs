//! Many connections joined to many rooms, opened as fast as the server allows: the
//! set-up of the fan-out and idle scenarios, and itself the connect-storm figure.

use super::Target;
use super::client::{self, ClientError};
use super::session::{self, Dialect};
use super::wire::Socket;
use futures_util::StreamExt;
use hearth::protocol::NameGrant;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// Who connects where.
#[derive(clap::Args, Clone, Debug)]
pub struct CrowdArgs {
    #[arg(long, value_enum, default_value = "hearth")]
    pub dialect: Dialect,
    /// Rooms.
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Connections per room.
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// Loopback source addresses to spread connections over (127.0.0.1, .2, ...).
    #[arg(long, default_value_t = 1)]
    pub sources: u8,
    /// Handshakes in flight at once while connecting.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Names the rooms "room PREFIX-N" (default: this process's id), so that
    /// several load generators can fill one cluster's rooms together.
    #[arg(long)]
    pub room_prefix: Option<String>,
    /// The number of the first room, for load generators sharing a prefix.
    #[arg(long, default_value_t = 0)]
    pub first_room: usize,
    /// Tabs coming back (as after a restart), which show the channel list already:
    /// each hello names its version, learned once before the storm, and the
    /// welcomes carry no list.
    #[arg(long)]
    pub returning: bool,
}

pub struct Member {
    pub room: usize,
    pub index: usize,
    pub socket: Socket,
}

pub struct Crowd {
    pub rooms: Vec<String>,
    pub members: Vec<Member>,
    /// Handshakes plus joins per second while connecting.
    pub connects_per_s: f64,
    /// The servers' CPU time per handshake and join while connecting (names and
    /// rooms, which only Hearth needs, are set up before).
    pub cpu_us_per_connect: Option<f64>,
}

/// Claims names and creates rooms (Hearth only) through the first node, then
/// connects every member, spread over the nodes in turn.
pub async fn gather(target: &Target, args: &CrowdArgs) -> Result<Crowd, ClientError> {
    let nodes = target.addrs();
    let addr = nodes[0];
    let rooms_count = args.rooms.clamp(1, 10_000);
    let members_count = args.members.clamp(1, 20_000);
    if rooms_count * members_count > 19_900 {
        return Err(ClientError::Refused(
            "one process holds at most 19,900 connections here; split the load".into(),
        ));
    }
    let run = std::process::id();
    let prefix = args.room_prefix.clone().unwrap_or_else(|| run.to_string());
    let rooms: Vec<String> = (args.first_room..args.first_room + rooms_count)
        .map(|r| format!("room {prefix}-{r}"))
        .collect();
    // One name per member position, shared across rooms: presence counts people,
    // and claiming is not what these scenarios measure.
    let grants = match args.dialect {
        Dialect::Hearth => {
            let http = reqwest::Client::builder().no_proxy().build()?;
            let mut grants = Vec::with_capacity(members_count);
            for i in 0..members_count {
                grants.push(client::claim(&http, addr, &format!("m{run}-{i}")).await?);
            }
            for room in &rooms {
                client::create_channel(&http, addr, room, &grants[0]).await?;
            }
            grants
        }
        Dialect::SocketIo => (0..members_count)
            .map(|i| NameGrant {
                name: format!("m{run}-{i}"),
                token: String::new(),
            })
            .collect(),
    };
    let channels_version = match (args.returning, args.dialect) {
        (true, Dialect::Hearth) => Some(client::channels_version(addr, &grants[0]).await?),
        _ => None,
    };
    let sources: Vec<IpAddr> = (1..=args.sources.max(1))
        .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .collect();
    let plan: Vec<(usize, usize)> = (0..rooms_count)
        .flat_map(|r| (0..members_count).map(move |m| (r, m)))
        .collect();
    let started = Instant::now();
    let cpu_before = target.sample();
    let dialect = args.dialect;
    let results =
        futures_util::stream::iter(plan.into_iter().enumerate().map(|(n, (room, index))| {
            let grant = grants[index].clone();
            let room_name = rooms[room].clone();
            let source = sources[n % sources.len()];
            let node = nodes[n % nodes.len()];
            let channels_version = channels_version.clone();
            async move {
                let socket = tokio::time::timeout(
                    Duration::from_secs(30),
                    session::join(
                        dialect,
                        node,
                        source,
                        &grant,
                        &room_name,
                        channels_version.as_deref(),
                    ),
                )
                .await
                .map_err(|_| ClientError::Closed("the handshake timed out"))??;
                Ok::<_, ClientError>(Member {
                    room,
                    index,
                    socket,
                })
            }
        }))
        .buffer_unordered(args.concurrency.clamp(1, 4_096))
        .collect::<Vec<_>>()
        .await;
    let elapsed = started.elapsed().as_secs_f64().max(0.001);
    let cpu_after = target.sample();
    let members = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    let cpu_us_per_connect = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) => {
            Some((after.cpu - before.cpu).as_secs_f64() * 1e6 / members.len().max(1) as f64)
        }
        _ => None,
    };
    Ok(Crowd {
        connects_per_s: members.len() as f64 / elapsed,
        cpu_us_per_connect,
        rooms,
        members,
    })
}
