//! The address people open Hearth at (`HEARTH_PUBLIC_URL`): the only host name the
//! server answers for besides addresses, and the origin its pages have.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where people open Hearth: its origin (`https://chat.example.org`, as browsers
/// send it in `Origin`) and its host name, which every request must name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrl {
    pub origin: String,
    pub host: String,
    pub https: bool,
}

/// Why a public address was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "public_url {0:?} must be a site's address, such as https://chat.example.org \
     (a scheme and a host, an optional port, no path)"
)]
pub struct NotASite(pub String);

impl std::str::FromStr for PublicUrl {
    type Err = NotASite;

    fn from_str(raw: &str) -> Result<Self, NotASite> {
        let bad = || NotASite(raw.to_owned());
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

impl Serialize for PublicUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.origin)
    }
}

impl<'de> Deserialize<'de> for PublicUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
