//! Kernel networking state: slave devices, their transmit queues, addresses, routes and
//! policy rules over netlink.

pub mod conntrack;
pub mod icmp;
pub mod kernel_ppp;
pub mod netlink;
pub mod nft;
pub mod nftset;
pub mod probe;
pub mod pump;
pub mod queue;
mod request;
pub mod slave;
mod walk;
pub mod watch;

pub use netlink::{
    LinkCounters, Netlink, NetlinkError, QdiscFigures, ROUTE_PROTOCOL, RoutingConfig,
};
pub use queue::{QueueStats, SharedTxQueue, TxQueue};
pub use slave::{Slave, SlaveError, TunSlave, default_slave_name, valid_ifname};
pub use watch::KernelWatch;
