//! Rate limits and connection counts that keep one client from crowding out others.

use axum::http::HeaderMap;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// A token bucket: `burst` actions at once, refilled at `rate` per second.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: rate.max(0.0),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Returns a token taken for something that then did not happen.
    pub fn give_back(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }

    /// Whether the bucket has refilled completely (and can be forgotten).
    fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }
}

/// One token bucket per key (a name, an address), forgetting full buckets so the
/// map stays as small as the set of recently active keys.
pub struct KeyedLimiter<K> {
    rate: f64,
    burst: u32,
    buckets: Mutex<HashMap<K, TokenBucket>>,
}

impl<K: Eq + Hash + Clone> KeyedLimiter<K> {
    pub fn new(rate: f64, burst: u32) -> Self {
        Self {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `n` at once, then `n` a minute.
    pub fn per_minute(n: u32) -> Self {
        Self::new(f64::from(n) / 60.0, n)
    }

    /// `n` at once, then `n` an hour.
    pub fn per_hour(n: u32) -> Self {
        Self::new(f64::from(n) / 3600.0, n)
    }

    pub fn try_take(&self, key: &K, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 10_000 {
            buckets.retain(|_, bucket| !bucket.is_full(now));
        }
        buckets
            .entry(key.clone())
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst, now))
            .try_take(now)
    }

    /// Returns a token `key` took for something that then did not happen.
    pub fn give_back(&self, key: &K) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = buckets.get_mut(key) {
            bucket.give_back();
        }
    }
}

/// The address a per-address limit counts under: an IPv6 client's /64 (one home or
/// host gets a whole /64, so counting single addresses would let it past every
/// limit), and an IPv4 client as itself, however its address came.
pub fn limited_address(ip: IpAddr) -> IpAddr {
    match unmapped(ip) {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// The address a request comes from, as per-address limits count it: the TCP
/// peer's, or, when the peer is a trusted proxy, the nearest address it forwarded
/// that is not itself a trusted proxy (`X-Forwarded-For`, else `X-Real-IP`). Behind
/// a proxy every request would otherwise share the proxy's address and its limits.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.contains(&unmapped(*ip));
    if !is_trusted(&peer) {
        return limited_address(peer);
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    // Entries are appended by each proxy, so the rightmost untrusted one is the
    // client as far as trusted proxies vouch; anything left of it could be forged.
    for entry in forwarded.iter().rev() {
        match forwarded_address(entry) {
            Some(ip) if is_trusted(&ip) => continue,
            Some(ip) => return limited_address(ip),
            None => return limited_address(peer),
        }
    }
    headers
        .get("x-real-ip")
        .and_then(|value| value.to_str().ok())
        .and_then(forwarded_address)
        .map_or(limited_address(peer), limited_address)
}

/// An address as a proxy forwards it: bare, or with the client's port (some
/// proxies write `203.0.113.9:51234`, or `[2001:db8::1]:51234`).
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Open connections (or requests), in total and per source address.
pub struct ConnectionCounter {
    per_ip_limit: usize,
    total_limit: usize,
    state: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    TooManyFromAddress,
    ServerFull,
}

/// Holds one counted connection; dropping it frees the place.
pub struct ConnectionSlot {
    counter: Arc<ConnectionCounter>,
    /// `None` for a connection counted in the total only.
    ip: Option<IpAddr>,
}

impl ConnectionCounter {
    pub fn new(per_ip_limit: usize, total_limit: usize) -> Arc<Self> {
        Arc::new(Self {
            per_ip_limit,
            total_limit,
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a connection from `ip`, within its share and the total.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        self.acquire_from(Some(ip))
    }

    /// Counts a connection in the total only: one from a trusted proxy, which
    /// carries many people's requests (each counted by its forwarded address).
    pub fn acquire_unattributed(self: &Arc<Self>) -> Result<ConnectionSlot, Refusal> {
        self.acquire_from(None)
    }

    fn acquire_from(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<ConnectionSlot, Refusal> {
        let mut counts = self.lock();
        if counts.total >= self.total_limit {
            return Err(Refusal::ServerFull);
        }
        if let Some(ip) = ip {
            let from_ip = counts.per_ip.entry(ip).or_insert(0);
            if *from_ip >= self.per_ip_limit {
                return Err(Refusal::TooManyFromAddress);
            }
            *from_ip += 1;
        }
        counts.total += 1;
        Ok(ConnectionSlot {
            counter: self.clone(),
            ip,
        })
    }

    pub fn total(&self) -> usize {
        self.lock().total
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.counter.lock();
        counts.total -= 1;
        if let Some(ip) = self.ip
            && let Some(from_ip) = counts.per_ip.get_mut(&ip)
        {
            *from_ip -= 1;
            if *from_ip == 0 {
                counts.per_ip.remove(&ip);
            }
        }
    }
}

/// Room changes (joins and leaves) one connection may make at once, and per second
/// after that. Each join is answered with a window of history, and every change
/// takes the hub's lock.
const ROOM_CHANGE_BURST: u32 = 20;
const ROOM_CHANGE_RATE: f64 = 5.0;

/// Every limit the server enforces on clients, built once from the configuration.
pub struct Guards {
    /// Chat connections, per address and in total.
    pub connections: Arc<ConnectionCounter>,
    /// Plain HTTP connections, per address and in total (the accept loop's).
    pub http_connections: Arc<ConnectionCounter>,
    /// Requests in flight through a trusted proxy, per forwarded address: the
    /// proxy's connections are counted in the total only, so its clients' share is
    /// counted here.
    pub proxied_requests: Arc<ConnectionCounter>,
    /// Sends per person (all their tabs together).
    pub person_sends: KeyedLimiter<Arc<str>>,
    /// Name claims and releases per source address.
    pub claims: KeyedLimiter<IpAddr>,
    /// Server-function calls per source address.
    pub api_calls: KeyedLimiter<IpAddr>,
    /// Channel creations per person (name key) and per address.
    pub channels_by_person: KeyedLimiter<String>,
    pub channels_by_address: KeyedLimiter<IpAddr>,
    channels_per_hour: u32,
    send_rate: f64,
    send_burst: u32,
    /// Refused sends in a row after which a connection is cut off as a flooder.
    pub strikes: u32,
    trusted_proxies: Vec<IpAddr>,
}

impl Guards {
    /// [`client_address`] with this server's trusted proxies.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_address(peer, headers, &self.trusted_proxies)
    }

    /// Whether `peer` is a proxy whose forwarded addresses are believed.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.contains(&unmapped(peer))
    }

    /// Counts a new HTTP connection from `peer`: within its address's share, or,
    /// from a trusted proxy, in the total only.
    pub fn admit_http(&self, peer: IpAddr) -> Result<ConnectionSlot, Refusal> {
        if self.is_trusted_proxy(peer) {
            self.http_connections.acquire_unattributed()
        } else {
            self.http_connections.acquire(limited_address(peer))
        }
    }

    pub fn new(config: &super::config::Config) -> Arc<Self> {
        Arc::new(Self {
            connections: ConnectionCounter::new(config.max_conns_per_ip, config.max_conns),
            http_connections: ConnectionCounter::new(
                config.max_http_connections_per_ip,
                config.max_http_connections,
            ),
            proxied_requests: ConnectionCounter::new(
                config.max_http_connections_per_ip,
                usize::MAX,
            ),
            person_sends: KeyedLimiter::new(config.send_rate, config.send_burst),
            claims: KeyedLimiter::per_minute(config.claims_per_minute),
            api_calls: KeyedLimiter::per_minute(config.api_per_minute),
            channels_by_person: KeyedLimiter::per_hour(config.channels_per_hour),
            channels_by_address: KeyedLimiter::per_hour(config.channels_per_hour),
            channels_per_hour: config.channels_per_hour,
            send_rate: config.send_rate,
            send_burst: config.send_burst,
            // A client that respects "slow down" never comes close; one that keeps
            // firing into the limit is gone within a couple of bursts.
            strikes: config.send_burst.max(5) * 2,
            trusted_proxies: config.trusted_proxies.clone(),
        })
    }

    /// Channels one person, or one address, may create per hour.
    pub fn channels_per_hour(&self) -> u32 {
        self.channels_per_hour
    }

    /// A fresh per-connection bucket of room changes: clicking through a sidebar
    /// of rooms is fine, a loop is not.
    pub fn room_change_bucket(&self, now: Instant) -> TokenBucket {
        TokenBucket::new(ROOM_CHANGE_RATE, ROOM_CHANGE_BURST, now)
    }

    /// A fresh per-connection bucket for sends and every other frame.
    pub fn send_bucket(&self, now: Instant) -> TokenBucket {
        TokenBucket::new(self.send_rate, self.send_burst, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_a_trusted_proxy_the_forwarded_address_counts() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let proxy = [ip("127.0.0.1")];
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.append(*name, value.parse().unwrap());
            }
            map
        };
        let forwarded = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &forwarded, &proxy),
            ip("203.0.113.9")
        );
        // From anyone else the header is not believed.
        assert_eq!(
            client_address(ip("198.51.100.1"), &forwarded, &proxy),
            ip("198.51.100.1")
        );
        // What the client wrote itself is left of what the proxy appended.
        let forged = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9")]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &forged, &proxy),
            ip("203.0.113.9")
        );
        let real_ip = headers(&[("x-real-ip", "203.0.113.7")]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &real_ip, &proxy),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), &HeaderMap::new(), &proxy),
            ip("127.0.0.1")
        );
        // With the client's port, as some proxies write it.
        let with_port = headers(&[("x-forwarded-for", "203.0.113.9:51234")]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &with_port, &proxy),
            ip("203.0.113.9")
        );
        let garbage = headers(&[("x-forwarded-for", "not an address")]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &garbage, &proxy),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn an_ipv6_network_counts_as_one_address() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            limited_address(ip("2001:db8:1:2:aaaa::1")),
            limited_address(ip("2001:db8:1:2:ffff:1:2:3"))
        );
        assert_ne!(
            limited_address(ip("2001:db8:1:2::1")),
            limited_address(ip("2001:db8:1:3::1"))
        );
        assert_eq!(limited_address(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(limited_address(ip("192.0.2.7")), ip("192.0.2.7"));
    }

    use std::time::Duration;

    #[test]
    fn a_bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2.0, 3, start);
        assert!((0..3).all(|_| bucket.try_take(start)));
        assert!(!bucket.try_take(start));
        // Half a second refills one token at 2 per second.
        let later = start + Duration::from_millis(500);
        assert!(bucket.try_take(later));
        assert!(!bucket.try_take(later));
        // A long pause refills only up to the burst.
        let much_later = later + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| bucket.try_take(much_later)).count(), 3);
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let now = Instant::now();
        let limiter = KeyedLimiter::new(1.0, 1);
        assert!(limiter.try_take(&"ada", now));
        assert!(!limiter.try_take(&"ada", now));
        assert!(limiter.try_take(&"bob", now));
        // A token given back may be taken again, but never more than the burst.
        limiter.give_back(&"ada");
        limiter.give_back(&"ada");
        assert!(limiter.try_take(&"ada", now));
        assert!(!limiter.try_take(&"ada", now));
    }

    #[test]
    fn connections_are_capped_per_address_and_in_total() {
        let counter = ConnectionCounter::new(2, 3);
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let first = counter.acquire(a).unwrap();
        let _second = counter.acquire(a).unwrap();
        assert_eq!(counter.acquire(a).err(), Some(Refusal::TooManyFromAddress));
        let third = counter.acquire(b).unwrap();
        assert_eq!(counter.acquire(b).err(), Some(Refusal::ServerFull));
        drop(first);
        let _again = counter.acquire(a).unwrap();
        assert_eq!(counter.total(), 3);
        // A proxy's connection counts towards the total, not towards an address.
        drop(third);
        let proxied = counter.acquire_unattributed().unwrap();
        assert_eq!(
            counter.acquire_unattributed().err(),
            Some(Refusal::ServerFull)
        );
        drop(proxied);
        assert_eq!(counter.acquire(a).err(), Some(Refusal::TooManyFromAddress));
    }
}
