//! Slave devices: where a line's IP packets enter and leave the kernel. eqlplus "enslaves" one
//! per line to the balancer, as eql enslaved ppp devices.
//!
//! Only TUN slaves are built: the kernel here has no PPP. The [`Slave`] trait is what the rest
//! of the program needs of a slave, so a kernel-PPP slave (a `/dev/ppp` unit fed by the line's
//! PPP session) can be added beside it.

use std::future::Future;
use std::io;
use std::net::Ipv4Addr;

use super::netlink::{Netlink, NetlinkError};

/// What the line driver needs of a slave device.
pub trait Slave: Send + Sync {
    /// The interface name (`eq-ttyS1`).
    fn name(&self) -> &str;
    /// Waits for the next IP packet the kernel routes to the line.
    fn recv(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;
    /// Hands an IP packet received on the line to the kernel.
    fn send(&self, packet: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
}

/// Why a slave could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SlaveError {
    #[error("invalid slave name '{0}': 1-15 characters of A-Z a-z 0-9 . _ -")]
    InvalidName(String),
    #[error("cannot create TUN device {name}: {source}")]
    Create {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("TUN device {0} vanished right after it was created")]
    Vanished(String),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// The default slave name for a line's device: `eq-` and the tty's name, cut to 15 bytes
/// (`/dev/ttyS1` → `eq-ttyS1`, `/dev/ttyUSB2` → `eq-ttyUSB2`).
pub fn default_slave_name(device: &str) -> String {
    let base = device.rsplit('/').next().unwrap_or(device);
    let clean: String = base
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    let mut name = format!("eq-{clean}");
    name.truncate(15);
    name
}

/// Linux interface names: 1-15 bytes; restricted further so they can be quoted in nft scripts.
pub fn valid_ifname(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A TUN device with a point-to-point address, up. Removed by the kernel when dropped.
pub struct TunSlave {
    device: tun_rs::AsyncDevice,
    name: String,
    index: u32,
}

impl TunSlave {
    /// Creates the TUN device `name` (layer 3, no packet information), gives it `local` peer
    /// `peer`, sets `mtu` and brings it up — all but the creation over rtnetlink. Must run in
    /// a tokio runtime, on a thread in the target network namespace.
    pub async fn create(
        netlink: &Netlink,
        name: &str,
        local: Ipv4Addr,
        peer: Ipv4Addr,
        mtu: u16,
    ) -> Result<TunSlave, SlaveError> {
        if !valid_ifname(name) {
            return Err(SlaveError::InvalidName(name.to_string()));
        }
        let device = tun_rs::DeviceBuilder::new()
            .name(name)
            .packet_information(false)
            .enable(false)
            .build_async()
            .map_err(|source| SlaveError::Create {
                name: name.to_string(),
                source,
            })?;
        let index = netlink
            .link_index(name)
            .await?
            .ok_or_else(|| SlaveError::Vanished(name.to_string()))?;
        // No IPv6 on the line (IPv6CP is not negotiated): don't let the kernel send any there.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
        netlink.add_ptp_address(index, local, peer).await?;
        netlink.set_up(index, u32::from(mtu)).await?;
        tracing::debug!(slave = name, %local, %peer, mtu, "TUN slave up");
        Ok(TunSlave {
            device,
            name: name.to_string(),
            index,
        })
    }

    /// The interface index.
    pub fn index(&self) -> u32 {
        self.index
    }
}

impl Slave for TunSlave {
    fn name(&self) -> &str {
        &self.name
    }

    async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.device.recv(buf).await
    }

    async fn send(&self, packet: &[u8]) -> io::Result<()> {
        self.device.send(packet).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        assert!(valid_ifname("eq-ttyS1"));
        assert!(valid_ifname("eq-ttyUSB12.x_1"));
        assert!(!valid_ifname(""));
        assert!(!valid_ifname("a-name-longer-than-15"));
        assert!(!valid_ifname("eq\"; flush"));
        assert!(!valid_ifname("eq ttyS1"));
    }

    #[test]
    fn default_names() {
        assert_eq!(default_slave_name("/dev/ttyS1"), "eq-ttyS1");
        assert_eq!(default_slave_name("/dev/ttyUSB12"), "eq-ttyUSB12");
        assert_eq!(
            default_slave_name("/dev/serial/by-id/usb-Huawei_E3372-if00"),
            "eq-usb-Huawei_E"
        );
        assert_eq!(default_slave_name("/tmp/sim ttyA"), "eq-simttyA");
    }
}
