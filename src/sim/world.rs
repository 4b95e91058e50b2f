//! A complete little world to dial into, built from the project's own parts:
//!
//! ```text
//!  lan (10.99.0.2) ── router (10.99.0.1; the daemon runs here)
//!                        │ ttyS1..N: simulated modems on ptys
//!                        ▼
//!  isp1..N: our PPP engine in answer role (10.64.i.1, gives the caller 10.64.i.2), a TUN
//!           device, forwarding ── internet (198.51.100.0/24 on loopback; a web server on
//!           (its upstream can be             198.51.100.10:80, a resolver on .53; the
//!            cut: World::set_upstream)       default tracking targets 1.1.1.1, 8.8.8.8,
//!                                            9.9.9.9 answer pings)
//! ```
//!
//! With [`WorldConfig::multilink`], every line calls ONE ISP, `isp1`, which answers Multilink
//! PPP ([`super::isp::multilink`]): the members of a bundle get 10.64.1.2 ↔ 10.64.1.1 through
//! one TUN device (`isp-mp`); a call that does not do Multilink gets a plain link, line `i`'s
//! own address ([`multilink_plain_local`]) through `isp-l<i>`.
//!
//! Used by `eqlplus-dialer demo` and the end-to-end tests. Needs root (network namespaces).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::isp::{
    HangupSwitch, IspConfig, IspLine, MultilinkIspConfig, serve_calls, serve_multilink,
};
use super::netns::{Netns, veth};
use super::upstream::{self, Delay, Upstream};
use super::web::{self, PageLoad};
use super::{DialAnswer, ModemConfig, SimModem};

/// The web server of "the internet".
pub const WEB_SERVER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(WEB_SERVER_IP, 80));
/// The web server's address.
const WEB_SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);

/// The DNS address the ISPs hand out (a resolver answering every A query; it is pinned to
/// its line by the balancer).
pub const ISP_DNS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);

/// How to build the world.
#[derive(Clone, Default)]
pub struct WorldConfig {
    /// Per line: the modem's answers to successive dials.
    pub lines: Vec<Vec<DialAnswer>>,
    /// Each line's data rate in bit/s (the modems pace data to it), if limited.
    pub rate: Option<u32>,
    /// Per line (entry 0 for line 1), a rate other than `rate`; a line without an entry, or
    /// with `None`, has `rate`.
    pub line_rates: Vec<Option<u32>>,
    /// PAP/CHAP accounts the ISPs accept; empty: no authentication.
    pub users: Vec<(String, String)>,
    /// Prefix of the namespaces' names.
    pub prefix: String,
    /// Every line calls one ISP (`isp1`) that answers Multilink PPP (see the module's
    /// description).
    pub multilink: bool,
}

impl WorldConfig {
    /// Line `i`'s (1-based) data rate.
    pub fn line_rate(&self, i: usize) -> Option<u32> {
        i.checked_sub(1)
            .and_then(|index| self.line_rates.get(index).copied().flatten())
            .or(self.rate)
    }
}

/// One simulated line.
pub struct SimLine {
    pub modem: SimModem,
    /// The ISP it calls (in a multilink world, the one all lines share).
    pub isp: Arc<Netns>,
    /// The customer's device in the ISP's namespace (in a multilink world, a pattern
    /// matching all of them: the ISP's upstream is one).
    pub isp_device: String,
    delay: Delay,
    hangup: HangupSwitch,
}

/// The world; dropping it stops everything and deletes its namespaces.
pub struct World {
    pub lan: Netns,
    pub router: Netns,
    pub internet: Netns,
    pub lines: Vec<SimLine>,
    /// The ISPs' threads (one per ISP; they end with the modems' channels).
    _isp_threads: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    web: Option<std::thread::JoinHandle<()>>,
    dns: Option<std::thread::JoinHandle<()>>,
    /// Runs the modems; shut down without blocking, so a world may be dropped anywhere.
    runtime: Option<tokio::runtime::Runtime>,
}

/// The most lines a world has: line `i` is numbered into the third octet of its addresses
/// (10.64.i.0/24, 10.200.i.0/24).
pub const MAX_LINES: usize = 250;

/// Line `i`'s (1-based, at most [`MAX_LINES`]) address on the dialer's side.
pub fn line_local(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 64, i as u8, 2)
}

/// Line `i`'s ISP end.
pub fn line_peer(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 64, i as u8, 1)
}

/// The most lines a multilink world has: each needs an address for a plain call of its own
/// in the ISP's /24 ([`multilink_plain_local`]).
pub const MAX_MULTILINK_LINES: usize = 150;

/// In a multilink world, what a call on line `i` (1-based, at most
/// [`MAX_MULTILINK_LINES`]) that does not do Multilink gets: 10.64.1.(100 + i), so it never
/// collides with the bundle's 10.64.1.2 and the ISP's /24 still routes it.
pub fn multilink_plain_local(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 64, 1, (100 + i).min(254) as u8)
}

/// The ISP's TUN device carrying a bundle in a multilink world.
pub const BUNDLE_DEVICE: &str = "isp-mp";

/// Links ISP number `i` to the internet (10.200.i.1 ↔ 10.200.i.2): the ISP forwards and
/// routes by default towards the internet, which routes `customers` back through the ISP.
pub fn connect_isp(isp: &Netns, internet: &Netns, i: usize, customers: &str) -> io::Result<()> {
    isp.sysctl("net.ipv4.ip_forward=1")?;
    veth(isp, &format!("tx{i}"), internet, &format!("ix{i}"))?;
    isp.ip(&[
        "addr",
        "add",
        &format!("10.200.{i}.1/24"),
        "dev",
        &format!("tx{i}"),
    ])?;
    internet.ip(&[
        "addr",
        "add",
        &format!("10.200.{i}.2/24"),
        "dev",
        &format!("ix{i}"),
    ])?;
    isp.ip(&["route", "add", "default", "via", &format!("10.200.{i}.2")])?;
    internet.ip(&["route", "add", customers, "via", &format!("10.200.{i}.1")])
}

/// The fixed part of every world, in new namespaces `<prefix><pid>-<n>-{lan,rtr,inet}`: a LAN
/// (10.99.0.2, default via the router) behind the router (10.99.0.1, forwarding), and "the
/// internet" (all of 198.51.100.0/24 on its loopback: web server, sites, DNS).
pub fn lan_router_internet(prefix: &str) -> io::Result<(Netns, Netns, Netns)> {
    let lan = Netns::named(prefix, "lan")?;
    let router = Netns::named(prefix, "rtr")?;
    let internet = Netns::named(prefix, "inet")?;
    veth(&lan, "lan0", &router, "r-lan")?;
    lan.ip(&["addr", "add", "10.99.0.2/24", "dev", "lan0"])?;
    lan.ip(&["route", "add", "default", "via", "10.99.0.1"])?;
    router.ip(&["addr", "add", "10.99.0.1/24", "dev", "r-lan"])?;
    router.sysctl("net.ipv4.ip_forward=1")?;
    internet.ip(&["addr", "add", "198.51.100.0/24", "dev", "lo"])?;
    for target in crate::track::TrackConfig::default_targets() {
        if let crate::track::Target::Icmp(a) = target {
            internet.ip(&["addr", "add", &format!("{a}/32"), "dev", "lo"])?;
        }
    }
    Ok((lan, router, internet))
}

/// Line `i` where PPP is not the point: a veth pair from the router (`slave`, `local`) to the
/// ISP (`up<i>`, `peer`), point to point, and the ISP linked to the internet, which routes
/// `local`'s /24 back through it.
pub fn veth_line(
    router: &Netns,
    isp: &Netns,
    internet: &Netns,
    i: usize,
    slave: &str,
    local: Ipv4Addr,
    peer: Ipv4Addr,
) -> io::Result<()> {
    let up = format!("up{i}");
    veth(router, slave, isp, &up)?;
    let (l, p) = (local.to_string(), peer.to_string());
    router.ip(&["addr", "add", &l, "peer", &p, "dev", slave])?;
    isp.ip(&["addr", "add", &p, "peer", &l, "dev", &up])?;
    let [a, b, c, _] = local.octets();
    connect_isp(isp, internet, i, &format!("{a}.{b}.{c}.0/24"))
}

impl World {
    /// Builds the namespaces, links, modems, ISPs and the web server.
    pub fn build(config: &WorldConfig) -> io::Result<World> {
        if config.lines.len() > MAX_LINES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} lines: a simulated world has at most {MAX_LINES}",
                    config.lines.len()
                ),
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sim-modems")
            .enable_all()
            .build()?;
        let ns = |role: &str| Netns::named(&config.prefix, role);
        let (lan, router, internet) = lan_router_internet(&config.prefix)?;
        if config.multilink && config.lines.len() > MAX_MULTILINK_LINES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} lines: a multilink world has at most {MAX_MULTILINK_LINES}",
                    config.lines.len()
                ),
            ));
        }
        let mut lines = Vec::new();
        let mut isp_threads = Vec::new();
        // A multilink world's one ISP and what it serves, gathered over the lines.
        let mut shared_isp: Option<(Arc<Netns>, Delay, Vec<IspLine>)> = None;
        for (index, answers) in config.lines.iter().enumerate() {
            let i = index + 1;
            let modem_config = ModemConfig {
                answers: answers.clone(),
                dial_delay: Duration::from_millis(50),
                guard: Duration::from_millis(200),
                line_rate: config.line_rate(i),
                ..ModemConfig::default()
            };
            let (modem, calls) = {
                let _inside = runtime.enter();
                SimModem::spawn(modem_config)?
            };
            let (hangup, hangup_rx) = HangupSwitch::new();
            if config.multilink {
                let (isp, delay, isp_lines) = match &mut shared_isp {
                    Some(shared) => shared,
                    None => {
                        let isp = ns("isp1")?;
                        connect_isp(&isp, &internet, 1, "10.64.1.0/24")?;
                        shared_isp.insert((Arc::new(isp), Delay::default(), Vec::new()))
                    }
                };
                isp_lines.push(IspLine {
                    calls,
                    plain_peer: multilink_plain_local(i),
                    plain_device: format!("isp-l{i}"),
                    hangup: hangup_rx,
                });
                lines.push(SimLine {
                    modem,
                    isp: isp.clone(),
                    isp_device: "isp-*".into(),
                    delay: delay.clone(),
                    hangup,
                });
                continue;
            }
            let isp = ns(&format!("isp{i}"))?;
            connect_isp(&isp, &internet, i, &format!("10.64.{i}.0/24"))?;
            let delay = Delay::default();
            let isp_device = format!("isp-l{i}");
            let isp_config = IspConfig {
                local: line_peer(i),
                peer: line_local(i),
                dns: vec![ISP_DNS],
                users: config.users.clone(),
                device: isp_device.clone(),
                delay: delay.clone(),
                hangup: hangup_rx,
            };
            isp_threads.push(spawn_isp(&isp, serve_calls(calls, isp_config))?);
            lines.push(SimLine {
                modem,
                isp: Arc::new(isp),
                isp_device,
                delay,
                hangup,
            });
        }
        if let Some((isp, delay, isp_lines)) = shared_isp {
            let isp_config = MultilinkIspConfig {
                local: line_peer(1),
                dns: vec![ISP_DNS],
                users: config.users.clone(),
                delay,
                bundle_peer: line_local(1),
                bundle_device: BUNDLE_DEVICE.into(),
                mrru: 1500,
            };
            isp_threads.push(spawn_isp(&isp, serve_multilink(isp_config, isp_lines))?);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (listener_tx, listener_rx) = std::sync::mpsc::channel();
        let web = {
            let stop = stop.clone();
            internet.spawn(move || match TcpListener::bind(WEB_SERVER) {
                Ok(l) => {
                    let _ = listener_tx.send(Ok(()));
                    web::serve(l, stop);
                }
                Err(e) => {
                    let _ = listener_tx.send(Err(e));
                }
            })?
        };
        listener_rx
            .recv()
            .map_err(|_| io::Error::other("web server thread died"))??;
        let (resolver_tx, resolver_rx) = std::sync::mpsc::channel();
        let dns = {
            let stop = stop.clone();
            internet.spawn(move || match std::net::UdpSocket::bind((ISP_DNS, 53)) {
                Ok(socket) => {
                    let _ = resolver_tx.send(Ok(()));
                    super::dns::serve(socket, WEB_SERVER_IP, stop);
                }
                Err(e) => {
                    let _ = resolver_tx.send(Err(e));
                }
            })?
        };
        resolver_rx
            .recv()
            .map_err(|_| io::Error::other("resolver thread died"))??;
        Ok(World {
            lan,
            router,
            internet,
            lines,
            _isp_threads: isp_threads,
            stop,
            web: Some(web),
            dns: Some(dns),
            runtime: Some(runtime),
        })
    }

    /// Downloads one object of `bytes` from the LAN through the router, on one connection:
    /// how long it took (its goodput), and the source address the server saw.
    pub async fn download(&self, bytes: u64) -> io::Result<PageLoad> {
        self.load_page(&[bytes], 1).await
    }

    /// Line `i` (1-based).
    fn line(&self, i: usize) -> io::Result<&SimLine> {
        i.checked_sub(1)
            .and_then(|index| self.lines.get(index))
            .ok_or_else(|| io::Error::other(format!("no line {i} in this world")))
    }

    /// Switches the upstream of line `i`'s ISP (1-based): its PPP stays up whatever happens.
    /// In a multilink world the lines share the ISP: this switches every line's.
    pub fn set_upstream(&self, i: usize, mode: Upstream) -> io::Result<()> {
        let line = self.line(i)?;
        upstream::set(&line.isp, &line.isp_device, &line.delay, mode)
    }

    /// Line `i`'s ISP (1-based) hangs up the call in progress: its PPP sends a
    /// Terminate-Request, then the call drops (the modem says `NO CARRIER`). The next call is
    /// answered as usual.
    pub fn hang_up(&self, i: usize) -> io::Result<()> {
        self.line(i)?.hangup.hang_up();
        Ok(())
    }

    /// Loads a page from the LAN through the router, on a thread of its own: the caller can
    /// stop waiting (Ctrl-C) at any time.
    pub async fn load_page(&self, sizes: &[u64], slots: usize) -> io::Result<PageLoad> {
        let sizes = sizes.to_vec();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.lan.spawn(move || {
            let _ = tx.send(web::load_page(WEB_SERVER, &sizes, slots));
        })?;
        rx.await
            .map_err(|_| io::Error::other("the page load thread died"))
    }
}

/// Runs an ISP's `serve` future on a thread of its own in namespace `isp`.
fn spawn_isp(
    isp: &Netns,
    serve: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<std::thread::JoinHandle<()>> {
    isp.spawn(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(serve),
            Err(e) => tracing::error!("sim ISP runtime: {e}"),
        }
    })
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in [self.web.take(), self.dns.take()].into_iter().flatten() {
            let _ = thread.join();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
