//! The hook between the daemon and its metrics endpoint: bound with the control socket, served
//! once the supervisor runs, each scrape read from the line registry (as `status` is).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::config::Config;
use crate::link::status::LineShared;
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

/// The lines' and bundles' figures now.
fn snapshot(registry: &LineRegistry) -> Snapshot {
    let mut lines = Vec::new();
    let policy = registry.each_line(|name, config, shared, share, open_connections| {
        let mut l = sample(
            name,
            config.device.to_string(),
            &config.slave,
            config.tier,
            shared,
        );
        l.share = share;
        l.open_connections = open_connections;
        lines.push(l);
    });
    // A Multilink bundle is one line of the balancer: listed as a line, with its members.
    registry.each_bundle(|name, config, shared, share| {
        let mut l = sample(name, config.device(), &config.slave, config.tier, shared);
        l.share = share;
        l.admin_up = true;
        l.members = Some(shared.info().members.unwrap_or_default());
        lines.push(l);
    });
    Snapshot {
        policy: policy.name(),
        lines,
    }
}

/// What a line's (or bundle's) status and counters say.
fn sample(name: &str, device: String, slave: &str, tier: u32, shared: &LineShared) -> LineSample {
    let i = shared.info();
    let (queued_bytes, _) = shared.queue_figures();
    let (dropped_packets, dropped_bytes) = shared.dropped_total();
    LineSample {
        name: name.to_string(),
        device,
        slave: slave.to_string(),
        tier,
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
        share: 0.0,
        tally: shared.tally(),
        lcp_rtt: i.lcp_rtt,
        track: shared.track(),
        open_connections: None,
        signal_dbm: i.cellular.as_ref().and_then(|c| c.signal).map(|s| s.dbm),
        resets: [i.resets.modem, i.resets.port, i.resets.hook],
        bundle: i.bundle.clone(),
        members: None,
    }
}
