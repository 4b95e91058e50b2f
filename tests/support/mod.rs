//! Test support for root-only tests: network namespaces the test creates (and deletes), veth
//! links between them, and running code inside one.
//!
//! Only addresses inside these namespaces are ever used.

#![allow(dead_code)]

pub mod daemon;
pub mod inet;
pub mod tmux;

#[allow(unused_imports)]
pub use eqlplus_dialer::sim::netns::{Netns, enter, sh, veth};

/// Whether root-only tests can run. As non-root they are skipped, saying so; with
/// `EQLPLUS_REQUIRE_ROOT=1` (CI) they fail instead.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    if std::env::var("EQLPLUS_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("{test} needs root (EQLPLUS_REQUIRE_ROOT=1)");
    }
    eprintln!("skipped: {test} needs root (network namespaces, nftables)");
    false
}
