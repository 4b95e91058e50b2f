//! Peer authorisation: who is on the other end (`SO_PEERCRED`: uid, gid, pid), what it may
//! do (root, the daemon's uid and members of the control group everything; anyone else only
//! `status` and `subscribe`), and which slots it may take.

use std::fmt;

use nix::unistd::{Gid, Uid, User};

use crate::control::protocol::Request;
use crate::control::slots::Class;

/// What a peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// Every request.
    Control,
    /// `status` and `subscribe` only.
    ReadOnly,
}

/// Who may do what: root, the daemon's own uid and members of the control group act; everyone
/// else reads.
pub(super) struct Authority {
    own_uid: Uid,
    group: Option<(String, Gid)>,
}

/// Who is on the other end, for logs and messages.
#[derive(Debug, Clone)]
pub(super) struct Peer {
    pub(super) uid: u32,
    pub(super) pid: Option<i32>,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid {}", self.uid)?;
        if let Some(pid) = self.pid {
            write!(f, " (pid {pid})")?;
        }
        Ok(())
    }
}

impl Authority {
    /// `own_uid` is the daemon's; `group` the configured control group.
    pub(super) fn new(own_uid: Uid, group: Option<(String, Gid)>) -> Authority {
        Authority { own_uid, group }
    }

    /// The peer's access when it needs no group lookup.
    pub(super) fn quick_access(&self, uid: u32, gid: u32) -> Option<Access> {
        if uid == 0 || uid == self.own_uid.as_raw() {
            return Some(Access::Control);
        }
        match &self.group {
            None => Some(Access::ReadOnly),
            Some((_, group)) if gid == group.as_raw() => Some(Access::Control),
            Some(_) => None,
        }
    }

    /// Which slots the peer may take.
    pub(super) fn class(&self, uid: u32, access: Access) -> Class {
        if uid == 0 || uid == self.own_uid.as_raw() {
            Class::Admin
        } else if access == Access::Control {
            Class::Member
        } else {
            Class::ReadOnly
        }
    }

    pub(super) fn access(&self, uid: u32, gid: u32, pid: Option<i32>) -> Access {
        if uid == 0 || uid == self.own_uid.as_raw() {
            return Access::Control;
        }
        let Some((_, group)) = &self.group else {
            return Access::ReadOnly;
        };
        if gid == group.as_raw() || peer_groups(uid, gid, pid).contains(&group.as_raw()) {
            Access::Control
        } else {
            Access::ReadOnly
        }
    }

    pub(super) fn denial(&self, peer: &Peer) -> String {
        match &self.group {
            Some((name, _)) => format!(
                "permission denied: {peer} is neither root nor a member of group '{name}'; only \
                 they may up, hangup or reload (ask for: usermod -aG {name} USER, then log in \
                 again)"
            ),
            None => format!(
                "permission denied: {peer} is not root, and no [control] group is configured; \
                 only root may up, hangup or reload"
            ),
        }
    }
}

/// The peer's supplementary groups: from its process (`/proc/PID/status`, exactly what the
/// kernel checks), else from the user database.
fn peer_groups(uid: u32, gid: u32, pid: Option<i32>) -> Vec<u32> {
    if let Some(pid) = pid.filter(|p| *p > 0)
        && let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status"))
        && let Some((euid, groups)) = parse_proc_status(&text)
        // The pid may have been reused since the peer connected: trust it only if it is
        // still the peer's user.
        && euid == uid
    {
        return groups;
    }
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return Vec::new();
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return Vec::new();
    };
    nix::unistd::getgrouplist(&name, Gid::from_raw(gid))
        .map(|gs| gs.into_iter().map(Gid::as_raw).collect())
        .unwrap_or_default()
}

/// The effective uid and the supplementary groups from `/proc/PID/status`.
fn parse_proc_status(text: &str) -> Option<(u32, Vec<u32>)> {
    let mut euid = None;
    let mut groups = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Uid:") {
            euid = rest.split_whitespace().nth(1).and_then(|u| u.parse().ok());
        } else if let Some(rest) = line.strip_prefix("Groups:") {
            groups = Some(
                rest.split_whitespace()
                    .filter_map(|g| g.parse().ok())
                    .collect(),
            );
        }
    }
    Some((euid?, groups?))
}

/// Whether the request changes something, and so needs [`Access::Control`].
pub(super) fn changes(request: &Request) -> bool {
    !matches!(request, Request::Status { .. } | Request::Subscribe { .. })
}

/// The request's name, for logs.
pub(super) fn command_name(request: &Request) -> &'static str {
    match request {
        Request::Up { .. } => "up",
        Request::Hangup { .. } => "hangup",
        Request::Status { .. } => "status",
        Request::Reload => "reload",
        Request::Subscribe { .. } => "subscribe",
        Request::Shutdown => "shutdown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_status_groups() {
        let text = "Name:\tcat\nUid:\t1000\t1001\t1000\t1000\nGid:\t100\t100\t100\t100\n\
                    Groups:\t4 24 27 1000 \n";
        assert_eq!(parse_proc_status(text), Some((1001, vec![4, 24, 27, 1000])));
        let none = "Name:\tcat\nUid:\t0\t0\t0\t0\nGroups:\n";
        assert_eq!(parse_proc_status(none), Some((0, vec![])));
        assert_eq!(parse_proc_status("Name:\tcat\n"), None);
    }

    #[test]
    fn root_and_own_uid_may_act_others_only_read() {
        let authority = Authority {
            own_uid: Uid::from_raw(4242),
            group: None,
        };
        assert_eq!(authority.access(0, 0, None), Access::Control);
        assert_eq!(authority.access(4242, 4242, None), Access::Control);
        assert_eq!(authority.access(4243, 4243, None), Access::ReadOnly);
        let with_group = Authority {
            own_uid: Uid::from_raw(4242),
            group: Some(("eqlplus".into(), Gid::from_raw(4300))),
        };
        // Primary group.
        assert_eq!(with_group.access(4243, 4300, None), Access::Control);
        let message = with_group.denial(&Peer {
            uid: 4243,
            pid: Some(7),
        });
        assert!(
            message.starts_with(
                "permission denied: uid 4243 (pid 7) is neither root nor a member of group 'eqlplus'"
            ),
            "{message}"
        );
    }
}
