//! What travels on the socket: request lines, bounded (tokio-util's delimiter codec, the rest
//! of an over-long line skipped), decoded with an error message that names the problem; and
//! responses, one JSON line each.

use std::io;

use futures::StreamExt;
use tokio::io::AsyncRead;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, Decoder, FramedRead};

use crate::control::protocol::{Envelope, PROTOCOL_VERSION, Request, Response};

/// One line from the client.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Incoming {
    Line(Vec<u8>),
    /// A line longer than the limit; the rest of it is skipped.
    TooLong,
    Eof,
}

/// Newline-terminated lines of at most `max` bytes, as bytes: invalid UTF-8 is the decoder's
/// to report (with its position), which tokio-util's `LinesCodec` would turn into an I/O error.
/// An over-long line is an item, not an error: `FramedRead` ends the stream after a decoder
/// error, and the connection must go on.
struct RequestLines(AnyDelimiterCodec);

impl RequestLines {
    fn new(max: usize) -> RequestLines {
        RequestLines(AnyDelimiterCodec::new_with_max_length(
            b"\n".to_vec(),
            Vec::new(),
            max,
        ))
    }

    fn item(
        decoded: Result<Option<tokio_util::bytes::Bytes>, AnyDelimiterCodecError>,
    ) -> io::Result<Option<Incoming>> {
        match decoded {
            Ok(line) => Ok(line.map(|l| Incoming::Line(l.into()))),
            Err(AnyDelimiterCodecError::MaxChunkLengthExceeded) => Ok(Some(Incoming::TooLong)),
            Err(AnyDelimiterCodecError::Io(e)) => Err(e),
        }
    }
}

impl Decoder for RequestLines {
    type Item = Incoming;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Incoming>> {
        Self::item(self.0.decode(buf))
    }

    /// A last request without its newline is still a request.
    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Incoming>> {
        Self::item(self.0.decode_eof(buf))
    }
}

/// Reads request lines of at most `max` bytes; it buffers at most about twice that.
pub(super) struct LineReader<R> {
    frames: FramedRead<R, RequestLines>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub(super) fn new(inner: R, max: usize) -> Self {
        LineReader {
            frames: FramedRead::new(inner, RequestLines::new(max)),
        }
    }

    pub(super) async fn next(&mut self) -> io::Result<Incoming> {
        self.frames.next().await.unwrap_or(Ok(Incoming::Eof))
    }

    /// The client's stream itself (for a subscription, which reads only to notice the end).
    pub(super) fn get_mut(&mut self) -> &mut R {
        self.frames.get_mut()
    }
}

/// A request line, decoded; `Err` is the error message to answer with. Never panics, whatever
/// the bytes (fuzz target `control_request`).
pub fn decode_request(line: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(line)
        .map_err(|e| format!("bad request: invalid UTF-8 at byte {}", e.valid_up_to()))?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("bad request: {e}"))?;
    let Some(object) = value.as_object() else {
        return Err(format!(
            r#"bad request: expected a JSON object such as {{"version":{PROTOCOL_VERSION},"cmd":"status"}}"#
        ));
    };
    match object.get("version") {
        None => {
            return Err(format!(
                "bad request: missing field `version` (this daemon speaks protocol version \
                 {PROTOCOL_VERSION})"
            ));
        }
        Some(v) if v.as_u64() != Some(u64::from(PROTOCOL_VERSION)) => {
            return Err(format!(
                "unsupported protocol version {v}: this daemon speaks version {PROTOCOL_VERSION} \
                 (is the command from another release?)"
            ));
        }
        Some(_) => {}
    }
    serde_json::from_value::<Envelope>(value)
        .map(|e| e.request)
        .map_err(|e| format!("bad request: {e}"))
}

/// One response as its line on the wire.
pub(super) fn encode(response: &Response) -> Vec<u8> {
    let mut bytes = match serde_json::to_vec(response) {
        Ok(b) => b,
        Err(e) => serde_json::to_vec(&Response::Error {
            message: format!("internal error: cannot encode the response: {e}"),
        })
        .unwrap_or_default(),
    };
    bytes.push(b'\n');
    bytes
}

/// Non-finite numbers would be written as `null`, which no client can read back as a number.
pub(super) fn sanitize(mut response: Response) -> Response {
    if let Response::Status(report) = &mut response {
        let fix = |x: &mut f64| {
            if !x.is_finite() {
                *x = 0.0;
            }
        };
        fix(&mut report.time);
        for line in &mut report.lines {
            fix(&mut line.since);
            fix(&mut line.rx_rate);
            fix(&mut line.tx_rate);
            fix(&mut line.share);
            if let Some(t) = &mut line.next_attempt {
                fix(t);
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_names_the_problem() {
        assert_eq!(
            decode_request(br#"{"version":1,"cmd":"reload"}"#),
            Ok(Request::Reload)
        );
        let e = decode_request(b"{\"version\":1,").unwrap_err();
        assert!(e.starts_with("bad request: EOF while parsing"), "{e}");
        let e = decode_request(b"{\"version\" 1}").unwrap_err();
        assert_eq!(e, "bad request: expected `:` at line 1 column 12");
        let e = decode_request(br#"{"version":1,"cmd":"explode"}"#).unwrap_err();
        assert!(e.contains("unknown variant `explode`"), "{e}");
        let e = decode_request(br#"{"version":2,"cmd":"reload"}"#).unwrap_err();
        assert!(e.starts_with("unsupported protocol version 2"), "{e}");
        let e = decode_request(br#"{"version":"1","cmd":"reload"}"#).unwrap_err();
        assert!(e.starts_with("unsupported protocol version \"1\""), "{e}");
        let e = decode_request(br#"{"cmd":"reload"}"#).unwrap_err();
        assert!(e.starts_with("bad request: missing field `version`"), "{e}");
        let e = decode_request(br#"{"version":1}"#).unwrap_err();
        assert!(e.contains("missing field `cmd`"), "{e}");
        let e = decode_request(b"[1,2]").unwrap_err();
        assert!(e.starts_with("bad request: expected a JSON object"), "{e}");
        let e = decode_request(b"{\"v\xff\"}").unwrap_err();
        assert_eq!(e, "bad request: invalid UTF-8 at byte 3");
        let e = decode_request(br#"{"version":1,"cmd":"hangup"}"#).unwrap_err();
        assert!(e.contains("missing field `lines`"), "{e}");
    }

    async fn lines_of(input: &[u8], max: usize) -> Vec<Incoming> {
        let mut reader = LineReader::new(input, max);
        let mut out = Vec::new();
        loop {
            let item = reader.next().await.unwrap();
            let end = item == Incoming::Eof;
            out.push(item);
            if end {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn line_reader_bounds_lines() {
        use Incoming::*;
        assert_eq!(
            lines_of(b"ab\ncd\n", 4).await,
            vec![Line(b"ab".to_vec()), Line(b"cd".to_vec()), Eof]
        );
        assert_eq!(
            lines_of(b"abcd\nabcde\nxy", 4).await,
            vec![Line(b"abcd".to_vec()), TooLong, Line(b"xy".to_vec()), Eof]
        );
        let mut long = vec![b'x'; 100_000];
        long.extend_from_slice(b"\nok\n");
        assert_eq!(
            lines_of(&long, 1000).await,
            vec![TooLong, Line(b"ok".to_vec()), Eof]
        );
        assert_eq!(lines_of(&[b'y'; 5000], 1000).await, vec![TooLong, Eof]);
        assert_eq!(lines_of(b"", 10).await, vec![Eof]);
    }

    /// The same, arriving a few bytes at a time: an over-long line is reported once and
    /// skipped across many reads, invalid UTF-8 is passed on for the decoder to name, and the
    /// buffer stays bounded.
    #[tokio::test]
    async fn line_reader_across_small_reads() {
        use Incoming::*;
        let (mut client, server) = tokio::io::duplex(61);
        let mut input = vec![b'x'; 200_000];
        input.extend_from_slice(b"\n\xff\xfe\nabcd\nlast");
        let writer =
            tokio::spawn(
                async move { tokio::io::AsyncWriteExt::write_all(&mut client, &input).await },
            );
        let mut reader = LineReader::new(server, 1000);
        let mut out = Vec::new();
        loop {
            let item = reader.next().await.unwrap();
            assert!(reader.frames.read_buffer().capacity() <= 16 * 1024);
            let end = item == Eof;
            out.push(item);
            if end {
                break;
            }
        }
        writer.await.unwrap().unwrap();
        assert_eq!(
            out,
            vec![
                TooLong,
                Line(b"\xff\xfe".to_vec()),
                Line(b"abcd".to_vec()),
                Line(b"last".to_vec()),
                Eof
            ]
        );
    }

    #[test]
    fn non_finite_numbers_are_not_sent_as_null() {
        let report = crate::control::StatusReport {
            time: f64::NAN,
            lines: vec![crate::control::LineStatus {
                rx_rate: f64::INFINITY,
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = String::from_utf8(encode(&sanitize(Response::Status(report)))).unwrap();
        assert!(text.contains(r#""time":0.0"#), "{text}");
        assert!(text.contains(r#""rx_rate":0.0"#), "{text}");
        let back: Response = serde_json::from_str(&text).unwrap();
        assert!(matches!(back, Response::Status(_)));
    }
}
