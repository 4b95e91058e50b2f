//! The `[control]` section: the control socket and who may use it.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::checker::Checker;
use super::{ControlSection, defaults};

/// `[control]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControl {
    socket: Option<PathBuf>,
    group: Option<Spanned<String>>,
}

/// Validates `[control]`; `resolve` makes relative paths relative to the file.
pub(super) fn parse(
    c: &mut Checker<'_>,
    raw: &RawControl,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
) -> ControlSection {
    ControlSection {
        socket: resolve(
            raw.socket
                .clone()
                .unwrap_or_else(|| PathBuf::from(defaults::SOCKET)),
        ),
        group: raw.group.as_ref().map(|g| {
            group(c, g);
            g.get_ref().clone()
        }),
    }
}

/// `[control] group` must exist: the daemon gives the socket to it.
fn group(c: &mut Checker<'_>, g: &Spanned<String>) {
    match nix::unistd::Group::from_name(g.get_ref()) {
        Ok(Some(_)) => {}
        Ok(None) => c.error(
            g.span(),
            "control.group",
            format!("no group named '{}' on this system", g.get_ref()),
            Some("create it (groupadd) or unset group for root-only control"),
        ),
        Err(e) => c.error(
            g.span(),
            "control.group",
            format!("cannot look up group '{}': {e}", g.get_ref()),
            None,
        ),
    }
}
