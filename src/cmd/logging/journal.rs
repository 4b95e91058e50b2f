//! A tracing layer that writes to journald in its native protocol: each event's fields and its
//! spans' fields are journal fields of their own (`LINE=ttyS1`, `STATE=up`, `REASON=…`, so
//! `journalctl -u eqlplus-dialer LINE=ttyS1` selects a line), and MESSAGE is the readable line
//! with the fields in it (`line{line=ttyS1}: line state from="ppp" state="up"`), as the text
//! log shows it. (tracing-journald puts the bare message alone in MESSAGE, so `journalctl`
//! would show "line state" without saying which line or state.)
//!
//! Protocol (systemd's "Native Journal Protocol"): one datagram per entry to
//! /run/systemd/journal/socket, `KEY=value\n` per field, or for a value with a newline `KEY\n`,
//! its length as 64-bit little endian, the value, `\n`.

use std::fmt::Write as _;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The longest entry sent; more is cut (journald takes datagrams up to the socket's buffer).
const MAX_ENTRY: usize = 64 * 1024;

/// The layer: a datagram socket connected to journald.
pub struct JournalLayer {
    socket: UnixDatagram,
    identifier: String,
}

impl JournalLayer {
    /// Connects to journald's socket at `path`.
    pub fn connect(path: &Path, identifier: &str) -> io::Result<JournalLayer> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        Ok(JournalLayer {
            socket,
            identifier: identifier.to_string(),
        })
    }
}

/// A field: its name, how the readable line shows it (strings quoted, as the text log does)
/// and its value as the journal field holds it.
#[derive(Debug, Clone)]
struct FieldValue {
    name: String,
    shown: String,
    value: String,
}

/// A span's fields, kept in its extensions.
struct SpanFields(Vec<FieldValue>);

/// Collects fields; `message` apart.
#[derive(Default)]
struct Collect {
    message: Option<String>,
    fields: Vec<FieldValue>,
}

impl Visit for Collect {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = Some(text);
        } else {
            self.fields.push(FieldValue {
                name: field.name().to_string(),
                shown: text.clone(),
                value: text,
            });
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_string());
        } else {
            self.fields.push(FieldValue {
                name: field.name().to_string(),
                shown: format!("{value:?}"),
                value: value.to_string(),
            });
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for JournalLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut collect = Collect::default();
        attrs.record(&mut collect);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(collect.fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut collect = Collect::default();
        values.record(&mut collect);
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            match ext.get_mut::<SpanFields>() {
                Some(fields) => fields.0.extend(collect.fields),
                None => ext.insert(SpanFields(collect.fields)),
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut collect = Collect::default();
        event.record(&mut collect);
        let mut spans = Vec::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                let fields = span
                    .extensions()
                    .get::<SpanFields>()
                    .map(|f| f.0.clone())
                    .unwrap_or_default();
                spans.push((span.name(), fields));
            }
        }
        let meta = event.metadata();
        let entry = entry(
            &Entry {
                level: *meta.level(),
                target: meta.target(),
                file: meta.file(),
                line: meta.line(),
                message: collect.message.as_deref().unwrap_or(""),
                fields: &collect.fields,
                spans: &spans,
            },
            &self.identifier,
        );
        // A journal that is gone or full loses the entry; logging never blocks on it.
        let _ = self.socket.send(&entry);
    }
}

/// One event, ready to encode.
struct Entry<'a> {
    level: Level,
    target: &'a str,
    file: Option<&'a str>,
    line: Option<u32>,
    message: &'a str,
    fields: &'a [FieldValue],
    spans: &'a [(&'static str, Vec<FieldValue>)],
}

/// The datagram for `e`.
fn entry(e: &Entry<'_>, identifier: &str) -> Vec<u8> {
    // The readable line: spans as the text log shows them, the message, the event's fields.
    let mut text = String::new();
    for (name, fields) in e.spans {
        let _ = write!(text, "{name}");
        if !fields.is_empty() {
            let list: Vec<String> = fields
                .iter()
                .map(|f| format!("{}={}", f.name, f.shown))
                .collect();
            let _ = write!(text, "{{{}}}", list.join(" "));
        }
        text.push_str(": ");
    }
    text.push_str(e.message);
    for f in e.fields {
        let _ = write!(text, " {}={}", f.name, f.shown);
    }
    let mut out = Vec::with_capacity(256 + text.len());
    put(&mut out, "MESSAGE", &text);
    put(&mut out, "PRIORITY", priority(e.level));
    put(&mut out, "SYSLOG_IDENTIFIER", identifier);
    put(&mut out, "TARGET", e.target);
    if let Some(file) = e.file {
        put(&mut out, "CODE_FILE", file);
    }
    if let Some(line) = e.line {
        put(&mut out, "CODE_LINE", &line.to_string());
    }
    // Span fields, then the event's: `line` of the line span is LINE.
    for f in e.spans.iter().flat_map(|(_, f)| f).chain(e.fields) {
        if let Some(name) = field_name(&f.name) {
            put(&mut out, &name, &f.value);
        }
    }
    out.truncate(MAX_ENTRY);
    out
}

/// journald's priority for a tracing level (debug and trace are journald's info and debug).
fn priority(level: Level) -> &'static str {
    match level {
        Level::ERROR => "3",
        Level::WARN => "4",
        Level::INFO => "6",
        Level::DEBUG => "7",
        Level::TRACE => "7",
    }
}

/// A journal field name: upper case letters, digits and `_`, not starting with `_` or a digit
/// (those are journald's own), at most 64 characters; names of the standard fields we set
/// ourselves are not taken from events.
fn field_name(name: &str) -> Option<String> {
    let upper: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let upper = upper.trim_start_matches(|c: char| c == '_' || c.is_ascii_digit());
    let reserved = [
        "MESSAGE",
        "PRIORITY",
        "SYSLOG_IDENTIFIER",
        "TARGET",
        "CODE_FILE",
        "CODE_LINE",
        "MESSAGE_ID",
    ];
    (!upper.is_empty() && upper.len() <= 64 && !reserved.contains(&upper))
        .then(|| upper.to_string())
}

/// Appends one field in the native protocol.
fn put(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    if value.contains('\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        out.extend_from_slice(value.as_bytes());
    } else {
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    /// Decodes a datagram back into (name, value) pairs.
    fn decode(mut bytes: &[u8]) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        while !bytes.is_empty() {
            let end = bytes.iter().position(|&b| b == b'\n' || b == b'=').unwrap();
            let name = String::from_utf8(bytes[..end].to_vec()).unwrap();
            if bytes[end] == b'=' {
                let rest = &bytes[end + 1..];
                let nl = rest.iter().position(|&b| b == b'\n').unwrap();
                fields.push((name, String::from_utf8(rest[..nl].to_vec()).unwrap()));
                bytes = &rest[nl + 1..];
            } else {
                let rest = &bytes[end + 1..];
                let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
                fields.push((name, String::from_utf8(rest[8..8 + len].to_vec()).unwrap()));
                bytes = &rest[8 + len + 1..];
            }
        }
        fields
    }

    #[test]
    fn events_in_spans_become_fields_and_a_readable_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.socket");
        let journal = UnixDatagram::bind(&path).unwrap();
        let layer = JournalLayer::connect(&path, "eqlplus-dialer").unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("line", line = %"ttyS1");
            let _g = span.enter();
            tracing::info!(from = "ppp", state = "up", "line state");
            tracing::warn!("two\nlines");
        });
        let mut buf = vec![0u8; 65536];
        let n = journal.recv(&mut buf).unwrap();
        let fields = decode(&buf[..n]);
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("MESSAGE"),
            Some("line{line=ttyS1}: line state from=\"ppp\" state=\"up\"")
        );
        assert_eq!(get("LINE"), Some("ttyS1"));
        assert_eq!(get("STATE"), Some("up"));
        assert_eq!(get("FROM"), Some("ppp"));
        assert_eq!(get("PRIORITY"), Some("6"));
        assert_eq!(get("SYSLOG_IDENTIFIER"), Some("eqlplus-dialer"));
        let n = journal.recv(&mut buf).unwrap();
        let fields = decode(&buf[..n]);
        assert_eq!(
            fields[0],
            ("MESSAGE".into(), "line{line=ttyS1}: two\nlines".into())
        );
        assert!(fields.contains(&("PRIORITY".into(), "4".into())));
    }

    #[test]
    fn field_names_follow_journald_rules() {
        assert_eq!(field_name("line").as_deref(), Some("LINE"));
        assert_eq!(field_name("log.target").as_deref(), Some("LOG_TARGET"));
        // A leading `_` (journald's trusted fields) is dropped.
        assert_eq!(field_name("_pid").as_deref(), Some("PID"));
        assert_eq!(field_name("message"), None);
        assert_eq!(field_name("1abc").as_deref(), Some("ABC"));
    }
}
