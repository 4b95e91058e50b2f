//! Multilink PPP bundles (RFC 1990): lines that dial the same ISP and say `bundle = "NAME"`
//! propose MP; where the ISP agrees they carry one IP session, one slave device and one line of
//! the balancer. `[[bundle]]` tables are optional: a bundle named only by its lines gets the
//! defaults.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::checker::Checker;
use super::defaults::MRRU;
use super::{LineConfig, SlaveKind, Weight};
use crate::net::{default_slave_name, valid_ifname};

/// One bundle, as the daemon runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleConfig {
    /// Its name: the balancer's and the CLI's (it must not be a line's).
    pub name: String,
    /// Its slave device (default `eq-NAME`).
    pub slave: String,
    /// The largest reassembled packet we take (LCP MRRU).
    pub mrru: u16,
    /// Ask for 12-bit sequence numbers (RFC 1990 short sequence number header format).
    pub short_seq: bool,
    pub weight: Weight,
    pub tier: u32,
    /// Kernel PPP (one `pppN` unit for all members, the kernel's reassembly) or TUN (our
    /// own); `auto`: kernel PPP where `/dev/ppp` opens and no member's port is a pty.
    pub slave_kind: SlaveKind,
    /// Its lines, in configuration order.
    pub members: Vec<String>,
}

impl BundleConfig {
    /// What `status` and the metrics show as its device.
    pub fn device(&self) -> String {
        format!("Multilink bundle of {}", self.members.join(", "))
    }
}

/// A `[[bundle]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBundle {
    name: Spanned<String>,
    slave: Option<Spanned<String>>,
    mrru: Option<Spanned<i64>>,
    short_seq: Option<bool>,
    weight: Option<Spanned<i64>>,
    tier: Option<Spanned<i64>>,
    slave_kind: Option<Spanned<String>>,
}

/// Validates the `[[bundle]]` tables against the lines' `bundle` options: every bundle a line
/// names exists (with defaults where no table says more), each has a name no line has and a
/// slave no line uses, and a table no line names is an error (a typo).
pub(super) fn parse(
    c: &mut Checker<'_>,
    raw: &[Spanned<RawBundle>],
    lines: &[LineConfig],
    line_bundles: &[(usize, Option<Spanned<String>>)],
) -> Vec<BundleConfig> {
    let mut bundles: BTreeMap<String, BundleConfig> = BTreeMap::new();
    let mut order = Vec::new();
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.len() <= 32
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    for (i, entry) in raw.iter().enumerate() {
        let at = |field: &str| format!("bundle[{}].{field}", i + 1);
        let b = entry.get_ref();
        let name = b.name.get_ref().clone();
        if !valid_name(&name) {
            c.error(
                b.name.span(),
                &at("name"),
                format!("'{name}' is not a valid bundle name"),
                Some("up to 32 letters, digits, '.', '_' and '-'"),
            );
            continue;
        }
        if bundles.contains_key(&name) {
            c.error(
                b.name.span(),
                &at("name"),
                format!("another [[bundle]] is already named '{name}'"),
                None,
            );
            continue;
        }
        let slave = match &b.slave {
            Some(s) if !valid_ifname(s.get_ref()) => {
                c.error(
                    s.span(),
                    &at("slave"),
                    format!("'{}' is not a valid interface name", s.get_ref()),
                    Some("1-15 characters of letters, digits, '.', '_' and '-'"),
                );
                default_slave_name(&name)
            }
            Some(s) => s.get_ref().clone(),
            None => default_slave_name(&name),
        };
        let mrru = match &b.mrru {
            None => MRRU,
            Some(m) => match u16::try_from(*m.get_ref()) {
                Ok(v) if (296..=16384).contains(&v) => v,
                _ => {
                    c.error(
                        m.span(),
                        &at("mrru"),
                        format!("{} is outside 296 to 16384", m.get_ref()),
                        Some("1500 (the default) fits an Ethernet-sized packet whole"),
                    );
                    MRRU
                }
            },
        };
        let weight = match &b.weight {
            None => Weight::Auto,
            Some(w) if *w.get_ref() > 0 && *w.get_ref() <= 1_000_000 => {
                Weight::Fixed(*w.get_ref() as u32)
            }
            Some(w) => {
                c.error(
                    w.span(),
                    &at("weight"),
                    format!("{} is not a positive weight", w.get_ref()),
                    Some("leave it out to weigh the bundle by its members' speeds"),
                );
                Weight::Auto
            }
        };
        let tier = match &b.tier {
            None => 0,
            Some(t) => u32::try_from(*t.get_ref())
                .ok()
                .filter(|t| *t <= 255)
                .unwrap_or_else(|| {
                    c.error(
                        t.span(),
                        &at("tier"),
                        format!("{} is not a tier from 0 (primary) to 255", t.get_ref()),
                        None,
                    );
                    0
                }),
        };
        let slave_kind = match &b.slave_kind {
            None => SlaveKind::Auto,
            Some(k) => k.get_ref().parse().unwrap_or_else(|message| {
                c.error(k.span(), &at("slave_kind"), message, None);
                SlaveKind::Auto
            }),
        };
        order.push((name.clone(), true, at("name"), b.name.span()));
        bundles.insert(
            name.clone(),
            BundleConfig {
                name,
                slave,
                mrru,
                short_seq: b.short_seq.unwrap_or(false),
                weight,
                tier,
                slave_kind,
                members: Vec::new(),
            },
        );
    }
    // The lines' `bundle`: members, and bundles with the defaults.
    for (number, bundle) in line_bundles {
        let Some(bundle) = bundle else { continue };
        let name = bundle.get_ref();
        let option = format!("line[{number}].bundle");
        if !valid_name(name) {
            c.error(
                bundle.span(),
                &option,
                format!("'{name}' is not a valid bundle name"),
                Some("up to 32 letters, digits, '.', '_' and '-'"),
            );
            continue;
        }
        let Some(line) = lines.get(number - 1) else {
            continue;
        };
        let entry = bundles.entry(name.clone()).or_insert_with(|| {
            order.push((name.clone(), false, option.clone(), bundle.span()));
            BundleConfig {
                name: name.clone(),
                slave: default_slave_name(name),
                mrru: MRRU,
                short_seq: false,
                weight: Weight::Auto,
                tier: 0,
                slave_kind: SlaveKind::Auto,
                members: Vec::new(),
            }
        });
        entry.members.push(line.name.clone());
    }
    let mut out = Vec::new();
    // Each bundle's errors point at its table, or at the first line that names it.
    for (name, table, option, span) in order {
        let Some(b) = bundles.remove(&name) else {
            continue;
        };
        if b.members.is_empty() {
            if table {
                c.error(
                    span,
                    &option,
                    format!("no line says bundle = \"{name}\""),
                    Some("add bundle = \"…\" to the [[line]]s that dial this ISP"),
                );
            }
            continue;
        }
        // Names and slaves are shared with the lines: a bundle is a line of the balancer.
        if lines.iter().any(|l| l.name == b.name) {
            c.error(
                span.clone(),
                &option,
                format!("'{name}' is a line's name too"),
                Some(
                    "a bundle is a line of the balancer and of the CLI: give it a name of its own",
                ),
            );
        } else if let Some(l) = lines.iter().find(|l| l.slave == b.slave) {
            c.error(
                span,
                &option,
                format!("slave device {} is line {}'s too", b.slave, l.name),
                Some("set slave = \"…\" in the [[bundle]]"),
            );
        }
        out.push(b);
    }
    out
}
