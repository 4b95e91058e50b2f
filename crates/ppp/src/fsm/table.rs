//! The RFC 1661 §4 automaton itself: its states, events and actions, and the
//! state transition table of §4.1 transcribed literally, one entry per (state,
//! event). [`Fsm`](super::Fsm) executes what the table says.

/// Automaton states, RFC 1661 §4.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// 0: lower layer down, no Open.
    Initial,
    /// 1: Open issued, lower layer still down.
    Starting,
    /// 2: lower layer up, no Open.
    Closed,
    /// 3: waiting for the peer after a finished negotiation or termination.
    Stopped,
    /// 4: Terminate-Request sent, Close issued.
    Closing,
    /// 5: Terminate-Request sent (or received) without a Close.
    Stopping,
    /// 6: Configure-Request sent.
    ReqSent,
    /// 7: Configure-Request sent and acknowledged.
    AckRcvd,
    /// 8: Configure-Request sent, peer's request acknowledged.
    AckSent,
    /// 9: both requests acknowledged.
    Opened,
}

impl State {
    /// States in which the restart timer runs.
    pub(super) fn timer_runs(self) -> bool {
        matches!(
            self,
            State::Closing | State::Stopping | State::ReqSent | State::AckRcvd | State::AckSent
        )
    }

    /// States in which a configuration exchange is in progress.
    pub(super) fn negotiating(self) -> bool {
        matches!(self, State::ReqSent | State::AckRcvd | State::AckSent)
    }
}

/// Automaton events, RFC 1661 §4.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// Lower layer is up.
    Up,
    /// Lower layer is down.
    Down,
    /// Administrative Open.
    Open,
    /// Administrative Close.
    Close,
    /// Restart timer expired, counter > 0 (TO+).
    TimeoutPlus,
    /// Restart timer expired, counter exhausted (TO-).
    TimeoutMinus,
    /// Acceptable Configure-Request (RCR+).
    RcrPlus,
    /// Unacceptable Configure-Request (RCR-).
    RcrMinus,
    /// Configure-Ack (RCA).
    Rca,
    /// Configure-Nak or Configure-Reject (RCN).
    Rcn,
    /// Terminate-Request (RTR).
    Rtr,
    /// Terminate-Ack (RTA).
    Rta,
    /// Unknown code (RUC).
    Ruc,
    /// Permitted Code-Reject or Protocol-Reject (RXJ+).
    RxjPlus,
    /// Catastrophic Code-Reject or Protocol-Reject (RXJ-).
    RxjMinus,
    /// Echo-Request, Echo-Reply or Discard-Request (RXR).
    Rxr,
}

/// Automaton actions, RFC 1661 §4.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// This-Layer-Up.
    Tlu,
    /// This-Layer-Down.
    Tld,
    /// This-Layer-Started.
    Tls,
    /// This-Layer-Finished.
    Tlf,
    /// Initialize-Restart-Count.
    Irc,
    /// Zero-Restart-Count.
    Zrc,
    /// Send-Configure-Request.
    Scr,
    /// Send-Configure-Ack.
    Sca,
    /// Send-Configure-Nak/Rej.
    Scn,
    /// Send-Terminate-Request.
    Str,
    /// Send-Terminate-Ack.
    Sta,
    /// Send-Code-Reject.
    Scj,
    /// Send-Echo-Reply.
    Ser,
}

/// The RFC 1661 §4.1 state transition table. `None` is the table's `-`: the
/// event cannot happen in that state (or is ignored, for received packets).
pub fn transition(state: State, event: Event) -> Option<(&'static [Action], State)> {
    use Action::*;
    use Event as E;
    use State as S;
    let entry: (&'static [Action], State) = match (state, event) {
        // Up
        (S::Initial, E::Up) => (&[], S::Closed),
        (S::Starting, E::Up) => (&[Irc, Scr], S::ReqSent),
        (_, E::Up) => return None,
        // Down
        (S::Initial | S::Starting, E::Down) => return None,
        (S::Closed, E::Down) => (&[], S::Initial),
        (S::Stopped, E::Down) => (&[Tls], S::Starting),
        (S::Closing, E::Down) => (&[], S::Initial),
        (S::Stopping | S::ReqSent | S::AckRcvd | S::AckSent, E::Down) => (&[], S::Starting),
        (S::Opened, E::Down) => (&[Tld], S::Starting),
        // Open
        (S::Initial, E::Open) => (&[Tls], S::Starting),
        (S::Starting, E::Open) => (&[], S::Starting),
        (S::Closed, E::Open) => (&[Irc, Scr], S::ReqSent),
        (S::Stopped, E::Open) => (&[], S::Stopped),
        (S::Closing, E::Open) => (&[], S::Stopping),
        (S::Stopping, E::Open) => (&[], S::Stopping),
        (S::ReqSent, E::Open) => (&[], S::ReqSent),
        (S::AckRcvd, E::Open) => (&[], S::AckRcvd),
        (S::AckSent, E::Open) => (&[], S::AckSent),
        (S::Opened, E::Open) => (&[], S::Opened),
        // Close
        (S::Initial, E::Close) => (&[], S::Initial),
        (S::Starting, E::Close) => (&[Tlf], S::Initial),
        (S::Closed | S::Stopped, E::Close) => (&[], S::Closed),
        (S::Closing | S::Stopping, E::Close) => (&[], S::Closing),
        (S::ReqSent | S::AckRcvd | S::AckSent, E::Close) => (&[Irc, Str], S::Closing),
        (S::Opened, E::Close) => (&[Tld, Irc, Str], S::Closing),
        // TO+
        (S::Closing, E::TimeoutPlus) => (&[Str], S::Closing),
        (S::Stopping, E::TimeoutPlus) => (&[Str], S::Stopping),
        (S::ReqSent | S::AckRcvd, E::TimeoutPlus) => (&[Scr], S::ReqSent),
        (S::AckSent, E::TimeoutPlus) => (&[Scr], S::AckSent),
        (_, E::TimeoutPlus) => return None,
        // TO-
        (S::Closing, E::TimeoutMinus) => (&[Tlf], S::Closed),
        (S::Stopping | S::ReqSent | S::AckRcvd | S::AckSent, E::TimeoutMinus) => {
            (&[Tlf], S::Stopped)
        }
        (_, E::TimeoutMinus) => return None,
        // Received packets cannot arrive while the lower layer is down.
        (
            S::Initial | S::Starting,
            E::RcrPlus | E::RcrMinus | E::Rca | E::Rcn | E::Rtr | E::Rta,
        ) => return None,
        // RCR+
        (S::Closed, E::RcrPlus) => (&[Sta], S::Closed),
        (S::Stopped, E::RcrPlus) => (&[Irc, Scr, Sca], S::AckSent),
        (S::Closing, E::RcrPlus) => (&[], S::Closing),
        (S::Stopping, E::RcrPlus) => (&[], S::Stopping),
        (S::ReqSent, E::RcrPlus) => (&[Sca], S::AckSent),
        (S::AckRcvd, E::RcrPlus) => (&[Sca, Tlu], S::Opened),
        (S::AckSent, E::RcrPlus) => (&[Sca], S::AckSent),
        (S::Opened, E::RcrPlus) => (&[Tld, Scr, Sca], S::AckSent),
        // RCR-
        (S::Closed, E::RcrMinus) => (&[Sta], S::Closed),
        (S::Stopped, E::RcrMinus) => (&[Irc, Scr, Scn], S::ReqSent),
        (S::Closing, E::RcrMinus) => (&[], S::Closing),
        (S::Stopping, E::RcrMinus) => (&[], S::Stopping),
        (S::ReqSent, E::RcrMinus) => (&[Scn], S::ReqSent),
        (S::AckRcvd, E::RcrMinus) => (&[Scn], S::AckRcvd),
        (S::AckSent, E::RcrMinus) => (&[Scn], S::ReqSent),
        (S::Opened, E::RcrMinus) => (&[Tld, Scr, Scn], S::ReqSent),
        // RCA
        (S::Closed, E::Rca) => (&[Sta], S::Closed),
        (S::Stopped, E::Rca) => (&[Sta], S::Stopped),
        (S::Closing, E::Rca) => (&[], S::Closing),
        (S::Stopping, E::Rca) => (&[], S::Stopping),
        (S::ReqSent, E::Rca) => (&[Irc], S::AckRcvd),
        (S::AckRcvd, E::Rca) => (&[Scr], S::ReqSent),
        (S::AckSent, E::Rca) => (&[Irc, Tlu], S::Opened),
        (S::Opened, E::Rca) => (&[Tld, Scr], S::ReqSent),
        // RCN
        (S::Closed, E::Rcn) => (&[Sta], S::Closed),
        (S::Stopped, E::Rcn) => (&[Sta], S::Stopped),
        (S::Closing, E::Rcn) => (&[], S::Closing),
        (S::Stopping, E::Rcn) => (&[], S::Stopping),
        (S::ReqSent, E::Rcn) => (&[Irc, Scr], S::ReqSent),
        (S::AckRcvd, E::Rcn) => (&[Scr], S::ReqSent),
        (S::AckSent, E::Rcn) => (&[Irc, Scr], S::AckSent),
        (S::Opened, E::Rcn) => (&[Tld, Scr], S::ReqSent),
        // RTR
        (S::Closed, E::Rtr) => (&[Sta], S::Closed),
        (S::Stopped, E::Rtr) => (&[Sta], S::Stopped),
        (S::Closing, E::Rtr) => (&[Sta], S::Closing),
        (S::Stopping, E::Rtr) => (&[Sta], S::Stopping),
        (S::ReqSent | S::AckRcvd | S::AckSent, E::Rtr) => (&[Sta], S::ReqSent),
        (S::Opened, E::Rtr) => (&[Tld, Zrc, Sta], S::Stopping),
        // RTA
        (S::Closed, E::Rta) => (&[], S::Closed),
        (S::Stopped, E::Rta) => (&[], S::Stopped),
        (S::Closing, E::Rta) => (&[Tlf], S::Closed),
        (S::Stopping, E::Rta) => (&[Tlf], S::Stopped),
        (S::ReqSent | S::AckRcvd, E::Rta) => (&[], S::ReqSent),
        (S::AckSent, E::Rta) => (&[], S::AckSent),
        (S::Opened, E::Rta) => (&[Tld, Scr], S::ReqSent),
        // RUC
        (S::Initial | S::Starting, E::Ruc) => return None,
        (s, E::Ruc) => (&[Scj], s),
        // RXJ+
        (S::Initial | S::Starting, E::RxjPlus) => return None,
        (S::AckRcvd, E::RxjPlus) => (&[], S::ReqSent),
        (s, E::RxjPlus) => (&[], s),
        // RXJ-
        (S::Closed | S::Closing, E::RxjMinus) => (&[Tlf], S::Closed),
        (S::Stopped | S::Stopping, E::RxjMinus) => (&[Tlf], S::Stopped),
        (S::ReqSent | S::AckRcvd | S::AckSent, E::RxjMinus) => (&[Tlf], S::Stopped),
        (S::Opened, E::RxjMinus) => (&[Tld, Irc, Str], S::Stopping),
        (S::Initial | S::Starting, E::RxjMinus) => return None,
        // RXR
        (S::Initial | S::Starting, E::Rxr) => return None,
        (S::Opened, E::Rxr) => (&[Ser], S::Opened),
        (s, E::Rxr) => (&[], s),
    };
    Some(entry)
}
