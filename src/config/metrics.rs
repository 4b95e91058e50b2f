//! The `[metrics]` section: the opt-in Prometheus / OpenMetrics endpoint. Without the section
//! nothing listens.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::checker::Checker;
use super::defaults;

/// Where the metrics endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsListen {
    Tcp(SocketAddr),
    /// A Unix stream socket (for a local proxy or `curl --unix-socket`).
    Unix(PathBuf),
}

impl std::fmt::Display for MetricsListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsListen::Tcp(a) => write!(f, "{a}"),
            MetricsListen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSection {
    pub listen: MetricsListen,
}

/// `[metrics]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    listen: Option<Spanned<String>>,
}

/// The longest path a Unix socket address holds (`sun_path`, with its terminating zero).
const MAX_UNIX_PATH: usize = 107;

/// Validates `[metrics]`; `resolve` makes a relative socket path relative to the file.
pub(super) fn parse(
    c: &mut Checker<'_>,
    raw: &RawMetrics,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
) -> MetricsSection {
    let default = || MetricsListen::Tcp(SocketAddr::from(defaults::METRICS_LISTEN));
    let Some(listen) = &raw.listen else {
        return MetricsSection { listen: default() };
    };
    let text = listen.get_ref().trim();
    let unix = text
        .strip_prefix("unix:")
        .or_else(|| text.starts_with('/').then_some(text));
    let parsed = match unix {
        Some("") => Err("no socket path after unix:".to_string()),
        Some(path) => {
            let path = resolve(PathBuf::from(path));
            if path.as_os_str().len() > MAX_UNIX_PATH {
                Err(format!(
                    "the socket path {} is longer than a Unix socket address holds ({MAX_UNIX_PATH} bytes)",
                    path.display()
                ))
            } else {
                Ok(MetricsListen::Unix(path))
            }
        }
        None => match text.parse::<SocketAddr>() {
            Ok(a) if a.port() == 0 => Err(format!("{text}: port 0 is not a port to scrape")),
            Ok(a) => Ok(MetricsListen::Tcp(a)),
            Err(_) => Err(format!(
                "'{text}' is neither an address:port nor a Unix socket"
            )),
        },
    };
    match parsed {
        Ok(l) => MetricsSection { listen: l },
        Err(message) => {
            c.error(
                listen.span(),
                "metrics.listen",
                message,
                Some(
                    "an address and port such as 127.0.0.1:9460 or [::1]:9460, or unix:/run/eqlplus-dialer/metrics.sock",
                ),
            );
            MetricsSection { listen: default() }
        }
    }
}
