//! Kernel PPP (`/dev/ppp`): a thin, safe wrapper around the Linux PPP ioctls, as pppd 2.4.9
//! uses them (`sys-linux.c`), so that a line's PPP can run in the kernel's `ppp_async` and
//! `ppp_generic` with the slave device a real `pppN` while our [`eqlplus_ppp::Session`]
//! (in [`Framing::Unframed`](crate::ppp::Framing::Unframed)) keeps doing LCP, authentication,
//! IPCP and the echoes.
//!
//! # Order of operations (pppd's `tty_establish_ppp`, `make_ppp_unit`, `lcp_up`, `sifnpmode`)
//!
//! 1. [`Channel::attach`] on the connected tty: `TIOCSETD N_PPP` first (the tty's bytes go
//!    to `ppp_async` from then on, which registers a PPP *channel*), then `PPPIOCGCHAN` on
//!    the tty for that channel's index (it exists only once the discipline is set), then a
//!    new `/dev/ppp` file attached to it (`PPPIOCATTCHAN`): that file is the channel's fd,
//!    where LCP, PAP and CHAP frames (protocols ≥ 0xc000) are read and written.
//! 2. [`Unit::new`]: another `/dev/ppp` file, `PPPIOCNEWUNIT` with -1 (the kernel picks the
//!    number): the network interface `pppN` and the unit's fd.
//! 3. [`Unit::connect`] (`PPPIOCCONNECT` on the channel fd): frames of network protocols
//!    and their NCPs (IPCP, protocols < 0xc000) now go through the unit. The kernel queues
//!    the NCP frames (any protocol that is not a network protocol it knows) on the *unit's*
//!    fd, and pppd writes them there too: read both fds, write each frame to the fd of its
//!    protocol ([`FrameRoute`]). IP never reaches us: the kernel passes it to `pppN`, or
//!    drops it while the interface is down or its mode is not `NPMODE_PASS`.
//! 4. Once LCP is open: [`Channel::send_config`] and [`Channel::recv_config`] (pppd's
//!    `tty_send_config`/`tty_recv_config`: ACCMs, compression flags, MRU) from
//!    [`Session::link_parameters`](crate::ppp::Session::link_parameters).
//! 5. Once IPCP is up (and the interface has its addresses): [`Unit::set_npmode`] with
//!    [`NpMode::Pass`] for IP (0x0021); until then the kernel drops it. When IPCP goes down
//!    again, [`NpMode::Drop`] (pppd's `ipcp_down`; [`NpMode::Queue`] in demand mode).
//! 6. Tear-down, before the hangup: drop (or [`Unit::close`]) the unit, which removes
//!    `pppN`; then [`Channel::detach`]: `tcflush` (as pppd: so that `TIOCSETD` does not wait
//!    for a stuck output queue), the tty's discipline back (`N_TTY`), the channel fd closed.
//!
//! The interface is `pppN`; giving it the line's slave name is a netlink `RTM_SETLINK` with
//! `IFLA_IFNAME` while it is down, which [`crate::net::netlink::Netlink`] does not do yet (it
//! has `link_index` and `set_up`, no rename); pppd renames with `SIOCSIFNAME` or creates the
//! unit by name over rtnetlink.
//!
//! # Blocking
//!
//! Every call here is a blocking system call, usually short, but some wait on kernel locks:
//! `TIOCSETD` (the tty's discipline lock, the old discipline's close), opening `/dev/ppp`
//! (module autoloading), `PPPIOCNEWUNIT` and closing a unit (netdevice registration under
//! the RTNL lock). Call them from `spawn_blocking`, dropping included. The frame reads and
//! writes ([`Channel::read_frame`], …) do not block: the fds are `O_NONBLOCK`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use libc::c_int;
use nix::errno::Errno;
use nix::sys::ioctl::ioctl_num_type;
use nix::sys::termios::{FlushArg, tcflush};

use crate::ppp::LinkParameters;

/// The PPP device: opening it needs `CAP_NET_ADMIN`.
pub const DEV_PPP: &str = "/dev/ppp";

/// The default tty line discipline (`linux/tty.h`).
pub const N_TTY: c_int = 0;
/// The async PPP line discipline, `ppp_async` (`linux/tty.h`).
pub const N_PPP: c_int = 3;

// Flags of PPPIOCGFLAGS/PPPIOCSFLAGS (`linux/ppp-ioctl.h`). Some are the channel's
// (ppp_async: compression on output, the received-bit state), some the unit's (ppp_generic:
// Multilink, loop traffic, debug).
/// Protocol field compression on output (channel).
pub const SC_COMP_PROT: u32 = 0x0000_0001;
/// Address/control field compression on output (channel).
pub const SC_COMP_AC: u32 = 0x0000_0002;
/// TCP (VJ) header compression on output (unit).
pub const SC_COMP_TCP: u32 = 0x0000_0004;
/// No VJ connection-id compression (unit).
pub const SC_NO_TCP_CCID: u32 = 0x0000_0008;
/// Reject address/control compression on input.
pub const SC_REJ_COMP_AC: u32 = 0x0000_0010;
/// Reject VJ compression on input (unit).
pub const SC_REJ_COMP_TCP: u32 = 0x0000_0020;
/// Look at CCP packets (unit).
pub const SC_CCP_OPEN: u32 = 0x0000_0040;
/// May send/receive compressed packets (unit).
pub const SC_CCP_UP: u32 = 0x0000_0080;
/// IP packets may be exchanged (old drivers).
pub const SC_ENABLE_IP: u32 = 0x0000_0100;
/// Send data traffic to the daemon (demand dialling, unit).
pub const SC_LOOP_TRAFFIC: u32 = 0x0000_0200;
/// Multilink encapsulation (unit; with PPPIOCSMRRU).
pub const SC_MULTILINK: u32 = 0x0000_0400;
/// Receive short (12-bit) MP sequence numbers (unit).
pub const SC_MP_SHORTSEQ: u32 = 0x0000_0800;
/// Transmit short (12-bit) MP sequence numbers (unit).
pub const SC_MP_XSHORTSEQ: u32 = 0x0000_4000;
/// Kernel debug messages.
pub const SC_DEBUG: u32 = 0x0001_0000;
/// Log the contents of good packets received.
pub const SC_LOG_INPKT: u32 = 0x0002_0000;
/// Log the contents of packets sent.
pub const SC_LOG_OUTPKT: u32 = 0x0004_0000;
/// Log all characters received.
pub const SC_LOG_RAWIN: u32 = 0x0008_0000;
/// Log all characters flushed.
pub const SC_LOG_FLUSH: u32 = 0x0010_0000;
/// Synchronous serial (`N_SYNC_PPP`, not `ppp_async`).
pub const SC_SYNC: u32 = 0x0020_0000;
/// State bit (channel): a character with bit 7 = 0 was received.
pub const SC_RCV_B7_0: u32 = 0x0100_0000;
/// State bit (channel): a character with bit 7 = 1 was received.
pub const SC_RCV_B7_1: u32 = 0x0200_0000;
/// State bit (channel): a character with even parity was received.
pub const SC_RCV_EVNP: u32 = 0x0400_0000;
/// State bit (channel): a character with odd parity was received.
pub const SC_RCV_ODDP: u32 = 0x0800_0000;
/// pppd's `SC_RCVB`: the received-bit state, cleared when the channel is set up.
pub const SC_RCVB: u32 = SC_RCV_B7_0 | SC_RCV_B7_1 | SC_RCV_EVNP | SC_RCV_ODDP;
/// pppd's `SC_LOGB`: the debug and logging bits.
pub const SC_LOGB: u32 = SC_DEBUG | SC_LOG_INPKT | SC_LOG_OUTPKT | SC_LOG_RAWIN | SC_LOG_FLUSH;

/// What the kernel does with packets of a network protocol (`enum NPmode`, `linux/ppp_defs.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum NpMode {
    /// Pass the packet through.
    Pass = 0,
    /// Silently drop the packet.
    Drop = 1,
    /// Return an error to the sender.
    Error = 2,
    /// Queue it for later.
    Queue = 3,
}

/// `struct npioctl` (`linux/ppp-ioctl.h`): an int and an enum, both 32 bits.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct NpIoctl {
    protocol: c_int,
    mode: c_int,
}

/// The ioctl request numbers of `linux/ppp-ioctl.h`, computed as its `_IOR`/`_IOW` do
/// (the tests pin them to the header's values).
mod req {
    use super::{NpIoctl, c_int, ioctl_num_type};
    use std::mem::size_of;

    const INT: usize = size_of::<c_int>();
    pub(super) const PPPIOCGCHAN: ioctl_num_type = nix::request_code_read!(b't', 55, INT);
    pub(super) const PPPIOCATTCHAN: ioctl_num_type = nix::request_code_write!(b't', 56, INT);
    pub(super) const PPPIOCDISCONN: ioctl_num_type = nix::request_code_none!(b't', 57);
    pub(super) const PPPIOCCONNECT: ioctl_num_type = nix::request_code_write!(b't', 58, INT);
    pub(super) const PPPIOCSMRRU: ioctl_num_type = nix::request_code_write!(b't', 59, INT);
    pub(super) const PPPIOCNEWUNIT: ioctl_num_type = nix::request_code_readwrite!(b't', 62, INT);
    pub(super) const PPPIOCSDEBUG: ioctl_num_type = nix::request_code_write!(b't', 64, INT);
    pub(super) const PPPIOCGDEBUG: ioctl_num_type = nix::request_code_read!(b't', 65, INT);
    pub(super) const PPPIOCSNPMODE: ioctl_num_type =
        nix::request_code_write!(b't', 75, size_of::<NpIoctl>());
    /// `ext_accm` is `__u32[8]`.
    pub(super) const PPPIOCSXASYNCMAP: ioctl_num_type =
        nix::request_code_write!(b't', 79, size_of::<[u32; 8]>());
    pub(super) const PPPIOCSMRU: ioctl_num_type = nix::request_code_write!(b't', 82, INT);
    pub(super) const PPPIOCSRASYNCMAP: ioctl_num_type = nix::request_code_write!(b't', 84, INT);
    pub(super) const PPPIOCGUNIT: ioctl_num_type = nix::request_code_read!(b't', 86, INT);
    pub(super) const PPPIOCSASYNCMAP: ioctl_num_type = nix::request_code_write!(b't', 87, INT);
    pub(super) const PPPIOCSFLAGS: ioctl_num_type = nix::request_code_write!(b't', 89, INT);
    pub(super) const PPPIOCGFLAGS: ioctl_num_type = nix::request_code_read!(b't', 90, INT);
}

/// The raw calls. Each is `unsafe` only because the kernel reads or writes through the
/// pointer: every caller passes a value of the type the request encodes.
mod ioctls {
    use super::{NpIoctl, c_int, req};

    nix::ioctl_read_bad!(tiocgetd, libc::TIOCGETD, c_int);
    nix::ioctl_write_ptr_bad!(tiocsetd, libc::TIOCSETD, c_int);
    nix::ioctl_read_bad!(pppiocgchan, req::PPPIOCGCHAN, c_int);
    nix::ioctl_write_ptr_bad!(pppiocattchan, req::PPPIOCATTCHAN, c_int);
    nix::ioctl_none_bad!(pppiocdisconn, req::PPPIOCDISCONN);
    nix::ioctl_write_ptr_bad!(pppiocconnect, req::PPPIOCCONNECT, c_int);
    nix::ioctl_write_ptr_bad!(pppiocsmrru, req::PPPIOCSMRRU, c_int);
    nix::ioctl_readwrite_bad!(pppiocnewunit, req::PPPIOCNEWUNIT, c_int);
    nix::ioctl_write_ptr_bad!(pppiocsdebug, req::PPPIOCSDEBUG, c_int);
    nix::ioctl_read_bad!(pppiocgdebug, req::PPPIOCGDEBUG, c_int);
    nix::ioctl_write_ptr_bad!(pppiocsnpmode, req::PPPIOCSNPMODE, NpIoctl);
    nix::ioctl_write_ptr_bad!(pppiocsxasyncmap, req::PPPIOCSXASYNCMAP, [u32; 8]);
    nix::ioctl_write_ptr_bad!(pppiocsmru, req::PPPIOCSMRU, c_int);
    nix::ioctl_write_ptr_bad!(pppiocsrasyncmap, req::PPPIOCSRASYNCMAP, c_int);
    nix::ioctl_read_bad!(pppiocgunit, req::PPPIOCGUNIT, c_int);
    nix::ioctl_write_ptr_bad!(pppiocsasyncmap, req::PPPIOCSASYNCMAP, c_int);
    nix::ioctl_write_ptr_bad!(pppiocsflags, req::PPPIOCSFLAGS, c_int);
    nix::ioctl_read_bad!(pppiocgflags, req::PPPIOCGFLAGS, c_int);
}

/// The step of setting up or running kernel PPP that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Duplicating the tty's fd (kept to put its discipline back).
    DupTty,
    /// Duplicating a channel's `/dev/ppp` fd (a [`ChannelHandle`]).
    DupChannel,
    /// `TIOCGETD` on the tty.
    GetDiscipline,
    /// `TIOCSETD N_PPP` on the tty.
    SetPppDiscipline,
    /// `TIOCSETD` back to the saved discipline on the tty.
    RestoreDiscipline,
    /// `PPPIOCGCHAN` on the tty.
    GetChannel,
    /// Opening `/dev/ppp`.
    OpenDevPpp,
    /// `PPPIOCATTCHAN` on `/dev/ppp`.
    AttachChannel,
    /// `PPPIOCNEWUNIT` on `/dev/ppp`.
    NewUnit,
    /// `PPPIOCGUNIT` on the channel.
    GetUnit,
    /// `PPPIOCCONNECT` on the channel.
    Connect,
    /// `PPPIOCDISCONN` on the channel.
    Disconnect,
    /// `PPPIOCSNPMODE` on the unit.
    SetNpMode,
    /// `PPPIOCGFLAGS`.
    GetFlags,
    /// `PPPIOCSFLAGS`.
    SetFlags,
    /// `PPPIOCSASYNCMAP` on the channel.
    SetAsyncMap,
    /// `PPPIOCSRASYNCMAP` on the channel.
    SetRecvAsyncMap,
    /// `PPPIOCSXASYNCMAP` on the channel.
    SetExtendedAsyncMap,
    /// `PPPIOCSMRU`.
    SetMru,
    /// `PPPIOCSMRRU` on the unit.
    SetMrru,
    /// `PPPIOCSDEBUG`.
    SetDebug,
    /// `PPPIOCGDEBUG`.
    GetDebug,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::DupTty => "dup of the tty's fd",
            Step::DupChannel => "dup of the channel's /dev/ppp fd",
            Step::GetDiscipline => "TIOCGETD on the tty",
            Step::SetPppDiscipline => "TIOCSETD N_PPP on the tty",
            Step::RestoreDiscipline => "TIOCSETD (restoring the line discipline) on the tty",
            Step::GetChannel => "PPPIOCGCHAN on the tty",
            Step::OpenDevPpp => "open /dev/ppp",
            Step::AttachChannel => "PPPIOCATTCHAN on /dev/ppp",
            Step::NewUnit => "PPPIOCNEWUNIT on /dev/ppp",
            Step::GetUnit => "PPPIOCGUNIT on the channel",
            Step::Connect => "PPPIOCCONNECT on the channel",
            Step::Disconnect => "PPPIOCDISCONN on the channel",
            Step::SetNpMode => "PPPIOCSNPMODE on the unit",
            Step::GetFlags => "PPPIOCGFLAGS",
            Step::SetFlags => "PPPIOCSFLAGS",
            Step::SetAsyncMap => "PPPIOCSASYNCMAP on the channel",
            Step::SetRecvAsyncMap => "PPPIOCSRASYNCMAP on the channel",
            Step::SetExtendedAsyncMap => "PPPIOCSXASYNCMAP on the channel",
            Step::SetMru => "PPPIOCSMRU",
            Step::SetMrru => "PPPIOCSMRRU on the unit",
            Step::SetDebug => "PPPIOCSDEBUG",
            Step::GetDebug => "PPPIOCGDEBUG",
        })
    }
}

/// A kernel PPP call failed: which one, and the errno (with a hint for the usual causes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{step}: {errno}{}", hint(*step, *errno))]
pub struct KernelPppError {
    /// What was being done.
    pub step: Step,
    /// The kernel's answer.
    pub errno: Errno,
}

/// The usual meaning of an errno at a step, for people.
fn hint(step: Step, errno: Errno) -> &'static str {
    match (step, errno) {
        (Step::SetPppDiscipline, Errno::EINVAL) => {
            " (no N_PPP line discipline: kernel without CONFIG_PPP_ASYNC, or ppp_async not loaded)"
        }
        (Step::SetPppDiscipline, Errno::EPERM) => {
            " (loading ppp_async needs CAP_SYS_MODULE or dev.tty.ldisc_autoload = 1)"
        }
        (Step::OpenDevPpp, Errno::ENOENT) => " (kernel without CONFIG_PPP?)",
        (Step::OpenDevPpp, Errno::ENODEV | Errno::ENXIO) => " (ppp_generic not loaded)",
        (Step::OpenDevPpp, Errno::EPERM | Errno::EACCES) => " (needs CAP_NET_ADMIN)",
        _ => "",
    }
}

impl KernelPppError {
    fn new(step: Step) -> impl FnOnce(Errno) -> KernelPppError {
        move |errno| KernelPppError { step, errno }
    }

    fn io(step: Step) -> impl FnOnce(io::Error) -> KernelPppError {
        move |e| KernelPppError {
            step,
            errno: e.raw_os_error().map_or(Errno::EIO, Errno::from_raw),
        }
    }
}

/// Result of this module's calls.
pub type Result<T> = std::result::Result<T, KernelPppError>;

/// Why kernel PPP cannot be used here (the answer for `slave = "auto"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// No `/dev/ppp` at all.
    #[error("no /dev/ppp (kernel without CONFIG_PPP)")]
    NoDevice,
    /// `/dev/ppp` exists but nothing answers it.
    #[error("/dev/ppp has no driver (ppp_generic not loaded: {0})")]
    NoDriver(Errno),
    /// Not allowed to open it.
    #[error("/dev/ppp cannot be opened: {0} (needs CAP_NET_ADMIN)")]
    NotPermitted(Errno),
    /// Any other reason.
    #[error("/dev/ppp cannot be opened: {0}")]
    Other(Errno),
}

/// Whether `/dev/ppp` can be opened: `Ok` when kernel PPP can be used (line disciplines are
/// a separate matter: `ppp_async` is loaded on demand by `TIOCSETD`). Blocking (the open
/// may load a module).
pub fn available() -> std::result::Result<(), Unavailable> {
    match open_dev_ppp() {
        Ok(_) => Ok(()),
        Err(e) => Err(match e.errno {
            Errno::ENOENT if !Path::new(DEV_PPP).exists() => Unavailable::NoDevice,
            errno @ (Errno::ENODEV | Errno::ENXIO) => Unavailable::NoDriver(errno),
            errno @ (Errno::EPERM | Errno::EACCES) => Unavailable::NotPermitted(errno),
            errno => Unavailable::Other(errno),
        }),
    }
}

/// A new `/dev/ppp` file: read-write, non-blocking, close-on-exec (std always sets it).
fn open_dev_ppp() -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(DEV_PPP)
        .map_err(KernelPppError::io(Step::OpenDevPpp))
}

/// Whether `fd` is a terminal (a pty is one too, and takes `N_PPP` like a serial port).
pub fn is_tty(fd: BorrowedFd<'_>) -> bool {
    nix::unistd::isatty(fd.as_raw_fd()).unwrap_or(false)
}

/// Whether `fd` is the slave side of a Unix98 pty (majors 136–143, `/dev/pts/N`): a pty takes
/// `N_PPP` too (a simulated modem), which is fine for tests but says the line is no port.
pub fn is_pty_slave(fd: BorrowedFd<'_>) -> bool {
    /// `UNIX98_PTY_SLAVE_MAJOR` and the majors after it (`UNIX98_PTY_MAJOR_COUNT` = 8).
    const PTY_SLAVE_MAJORS: std::ops::RangeInclusive<u32> = 136..=143;
    nix::sys::stat::fstat(fd.as_raw_fd()).is_ok_and(|st| {
        st.st_mode & libc::S_IFMT == libc::S_IFCHR
            && PTY_SLAVE_MAJORS.contains(&libc::major(st.st_rdev))
    })
}

/// The tty's line discipline (`TIOCGETD`): [`N_TTY`], [`N_PPP`], …
pub fn line_discipline(tty: BorrowedFd<'_>) -> Result<c_int> {
    let mut disc: c_int = 0;
    // SAFETY: TIOCGETD writes one int, which `disc` is.
    unsafe { ioctls::tiocgetd(tty.as_raw_fd(), &mut disc) }
        .map_err(KernelPppError::new(Step::GetDiscipline))?;
    Ok(disc)
}

/// Puts a tty that is in the PPP line discipline back into `N_TTY`: whoever left it there
/// (our daemon killed outright: a pty keeps its discipline while its master is open) would
/// otherwise have `ppp_async` swallow the chat. Whether it had to. Blocking (`TIOCSETD`).
pub fn reset_ppp_discipline(tty: BorrowedFd<'_>) -> Result<bool> {
    if line_discipline(tty)? != N_PPP {
        return Ok(false);
    }
    set_line_discipline(tty, N_TTY, Step::RestoreDiscipline)?;
    Ok(true)
}

fn set_line_discipline(tty: BorrowedFd<'_>, disc: c_int, step: Step) -> Result<()> {
    // SAFETY: TIOCSETD reads one int, which `disc` is.
    unsafe { ioctls::tiocsetd(tty.as_raw_fd(), &disc) }.map_err(KernelPppError::new(step))?;
    Ok(())
}

/// An int-sized write ioctl on `fd`.
fn write_int(
    fd: BorrowedFd<'_>,
    call: unsafe fn(c_int, *const c_int) -> nix::Result<c_int>,
    value: c_int,
    step: Step,
) -> Result<()> {
    // SAFETY: every `call` passed here is an ioctl that reads one int, which `value` is.
    unsafe { call(fd.as_raw_fd(), &value) }.map_err(KernelPppError::new(step))?;
    Ok(())
}

/// An int-sized read ioctl on `fd`.
fn read_int(
    fd: BorrowedFd<'_>,
    call: unsafe fn(c_int, *mut c_int) -> nix::Result<c_int>,
    step: Step,
) -> Result<c_int> {
    let mut value: c_int = 0;
    // SAFETY: every `call` passed here is an ioctl that writes one int, which `value` is.
    unsafe { call(fd.as_raw_fd(), &mut value) }.map_err(KernelPppError::new(step))?;
    Ok(value)
}

/// Flags as the kernel's int (the same 32 bits).
fn flags_int(flags: u32) -> c_int {
    c_int::from_ne_bytes(flags.to_ne_bytes())
}

fn flags_u32(flags: c_int) -> u32 {
    u32::from_ne_bytes(flags.to_ne_bytes())
}

/// pppd's `modify_flags`: `clear` bits off, then `set` bits on.
pub fn modified_flags(flags: u32, clear: u32, set: u32) -> u32 {
    (flags & !clear) | set
}

/// The channel flags for sending as LCP agreed (pppd's `tty_send_config`): protocol and
/// address/control compression when the peer asked for them.
pub fn send_flags(link: &LinkParameters) -> u32 {
    (if link.tx_pfc { SC_COMP_PROT } else { 0 }) | (if link.tx_acfc { SC_COMP_AC } else { 0 })
}

/// The fd a frame is read from and written to once the channel is connected to a unit, as
/// pppd's `output()` picks it: link control (≥ 0xc000) and CCP fragments on the channel,
/// network protocols and their NCPs (IPCP, MP) on the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRoute {
    /// The channel's fd ([`Channel`]).
    Channel,
    /// The unit's fd ([`Unit`]).
    Unit,
}

impl FrameRoute {
    /// Where a frame of `protocol` goes (with a unit connected; without one, all go to the
    /// channel).
    pub fn of(protocol: u16) -> FrameRoute {
        /// `PPP_CCPFRAG`: the kernel keeps these on the channel too.
        const CCP_FRAG: u16 = 0x80fd;
        if protocol >= 0xc000 || protocol == CCP_FRAG {
            FrameRoute::Channel
        } else {
            FrameRoute::Unit
        }
    }

    /// Where `frame` (`protocol (2 bytes) + info`, as an unframed session gives it) goes.
    pub fn of_frame(frame: &[u8]) -> FrameRoute {
        match frame {
            [hi, lo, ..] => FrameRoute::of(u16::from_be_bytes([*hi, *lo])),
            _ => FrameRoute::Channel,
        }
    }
}

/// What the channel's and the unit's `/dev/ppp` files both do: frames in and out, flags,
/// MRU. (ppp_async's channel flags: [`SC_COMP_PROT`], [`SC_COMP_AC`], the `SC_RCV_*` state
/// bits; the unit's: [`SC_MULTILINK`], [`SC_MP_SHORTSEQ`], [`SC_LOOP_TRAFFIC`], ….)
pub trait PppFile: AsFd {
    /// Read one frame, `protocol (2 bytes) + info` (non-blocking: `WouldBlock` when none).
    /// The unit's file holds the NCP frames (IPCP; data while not [`NpMode::Pass`]).
    fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        nix::unistd::read(self.as_fd().as_raw_fd(), buf).map_err(io::Error::from)
    }

    /// Write one frame, `protocol (2 bytes) + info` (non-blocking: `WouldBlock` when the
    /// kernel's queue is full).
    fn write_frame(&self, frame: &[u8]) -> io::Result<usize> {
        nix::unistd::write(self.as_fd(), frame).map_err(io::Error::from)
    }

    /// The flags (`PPPIOCGFLAGS`).
    fn flags(&self) -> Result<u32> {
        read_int(self.as_fd(), ioctls::pppiocgflags, Step::GetFlags).map(flags_u32)
    }

    /// Set the flags (`PPPIOCSFLAGS`).
    fn set_flags(&self, flags: u32) -> Result<()> {
        write_int(
            self.as_fd(),
            ioctls::pppiocsflags,
            flags_int(flags),
            Step::SetFlags,
        )
    }

    /// Clear then set bits of the flags (pppd's `modify_flags`).
    fn modify_flags(&self, clear: u32, set: u32) -> Result<()> {
        let flags = self.flags()?;
        self.set_flags(modified_flags(flags, clear, set))
    }

    /// The largest frame accepted (`PPPIOCSMRU`: ppp_async on the channel, ppp_generic on
    /// the unit).
    fn set_mru(&self, mru: u16) -> Result<()> {
        write_int(
            self.as_fd(),
            ioctls::pppiocsmru,
            c_int::from(mru),
            Step::SetMru,
        )
    }
}

impl PppFile for Channel {}
impl PppFile for Unit {}

/// The tty's line discipline as it was, put back on drop.
#[derive(Debug)]
struct SavedDiscipline {
    /// A duplicate of the tty's fd: the discipline can be restored whoever closes theirs.
    tty: OwnedFd,
    saved: c_int,
    restored: bool,
}

impl SavedDiscipline {
    fn restore(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.restored, true) {
            return Ok(());
        }
        // As pppd: flush first, so that TIOCSETD does not wait for output that will never
        // drain (a stalled line, flow control). A failed flush still tries the TIOCSETD.
        if let Err(e) = tcflush(self.tty.as_fd(), FlushArg::TCIOFLUSH) {
            tracing::debug!(error = %e, "tcflush before restoring the line discipline");
        }
        set_line_discipline(self.tty.as_fd(), self.saved, Step::RestoreDiscipline)
    }
}

impl Drop for SavedDiscipline {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            tracing::warn!(error = %e, "kernel PPP: tty line discipline not restored");
        }
    }
}

/// A tty in the `N_PPP` discipline and the `/dev/ppp` file attached to its channel: LCP,
/// PAP, CHAP frames in and out (`protocol (2 bytes) + info`), and the channel's settings.
///
/// Drop or [`Channel::detach`] puts the tty's discipline back, before the hangup.
#[derive(Debug)]
pub struct Channel {
    // Field order is drop order: the discipline back first (the kernel unregisters the
    // channel), then the channel's file closed, as pppd's tty_disestablish_ppp.
    disc: SavedDiscipline,
    file: File,
    index: c_int,
}

impl Channel {
    /// Put the connected tty into PPP: save its discipline, `TIOCSETD N_PPP`,
    /// `PPPIOCGCHAN`, open `/dev/ppp`, `PPPIOCATTCHAN`, and clear the channel's received-bit
    /// and logging flags (as pppd). On failure the tty's discipline is back as it was.
    /// Blocking.
    pub fn attach(tty: BorrowedFd<'_>) -> Result<Channel> {
        let saved = line_discipline(tty)?;
        let dup = tty
            .try_clone_to_owned()
            .map_err(KernelPppError::io(Step::DupTty))?;
        set_line_discipline(tty, N_PPP, Step::SetPppDiscipline)?;
        // From here on a failure drops `disc`, which puts the discipline back.
        let disc = SavedDiscipline {
            tty: dup,
            // A tty left in N_PPP (by a daemon that died) goes back to N_TTY, as pppd
            // always restores.
            saved: if saved == N_PPP { N_TTY } else { saved },
            restored: false,
        };
        let index = read_int(disc.tty.as_fd(), ioctls::pppiocgchan, Step::GetChannel)?;
        let file = open_dev_ppp()?;
        write_int(
            file.as_fd(),
            ioctls::pppiocattchan,
            index,
            Step::AttachChannel,
        )?;
        let channel = Channel { disc, file, index };
        channel.modify_flags(SC_RCVB | SC_LOGB, 0)?;
        Ok(channel)
    }

    /// The kernel's index of the channel.
    pub fn index(&self) -> i32 {
        self.index
    }

    /// The tty's line discipline back, the channel closed; unlike drop, says if that failed.
    /// Blocking.
    pub fn detach(mut self) -> Result<()> {
        self.disc.restore()
    }

    /// `PPPIOCDISCONN`: the channel leaves its unit.
    pub fn disconnect(&self) -> Result<()> {
        // SAFETY: PPPIOCDISCONN takes no argument.
        unsafe { ioctls::pppiocdisconn(self.file.as_raw_fd()) }
            .map_err(KernelPppError::new(Step::Disconnect))?;
        Ok(())
    }

    /// The unit the channel is connected to (`PPPIOCGUNIT`, which `ppp_async` answers on the
    /// tty, not on the channel's file).
    pub fn unit(&self) -> Result<i32> {
        read_int(self.disc.tty.as_fd(), ioctls::pppiocgunit, Step::GetUnit)
    }

    /// Control characters to escape when sending (`PPPIOCSASYNCMAP`).
    pub fn set_async_map(&self, accm: u32) -> Result<()> {
        write_int(
            self.file.as_fd(),
            ioctls::pppiocsasyncmap,
            flags_int(accm),
            Step::SetAsyncMap,
        )
    }

    /// Control characters the peer escapes, dropped when received unescaped
    /// (`PPPIOCSRASYNCMAP`).
    pub fn set_recv_async_map(&self, accm: u32) -> Result<()> {
        write_int(
            self.file.as_fd(),
            ioctls::pppiocsrasyncmap,
            flags_int(accm),
            Step::SetRecvAsyncMap,
        )
    }

    /// The extended transmit ACCM, all 256 characters (`PPPIOCSXASYNCMAP`; pppd's `escape`
    /// option; word 0 is the async map, word 3 bits 30/31 are 0x7d/0x7e, always escaped).
    pub fn set_extended_async_map(&self, accm: &[u32; 8]) -> Result<()> {
        // SAFETY: PPPIOCSXASYNCMAP reads one ext_accm (`__u32[8]`), which `accm` is.
        unsafe { ioctls::pppiocsxasyncmap(self.file.as_raw_fd(), accm) }
            .map_err(KernelPppError::new(Step::SetExtendedAsyncMap))?;
        Ok(())
    }

    /// Sending as LCP agreed (pppd's `tty_send_config`): the peer's ACCM, then PFC/ACFC.
    /// (The MTU is the interface's, set over netlink.)
    pub fn send_config(&self, link: &LinkParameters) -> Result<()> {
        self.set_async_map(link.tx_accm)?;
        self.modify_flags(SC_COMP_PROT | SC_COMP_AC | SC_SYNC, send_flags(link))
    }

    /// Receiving as LCP agreed (pppd's `tty_recv_config`): the MRU on the channel and on
    /// the unit (ppp_generic checks it too), then our ACCM.
    pub fn recv_config(&self, unit: Option<&Unit>, link: &LinkParameters) -> Result<()> {
        self.set_mru(link.mru)?;
        if let Some(unit) = unit {
            unit.set_mru(link.mru)?;
        }
        self.set_recv_async_map(link.rx_accm)
    }
}

/// A second handle on a channel's `/dev/ppp` file (a duplicate of its fd): what a Multilink
/// bundle keeps of a member's channel, to connect it to the bundle's unit. The channel itself
/// (and its tty's discipline) stays with the member's line; the handle does not keep the
/// channel registered: the kernel takes it out of the unit when the tty leaves `N_PPP`.
#[derive(Debug)]
pub struct ChannelHandle {
    file: OwnedFd,
    index: c_int,
}

impl ChannelHandle {
    /// The kernel's index of the channel.
    pub fn index(&self) -> i32 {
        self.index
    }
}

impl Channel {
    /// A [`ChannelHandle`] on this channel.
    pub fn handle(&self) -> Result<ChannelHandle> {
        let file = self
            .file
            .as_fd()
            .try_clone_to_owned()
            .map_err(KernelPppError::io(Step::DupChannel))?;
        Ok(ChannelHandle {
            file,
            index: self.index,
        })
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for Channel {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// A PPP unit (network interface `pppN`) and its `/dev/ppp` file: NCP frames (IPCP) in and
/// out, the unit's settings. Dropping it removes the interface (blocking: RTNL).
#[derive(Debug)]
pub struct Unit {
    file: File,
    number: c_int,
}

impl Unit {
    /// A new unit, numbered by the kernel (`PPPIOCNEWUNIT` with -1). Blocking.
    pub fn new() -> Result<Unit> {
        let file = open_dev_ppp()?;
        let mut number: c_int = -1;
        // SAFETY: PPPIOCNEWUNIT reads and writes one int, which `number` is.
        unsafe { ioctls::pppiocnewunit(file.as_raw_fd(), &mut number) }
            .map_err(KernelPppError::new(Step::NewUnit))?;
        Ok(Unit { file, number })
    }

    /// The unit's number: the `N` of `pppN`.
    pub fn number(&self) -> i32 {
        self.number
    }

    /// The interface's name as the kernel made it, `pppN` (until it is renamed).
    pub fn ifname(&self) -> String {
        unit_ifname(self.number)
    }

    /// Connect `channel` to this unit (`PPPIOCCONNECT` on the channel).
    pub fn connect(&self, channel: &Channel) -> Result<()> {
        self.connect_file(channel.file.as_fd())
    }

    /// Connect the channel of `handle` to this unit: a Multilink bundle's next member
    /// (pppd's `bundle_attach` then `connect_channel`).
    pub fn connect_handle(&self, handle: &ChannelHandle) -> Result<()> {
        self.connect_file(handle.file.as_fd())
    }

    fn connect_file(&self, channel: BorrowedFd<'_>) -> Result<()> {
        write_int(channel, ioctls::pppiocconnect, self.number, Step::Connect)
    }

    /// What the kernel does with packets of the network protocol `protocol` (0x0021 for
    /// IPv4) (`PPPIOCSNPMODE`).
    pub fn set_npmode(&self, protocol: u16, mode: NpMode) -> Result<()> {
        let npi = NpIoctl {
            protocol: c_int::from(protocol),
            mode: mode as c_int,
        };
        // SAFETY: PPPIOCSNPMODE reads one struct npioctl, which `npi` is.
        unsafe { ioctls::pppiocsnpmode(self.file.as_raw_fd(), &npi) }
            .map_err(KernelPppError::new(Step::SetNpMode))?;
        Ok(())
    }

    /// Multilink in the kernel (pppd's `cfg_bundle`): `PPPIOCSMRRU`, then [`SC_MULTILINK`]
    /// and the short-sequence flags (receive, transmit); an `mrru` of 0 turns it off.
    pub fn set_multilink(&self, mrru: u16, rx_short_seq: bool, tx_short_seq: bool) -> Result<()> {
        write_int(
            self.file.as_fd(),
            ioctls::pppiocsmrru,
            c_int::from(mrru),
            Step::SetMrru,
        )?;
        let set = (if rx_short_seq { SC_MP_SHORTSEQ } else { 0 })
            | (if tx_short_seq { SC_MP_XSHORTSEQ } else { 0 })
            | (if mrru != 0 { SC_MULTILINK } else { 0 });
        self.modify_flags(SC_MP_SHORTSEQ | SC_MP_XSHORTSEQ | SC_MULTILINK, set)
    }

    /// The unit's debug level (`PPPIOCSDEBUG`; pppd's `kdebug`: 1 general, 2 packets in,
    /// 4 packets out).
    pub fn set_debug(&self, level: i32) -> Result<()> {
        write_int(
            self.file.as_fd(),
            ioctls::pppiocsdebug,
            level,
            Step::SetDebug,
        )
    }

    /// The unit's debug level (`PPPIOCGDEBUG`).
    pub fn debug(&self) -> Result<i32> {
        read_int(self.file.as_fd(), ioctls::pppiocgdebug, Step::GetDebug)
    }

    /// Remove the unit (its interface goes away). Blocking, as the drop.
    pub fn close(self) {
        drop(self);
    }
}

impl AsFd for Unit {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for Unit {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// The kernel's name for unit `n` (`PPP_DRV_NAME` + `n`).
pub fn unit_ifname(n: i32) -> String {
    format!("ppp{n}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// The request numbers are those of `linux/ppp-ioctl.h` (checked against the header
    /// with a C program on x86_64; `_IOC` is the same on the other "generic" architectures).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn request_numbers_are_the_headers() {
        let pinned: [(ioctl_num_type, u32); 16] = [
            (req::PPPIOCGCHAN, 0x8004_7437),
            (req::PPPIOCATTCHAN, 0x4004_7438),
            (req::PPPIOCDISCONN, 0x0000_7439),
            (req::PPPIOCCONNECT, 0x4004_743a),
            (req::PPPIOCSMRRU, 0x4004_743b),
            (req::PPPIOCNEWUNIT, 0xc004_743e),
            (req::PPPIOCSDEBUG, 0x4004_7440),
            (req::PPPIOCGDEBUG, 0x8004_7441),
            (req::PPPIOCSNPMODE, 0x4008_744b),
            (req::PPPIOCSXASYNCMAP, 0x4020_744f),
            (req::PPPIOCSMRU, 0x4004_7452),
            (req::PPPIOCSRASYNCMAP, 0x4004_7454),
            (req::PPPIOCGUNIT, 0x8004_7456),
            (req::PPPIOCSASYNCMAP, 0x4004_7457),
            (req::PPPIOCSFLAGS, 0x4004_7459),
            (req::PPPIOCGFLAGS, 0x8004_745a),
        ];
        for (i, (got, want)) in pinned.into_iter().enumerate() {
            assert_eq!(got, ioctl_num_type::from(want), "entry {i}");
        }
        assert_eq!(libc::TIOCSETD, 0x5423);
        assert_eq!(libc::TIOCGETD, 0x5424);
    }

    #[test]
    fn npioctl_is_two_ints() {
        assert_eq!(std::mem::size_of::<NpIoctl>(), 8);
        let modes = [NpMode::Pass, NpMode::Drop, NpMode::Error, NpMode::Queue];
        assert_eq!(modes.map(|m| m as c_int), [0, 1, 2, 3]);
    }

    #[test]
    fn flags_as_pppd_computes_them() {
        assert_eq!(SC_RCVB, 0x0f00_0000);
        assert_eq!(SC_LOGB, 0x001f_0000);
        assert_eq!(
            modified_flags(0x0f01_0203, SC_RCVB | SC_LOGB, 0),
            0x0000_0203
        );
        assert_eq!(
            modified_flags(SC_COMP_PROT, SC_COMP_PROT | SC_COMP_AC, SC_COMP_AC),
            SC_COMP_AC
        );
        let mut link = LinkParameters::default();
        assert_eq!(send_flags(&link), 0);
        link.tx_pfc = true;
        assert_eq!(send_flags(&link), SC_COMP_PROT);
        link.tx_acfc = true;
        assert_eq!(send_flags(&link), SC_COMP_PROT | SC_COMP_AC);
        // The high bits survive the trip through the kernel's int.
        assert_eq!(flags_u32(flags_int(0xffff_0000)), 0xffff_0000);
    }

    #[test]
    fn frames_go_where_pppd_sends_them() {
        for p in [0xc021, 0xc023, 0xc223, 0x80fd] {
            assert_eq!(FrameRoute::of(p), FrameRoute::Channel, "{p:#06x}");
        }
        for p in [0x8021, 0x0021, 0x003d, 0x8057, 0x80fd - 2] {
            assert_eq!(FrameRoute::of(p), FrameRoute::Unit, "{p:#06x}");
        }
        assert_eq!(FrameRoute::of_frame(&[0x80, 0x21, 1]), FrameRoute::Unit);
        assert_eq!(FrameRoute::of_frame(&[0xc0]), FrameRoute::Channel);
        assert_eq!(unit_ifname(3), "ppp3");
    }

    #[test]
    fn errors_name_the_step() {
        let e = KernelPppError {
            step: Step::AttachChannel,
            errno: Errno::EINVAL,
        };
        assert_eq!(
            e.to_string(),
            "PPPIOCATTCHAN on /dev/ppp: EINVAL: Invalid argument"
        );
        let e = KernelPppError {
            step: Step::SetPppDiscipline,
            errno: Errno::EINVAL,
        };
        assert!(e.to_string().contains("no N_PPP line discipline"), "{e}");
    }

    /// Here (no CONFIG_PPP) the answer says why; in a guest with PPP it is Ok, or a
    /// permission problem for a user without CAP_NET_ADMIN.
    #[test]
    fn available_says_why_not() {
        match available() {
            Ok(()) => assert!(Path::new(DEV_PPP).exists()),
            Err(why) => {
                let text = why.to_string();
                assert!(text.contains("/dev/ppp"), "{text}");
                if !Path::new(DEV_PPP).exists() {
                    assert_eq!(why, Unavailable::NoDevice);
                    assert_eq!(text, "no /dev/ppp (kernel without CONFIG_PPP)");
                }
            }
        }
    }

    /// A pty takes line disciplines as a serial port does. Without N_PPP in the kernel (as
    /// here) attaching fails at TIOCSETD and the pty stays N_TTY; with it, attaching gets as
    /// far as the kernel lets it and every way out leaves N_TTY behind.
    #[test]
    fn attach_on_a_pty_fails_cleanly_or_detaches_cleanly() {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let tty = pty.slave.as_fd();
        assert!(is_tty(tty));
        assert!(is_pty_slave(tty));
        assert!(!is_pty_slave(pty.master.as_fd()));
        assert_eq!(line_discipline(tty).expect("TIOCGETD"), N_TTY);
        let kernel_has_ppp = Path::new("/proc/tty/ldiscs").exists()
            && std::fs::read_to_string("/proc/tty/ldiscs")
                .is_ok_and(|s| s.lines().any(|l| l.starts_with("ppp")));
        match Channel::attach(tty) {
            Err(e) => {
                let text = e.to_string();
                eprintln!("attach on a pty: {text}");
                if !kernel_has_ppp && !Path::new(DEV_PPP).exists() {
                    assert_eq!(e.step, Step::SetPppDiscipline, "{text}");
                    assert!(
                        text.contains("TIOCSETD") && text.contains("N_PPP"),
                        "{text}"
                    );
                }
            }
            Ok(channel) => {
                assert_eq!(line_discipline(tty).expect("TIOCGETD"), N_PPP);
                assert!(channel.index() >= 0);
                channel.detach().expect("detach");
            }
        }
        assert_eq!(line_discipline(tty).expect("TIOCGETD"), N_TTY);
    }

    // ---- Against a kernel that has PPP ---------------------------------------------------------
    //
    // The tests below run their real-kernel part only where `available()` is Ok (not on a
    // kernel without CONFIG_PPP, nor for a user without CAP_NET_ADMIN); elsewhere they say why
    // they skipped it, or fail where EQLPLUS_REQUIRE_KERNEL_PPP is set (the QEMU guest of
    // tests/vm/kppp-check.sh, whose kernel has ppp_generic and ppp_async). Each runs in a thread
    // of its own in a new network namespace, so its units touch no network of the machine, and
    // ends by printing "kernel_ppp real kernel: NAME: what it saw" on stderr, which
    // tests/vm/kppp/unit-tests.sh looks for.

    use crate::ppp::hdlc::{Decoder, Encoder, Header};
    use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
    use std::time::{Duration, Instant};

    /// Set (to anything), a real-kernel part that cannot run is a failure, not a skip.
    const REQUIRE_KERNEL_PPP: &str = "EQLPLUS_REQUIRE_KERNEL_PPP";
    const SECOND: Duration = Duration::from_secs(1);
    const PPP_IP: u16 = 0x0021;
    const PPP_IPV6: u16 = 0x0057;
    const PPP_IPCP: u16 = 0x8021;
    const PPP_LCP: u16 = 0xc021;

    /// Runs `body` where kernel PPP can be used, in a new network namespace (its thread's
    /// alone), and prints what it returns; elsewhere says why not.
    fn on_real_kernel(test: &'static str, body: impl FnOnce() -> String + Send + 'static) {
        let required = std::env::var_os(REQUIRE_KERNEL_PPP).is_some();
        if let Err(why) = available() {
            assert!(
                !required,
                "{test}: {REQUIRE_KERNEL_PPP} is set, but kernel PPP is unavailable: {why}"
            );
            eprintln!("{test}: real-kernel part skipped: {why}");
            return;
        }
        let outcome = std::thread::spawn(move || {
            // SAFETY: unshare only takes flags; CLONE_NEWNET moves this thread alone.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(body())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match outcome {
            Ok(what) => eprintln!("kernel_ppp real kernel: {test}: {what}"),
            Err(e) => {
                assert!(!required, "{test}: no network namespace of its own: {e}");
                eprintln!("{test}: real-kernel part skipped: no network namespace: {e}");
            }
        }
    }

    /// Whether `fd` has something to read within `within`.
    fn readable(fd: BorrowedFd<'_>, within: Duration) -> bool {
        let ms = c_int::try_from(within.as_millis())
            .unwrap_or(c_int::MAX)
            .max(1);
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes one pollfd, which `pfd` is.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        n > 0 && pfd.revents & libc::POLLIN != 0
    }

    /// The next frame of a non-blocking `/dev/ppp` fd within `within`.
    fn frame_within(
        fd: BorrowedFd<'_>,
        read: impl Fn(&mut [u8]) -> io::Result<usize>,
        within: Duration,
    ) -> Option<Vec<u8>> {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 2048];
        loop {
            match read(&mut buf) {
                Ok(n) => return Some(buf[..n].to_vec()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("reading a frame: {e}"),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !readable(fd, left) {
                return None;
            }
        }
    }

    /// The unit the tty's channel is in, as ppp_async answers `PPPIOCGUNIT` on the tty (-1:
    /// none).
    fn tty_unit(tty: BorrowedFd<'_>) -> Result<c_int> {
        read_int(tty, ioctls::pppiocgunit, Step::GetUnit)
    }

    /// The index of interface `name` in this thread's network namespace (0: none).
    fn ifindex(name: &str) -> u32 {
        let name = std::ffi::CString::new(name).expect("interface name");
        // SAFETY: a NUL-terminated string that outlives the call.
        unsafe { libc::if_nametoindex(name.as_ptr()) }
    }

    /// Waits (2 s at most) for interface `name` to be gone.
    fn assert_gone(name: &str) {
        let deadline = Instant::now() + 2 * SECOND;
        while ifindex(name) != 0 {
            assert!(Instant::now() < deadline, "{name} still there");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A connected serial line, played by a pty: the slave (raw, as a dialer leaves a line
    /// after CONNECT) takes N_PPP; the master is the far end, which sees ppp_async's framing.
    struct Line {
        master: File,
        slave: OwnedFd,
        decoder: Decoder,
        pending: Vec<u8>,
    }

    impl Line {
        fn new() -> Line {
            use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
            let pty = nix::pty::openpty(None, None).expect("openpty");
            let mut t = tcgetattr(&pty.slave).expect("tcgetattr");
            cfmakeraw(&mut t);
            tcsetattr(&pty.slave, SetArg::TCSANOW, &t).expect("tcsetattr");
            Line {
                master: File::from(pty.master),
                slave: pty.slave,
                decoder: Decoder::new(1500),
                pending: Vec::new(),
            }
        }

        fn tty(&self) -> BorrowedFd<'_> {
            self.slave.as_fd()
        }

        /// The next frame of `protocol` that the kernel sent on the line within `within`, as
        /// our HDLC decoder reads it (flags, escapes and FCS checked and gone; address,
        /// control and protocol kept). Frames of other protocols are skipped.
        fn frame_of(&mut self, protocol: u16, within: Duration) -> Option<Vec<u8>> {
            let deadline = Instant::now() + within;
            loop {
                while !self.pending.is_empty() {
                    let (used, frame) = self.decoder.push(&self.pending);
                    let frame = frame.map(<[u8]>::to_vec);
                    self.pending.drain(..used);
                    if let Some(frame) = frame {
                        match Header::parse(&frame) {
                            Ok((header, _)) if header.protocol == protocol => return Some(frame),
                            _ => eprintln!("(skipped a frame on the line: {frame:02x?})"),
                        }
                    }
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || !readable(self.master.as_fd(), left) {
                    return None;
                }
                let mut buf = [0u8; 4096];
                let n = (&self.master).read(&mut buf).expect("read the pty master");
                self.pending.extend_from_slice(&buf[..n]);
            }
        }

        /// Sends a frame as the peer would: HDLC, every control character escaped.
        fn send(&self, header: &[u8], payload: &[u8]) {
            let mut out = Vec::new();
            Encoder::encode_default_accm(header, payload, &mut out);
            (&self.master)
                .write_all(&out)
                .expect("write the pty master");
        }
    }

    /// An IPv4 UDP datagram (no UDP checksum, which IPv4 allows).
    fn udp_packet(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
        let total = u16::try_from(20 + 8 + payload.len()).expect("small packet");
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0]);
        p.extend_from_slice(&src.ip().octets());
        p.extend_from_slice(&dst.ip().octets());
        let mut sum: u32 = p
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let sum = !u16::try_from(sum).expect("folded");
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p.extend_from_slice(&src.port().to_be_bytes());
        p.extend_from_slice(&dst.port().to_be_bytes());
        p.extend_from_slice(&(total - 20).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(payload);
        p
    }

    /// The ioctl sequence of attach and detach on a real N_PPP: the discipline switches, the
    /// channel's index is the tty's, attach cleared the received-bit and log flags, the
    /// channel is in no unit yet, and detach puts N_TTY back.
    #[test]
    fn attach_on_a_pty_reaches_n_ppp_and_back() {
        on_real_kernel("attach_on_a_pty_reaches_n_ppp_and_back", || {
            let line = Line::new();
            let tty = line.tty();
            let channel = Channel::attach(tty).expect("attach");
            assert_eq!(line_discipline(tty).expect("TIOCGETD"), N_PPP);
            let index = channel.index();
            assert!(index >= 0, "{index}");
            let on_tty = read_int(tty, ioctls::pppiocgchan, Step::GetChannel).expect("GCHAN");
            assert_eq!(on_tty, index);
            let flags = channel.flags().expect("flags");
            assert_eq!(flags & (SC_RCVB | SC_LOGB), 0, "{flags:#x}");
            assert_eq!(tty_unit(tty).expect("PPPIOCGUNIT on the tty"), -1);
            channel.detach().expect("detach");
            assert_eq!(line_discipline(tty).expect("TIOCGETD"), N_TTY);
            format!("channel {index} (flags {flags:#x}) attached on a pty, detached: N_TTY again")
        });
    }

    /// A tty that a dead daemon left in N_PPP: attach takes it over, and the drop puts N_TTY
    /// back (not the N_PPP it found).
    #[test]
    fn a_tty_left_in_n_ppp_goes_back_to_n_tty() {
        on_real_kernel("a_tty_left_in_n_ppp_goes_back_to_n_tty", || {
            let line = Line::new();
            let tty = line.tty();
            set_line_discipline(tty, N_PPP, Step::SetPppDiscipline).expect("N_PPP by hand");
            let channel = Channel::attach(tty).expect("attach over N_PPP");
            assert_eq!(line_discipline(tty).expect("TIOCGETD"), N_PPP);
            let index = channel.index();
            drop(channel);
            assert_eq!(line_discipline(tty).expect("TIOCGETD"), N_TTY);
            format!("attached over a stale N_PPP (channel {index}); the drop left N_TTY")
        });
    }

    /// A unit's interface comes and goes with it; its settings are the kernel's.
    #[test]
    fn unit_settings_reach_the_kernel() {
        on_real_kernel("unit_settings_reach_the_kernel", || {
            let unit = Unit::new().expect("PPPIOCNEWUNIT");
            let name = unit.ifname();
            assert_eq!(name, format!("ppp{}", unit.number()));
            assert_ne!(ifindex(&name), 0, "no interface {name}");
            unit.set_mru(1400).expect("MRU");
            unit.set_debug(1).expect("PPPIOCSDEBUG");
            assert_eq!(unit.debug().expect("PPPIOCGDEBUG"), 1);
            unit.set_debug(0).expect("PPPIOCSDEBUG");
            let mp = SC_MULTILINK | SC_MP_SHORTSEQ | SC_MP_XSHORTSEQ;
            unit.set_multilink(1500, true, true).expect("Multilink on");
            let flags = unit.flags().expect("flags");
            assert_eq!(flags & mp, mp, "{flags:#x}");
            unit.set_multilink(0, false, false).expect("Multilink off");
            assert_eq!(unit.flags().expect("flags") & mp, 0);
            for mode in [NpMode::Drop, NpMode::Queue, NpMode::Error, NpMode::Pass] {
                unit.set_npmode(PPP_IP, mode).expect("npmode of IP");
            }
            unit.set_npmode(PPP_IPV6, NpMode::Pass)
                .expect("npmode of IPv6");
            let e = unit
                .set_npmode(0x4321, NpMode::Pass)
                .expect_err("0x4321 is no network protocol");
            assert_eq!((e.step, e.errno), (Step::SetNpMode, Errno::EINVAL));
            let second = Unit::new().expect("a second unit");
            let second_name = second.ifname();
            assert_ne!(second.number(), unit.number());
            assert_ne!(ifindex(&second_name), 0, "no interface {second_name}");
            second.close();
            assert_gone(&second_name);
            assert_ne!(ifindex(&name), 0, "{name} went with {second_name}");
            drop(unit);
            assert_gone(&name);
            format!(
                "{name} and {second_name} made and removed; MRU, debug, Multilink (flags \
                 {flags:#x}), npmode of IP and IPv6 set, EINVAL for 0x4321"
            )
        });
    }

    /// The frames of a connected channel and unit, on both sides of ppp_async: LCP written to
    /// the channel's fd leaves HDLC-framed on the line and comes in unframed on it; IPCP goes
    /// through the unit's fd both ways (FrameRoute); send_config's ACFC reaches the framing.
    #[test]
    fn frames_cross_a_real_channel_and_unit() {
        on_real_kernel("frames_cross_a_real_channel_and_unit", || {
            let mut line = Line::new();
            let channel = Channel::attach(line.tty()).expect("attach");
            let unit = Unit::new().expect("unit");
            unit.connect(&channel).expect("PPPIOCCONNECT");
            assert_eq!(tty_unit(line.tty()).expect("PPPIOCGUNIT"), unit.number());
            assert_eq!(channel.unit().expect("Channel::unit"), unit.number());
            let mut link = LinkParameters::default();
            channel.send_config(&link).expect("send_config");
            channel
                .recv_config(Some(&unit), &link)
                .expect("recv_config");

            // LCP out: framed on the line, address and control in front.
            let echo_request = [0xc0, 0x21, 0x09, 0x07, 0x00, 0x08, 0x12, 0x34, 0x56, 0x78];
            assert_eq!(FrameRoute::of_frame(&echo_request), FrameRoute::Channel);
            let n = channel.write_frame(&echo_request).expect("write LCP");
            assert_eq!(n, echo_request.len());
            let sent = line.frame_of(PPP_LCP, 5 * SECOND).expect("LCP on the line");
            assert_eq!(sent, [&[0xff, 0x03][..], &echo_request].concat());
            // LCP in: unframed on the channel's fd.
            let reply = [0x0a, 0x07, 0x00, 0x08, 0x9a, 0xbc, 0xde, 0xf0];
            line.send(&[0xff, 0x03, 0xc0, 0x21], &reply);
            let got = frame_within(channel.as_fd(), |b| channel.read_frame(b), 5 * SECOND)
                .expect("LCP on the channel");
            assert_eq!(got, [&[0xc0, 0x21][..], &reply].concat());

            // IPCP out through the unit.
            let ipcp_request = [0x80, 0x21, 0x01, 0x01, 0x00, 0x0a, 0x03, 0x06, 192, 0, 2, 1];
            assert_eq!(FrameRoute::of_frame(&ipcp_request), FrameRoute::Unit);
            let n = unit.write_frame(&ipcp_request).expect("write IPCP");
            assert_eq!(n, ipcp_request.len());
            let sent = line
                .frame_of(PPP_IPCP, 5 * SECOND)
                .expect("IPCP on the line");
            assert_eq!(sent, [&[0xff, 0x03][..], &ipcp_request].concat());
            // IPCP in: on the unit's fd, not the channel's.
            let ack = [0x02, 0x01, 0x00, 0x0a, 0x03, 0x06, 192, 0, 2, 1];
            line.send(&[0xff, 0x03, 0x80, 0x21], &ack);
            let got = frame_within(unit.as_fd(), |b| unit.read_frame(b), 5 * SECOND)
                .expect("IPCP on the unit");
            assert_eq!(got, [&[0x80, 0x21][..], &ack].concat());
            let mut buf = [0u8; 64];
            let on_channel = channel.read_frame(&mut buf);
            assert!(
                matches!(&on_channel, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
                "{on_channel:?}"
            );

            // ACFC agreed: IPCP goes without address and control, LCP negotiation with them.
            link.tx_acfc = true;
            channel.send_config(&link).expect("send_config with ACFC");
            assert_eq!(channel.flags().expect("flags") & SC_COMP_AC, SC_COMP_AC);
            unit.write_frame(&ipcp_request).expect("write IPCP");
            let sent = line
                .frame_of(PPP_IPCP, 5 * SECOND)
                .expect("IPCP on the line");
            assert_eq!(sent, ipcp_request);
            let configure_request = [0xc0, 0x21, 0x01, 0x08, 0x00, 0x04];
            channel.write_frame(&configure_request).expect("write LCP");
            let sent = line.frame_of(PPP_LCP, 5 * SECOND).expect("LCP on the line");
            assert_eq!(sent, [&[0xff, 0x03][..], &configure_request].concat());

            let (name, number, index) = (unit.ifname(), unit.number(), channel.index());
            drop(unit);
            assert_gone(&name);
            channel.detach().expect("detach");
            assert_eq!(line_discipline(line.tty()).expect("TIOCGETD"), N_TTY);
            format!(
                "channel {index} in unit {number}: LCP framed out and unframed in on the \
                 channel's fd, IPCP both ways on the unit's, ACFC from send_config; \
                 Channel::unit names the unit"
            )
        });
    }

    /// A Multilink unit with two member channels, the second connected through a
    /// `ChannelHandle` (as a bundle connects its next member): IPCP written to the unit
    /// leaves as MP fragments (long sequence numbers) on the members' lines, an MP fragment
    /// received on a member comes out of the unit's fd, and a member whose tty leaves
    /// `N_PPP` is out of the unit while the other stays in.
    #[test]
    fn two_channels_make_one_multilink_unit() {
        on_real_kernel("two_channels_make_one_multilink_unit", || {
            const PPP_MP: u16 = 0x003d;
            let mut lines = [Line::new(), Line::new()];
            let first = Channel::attach(lines[0].tty()).expect("attach the first");
            let second = Channel::attach(lines[1].tty()).expect("attach the second");
            let unit = Unit::new().expect("unit");
            unit.set_multilink(1500, false, false).expect("Multilink");
            unit.connect(&first).expect("PPPIOCCONNECT the first");
            let handle = second.handle().expect("a handle on the second");
            assert_eq!(handle.index(), second.index());
            unit.connect_handle(&handle)
                .expect("PPPIOCCONNECT through the handle");
            drop(handle);
            for line in &lines {
                assert_eq!(tty_unit(line.tty()).expect("PPPIOCGUNIT"), unit.number());
            }
            let link = LinkParameters::default();
            for c in [&first, &second] {
                c.send_config(&link).expect("send_config");
                c.recv_config(Some(&unit), &link).expect("recv_config");
            }

            // Out: the fragments of one IPCP packet, from either line, in sequence order.
            let ipcp_request = [0x80, 0x21, 0x01, 0x01, 0x00, 0x0a, 0x03, 0x06, 192, 0, 2, 1];
            unit.write_frame(&ipcp_request).expect("write IPCP");
            let mut fragments: Vec<(u32, u8, Vec<u8>)> = Vec::new();
            let deadline = Instant::now() + 5 * SECOND;
            while !fragments.iter().any(|(_, flags, _)| flags & 0x40 != 0) {
                assert!(
                    Instant::now() < deadline,
                    "no last fragment: {fragments:02x?}"
                );
                for line in &mut lines {
                    if let Some(frame) = line.frame_of(PPP_MP, SECOND / 5) {
                        // ff 03 00 3d, then B|E and a 24-bit sequence number.
                        let seq = u32::from_be_bytes([0, frame[5], frame[6], frame[7]]);
                        fragments.push((seq, frame[4], frame[8..].to_vec()));
                    }
                }
            }
            fragments.sort_by_key(|f| f.0);
            assert_eq!(
                fragments[0].1 & 0x80,
                0x80,
                "first is no beginning: {fragments:02x?}"
            );
            let whole: Vec<u8> = fragments.iter().flat_map(|f| f.2.clone()).collect();
            assert_eq!(whole, ipcp_request, "{fragments:02x?}");

            // In: one fragment (beginning and end, sequence 0) on the second line.
            let ack = [0x80, 0x21, 0x02, 0x01, 0x00, 0x0a, 0x03, 0x06, 192, 0, 2, 1];
            lines[1].send(&[0xff, 0x03, 0x00, 0x3d, 0xc0, 0, 0, 0], &ack);
            let got = frame_within(unit.as_fd(), |b| unit.read_frame(b), 5 * SECOND)
                .expect("the reassembled IPCP on the unit");
            assert_eq!(got, ack);

            // The first member's tty back to N_TTY: out of the unit; the second stays.
            first.detach().expect("detach the first");
            assert_eq!(line_discipline(lines[0].tty()).expect("TIOCGETD"), N_TTY);
            assert_eq!(
                tty_unit(lines[1].tty()).expect("PPPIOCGUNIT"),
                unit.number()
            );
            let (name, number) = (unit.ifname(), unit.number());
            drop(unit);
            assert_gone(&name);
            second.detach().expect("detach the second");
            format!(
                "unit {number} with two channels ({} fragment(s) out, one in through the \
                 unit's fd); the second connected through a ChannelHandle; a detached \
                 member out, the other in",
                fragments.len()
            )
        });
    }

    /// IP crosses the unit, in both directions, only once its npmode is Pass: the interface
    /// up with its point-to-point addresses (over netlink), a UDP datagram each way.
    #[test]
    fn ip_passes_only_after_npmode_pass() {
        on_real_kernel("ip_passes_only_after_npmode_pass", || {
            let mut line = Line::new();
            let channel = Channel::attach(line.tty()).expect("attach");
            let unit = Unit::new().expect("unit");
            unit.connect(&channel).expect("PPPIOCCONNECT");
            let link = LinkParameters::default();
            channel.send_config(&link).expect("send_config");
            channel
                .recv_config(Some(&unit), &link)
                .expect("recv_config");
            unit.set_npmode(PPP_IP, NpMode::Drop).expect("npmode Drop");
            unit.set_npmode(PPP_IPV6, NpMode::Drop)
                .expect("npmode Drop");
            let (local, peer) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
            let name = unit.ifname();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(async {
                let netlink = crate::net::netlink::Netlink::new().expect("netlink");
                let index = netlink
                    .link_index(&name)
                    .await
                    .expect("link")
                    .expect("the unit's interface");
                netlink
                    .add_ptp_address(index, local, peer)
                    .await
                    .expect("address");
                netlink.set_up(index, 1500).await.expect("up");
            });
            let tx = UdpSocket::bind((local, 0)).expect("bind");
            let rx = UdpSocket::bind((local, 0)).expect("bind");
            rx.set_read_timeout(Some(SECOND / 2)).expect("timeout");
            let rx_addr = SocketAddrV4::new(local, rx.local_addr().expect("addr").port());
            let from_peer = SocketAddrV4::new(peer, 9);
            let mut buf = [0u8; 256];

            // Drop: nothing out, nothing in.
            tx.send_to(b"dropped", (peer, 9)).expect("send");
            let out = line.frame_of(PPP_IP, SECOND / 2);
            assert!(out.is_none(), "IP left under NPMODE_DROP: {out:02x?}");
            line.send(
                &[0xff, 0x03, 0x00, 0x21],
                &udp_packet(from_peer, rx_addr, b"dropped"),
            );
            let got = rx.recv_from(&mut buf);
            assert!(got.is_err(), "IP came in under NPMODE_DROP: {got:?}");

            // Pass: out and in.
            unit.set_npmode(PPP_IP, NpMode::Pass).expect("npmode Pass");
            tx.send_to(b"passed", (peer, 9)).expect("send");
            let out = line.frame_of(PPP_IP, 5 * SECOND).expect("IP on the line");
            let packet = &out[4..];
            assert_eq!(out[..4], [0xff, 0x03, 0x00, 0x21]);
            assert_eq!(packet[9], 17, "not UDP: {out:02x?}");
            assert_eq!(packet[12..16], local.octets());
            assert_eq!(packet[16..20], peer.octets());
            assert!(packet.ends_with(b"passed"), "{out:02x?}");
            rx.set_read_timeout(Some(5 * SECOND)).expect("timeout");
            line.send(
                &[0xff, 0x03, 0x00, 0x21],
                &udp_packet(from_peer, rx_addr, b"from the peer"),
            );
            let (n, from) = rx.recv_from(&mut buf).expect("the datagram from the peer");
            assert_eq!(&buf[..n], b"from the peer");
            assert_eq!(from, std::net::SocketAddr::V4(from_peer));

            drop(runtime);
            drop(unit);
            assert_gone(&name);
            channel.detach().expect("detach");
            format!(
                "{name} {local} peer {peer}: UDP dropped both ways under NPMODE_DROP, passed \
                 both ways under NPMODE_PASS ({} bytes out as protocol 0x0021)",
                out.len() - 4
            )
        });
    }
}
