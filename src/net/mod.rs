//! Kernel networking state: slave devices, their transmit queues, addresses, routes and
//! policy rules over netlink.

pub mod pump;
pub mod queue;
pub mod routes;
pub mod slave;
pub mod watch;

pub use queue::{QueueStats, SharedTxQueue, TxQueue};
pub use routes::{Netlink, NetlinkError, ROUTE_PROTOCOL, RoutingConfig};
pub use slave::{Slave, SlaveError, TunSlave, default_slave_name, valid_ifname};
pub use watch::KernelWatch;
