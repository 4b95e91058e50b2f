//! The `[balancer]` section: the policy and the kernel's routing tables and rules.

use serde::Deserialize;
use toml::Spanned;

use super::checker::Checker;
use super::{BalancerSection, defaults, limits};
use crate::balancer::Policy;
use crate::net::RoutingConfig;

/// Highest `rule_base`: its rules `rule_base ..= rule_base + 255` stay below the kernel's own
/// 32766 (main) and 32767 (default).
pub const MAX_RULE_BASE: u32 = 32_766 - 256;

/// Lowest `table_base`: its tables `table_base + 1 ..= table_base + 255` stay above the
/// kernel's reserved 0 (unspec), 253 (default), 254 (main) and 255 (local).
pub const MIN_TABLE_BASE: u32 = 255;

/// Highest `table_base`: `table_base + 255` stays below 2^32 - 1.
pub const MAX_TABLE_BASE: u32 = u32::MAX - 256;

/// `[balancer]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBalancer {
    policy: Option<Spanned<String>>,
    sticky_hold: Option<Spanned<f64>>,
    #[serde(default)]
    lan: Vec<String>,
    table_base: Option<Spanned<u32>>,
    rule_base: Option<Spanned<u32>>,
    default_metric: Option<u32>,
}

/// Validates `[balancer]`.
pub(super) fn parse(c: &mut Checker<'_>, b: &RawBalancer) -> BalancerSection {
    let hold = c.seconds(
        &b.sticky_hold,
        "balancer.sticky_hold",
        defaults::STICKY_HOLD_SECS,
        limits::STICKY_HOLD,
    );
    let policy = match &b.policy {
        None => Policy::default(),
        Some(p) => match p.get_ref().parse::<Policy>() {
            Ok(Policy::Sticky { .. }) => Policy::Sticky { hold },
            Ok(policy) => policy,
            Err(message) => {
                c.error(
                    p.span(),
                    "balancer.policy",
                    message,
                    Some("least-loaded is the default; round-robin is eqlplus classic"),
                );
                Policy::default()
            }
        },
    };
    let defaults_routing = RoutingConfig::default();
    BalancerSection {
        policy,
        lan: b.lan.clone(),
        routing: RoutingConfig {
            table_base: table_base(c, &b.table_base, defaults_routing.table_base),
            rule_base: rule_base(c, &b.rule_base, defaults_routing.rule_base),
            default_metric: b.default_metric.unwrap_or(defaults_routing.default_metric),
        },
    }
}

fn rule_base(c: &mut Checker<'_>, v: &Option<Spanned<u32>>, default: u32) -> u32 {
    let Some(v) = v else { return default };
    let base = *v.get_ref();
    if base == 0 || base > MAX_RULE_BASE {
        c.error(
            v.span(),
            "balancer.rule_base",
            format!(
                "{base}: rules {base}..={} must lie within 1..=32765 (0 is the kernel's local rule, 32766 and 32767 its main and default rules)",
                u64::from(base) + 255
            ),
            Some("use 1 to 32510, e.g. 7700"),
        );
        return default;
    }
    base
}

fn table_base(c: &mut Checker<'_>, v: &Option<Spanned<u32>>, default: u32) -> u32 {
    let Some(v) = v else { return default };
    let base = *v.get_ref();
    if !(MIN_TABLE_BASE..=MAX_TABLE_BASE).contains(&base) {
        c.error(
            v.span(),
            "balancer.table_base",
            format!(
                "{base}: tables {}..={} would overlap the kernel's reserved tables (0, 253 default, 254 main, 255 local) or run past 2^32-2",
                u64::from(base) + 1,
                u64::from(base) + 255
            ),
            Some("use 255 to 4294967039, e.g. 7700"),
        );
        return default;
    }
    base
}
