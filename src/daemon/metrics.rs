//! The hook between the daemon and its metrics endpoint: bound with the control socket, served
//! once the supervisor runs, each scrape read from the line registry (as `status` is).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::config::Config;
use crate::metrics::{LineSample, MetricsListener, MetricsServer, Snapshot};

use super::supervisor::LineRegistry;

/// Binds the endpoint if the configuration has a `[metrics]` section.
pub(super) async fn bind(config: &Config) -> std::io::Result<Option<MetricsListener>> {
    match &config.metrics {
        Some(m) => MetricsListener::bind(&m.listen).await.map(Some),
        None => Ok(None),
    }
}

/// Starts answering scrapes.
pub(super) fn serve(listener: MetricsListener, registry: LineRegistry) -> MetricsServer {
    listener.serve(Arc::new(move || snapshot(&registry)))
}

/// The lines' figures now.
fn snapshot(registry: &LineRegistry) -> Snapshot {
    let mut lines = Vec::new();
    let policy = registry.each_line(|name, config, shared, share, open_connections| {
        let i = shared.info();
        let (queued_bytes, _) = shared.queue_figures();
        let (dropped_packets, dropped_bytes) = shared.dropped_total();
        lines.push(LineSample {
            name: name.to_string(),
            device: config.device.to_string(),
            slave: config.slave.clone(),
            tier: config.tier,
            state: i.state,
            since: i.since,
            admin_up: i.admin_up,
            connect_speed: i.connect_speed,
            rx_bytes: shared.rx_bytes.load(Ordering::Relaxed),
            tx_bytes: shared.tx_bytes.load(Ordering::Relaxed),
            rx_packets: shared.rx_packets.load(Ordering::Relaxed),
            tx_packets: shared.tx_packets.load(Ordering::Relaxed),
            dropped_packets,
            dropped_bytes,
            queued_bytes,
            share,
            tally: shared.tally(),
            lcp_rtt: i.lcp_rtt,
            track: shared.track(),
            open_connections,
            signal_dbm: i.cellular.as_ref().and_then(|c| c.signal).map(|s| s.dbm),
            resets: [i.resets.modem, i.resets.port, i.resets.hook],
            bundle: i.bundle.clone(),
            members: None,
        });
    });
    registry.each_bundle(|name, config, shared, share| {
        let i = shared.info();
        let (queued_bytes, _) = shared.queue_figures();
        let (dropped_packets, dropped_bytes) = shared.dropped_total();
        lines.push(LineSample {
            name: name.to_string(),
            device: config.device(),
            slave: config.slave.clone(),
            tier: config.tier,
            state: i.state,
            since: i.since,
            admin_up: true,
            connect_speed: i.connect_speed,
            rx_bytes: shared.rx_bytes.load(Ordering::Relaxed),
            tx_bytes: shared.tx_bytes.load(Ordering::Relaxed),
            rx_packets: shared.rx_packets.load(Ordering::Relaxed),
            tx_packets: shared.tx_packets.load(Ordering::Relaxed),
            dropped_packets,
            dropped_bytes,
            queued_bytes,
            share,
            tally: shared.tally(),
            lcp_rtt: None,
            track: None,
            open_connections: None,
            signal_dbm: None,
            resets: [0; 3],
            bundle: None,
            members: Some(i.members.clone().unwrap_or_default()),
        });
    });
    Snapshot {
        policy: policy.name(),
        lines,
    }
}
