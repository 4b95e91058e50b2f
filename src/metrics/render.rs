//! The exposition: a [`Snapshot`] as OpenMetrics text or the Prometheus text format 0.0.4,
//! encoded by `prometheus-client` from a collector that reads the snapshot (nothing is
//! registered between scrapes). Pure: no I/O.

use std::borrow::Cow;
use std::fmt;
use std::time::UNIX_EPOCH;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::{LineSample, Snapshot};
use crate::link::LineState;
use crate::link::redial::FailureKind;
use crate::link::status::{DIAL_BUCKETS, FailureStage};
use crate::track::Internet;

/// The two text formats a scraper may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (what Prometheus asks for first).
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (for anything else: curl, `promtool check metrics`).
    Prometheus,
}

impl Format {
    /// The format for an `Accept` header: OpenMetrics if the scraper names it.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a)
                if a.to_ascii_lowercase()
                    .contains("application/openmetrics-text") =>
            {
                Format::OpenMetrics
            }
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// The exposition of `snapshot` in `format`.
pub fn render(snapshot: &Snapshot, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(snapshot.clone())));
    let mut out = String::with_capacity(1024 + snapshot.lines.len() * 8 * 1024);
    // Writing into a String cannot fail; an encoder error would be a bug in our names.
    let written = match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        }
    };
    if let Err(e) = written {
        tracing::error!("metrics: encoding failed: {e}");
    }
    out
}

/// The states in the order of the one-hot `eqlplus_line_state` series.
pub(super) const STATES: [LineState; 16] = [
    LineState::Disabled,
    LineState::Down,
    LineState::Locking,
    LineState::InitChat,
    LineState::DialChat,
    LineState::Ppp,
    LineState::Up,
    LineState::NoInternet,
    LineState::Degraded,
    LineState::HangingUp,
    LineState::Holdoff,
    LineState::Failed,
    LineState::NoDevice,
    LineState::Registering,
    LineState::SimLocked,
    LineState::Resetting,
];

/// Where `state` is in [`STATES`]; exhaustive, so a new state cannot be left out unnoticed
/// (the unit test checks the two agree).
pub(super) fn state_index(state: LineState) -> usize {
    match state {
        LineState::Disabled => 0,
        LineState::Down => 1,
        LineState::Locking => 2,
        LineState::InitChat => 3,
        LineState::DialChat => 4,
        LineState::Ppp => 5,
        LineState::Up => 6,
        LineState::NoInternet => 7,
        LineState::Degraded => 8,
        LineState::HangingUp => 9,
        LineState::Holdoff => 10,
        LineState::Failed => 11,
        LineState::NoDevice => 12,
        LineState::Registering => 13,
        LineState::SimLocked => 14,
        LineState::Resetting => 15,
    }
}

/// Upstream tracking's verdicts, one-hot in `eqlplus_line_internet`.
const VERDICTS: [&str; 4] = ["unknown", "online", "offline", "degraded"];

fn verdict(internet: &Internet) -> &'static str {
    match internet {
        Internet::Unknown => "unknown",
        Internet::Online => "online",
        Internet::Offline { .. } => "offline",
        Internet::Degraded { .. } => "degraded",
    }
}

/// One counter of a line.
type Figure = fn(&LineSample) -> u64;

type Labels<'a> = Vec<(&'static str, Cow<'a, str>)>;

fn line<'a>(l: &'a LineSample) -> Labels<'a> {
    vec![("line", Cow::Borrowed(l.name.as_str()))]
}

fn line_and<'a>(l: &'a LineSample, more: &[(&'static str, &'a str)]) -> Labels<'a> {
    let mut labels = line(l);
    labels.extend(more.iter().map(|&(k, v)| (k, Cow::Borrowed(v))));
    labels
}

/// Reads the snapshot at encoding time.
#[derive(Debug)]
struct Scrape(Snapshot);

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), fmt::Error> {
        let s = &self.0;
        let lines = &s.lines;
        let version = [("version", env!("CARGO_PKG_VERSION"))];
        enc.encode_descriptor(
            "eqlplus_build",
            "The running eqlplus-dialer's version.",
            None,
            MetricType::Info,
        )?
        .encode_info(&version)?;
        enc.encode_descriptor(
            "eqlplus_balancer",
            "The balancing policy in force.",
            None,
            MetricType::Info,
        )?
        .encode_info(&[("policy", s.policy)])?;
        gauge(
            &mut enc,
            "eqlplus_lines",
            "Lines configured.",
            None,
            [(Labels::new(), lines.len() as i64)],
        )?;

        if lines.is_empty() {
            // A family without series says nothing (and some parsers trip over one).
            return Ok(());
        }

        // What each line is.
        let mut info = enc.encode_descriptor(
            "eqlplus_line",
            "A configured line: its device, slave interface and failover tier.",
            None,
            MetricType::Info,
        )?;
        for l in lines {
            let tier = l.tier.to_string();
            let labels: Labels<'_> = vec![
                ("line", Cow::Borrowed(l.name.as_str())),
                ("device", Cow::Borrowed(l.device.as_str())),
                ("slave", Cow::Borrowed(l.slave.as_str())),
                ("tier", Cow::Owned(tier)),
            ];
            info.encode_info(&labels)?;
        }

        // Where each line is.
        gauge(
            &mut enc,
            "eqlplus_line_state",
            "The line's state, one series per state: 1 for the one it is in.",
            None,
            lines.iter().flat_map(|l| {
                STATES.iter().map(move |st| {
                    let value = i64::from(state_index(l.state) == state_index(*st));
                    (line_and(l, &[("state", st.as_str())]), value)
                })
            }),
        )?;
        gauge(
            &mut enc,
            "eqlplus_line_up",
            "1 while PPP is up with IP on the line (up, no-internet or degraded).",
            None,
            lines
                .iter()
                .map(|l| (line(l), i64::from(l.state.link_up()))),
        )?;
        gauge(
            &mut enc,
            "eqlplus_line_admin_up",
            "1 if the line is wanted up (configured enabled or `up`), 0 after `hangup`.",
            None,
            lines.iter().map(|l| (line(l), i64::from(l.admin_up))),
        )?;
        gauge(
            &mut enc,
            "eqlplus_line_state_changed_timestamp",
            "When the line entered its current state (Unix time).",
            Some(Unit::Seconds),
            lines.iter().map(|l| {
                let t = l
                    .since
                    .duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                (line(l), t)
            }),
        )?;
        gauge(
            &mut enc,
            "eqlplus_line_connect_speed_bytes_per_second",
            "The modem's CONNECT speed, while connected, in bytes (CONNECT 57600 is 7200: \
             Prometheus' base unit; times 8 for bit/s).",
            None,
            lines
                .iter()
                .filter_map(|l| Some((line(l), f64::from(l.connect_speed?) / 8.0))),
        )?;

        // Traffic: (name, help, whether counted in bytes, the figure).
        let traffic: [(&str, &str, bool, Figure); 6] = [
            (
                "eqlplus_line_rx",
                "IP bytes received on the line.",
                true,
                |l| l.rx_bytes,
            ),
            ("eqlplus_line_tx", "IP bytes sent on the line.", true, |l| {
                l.tx_bytes
            }),
            (
                "eqlplus_line_rx_packets",
                "IP packets received on the line.",
                false,
                |l| l.rx_packets,
            ),
            (
                "eqlplus_line_tx_packets",
                "IP packets sent on the line.",
                false,
                |l| l.tx_packets,
            ),
            (
                "eqlplus_line_dropped_packets",
                "Packets dropped for lack of room in the line's transmit queue.",
                false,
                |l| l.dropped_packets,
            ),
            (
                "eqlplus_line_dropped",
                "Bytes dropped for lack of room in the line's transmit queue.",
                true,
                |l| l.dropped_bytes,
            ),
        ];
        for (name, help, bytes, value) in traffic {
            counter(
                &mut enc,
                name,
                help,
                bytes.then_some(Unit::Bytes),
                lines.iter().map(|l| (line(l), value(l))),
            )?;
        }
        gauge(
            &mut enc,
            "eqlplus_line_queue",
            "Bytes waiting in the line's transmit queue (its load).",
            Some(Unit::Bytes),
            lines.iter().map(|l| (line(l), l.queued_bytes)),
        )?;
        gauge(
            &mut enc,
            "eqlplus_line_signal_dbm",
            "A cellular modem's received signal strength (dBm: RSRP for LTE, else RSCP or RSSI), \
             as last checked before a dial.",
            None,
            lines
                .iter()
                .filter_map(|l| Some((line(l), f64::from(l.signal_dbm?)))),
        )?;
        counter(
            &mut enc,
            "eqlplus_line_resets",
            "Resets by the recovery ladder, by step (modem: ATZ/AT+CFUN=1,1; port: USB \
             re-enumeration; hook: the reset_hook).",
            None,
            lines.iter().flat_map(|l| {
                ["modem", "port", "hook"]
                    .into_iter()
                    .zip(l.resets)
                    .map(move |(step, n)| (line_and(l, &[("step", step)]), u64::from(n)))
            }),
        )?;
        gauge(
            &mut enc,
            "eqlplus_line_open_connections",
            "Connections open through the line (while the balancer follows connections: \
             least-loaded, or a tracked line).",
            None,
            lines
                .iter()
                .filter_map(|l| Some((line(l), l.open_connections?))),
        )?;
        gauge(
            &mut enc,
            "eqlplus_bundle_members",
            "A Multilink bundle's member lines now (a bundle is listed as a line).",
            None,
            lines
                .iter()
                .filter_map(|l| Some((line(l), l.members.as_ref()?.len() as i64))),
        )?;
        gauge(
            &mut enc,
            "eqlplus_line_bundle_member",
            "1 while the line is a member of the bundle it names (its traffic is the bundle's).",
            None,
            lines.iter().filter_map(|l| {
                let bundle = l.bundle.as_deref()?;
                Some((line_and(l, &[("bundle", bundle)]), 1i64))
            }),
        )?;
        gauge(
            &mut enc,
            "eqlplus_line_share_ratio",
            "The line's share of all lines' traffic (rx + tx) over the last second, 0-1.",
            None,
            lines.iter().map(|l| (line(l), l.share)),
        )?;

        // Dialling.
        counter(
            &mut enc,
            "eqlplus_line_redials",
            "Dial attempts after the line's first.",
            None,
            lines.iter().map(|l| (line(l), l.tally.redials)),
        )?;
        counter(
            &mut enc,
            "eqlplus_line_failures",
            "Failed attempts and lost lines, by the stage they failed in (open, init-chat, \
             dial-chat, ppp; up: lost after IP was up) and kind (transient: busy, no carrier, \
             line dropped; auth: credentials refused; other).",
            None,
            lines.iter().flat_map(|l| {
                FailureStage::ALL.iter().flat_map(move |&stage| {
                    FailureKind::ALL.iter().map(move |&kind| {
                        (
                            line_and(l, &[("stage", stage.as_str()), ("kind", kind.as_str())]),
                            l.tally.failures(stage, kind),
                        )
                    })
                })
            }),
        )?;
        // The unit is in the name but not declared: OpenMetrics parsers differ on whether a
        // histogram may carry a UNIT line.
        let mut dials = enc.encode_descriptor(
            "eqlplus_line_dial_duration_seconds",
            "How long successful dials took, from opening the port to IP up.",
            None,
            MetricType::Histogram,
        )?;
        for l in lines {
            let d = &l.tally.dials;
            let buckets: Vec<(f64, u64)> = DIAL_BUCKETS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(d.buckets.iter().copied())
                .collect();
            let labels = line(l);
            dials
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(d.sum, d.count, &buckets, None)?;
        }

        // The link's health.
        gauge(
            &mut enc,
            "eqlplus_line_lcp_echo_rtt",
            "Smoothed LCP echo round trip, while PPP is up.",
            Some(Unit::Seconds),
            lines
                .iter()
                .filter_map(|l| Some((line(l), l.lcp_rtt?.as_secs_f64()))),
        )?;
        let tracked = || lines.iter().filter_map(|l| Some((l, l.track.as_ref()?)));
        gauge(
            &mut enc,
            "eqlplus_line_internet",
            "Upstream tracking's verdict on a tracked, up line, one series per verdict: 1 \
             for the current one.",
            None,
            tracked().flat_map(|(l, t)| {
                let now = verdict(&t.internet);
                VERDICTS
                    .iter()
                    .map(move |v| (line_and(l, &[("verdict", v)]), i64::from(*v == now)))
            }),
        )?;
        gauge(
            &mut enc,
            "eqlplus_line_track_rtt",
            "Upstream tracking's smoothed probe round trip.",
            Some(Unit::Seconds),
            tracked().filter_map(|(l, t)| Some((line(l), t.rtt?.as_secs_f64()))),
        )?;
        gauge(
            &mut enc,
            "eqlplus_line_track_jitter",
            "Upstream tracking's probe round-trip jitter.",
            Some(Unit::Seconds),
            tracked().filter_map(|(l, t)| Some((line(l), t.jitter?.as_secs_f64()))),
        )?;
        gauge(
            &mut enc,
            "eqlplus_line_track_loss_ratio",
            "Share of upstream tracking's recent probes that went unanswered, 0-1.",
            None,
            tracked().map(|(l, t)| (line(l), t.loss)),
        )?;
        Ok(())
    }
}

/// One gauge family; none at all if it has no series (a family without samples says nothing).
fn gauge<L: EncodeLabelSet, V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    series: impl IntoIterator<Item = (L, V)>,
) -> Result<(), fmt::Error> {
    let mut series = series.into_iter().peekable();
    if series.peek().is_none() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
    for (labels, value) in series {
        m.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

/// One counter family (`_total` is added by the encoder); none if it has no series.
fn counter<L: EncodeLabelSet, V: EncodeCounterValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    series: impl IntoIterator<Item = (L, V)>,
) -> Result<(), fmt::Error> {
    let mut series = series.into_iter().peekable();
    if series.peek().is_none() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, unit.as_ref(), MetricType::Counter)?;
    for (labels, value) in series {
        m.encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
    }
    Ok(())
}
