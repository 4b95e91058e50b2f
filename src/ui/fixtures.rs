//! Lines for the tests of the views (`status_view`, `monitor`).

use crate::control::{AdminState, LineState, LineStatus};

/// `ttyUSB0`, in holdoff since 996 after a BUSY, next dial at 1008 (the samples' reports are
/// at 1000).
pub(super) fn holdoff_line() -> LineStatus {
    LineStatus {
        name: "ttyUSB0".into(),
        device: "/dev/ttyUSB0".into(),
        slave: "eq-ttyUSB0".into(),
        state: LineState::Holdoff,
        since: 996.0,
        admin: AdminState::Up,
        redials: 3,
        last_error: Some("dial-chat: BUSY".into()),
        next_attempt: Some(1008.0),
        ..LineStatus::default()
    }
}
