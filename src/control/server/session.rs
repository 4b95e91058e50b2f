//! One client's loop: reading request lines, answering each (errors named, changes refused to
//! read-only peers), streaming `subscribe`, and the timeouts that keep a silent, slow or
//! hostile client from holding anything up.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;

use super::accept::Eviction;
use super::auth::{self, Access, Authority, Peer};
use super::wire::{Incoming, LineReader, decode_request, encode, sanitize};
use super::{ControlHandler, Limits, MAX_SUBSCRIBE_INTERVAL, MIN_SUBSCRIBE_INTERVAL};
use crate::control::protocol::{MAX_REQUEST_BYTES, Request, Response};

/// The handler's answer, bounded in time; a panic or a timeout is an internal error.
async fn call<H: ControlHandler>(handler: &H, request: Request, limit: Duration) -> Response {
    let answer = AssertUnwindSafe(handler.handle(request)).catch_unwind();
    match tokio::time::timeout(limit, answer).await {
        Ok(Ok(response)) => sanitize(response),
        Ok(Err(_)) => {
            tracing::error!("control handler panicked");
            Response::Error {
                message: "internal error: the daemon failed while handling this request".into(),
            }
        }
        Err(_) => {
            tracing::error!("control handler did not answer within {limit:?}");
            Response::Error {
                message: format!(
                    "internal error: the daemon did not answer within {}s",
                    limit.as_secs_f64()
                ),
            }
        }
    }
}

/// Writes one response within the write timeout; `false` means the client is gone or stuck.
async fn send<W: AsyncWrite + Unpin>(writer: &mut W, response: &Response, limit: Duration) -> bool {
    let bytes = encode(response);
    let write = async {
        writer.write_all(&bytes).await?;
        writer.flush().await
    };
    match tokio::time::timeout(limit, write).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!("control client gone: {e}");
            false
        }
        Err(_) => {
            tracing::debug!("control client not reading for {limit:?}: dropped");
            false
        }
    }
}

/// Tells an evicted client why (briefly: it may not be reading) before it is closed.
async fn evicted<W: AsyncWrite + Unpin>(writer: &mut W, peer: &Peer, reason: &str, limits: Limits) {
    tracing::info!("control: {peer} closed: {reason}");
    let message = reason.to_string();
    send(
        writer,
        &Response::Error { message },
        limits.write_timeout.min(Duration::from_secs(1)),
    )
    .await;
}

/// Serves one client until it goes away, idles out, is refused a change or is evicted.
pub(super) async fn serve_client<H: ControlHandler>(
    stream: UnixStream,
    handler: Arc<H>,
    authority: Arc<Authority>,
    limits: Limits,
    peer: Peer,
    access: Access,
    mut eviction: Eviction,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = LineReader::new(read, MAX_REQUEST_BYTES);
    loop {
        let next = tokio::select! {
            reason = eviction.notice() => {
                evicted(&mut write, &peer, reason, limits).await;
                return;
            }
            next = tokio::time::timeout(limits.idle_timeout, reader.next()) => next,
        };
        let incoming = match next {
            Ok(Ok(incoming)) => incoming,
            Ok(Err(e)) => {
                tracing::debug!("control client {peer}: read failed: {e}");
                return;
            }
            Err(_) => {
                let message = format!(
                    "timeout: no request within {}s, closing",
                    limits.idle_timeout.as_secs_f64()
                );
                send(
                    &mut write,
                    &Response::Error { message },
                    limits.write_timeout.min(Duration::from_secs(1)),
                )
                .await;
                return;
            }
        };
        // An over-long line and a request that does not decode are answered alike.
        let decoded = match incoming {
            Incoming::Eof => return,
            Incoming::TooLong => Err(format!(
                "bad request: line longer than {MAX_REQUEST_BYTES} bytes (skipped up to the \
                 next newline)"
            )),
            Incoming::Line(line) => {
                let trimmed = line.trim_ascii();
                if trimmed.is_empty() {
                    continue;
                }
                decode_request(trimmed)
                    .inspect_err(|message| tracing::debug!("control client {peer}: {message}"))
            }
        };
        let request = match decoded {
            Ok(r) => r,
            Err(message) => {
                if !send(
                    &mut write,
                    &Response::Error { message },
                    limits.write_timeout,
                )
                .await
                {
                    return;
                }
                continue;
            }
        };
        let changes = auth::changes(&request);
        if changes && access != Access::Control {
            let message = authority.denial(&peer);
            tracing::warn!(
                "control: {peer} asked {} and was refused",
                auth::command_name(&request)
            );
            send(
                &mut write,
                &Response::Error { message },
                limits.write_timeout,
            )
            .await;
            return;
        }
        if changes {
            tracing::info!("control: {peer} asked {:?}", request);
        } else {
            tracing::debug!("control: {peer} asked {:?}", request);
        }
        if let Request::Subscribe { interval_ms } = request {
            let interval = Duration::from_millis(interval_ms)
                .clamp(MIN_SUBSCRIBE_INTERVAL, MAX_SUBSCRIBE_INTERVAL);
            subscription(
                reader.get_mut(),
                &mut write,
                &*handler,
                interval,
                limits,
                &peer,
                &mut eviction,
            )
            .await;
            return;
        }
        let response = tokio::select! {
            reason = eviction.notice() => {
                evicted(&mut write, &peer, reason, limits).await;
                return;
            }
            response = call(&*handler, request, limits.handler_timeout) => response,
        };
        if !send(&mut write, &response, limits.write_timeout).await {
            return;
        }
    }
}

/// Streams status reports until the client goes away (a write fails or times out, or its
/// read side reports an error) or is evicted. Input during a subscription is read and
/// ignored; a client that only half-closes its side keeps receiving reports.
async fn subscription<R, W, H>(
    reader: &mut R,
    writer: &mut W,
    handler: &H,
    interval: Duration,
    limits: Limits,
    peer: &Peer,
    eviction: &mut Eviction,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    H: ControlHandler,
{
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reading = true;
    let mut scratch = [0u8; 1024];
    loop {
        tokio::select! {
            reason = eviction.notice() => {
                evicted(writer, peer, reason, limits).await;
                return;
            }
            _ = ticks.tick() => {
                let response = tokio::select! {
                    reason = eviction.notice() => {
                        evicted(writer, peer, reason, limits).await;
                        return;
                    }
                    response =
                        call(handler, Request::Status { line: None }, limits.handler_timeout) => {
                        response
                    }
                };
                let stop = !matches!(response, Response::Status(_));
                if !send(writer, &response, limits.write_timeout).await || stop {
                    return;
                }
            }
            read = reader.read(&mut scratch), if reading => match read {
                Ok(0) => reading = false,
                Ok(_) => {}
                Err(_) => return,
            },
        }
    }
}
