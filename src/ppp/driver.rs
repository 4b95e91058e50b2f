//! The thin async driver around a [`Session`]: it moves bytes between the
//! session and a line (a [`SerialPort`](crate::serial::SerialPort), a
//! `tokio::io::DuplexStream`, anything `AsyncRead + AsyncWrite + Unpin`), runs
//! the session's timers, and connects its IP packets and [`Event`]s to
//! channels. All protocol decisions stay in the session.
//!
//! ```text
//!            outgoing IP ──mpsc──┐                 ┌──mpsc──> incoming IP
//!                                ▼                 │
//!   line (tty, pty, duplex) <──> run(): Session ───┼──mpsc──> Event (…, Down last)
//!                                ▲
//!                 close signal ──┘   (Terminate-Request, then wait for Down)
//! ```
//!
//! Reading and writing overlap: frames waiting for room on the line never stop
//! the driver from reading (two peers writing at once cannot deadlock), and
//! outgoing IP packets are taken from their channel only while IP is up and
//! the unwritten backlog is small, so the channel is the only IP queue. Frames
//! are taken from the session only while that backlog is small, too: a peer
//! that stops reading leaves them in the session, whose control queue is
//! bounded and which ends the link when the line takes nothing for its stall
//! limit (`echo_interval × echo_failure`).
//!
//! A Multilink bundle member (after [`Event::BundleMember`]) carries its bundle's frames on
//! the same channels instead of IP packets, each as [`bundle_frame`] makes it; the bundle's
//! own driver ([`super::bundle`]) takes them.
//!
//! [`run`] returns when the session is dead; the last event sent is always
//! the [`Event::Down`] whose reason it returns. A read of 0 bytes or an I/O
//! error ends the session at once with `line closed: …`.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tracing::{debug, info};

use super::{DownReason, Event, Session};

/// Tunables of the driver; the protocol's own timers are in [`super::Config`].
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Bytes asked for per read of the line.
    pub read_buffer: usize,
    /// After a close request, how long to wait for [`Event::Down`] before
    /// declaring the link down anyway (the session itself gives up after
    /// Max-Terminate × restart, 6 s by default).
    pub close_timeout: Duration,
    /// Reason sent in our Terminate-Request when asked to close.
    pub close_reason: String,
    /// Unwritten line bytes above which no more frames are taken from the
    /// session (and no more outgoing IP packets from the channel): the bound of
    /// the driver's own write buffer (plus one frame).
    pub max_write_backlog: usize,
    /// Once the session is dead, how long its last frames (a Terminate-Ack or
    /// the courtesy Terminate-Request) may take to reach the line.
    pub final_flush: Duration,
    /// Capacity of the IP channels made by [`spawn`]: outgoing packets (to the line) and
    /// incoming ones (from it).
    pub channel_capacity: usize,
    pub incoming_capacity: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            // More than a tty's 4 KiB line-discipline buffer: one read takes all it holds
            // (a 4 KiB read came back 4095 + 1 bytes, two calls, whenever the ring wrapped),
            // and a USB modem's faster bursts come in fewer calls.
            read_buffer: 16 * 1024,
            close_timeout: Duration::from_secs(8),
            close_reason: "User request".into(),
            max_write_backlog: 8 * 1024,
            final_flush: Duration::from_secs(1),
            channel_capacity: 64,
            incoming_capacity: 64,
        }
    }
}

/// The driver's ends of the channels.
#[derive(Debug)]
pub struct Channels {
    /// IPv4 packets to send; taken only while IP is up (until then they wait).
    pub outgoing: mpsc::Receiver<Vec<u8>>,
    /// IPv4 packets received. When it is full the driver keeps reading the
    /// line and the session holds packets up to its own limit
    /// ([`super::Config::max_ip_rx_queue`]), dropping beyond; when its
    /// receiver is gone, received packets are discarded.
    pub incoming: mpsc::Sender<Vec<u8>>,
    /// Every session event, in order; [`Event::Down`] is the last one.
    pub events: mpsc::UnboundedSender<Event>,
}

/// The user's ends of the channels.
#[derive(Debug)]
pub struct Link {
    /// IPv4 packets to send over the link.
    pub outgoing: mpsc::Sender<Vec<u8>>,
    /// IPv4 packets received from the link.
    pub incoming: mpsc::Receiver<Vec<u8>>,
    /// Session events; the channel closes after [`Event::Down`].
    pub events: mpsc::UnboundedReceiver<Event>,
}

/// A connected pair of channel sets with IP queues of `capacity` packets.
pub fn channels(capacity: usize) -> (Link, Channels) {
    channels_of(capacity, capacity)
}

/// The channels, with their capacities apart: outgoing and incoming packets.
pub fn channels_of(outgoing: usize, incoming: usize) -> (Link, Channels) {
    let (out_tx, out_rx) = mpsc::channel(outgoing.max(1));
    let (in_tx, in_rx) = mpsc::channel(incoming.max(1));
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    (
        Link {
            outgoing: out_tx,
            incoming: in_rx,
            events: ev_rx,
        },
        Channels {
            outgoing: out_rx,
            incoming: in_tx,
            events: ev_tx,
        },
    )
}

/// How a run ended.
#[derive(Debug)]
pub struct Ended {
    /// Why, as in the final [`Event::Down`].
    pub reason: DownReason,
    /// The line's own failure (end of file or I/O error), if that ended it.
    pub line_error: Option<io::Error>,
}

/// Runs `session` over `line` until it is dead.
///
/// `initial` is fed to the session before anything is read: the bytes the
/// chat script read past `CONNECT` (`Success::leftover`), often the peer's
/// first LCP frame. When `close` completes, the session sends a
/// Terminate-Request and the driver waits for [`Event::Down`], at most
/// [`DriverConfig::close_timeout`]. The line is left open: hang it up after.
pub async fn run<T, C>(
    session: &mut Session,
    line: &mut T,
    initial: &[u8],
    channels: Channels,
    close: C,
    config: &DriverConfig,
) -> Ended
where
    T: AsyncRead + AsyncWrite + Unpin + ?Sized,
    C: Future<Output = ()>,
{
    let Channels {
        mut outgoing,
        incoming,
        events,
    } = channels;
    // Dropped when the link leaves its bundle: the bundle then stops waiting for this
    // link's fragments at once (its reassembly would stall on them until the call ends).
    let mut incoming = Some(incoming);
    let mut was_member = false;
    let (mut rd, mut wr) = tokio::io::split(line);
    let mut close = pin!(close);
    let mut buf = vec![0u8; config.read_buffer.max(1)];
    // Frames not yet written: wbuf[woff..].
    let mut wbuf: Vec<u8> = Vec::new();
    let mut woff = 0;
    // A received packet waiting for room in `incoming`.
    let mut rx_held: Option<Vec<u8>> = None;
    let mut outgoing_open = true;
    let mut life = Lifecycle::default();
    let mut line_error: Option<io::Error> = None;

    if !initial.is_empty() {
        debug!(bytes = initial.len(), "PPP: bytes read with CONNECT");
        session.handle_input(initial, now());
    }
    loop {
        // Drain everything the last step produced.
        if woff == wbuf.len() {
            wbuf.clear();
            woff = 0;
        }
        // Take frames only while the line keeps up: what it does not take stays
        // in the session, bounded there, and a line that takes nothing for the
        // session's stall limit ends it ("peer stopped reading").
        while wbuf.len() - woff < config.max_write_backlog {
            let Some(frame) = session.poll_transmit() else {
                break;
            };
            wbuf.extend_from_slice(&frame);
        }
        while let Some(event) = session.poll_event() {
            life.forward(event, &events);
        }
        if session.bundle_member().is_some() {
            was_member = true;
        } else if was_member && incoming.take().is_some() {
            debug!("PPP: left the bundle");
            rx_held = None;
        }
        while rx_held.is_none()
            && let Some(incoming) = &incoming
        {
            // A bundle member's channel carries the bundle's frames instead of IP.
            let Some(packet) = session.poll_ip().or_else(|| {
                session
                    .poll_bundle_frame()
                    .map(|(protocol, info)| bundle_frame(protocol, &info))
            }) else {
                break;
            };
            match incoming.try_send(packet) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(p)) => rx_held = Some(p),
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        if session.is_dead() {
            break;
        }

        let deadline = life.deadline(session);
        let take_ip = outgoing_open
            && !life.closing()
            && (session.is_up() || session.bundle_member().is_some())
            && wbuf.len() - woff < config.max_write_backlog;
        tokio::select! {
            read = rd.read(&mut buf) => match read {
                Ok(0) => {
                    session.lower_down("line closed: end of file", now());
                    line_error = Some(io::ErrorKind::UnexpectedEof.into());
                }
                Ok(n) => session.handle_input(&buf[..n], now()),
                Err(e) => {
                    session.lower_down(&format!("line closed: {e}"), now());
                    line_error = Some(e);
                }
            },
            written = wr.write(&wbuf[woff..]), if woff < wbuf.len() => match written {
                Ok(0) => {
                    session.lower_down("line closed: write returned 0", now());
                    line_error = Some(io::ErrorKind::WriteZero.into());
                }
                Ok(n) => woff += n,
                Err(e) => {
                    session.lower_down(&format!("line closed: {e}"), now());
                    line_error = Some(e);
                }
            },
            () = crate::sys::sleep_until_opt(deadline) => life.on_timer(session),
            packet = outgoing.recv(), if take_ip => match packet {
                Some(p) => {
                    // Whatever else is waiting goes along, within the backlog bound: one
                    // wakeup and one write on the line for a burst instead of one per packet.
                    let mut taken = p.len();
                    send_ip(session, &p);
                    while wbuf.len() - woff + taken < config.max_write_backlog {
                        let Ok(p) = outgoing.try_recv() else {
                            break;
                        };
                        taken += p.len();
                        send_ip(session, &p);
                    }
                }
                None => outgoing_open = false,
            },
            permit = reserve(&incoming), if rx_held.is_some() => {
                if let (Ok(permit), Some(p)) = (permit, rx_held.take()) {
                    permit.send(p);
                }
            }
            () = &mut close, if !life.closing() => life.close(session, config),
        }
    }

    // The session's last words (Terminate-Ack, courtesy Terminate-Request); its
    // queues are bounded, and empty after a line failure.
    while let Some(frame) = session.poll_transmit() {
        wbuf.extend_from_slice(&frame);
    }
    if line_error.is_none() && woff < wbuf.len() {
        let flush = async {
            wr.write_all(&wbuf[woff..]).await?;
            wr.flush().await
        };
        if let Err(e) = timeout(config.final_flush, flush)
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
        {
            debug!(error = %e, "PPP: last frames not written");
        }
    }
    life.ended(line_error)
}

/// What a session's driver keeps beside the session: the close in progress and why the
/// session went down (both drivers: the tty's and kernel PPP's).
#[derive(Debug, Default)]
pub(crate) struct Lifecycle {
    /// After a close request: when to give up waiting for the peer's Terminate-Ack.
    close_deadline: Option<Instant>,
    down_reason: Option<DownReason>,
}

impl Lifecycle {
    /// An event of the session: logged, its Down reason kept, passed on.
    pub(crate) fn forward(&mut self, event: Event, events: &mpsc::UnboundedSender<Event>) {
        log_event(&event);
        if let Event::Down { reason } = &event {
            self.down_reason = Some(reason.clone());
        }
        let _ = events.send(event);
    }

    /// When the driver must wake next: the session's timers, or the close's deadline.
    pub(crate) fn deadline(&self, session: &Session) -> Option<Instant> {
        [
            session.poll_timeout().map(Instant::from_std),
            self.close_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// That time came: the close's deadline ends the session, else its timers run.
    pub(crate) fn on_timer(&self, session: &mut Session) {
        if self.close_deadline.is_some_and(|d| d <= Instant::now()) {
            session.lower_down("closed without Terminate-Ack from the peer", now());
        } else {
            session.handle_timeout(now());
        }
    }

    /// A close was asked for (and is under way).
    pub(crate) fn closing(&self) -> bool {
        self.close_deadline.is_some()
    }

    /// Our Terminate-Request, and the deadline for the peer's answer.
    pub(crate) fn close(&mut self, session: &mut Session, config: &DriverConfig) {
        debug!("PPP: close requested");
        self.close_deadline = Some(Instant::now() + config.close_timeout);
        session.close(&config.close_reason, now());
    }

    /// How the session ended.
    pub(crate) fn ended(self, line_error: Option<io::Error>) -> Ended {
        Ended {
            // The session always reports Down before it is dead; this is for completeness.
            reason: self.down_reason.unwrap_or_else(|| DownReason::LowerDown {
                reason: "session ended".into(),
                closing: None,
            }),
            line_error,
        }
    }
}

/// Room for one packet in `incoming` (never, once it is gone).
async fn reserve(
    incoming: &Option<mpsc::Sender<Vec<u8>>>,
) -> Result<mpsc::Permit<'_, Vec<u8>>, mpsc::error::SendError<()>> {
    match incoming {
        Some(tx) => tx.reserve().await,
        None => std::future::pending().await,
    }
}

/// An outgoing IP packet to the session — for a bundle member, a frame of the bundle (see
/// [`bundle_frame`]); one it refuses is dropped (and said so).
pub(crate) fn send_ip(session: &mut Session, p: &[u8]) {
    let sent = match session.bundle_member() {
        None => session.send_ip(p),
        Some(_) => match split_bundle_frame(p) {
            // The bundle asks this member's LCP to Protocol-Reject what it does not run.
            Some((super::lcp::PROTOCOL, rejected)) => {
                if let Some((protocol, info)) = split_bundle_frame(rejected) {
                    session.send_protocol_reject(protocol, info, now());
                }
                return;
            }
            Some((protocol, info)) => session.send_frame(protocol, info),
            None => return,
        },
    };
    if let Err(e) = sent {
        debug!(len = p.len(), error = %e, "PPP: outgoing packet dropped");
    }
}

/// A bundle member's frame on its channels: the protocol (big-endian), then the information
/// field (an MP fragment for protocol 0x003d). Towards the link, protocol LCP means "reject
/// this": a protocol and information field the bundle does not run, for the member's LCP to
/// Protocol-Reject.
pub fn bundle_frame(protocol: u16, info: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(2 + info.len());
    frame.extend_from_slice(&protocol.to_be_bytes());
    frame.extend_from_slice(info);
    frame
}

/// The protocol and information field of a [`bundle_frame`].
pub fn split_bundle_frame(frame: &[u8]) -> Option<(u16, &[u8])> {
    let (protocol, info) = frame.split_first_chunk::<2>()?;
    Some((u16::from_be_bytes(*protocol), info))
}

/// The session's clock: tokio's, so tests with a paused clock run instantly.
pub(crate) fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// Events as log lines: addresses and reasons, never packet contents.
pub(crate) fn log_event(event: &Event) {
    match event {
        Event::Up {
            local,
            peer,
            dns,
            mru,
        } => info!(%local, %peer, ?dns, mru, "PPP: IP up"),
        Event::Down { reason } => info!(%reason, "PPP: link down"),
        Event::AuthFailed { reason } => info!(%reason, "PPP: authentication failed"),
        Event::NetworkDown { reason } => info!(%reason, "PPP: IP down"),
        other => debug!(event = ?other, "PPP"),
    }
}

/// Asks a [`spawn`]ed driver to close the link. Dropping it asks as well.
#[derive(Debug)]
pub struct Closer(Option<oneshot::Sender<()>>);

impl Closer {
    /// Send our Terminate-Request now (does nothing the second time).
    pub fn close(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// What a [`spawn`]ed driver hands back at the end.
#[derive(Debug)]
pub struct Finished<T> {
    /// How it ended.
    pub ended: Ended,
    /// The dead session (for its counters).
    pub session: Session,
    /// The line, to hang up or to dial again.
    pub line: T,
}

/// A driver running in its own task.
#[derive(Debug)]
pub struct Spawned<T> {
    /// The channels to talk to it.
    pub link: Link,
    /// Close request.
    pub closer: Closer,
    /// Yields the session and the line back once the session is dead.
    pub task: JoinHandle<Finished<T>>,
}

/// [`run`] in a new task, with channels of [`DriverConfig::channel_capacity`] and
/// [`DriverConfig::incoming_capacity`].
pub fn spawn<T>(session: Session, line: T, initial: Vec<u8>, config: DriverConfig) -> Spawned<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (outgoing, incoming) = (config.channel_capacity, config.incoming_capacity);
    spawn_with(outgoing, incoming, move |channels, close| async move {
        let mut session = session;
        let mut line = line;
        let ended = run(&mut session, &mut line, &initial, channels, close, &config).await;
        Finished {
            ended,
            session,
            line,
        }
    })
}

/// A session's driver task: `drive` gets the channels and the close request (sent or
/// dropped: either way, close) and hands back what the task finishes with.
pub(crate) fn spawn_with<T, F>(
    outgoing: usize,
    incoming: usize,
    drive: impl FnOnce(Channels, CloseRequest) -> F,
) -> Spawned<T>
where
    F: Future<Output = Finished<T>> + Send + 'static,
    T: Send + 'static,
{
    let (link, channels) = channels_of(outgoing, incoming);
    let (close_tx, close_rx) = oneshot::channel::<()>();
    let close = CloseRequest(close_rx);
    // The task logs in its caller's span (`line{line=ttyS1}`): whose PPP it is.
    let span = tracing::Span::current();
    let task = tokio::spawn(tracing::Instrument::instrument(
        drive(channels, close),
        span,
    ));
    Spawned {
        link,
        closer: Closer(Some(close_tx)),
        task,
    }
}

/// Resolves when the [`Closer`] asks to close, or is dropped.
pub struct CloseRequest(oneshot::Receiver<()>);

impl Future for CloseRequest {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tokio::io::{DuplexStream, duplex};

    use super::*;
    use crate::ppp::{AuthMethods, Config, Credentials};

    const ISP: Ipv4Addr = Ipv4Addr::new(10, 64, 1, 1);
    const CUSTOMER: Ipv4Addr = Ipv4Addr::new(10, 64, 1, 2);
    const DNS: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 53);
    const LIMIT: Duration = Duration::from_secs(10);

    fn dialer(creds: Option<(&str, &str)>) -> Config {
        let mut c = Config::dialer(creds.map(|(u, p)| Credentials::new(u, p)));
        c.seed = 11;
        c
    }

    fn answer(pap_secret: Option<&str>) -> Config {
        let mut c = Config::answer(ISP, CUSTOMER, &[DNS]);
        if let Some(secret) = pap_secret {
            c.require_auth = AuthMethods {
                pap: true,
                chap: false,
            };
            c.secrets.insert("alice", secret);
        }
        c.seed = 12;
        c
    }

    fn start(cfg: Config, line: DuplexStream) -> Spawned<DuplexStream> {
        spawn(
            Session::new(cfg, now()),
            line,
            Vec::new(),
            DriverConfig::default(),
        )
    }

    async fn next_up(link: &mut Link) -> Event {
        loop {
            let ev = timeout(LIMIT, link.events.recv())
                .await
                .expect("an event in time")
                .expect("events before the end");
            if matches!(ev, Event::Up { .. } | Event::Down { .. }) {
                return ev;
            }
        }
    }

    /// All events until the channel closes; the last one must be Down.
    async fn rest(link: &mut Link) -> Vec<Event> {
        let mut all = Vec::new();
        while let Some(ev) = timeout(LIMIT, link.events.recv()).await.unwrap() {
            all.push(ev);
        }
        assert!(matches!(all.last(), Some(Event::Down { .. })), "{all:?}");
        all
    }

    fn packet(n: u8, len: usize) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0];
        p.extend((0..len).map(|i| (i as u8).wrapping_mul(n) ^ 0x7e));
        p
    }

    #[tokio::test]
    async fn up_on_both_sides_ip_both_ways_then_close() {
        let (a, b) = duplex(4096);
        let mut d = start(dialer(Some(("alice", "s3cret"))), a);
        let mut s = start(answer(Some("s3cret")), b);
        assert_eq!(
            next_up(&mut d.link).await,
            Event::Up {
                local: CUSTOMER,
                peer: ISP,
                dns: vec![DNS],
                mru: 1500
            }
        );
        let Event::Up { local, peer, .. } = next_up(&mut s.link).await else {
            panic!("answer side not up")
        };
        assert_eq!((local, peer), (ISP, CUSTOMER));

        let pkts: Vec<_> = (1..=10).map(|i| packet(i, 50 * usize::from(i))).collect();
        for p in &pkts {
            d.link.outgoing.send(p.clone()).await.unwrap();
            s.link.outgoing.send(p.clone()).await.unwrap();
        }
        for p in &pkts {
            let got = timeout(LIMIT, s.link.incoming.recv()).await.unwrap();
            assert_eq!(got.as_ref(), Some(p));
            let got = timeout(LIMIT, d.link.incoming.recv()).await.unwrap();
            assert_eq!(got.as_ref(), Some(p));
        }

        d.closer.close();
        let d_events = rest(&mut d.link).await;
        let s_events = rest(&mut s.link).await;
        assert_eq!(
            d_events.last(),
            Some(&Event::Down {
                reason: DownReason::LocalClose {
                    reason: "User request".into()
                }
            })
        );
        assert_eq!(
            s_events.last(),
            Some(&Event::Down {
                reason: DownReason::PeerTerminated {
                    reason: Some("User request".into())
                }
            })
        );
        let d_end = timeout(LIMIT, d.task).await.unwrap().unwrap();
        let s_end = timeout(LIMIT, s.task).await.unwrap().unwrap();
        assert_eq!(d_end.ended.reason.to_string(), "User request");
        assert!(d_end.ended.line_error.is_none());
        assert!(s_end.ended.line_error.is_none());
        assert!(d_end.session.is_dead() && s_end.session.is_dead());
        assert_eq!(d_end.session.stats().rx_ip_packets, 10);
        assert_eq!(s_end.session.stats().rx_ip_packets, 10);
    }

    #[tokio::test]
    async fn wrong_password_reports_auth_failed_then_down() {
        let (a, b) = duplex(4096);
        let mut d = start(dialer(Some(("alice", "wrong"))), a);
        let mut s = start(answer(Some("s3cret")), b);
        let d_events = rest(&mut d.link).await;
        let s_events = rest(&mut s.link).await;
        for events in [&d_events, &s_events] {
            assert!(
                events.iter().any(|e| matches!(e, Event::AuthFailed { .. })),
                "{events:?}"
            );
            assert!(!events.iter().any(|e| matches!(e, Event::Up { .. })));
        }
    }

    #[tokio::test]
    async fn line_eof_ends_the_session_with_line_closed() {
        let (a, b) = duplex(4096);
        let mut d = start(dialer(None), a);
        let mut s = start(answer(None), b);
        assert!(matches!(next_up(&mut d.link).await, Event::Up { .. }));
        assert!(matches!(next_up(&mut s.link).await, Event::Up { .. }));
        // Take the answer's line away under it: the dialer reads end of file.
        s.task.abort();
        let events = rest(&mut d.link).await;
        let Some(Event::Down { reason }) = events.last() else {
            panic!("{events:?}")
        };
        assert_eq!(reason.to_string(), "line closed: end of file");
        assert!(matches!(reason, DownReason::LowerDown { .. }), "{reason:?}");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::NetworkDown { .. }))
        );
        let end = timeout(LIMIT, d.task).await.unwrap().unwrap();
        assert_eq!(
            end.ended.line_error.map(|e| e.kind()),
            Some(io::ErrorKind::UnexpectedEof)
        );
    }

    /// A peer that never answers: the close is bounded by `close_timeout`.
    #[tokio::test(start_paused = true)]
    async fn close_without_answer_is_bounded() {
        let (mut a, _silent_far_end) = duplex(64 * 1024);
        let mut session = Session::new(dialer(None), now());
        let (mut link, ch) = channels(4);
        let config = DriverConfig {
            close_timeout: Duration::from_secs(2),
            ..DriverConfig::default()
        };
        let started = Instant::now();
        let close = tokio::time::sleep(Duration::from_secs(1));
        let ended = run(&mut session, &mut a, &[], ch, close, &config).await;
        assert_eq!(
            ended.reason.to_string(),
            "closed without Terminate-Ack from the peer"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        let events: Vec<_> = std::iter::from_fn(|| link.events.try_recv().ok()).collect();
        assert_eq!(
            events.last(),
            Some(&Event::Down {
                reason: ended.reason.clone()
            })
        );
    }

    /// The session's first frame handed over as `initial` (what chat read
    /// past CONNECT) is answered before anything is read.
    #[tokio::test]
    async fn initial_bytes_are_fed_first() {
        let (mut a, b) = duplex(4096);
        // The answer side's first Configure-Request, as if read by chat.
        let mut first = Session::new(answer(None), now());
        let initial = first.poll_transmit().unwrap();
        drop(first);
        let mut tap = b;
        let (_link, ch) = channels(4);
        let mut session = Session::new(dialer(None), now());
        let config = DriverConfig::default();
        let driver = run(
            &mut session,
            &mut a,
            &initial,
            ch,
            std::future::pending(),
            &config,
        );
        let reader = async {
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            // Our Configure-Request, then the Configure-Ack for the initial one.
            while seen.iter().filter(|&&b| b == 0x7e).count() < 4 {
                let n = tap.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
            }
            seen
        };
        let seen = tokio::select! {
            seen = reader => seen,
            _ = driver => panic!("driver ended"),
        };
        // LCP (c0 21, escaped as needed) Configure-Ack = code 2 (escaped 7d 22).
        assert!(
            seen.windows(4).any(|w| w == [0xc0, 0x21, 0x7d, 0x22]),
            "{seen:02x?}"
        );
    }

    /// Both sides flood each other through a tiny pipe: reading continues
    /// while writes wait, so neither side deadlocks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_both_ways_through_a_small_pipe() {
        let (a, b) = duplex(256);
        let mut d = start(dialer(None), a);
        let mut s = start(answer(None), b);
        assert!(matches!(next_up(&mut d.link).await, Event::Up { .. }));
        assert!(matches!(next_up(&mut s.link).await, Event::Up { .. }));
        const N: usize = 300;
        let send = |tx: mpsc::Sender<Vec<u8>>| async move {
            for i in 0..N {
                tx.send(packet(i as u8, 1400)).await.unwrap();
            }
            tx
        };
        let recv = |mut rx: mpsc::Receiver<Vec<u8>>| async move {
            for i in 0..N {
                assert_eq!(rx.recv().await, Some(packet(i as u8, 1400)), "packet {i}");
            }
            rx
        };
        let all = async {
            tokio::join!(
                send(d.link.outgoing.clone()),
                send(s.link.outgoing.clone()),
                recv(std::mem::replace(&mut d.link.incoming, mpsc::channel(1).1)),
                recv(std::mem::replace(&mut s.link.incoming, mpsc::channel(1).1)),
            )
        };
        timeout(Duration::from_secs(30), all)
            .await
            .expect("no deadlock");
        d.closer.close();
        rest(&mut d.link).await;
        rest(&mut s.link).await;
    }

    /// ITEM 4: the far end floods Echo-Requests and unknown protocols and never reads.
    /// The driver used to move every frame the session made into its own buffer, which
    /// grew without bound while the line "stayed up"; now it takes frames only while the
    /// line keeps up, the session drops what does not fit and ends the link once the line
    /// took nothing for echo_interval × echo_failure.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn peer_flooding_without_reading_is_dropped_after_the_stall_limit() {
        let (a, b) = duplex(4096);
        let far = tokio::spawn(crate::sim::isp::misbehave(
            b,
            crate::sim::isp::Misbehave::EchoFlood,
            answer(None),
        ));
        let mut d = start(dialer(None), a);
        let started = Instant::now();
        let events = rest(&mut d.link).await;
        assert!(
            events.iter().any(|e| matches!(e, Event::Up { .. })),
            "{events:?}"
        );
        let Some(Event::Down { reason }) = events.last() else {
            unreachable!()
        };
        assert!(
            matches!(reason, DownReason::PeerStoppedReading { .. }),
            "{reason:?}"
        );
        let reason = reason.to_string();
        assert!(
            reason.starts_with("peer stopped reading for 3 s"),
            "{reason}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
        let end = timeout(LIMIT, d.task).await.unwrap().unwrap();
        let stats = end.session.stats();
        assert!(stats.tx_control_dropped > 0, "{stats:?}");
        // What reached the (stuck) line is bounded by the driver's backlog.
        let written = stats.tx_bytes as usize;
        assert!(
            written < 4096 + 2 * DriverConfig::default().max_write_backlog + 64 * 1024,
            "{written}"
        );
        far.abort();
    }
}
