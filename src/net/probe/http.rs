//! An HTTP probe: a GET over a TCP connection of the line, judged by the status line.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ProbeError, TCP_SEGMENT, Via, connect};

/// How much of the answer is read for its status line.
const STATUS_LINE_MAX: usize = 512;

/// The status code of an HTTP/1.x response beginning `head`, if it is one.
pub fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split_ascii_whitespace();
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = words.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

pub(super) async fn get(
    addr: SocketAddrV4,
    host: &str,
    path: &str,
    expect: u16,
    via: &Via,
    bytes: &mut u64,
) -> Result<Duration, ProbeError> {
    let start = Instant::now();
    let mut stream = connect(addr, via, bytes).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: eqlplus-dialer/{}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream.write_all(request.as_bytes()).await?;
    *bytes += TCP_SEGMENT + request.len() as u64;
    let mut head = Vec::with_capacity(STATUS_LINE_MAX);
    let mut buf = [0u8; STATUS_LINE_MAX];
    while !head.contains(&b'\n') && head.len() < STATUS_LINE_MAX {
        let n = stream
            .read(&mut buf[..STATUS_LINE_MAX - head.len()])
            .await?;
        if n == 0 {
            break;
        }
        *bytes += TCP_SEGMENT + n as u64;
        head.extend_from_slice(&buf[..n]);
    }
    let rtt = start.elapsed();
    match status_code(&head) {
        Some(got) if got == expect => Ok(rtt),
        Some(got) => Err(ProbeError::HttpStatus {
            got,
            expected: expect,
        }),
        None => Err(ProbeError::NotHttp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_code(b"HTTP/1.0 200 OK\r\nServer: x"), Some(200));
        assert_eq!(status_code(b"HTTP/1.1 2000 OK\r\n"), None);
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b"\xff\xfe"), None);
        assert_eq!(status_code(b""), None);
    }
}
