//! Just enough HTTP/1.x for a scraper: one GET (or HEAD) per connection, answered with a
//! complete body and `Connection: close`. Pure: the server feeds bytes in and writes what comes
//! out.

/// The longest request head read (request line and headers); a scraper sends a few hundred
/// bytes.
pub(super) const MAX_HEAD: usize = 8 * 1024;

/// What a well-formed request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Request {
    pub(super) route: Route,
    /// HEAD: the headers only.
    pub(super) head_only: bool,
    /// The `Accept` header, for the format.
    pub(super) accept: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    Metrics,
    /// `/`: a line saying where the metrics are.
    Index,
}

/// A refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    HeadTooLarge,
    VersionNotSupported,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::HeadTooLarge => "431 Request Header Fields Too Large",
            Status::VersionNotSupported => "505 HTTP Version Not Supported",
        }
    }
}

/// Where the request head ends (after its blank line) in what was read so far, if it does.
pub(super) fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    // Bare newlines, as some hand-typed clients (nc) send.
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Reads a complete request head.
pub(super) fn parse(head: &[u8]) -> Result<Request, Status> {
    let text = std::str::from_utf8(head).map_err(|_| Status::BadRequest)?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().ok_or(Status::BadRequest)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Status::BadRequest);
    };
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Err(if version.starts_with("HTTP/") {
            Status::VersionNotSupported
        } else {
            Status::BadRequest
        });
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(Status::MethodNotAllowed),
    };
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let route = match path {
        "/metrics" => Route::Metrics,
        "/" => Route::Index,
        _ => return Err(Status::NotFound),
    };
    let mut accept: Option<String> = None;
    for header in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = header.split_once(':').ok_or(Status::BadRequest)?;
        if name.trim().eq_ignore_ascii_case("accept") {
            // Repeated headers are one list (RFC 9110 5.3).
            let value = value.trim();
            accept = Some(match accept {
                Some(before) => format!("{before}, {value}"),
                None => value.to_string(),
            });
        }
    }
    Ok(Request {
        route,
        head_only,
        accept,
    })
}

/// A whole response: status line, headers, and the body unless `head_only`.
pub(super) fn response(
    status: Status,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let allow = if status == Status::MethodNotAllowed {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        status.line(),
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// The plain-text body of a refusal.
pub(super) fn refusal(status: Status) -> Vec<u8> {
    let body = format!("{}\n", status.line());
    response(status, "text/plain; charset=utf-8", body.as_bytes(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrapers_request_is_understood() {
        let head = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9460\r\nUser-Agent: Prometheus/2.42.0\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\nAccept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n";
        assert_eq!(head_end(head), Some(head.len()));
        let r = parse(head).unwrap();
        assert_eq!((r.route, r.head_only), (Route::Metrics, false));
        assert!(
            r.accept
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
    }

    #[test]
    fn heads_end_at_the_blank_line_with_or_without_cr() {
        assert_eq!(head_end(b"GET / HTTP/1.0\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.0\n\nrest"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.0\r\n\r\nrest"), Some(18));
        let r = parse(b"HEAD /metrics?x=1 HTTP/1.0\n\n").unwrap();
        assert_eq!(
            (r.route, r.head_only, r.accept),
            (Route::Metrics, true, None)
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n\r\n").unwrap().route,
            Route::Index
        );
    }

    #[test]
    fn everything_else_is_refused_with_its_status() {
        let cases: [(&[u8], Status); 8] = [
            (b"POST /metrics HTTP/1.1\r\n\r\n", Status::MethodNotAllowed),
            (b"GET /other HTTP/1.1\r\n\r\n", Status::NotFound),
            (
                b"GET /metrics HTTP/2.0\r\n\r\n",
                Status::VersionNotSupported,
            ),
            (b"GET /metrics\r\n\r\n", Status::BadRequest),
            (b"GET  /metrics HTTP/1.1\r\n\r\n", Status::BadRequest),
            (b"GET /metrics SPDY\r\n\r\n", Status::BadRequest),
            (
                b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
                Status::BadRequest,
            ),
            (
                b"GET /metrics HTTP/1.1\r\nX: \xff\r\n\r\n",
                Status::BadRequest,
            ),
        ];
        for (head, status) in cases {
            assert_eq!(
                parse(head),
                Err(status),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
        let r = String::from_utf8(refusal(Status::MethodNotAllowed)).unwrap();
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
        assert!(r.contains("\r\nAllow: GET, HEAD\r\n"), "{r}");
    }

    #[test]
    fn responses_carry_their_length_and_close() {
        let r = String::from_utf8(response(Status::Ok, "text/plain", b"abc", false)).unwrap();
        assert_eq!(
            r,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nCache-Control: no-store\r\nConnection: close\r\n\r\nabc"
        );
        let head = response(Status::Ok, "text/plain", b"abc", true);
        assert!(head.ends_with(
            b"Content-Length: 3\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        ));
    }
}
