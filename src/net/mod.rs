//! Kernel networking state: slave devices, addresses, routes and policy rules over netlink.

pub mod routes;

pub use routes::{Netlink, NetlinkError, ROUTE_PROTOCOL, RoutingConfig};
