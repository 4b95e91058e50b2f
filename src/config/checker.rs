//! What every section's validation shares: byte offsets turned into `file:line:column`, the
//! collected errors, and the checks of plain numbers of seconds and counts.

use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::{ConfigError, ConfigErrors};

/// Turns byte offsets into line/column and collects errors.
pub(super) struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(file: &'a Path, text: &'a str) -> Self {
        Checker {
            file,
            text,
            errors: Vec::new(),
        }
    }

    /// The errors so far, if any.
    pub(super) fn finish(self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.errors))
        }
    }

    fn at(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(offset, |p| offset - p - 1) + 1;
        (line, column)
    }

    pub(super) fn error(
        &mut self,
        span: std::ops::Range<usize>,
        option: &str,
        message: String,
        hint: Option<&str>,
    ) {
        let (line, column) = self.at(span.start);
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            option: option.to_string(),
            message,
            hint: hint.map(str::to_string),
        });
    }

    /// A TOML syntax or type error, named by the option under it: the only error, since
    /// nothing after it can be checked.
    pub(super) fn toml_error(mut self, e: &toml::de::Error) -> ConfigErrors {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().to_string();
        let hint = if message.contains("unknown field") {
            Some("check the spelling against config/eqlplus-dialer.toml, which lists every option")
        } else {
            None
        };
        let option = option_at(self.text, span.start);
        self.error(span, &option, message, hint);
        ConfigErrors(self.errors)
    }

    /// A number of seconds within `range` (finite: `Duration::from_secs_f64` panics on huge,
    /// infinite or NaN values, and a zero or sub-millisecond interval spins).
    pub(super) fn seconds(
        &mut self,
        v: &Option<Spanned<f64>>,
        option: &str,
        default: f64,
        range: std::ops::RangeInclusive<f64>,
    ) -> Duration {
        match v {
            None => Duration::from_secs_f64(default),
            Some(s) => match Duration::try_from_secs_f64(*s.get_ref()) {
                Ok(d) if range.contains(s.get_ref()) => d,
                _ => {
                    self.error(
                        s.span(),
                        option,
                        format!(
                            "{} is not a number of seconds from {} to {}",
                            s.get_ref(),
                            range.start(),
                            range.end()
                        ),
                        Some("write seconds, e.g. 2 or 0.5"),
                    );
                    Duration::from_secs_f64(default)
                }
            },
        }
    }

    pub(super) fn count(
        &mut self,
        v: &Option<Spanned<i64>>,
        option: &str,
        default: u32,
        min: u32,
    ) -> u32 {
        match v {
            None => default,
            Some(s) => match u32::try_from(*s.get_ref()) {
                Ok(n) if n >= min => n,
                _ => {
                    self.error(
                        s.span(),
                        option,
                        format!("{} is out of range (at least {min})", s.get_ref()),
                        None,
                    );
                    default
                }
            },
        }
    }
}

/// The dotted option at a byte offset: the nearest `[section]`/`[[line]]` header above it and
/// the key on its line, for errors toml reports without naming the option.
fn option_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let upto = &text[..offset];
    let line_start = upto.rfind('\n').map_or(0, |p| p + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |p| offset + p);
    let current = &text[line_start..line_end];
    let key = current
        .split('=')
        .next()
        .map(str::trim)
        .filter(|k| !k.is_empty() && !k.starts_with('['))
        .unwrap_or("");
    let mut section = String::new();
    let mut line_count = 0;
    for l in upto.lines() {
        let t = l.trim();
        if t == "[[line]]" {
            line_count += 1;
            section = format!("line[{line_count}]");
        } else if let Some(s) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_string();
        }
    }
    match (section.is_empty(), key.is_empty()) {
        (true, true) => "file".into(),
        (true, false) => key.into(),
        (false, true) => section,
        (false, false) => format!("{section}.{key}"),
    }
}
