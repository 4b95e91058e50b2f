//! The per-connection balancer: policies (sans-IO, [`policy`]) and the kernel state that
//! carries them out ([`nft`], [`conntrack`], routes and rules via [`crate::net`]).

pub mod actor;
pub mod dns;
pub mod flows;
pub mod kernel;
pub mod nft;
pub mod policy;

pub use kernel::{Balancer, BalancerConfig, BalancerError, Enslave};
pub use policy::{LineLoad, Policy, pick_table};
