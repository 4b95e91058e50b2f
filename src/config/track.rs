//! The `[track]` section (upstream tracking for every line) and the per-line overrides
//! (`track`, `track_targets`, `max_latency`, `max_loss`).

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::checker::Checker;
use crate::track::{Target, TrackConfig};

/// Most targets per line: each round may ask every one.
pub const MAX_TARGETS: usize = 16;

/// Bounds, in seconds.
mod limits {
    use std::ops::RangeInclusive;
    pub(super) const INTERVAL: RangeInclusive<f64> = 1.0..=3_600.0;
    pub(super) const RETRY: RangeInclusive<f64> = 0.2..=600.0;
    pub(super) const TIMEOUT: RangeInclusive<f64> = 0.1..=60.0;
    pub(super) const MAX_LATENCY: RangeInclusive<f64> = 0.001..=60.0;
    /// 0 means never.
    pub(super) const REDIAL_AFTER: RangeInclusive<f64> = 0.0..=7.0 * 86_400.0;
}

/// `[track]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrack {
    enabled: Option<bool>,
    targets: Option<Vec<Spanned<String>>>,
    interval: Option<Spanned<f64>>,
    retry: Option<Spanned<f64>>,
    timeout: Option<Spanned<f64>>,
    down: Option<Spanned<i64>>,
    up: Option<Spanned<i64>>,
    quorum: Option<Spanned<i64>>,
    max_latency: Option<Spanned<f64>>,
    max_loss: Option<Spanned<f64>>,
    redial_after: Option<Spanned<f64>>,
}

/// A line's own tracking settings as written.
#[derive(Debug)]
pub(super) struct RawLineTrack<'a> {
    pub enabled: Option<bool>,
    pub targets: &'a Option<Vec<Spanned<String>>>,
    pub max_latency: &'a Option<Spanned<f64>>,
    pub max_loss: &'a Option<Spanned<f64>>,
}

/// Validates `[track]`: the defaults every line starts from (targets empty: off).
pub(super) fn parse(c: &mut Checker<'_>, t: &RawTrack) -> TrackConfig {
    let d = TrackConfig::default();
    let mut config = TrackConfig {
        targets: match &t.targets {
            Some(list) => targets(c, list, "track.targets"),
            None => d.targets.clone(),
        },
        interval: c.seconds(
            &t.interval,
            "track.interval",
            d.interval.as_secs_f64(),
            limits::INTERVAL,
        ),
        retry: c.seconds(
            &t.retry,
            "track.retry",
            d.retry.as_secs_f64(),
            limits::RETRY,
        ),
        timeout: c.seconds(
            &t.timeout,
            "track.timeout",
            d.timeout.as_secs_f64(),
            limits::TIMEOUT,
        ),
        down: bounded_count(c, &t.down, "track.down", d.down),
        up: bounded_count(c, &t.up, "track.up", d.up),
        quorum: bounded_count(c, &t.quorum, "track.quorum", d.quorum as u32) as usize,
        max_latency: latency(c, &t.max_latency, "track.max_latency"),
        max_loss: loss(c, &t.max_loss, "track.max_loss"),
        redial_after: {
            let secs = c.seconds(
                &t.redial_after,
                "track.redial_after",
                d.redial_after.map_or(0.0, |r| r.as_secs_f64()),
                limits::REDIAL_AFTER,
            );
            (!secs.is_zero()).then_some(secs)
        },
    };
    if t.enabled == Some(false) {
        config.targets.clear();
    }
    if let Some(q) = &t.quorum
        && !config.targets.is_empty()
        && config.quorum > config.targets.len()
    {
        c.error(
            q.span(),
            "track.quorum",
            format!(
                "{} targets must answer, but only {} are configured",
                config.quorum,
                config.targets.len()
            ),
            Some("the quorum is how many of the targets asked at once must answer"),
        );
    }
    config
}

/// A line's tracking: `[track]`'s, with the line's overrides; `at` names the line's options.
pub(super) fn for_line(
    c: &mut Checker<'_>,
    base: &TrackConfig,
    l: &RawLineTrack<'_>,
    at: &dyn Fn(&str) -> String,
) -> TrackConfig {
    let mut config = base.clone();
    if let Some(list) = l.targets {
        config.targets = targets(c, list, &at("track_targets"));
        if config.quorum > config.targets.len() && !config.targets.is_empty() {
            config.quorum = config.targets.len();
        }
    }
    if l.max_latency.is_some() {
        config.max_latency = latency(c, l.max_latency, &at("max_latency"));
    }
    if l.max_loss.is_some() {
        config.max_loss = loss(c, l.max_loss, &at("max_loss"));
    }
    match l.enabled {
        Some(false) => config.targets.clear(),
        // `track = true` on a line turns tracking on even where `[track]` turned it off.
        Some(true) if config.targets.is_empty() && l.targets.is_none() => {
            config.targets = TrackConfig::default_targets();
        }
        _ => {}
    }
    config
}

fn targets(c: &mut Checker<'_>, list: &[Spanned<String>], option: &str) -> Vec<Target> {
    if let Some(extra) = list.get(MAX_TARGETS) {
        c.error(
            extra.span(),
            option,
            format!("{} targets; at most {MAX_TARGETS}", list.len()),
            None,
        );
    }
    list.iter()
        .take(MAX_TARGETS)
        .filter_map(|s| match s.get_ref().parse::<Target>() {
            Ok(t) => Some(t),
            Err(message) => {
                c.error(
                    s.span(),
                    option,
                    message,
                    Some("e.g. \"ping 1.1.1.1\", \"dns example.com\", \"http://192.0.2.80/ 204\""),
                );
                None
            }
        })
        .collect()
}

fn bounded_count(c: &mut Checker<'_>, v: &Option<Spanned<i64>>, option: &str, default: u32) -> u32 {
    if let Some(s) = v
        && *s.get_ref() > 100
    {
        c.error(
            s.span(),
            option,
            format!("{} is out of range (1 to 100)", s.get_ref()),
            None,
        );
        return default;
    }
    c.count(v, option, default, 1)
}

fn latency(c: &mut Checker<'_>, v: &Option<Spanned<f64>>, option: &str) -> Option<Duration> {
    v.as_ref()?;
    Some(c.seconds(v, option, 1.0, limits::MAX_LATENCY))
}

fn loss(c: &mut Checker<'_>, v: &Option<Spanned<f64>>, option: &str) -> Option<f64> {
    let s = v.as_ref()?;
    let share = *s.get_ref();
    if (0.0..=1.0).contains(&share) {
        Some(share)
    } else {
        c.error(
            s.span(),
            option,
            format!("{share} is not a share of probes from 0 to 1"),
            Some("e.g. 0.2 for 20 %"),
        );
        None
    }
}
