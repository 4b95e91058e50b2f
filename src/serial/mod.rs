//! Modem ports: opening ttys (UART, USB modem, pty) raw at any baud rate, UUCP lock files
//! shared with pppd/minicom/ModemManager, modem control lines, and hangup.
//!
//! Hangup always ends with the port closed and its lock released: [`SerialPort::hangup`]
//! consumes the port, and dropping a port closes it too.

pub mod at;
pub mod identity;
mod lock;
mod port;
pub mod presence;

pub use lock::{DEFAULT_LOCK_DIR, LockError, UucpLock, lock_file_name};
pub use port::{
    CarrierWatch, FlowControl, HangupTiming, ModemStatus, SerialConfig, SerialError, SerialPort,
};
