//! The simulated modem's cellular side, as data: its SIM card, its network registration over
//! time and its identities, with the `simulate modem` flag syntax for each. The behaviour lives
//! in [`super::modem::ModemCore`]; the answers follow 3GPP TS 27.007.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The IMEI `AT+CGSN` reports unless configured (15 digits, a valid Luhn check digit).
pub const DEFAULT_IMEI: &str = "356938035643809";
/// The ICCID `AT+CCID` reports unless configured (19 digits plus the Luhn check digit).
pub const DEFAULT_ICCID: &str = "89490200001234567892";
/// The operator `AT+COPS?` names once registered, unless configured.
pub const DEFAULT_OPERATOR: &str = "SimNet";
/// The PUK that unlocks a blocked simulated SIM: `AT+CPIN="12345678","<new pin>"`.
pub const SIM_PUK: &str = "12345678";
/// PIN attempts a SIM allows before it blocks (and after every correct PIN).
pub const PIN_TRIES: u8 = 3;
/// PUK attempts a blocked SIM reports (`AT+CPINR`); the simulator never blocks the PUK.
pub const PUK_TRIES: u8 = 10;

/// The SIM card in a simulated modem, as configured at power-on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SimCard {
    /// No PIN: `+CPIN: READY` from power-on.
    #[default]
    Ready,
    /// PIN-protected: `+CPIN: SIM PIN` after every power-on until `AT+CPIN="<pin>"`;
    /// `tries` wrong PINs block it (`+CPIN: SIM PUK`).
    Pin { pin: String, tries: u8 },
    /// Blocked: `+CPIN: SIM PUK` until `AT+CPIN="12345678","<new pin>"`.
    Puk,
    /// No SIM: `AT+CPIN?` answers `+CME ERROR: 10` (SIM not inserted).
    Absent,
}

impl FromStr for SimCard {
    type Err = String;
    /// `ready`, `pin:CODE` (3 tries), `pin:CODE:TRIES`, `puk` or `absent`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let lower = s.to_ascii_lowercase();
        Ok(match lower.as_str() {
            "ready" => SimCard::Ready,
            "puk" => SimCard::Puk,
            "absent" | "none" => SimCard::Absent,
            _ => {
                let Some(rest) = lower.strip_prefix("pin:") else {
                    return Err(format!(
                        "unknown SIM '{s}': expected ready, pin:CODE[:TRIES], puk or absent"
                    ));
                };
                let (pin, tries) = match rest.split_once(':') {
                    Some((pin, tries)) => (
                        pin,
                        tries
                            .parse::<u8>()
                            .ok()
                            .filter(|t| (1..=PIN_TRIES).contains(t))
                            .ok_or_else(|| {
                                format!("bad tries in '{s}': expected 1 to {PIN_TRIES}")
                            })?,
                    ),
                    None => (rest, PIN_TRIES),
                };
                if !(4..=8).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("bad PIN in '{s}': expected 4 to 8 digits"));
                }
                SimCard::Pin {
                    pin: pin.to_string(),
                    tries,
                }
            }
        })
    }
}

impl fmt::Display for SimCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimCard::Ready => f.write_str("ready"),
            SimCard::Pin { pin, tries } if *tries == PIN_TRIES => write!(f, "pin:{pin}"),
            SimCard::Pin { pin, tries } => write!(f, "pin:{pin}:{tries}"),
            SimCard::Puk => f.write_str("puk"),
            SimCard::Absent => f.write_str("absent"),
        }
    }
}

/// The SIM's state as the modem reports it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SimState {
    #[default]
    Ready,
    /// Waiting for its PIN.
    PinRequired,
    /// Blocked: waiting for its PUK.
    PukRequired,
    Absent,
}

impl SimState {
    /// The `+CPIN:` code (TS 27.007 §8.3); `None` when absent (an error instead).
    pub fn cpin_code(self) -> Option<&'static str> {
        match self {
            SimState::Ready => Some("READY"),
            SimState::PinRequired => Some("SIM PIN"),
            SimState::PukRequired => Some("SIM PUK"),
            SimState::Absent => None,
        }
    }
}

/// A `+CME ERROR` code the simulator uses (TS 27.007 §9.2.1), with its verbose text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmeError {
    /// 3: operation not allowed.
    NotAllowed,
    /// 4: operation not supported.
    NotSupported,
    /// 10: SIM not inserted.
    SimNotInserted,
    /// 11: SIM PIN required.
    SimPinRequired,
    /// 12: SIM PUK required.
    SimPukRequired,
    /// 16: incorrect password.
    IncorrectPassword,
    /// 30: no network service.
    NoNetworkService,
    /// 50: incorrect parameters.
    IncorrectParameters,
}

impl CmeError {
    pub fn code(self) -> u16 {
        match self {
            CmeError::NotAllowed => 3,
            CmeError::NotSupported => 4,
            CmeError::SimNotInserted => 10,
            CmeError::SimPinRequired => 11,
            CmeError::SimPukRequired => 12,
            CmeError::IncorrectPassword => 16,
            CmeError::NoNetworkService => 30,
            CmeError::IncorrectParameters => 50,
        }
    }

    /// The `AT+CMEE=2` text.
    pub fn text(self) -> &'static str {
        match self {
            CmeError::NotAllowed => "operation not allowed",
            CmeError::NotSupported => "operation not supported",
            CmeError::SimNotInserted => "SIM not inserted",
            CmeError::SimPinRequired => "SIM PIN required",
            CmeError::SimPukRequired => "SIM PUK required",
            CmeError::IncorrectPassword => "incorrect password",
            CmeError::NoNetworkService => "no network service",
            CmeError::IncorrectParameters => "incorrect parameters",
        }
    }
}

/// A registration `<stat>` of `+CREG`/`+CGREG`/`+CEREG` (TS 27.007 §7.2, §10.1.20, §10.1.22).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegStat {
    /// 0: not registered, not searching.
    NotSearching,
    /// 1: registered, home network.
    Home,
    /// 2: not registered, searching.
    Searching,
    /// 3: registration denied.
    Denied,
    /// 4: unknown.
    Unknown,
    /// 5: registered, roaming.
    Roaming,
}

impl RegStat {
    pub fn code(self) -> u8 {
        match self {
            RegStat::NotSearching => 0,
            RegStat::Home => 1,
            RegStat::Searching => 2,
            RegStat::Denied => 3,
            RegStat::Unknown => 4,
            RegStat::Roaming => 5,
        }
    }

    /// Registered (home or roaming): a data call can be made.
    pub fn registered(self) -> bool {
        matches!(self, RegStat::Home | RegStat::Roaming)
    }
}

impl FromStr for RegStat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "not-searching" | "idle" => RegStat::NotSearching,
            "home" | "registered" => RegStat::Home,
            "searching" => RegStat::Searching,
            "denied" => RegStat::Denied,
            "unknown" => RegStat::Unknown,
            "roaming" => RegStat::Roaming,
            other => {
                return Err(format!(
                    "unknown registration state '{other}': expected home, roaming, searching, denied, not-searching or unknown"
                ));
            }
        })
    }
}

impl fmt::Display for RegStat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RegStat::NotSearching => "not-searching",
            RegStat::Home => "home",
            RegStat::Searching => "searching",
            RegStat::Denied => "denied",
            RegStat::Unknown => "unknown",
            RegStat::Roaming => "roaming",
        })
    }
}

/// One phase of a registration timeline: a state, held for a while (the last phase for ever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegPhase {
    pub stat: RegStat,
    /// How long the phase lasts; ignored on the last phase, which holds.
    pub duration: Duration,
}

/// Network registration over time, counted from the moment the SIM is ready (power-on for a
/// SIM without PIN, the correct `AT+CPIN=` otherwise); restarted by every power-on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegTimeline(pub Vec<RegPhase>);

impl Default for RegTimeline {
    /// Registered at home at once.
    fn default() -> Self {
        RegTimeline(vec![RegPhase {
            stat: RegStat::Home,
            duration: Duration::ZERO,
        }])
    }
}

impl RegTimeline {
    /// The state `elapsed` after the SIM became ready.
    pub fn stat_at(&self, elapsed: Duration) -> RegStat {
        let mut start = Duration::ZERO;
        for (i, phase) in self.0.iter().enumerate() {
            let end = start.saturating_add(phase.duration);
            if i + 1 == self.0.len() || elapsed < end {
                return phase.stat;
            }
            start = end;
        }
        RegStat::NotSearching
    }
}

impl FromStr for RegTimeline {
    type Err = String;
    /// `STATE[:DURATION],…`, e.g. `searching:20s,home`; durations in `ms`, `s` or `m`.
    fn from_str(s: &str) -> Result<Self, String> {
        let phases: Vec<RegPhase> = s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                let (stat, duration) = match p.split_once(':') {
                    Some((stat, d)) => (stat, parse_duration(d)?),
                    None => (p, Duration::ZERO),
                };
                Ok(RegPhase {
                    stat: stat.parse()?,
                    duration,
                })
            })
            .collect::<Result<_, String>>()?;
        if phases.is_empty() {
            return Err("the registration timeline is empty".into());
        }
        Ok(RegTimeline(phases))
    }
}

impl fmt::Display for RegTimeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, phase) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", phase.stat)?;
            if i + 1 < self.0.len() || !phase.duration.is_zero() {
                write!(f, ":{}ms", phase.duration.as_millis())?;
            }
        }
        Ok(())
    }
}

/// `250ms`, `20s`, `2m` (a bare number is seconds).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim().to_ascii_lowercase();
    let (digits, scale) = if let Some(d) = t.strip_suffix("ms") {
        (d, 1)
    } else if let Some(d) = t.strip_suffix('s') {
        (d, 1000)
    } else if let Some(d) = t.strip_suffix('m') {
        (d, 60_000)
    } else {
        (t.as_str(), 1000)
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|ms| *ms <= 24 * 3600 * 1000)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("bad duration '{s}': expected e.g. 500ms, 20s or 2m (up to a day)"))
}

/// Checks a configured identity: `len` decimal digits.
pub fn check_digits(
    what: &str,
    s: &str,
    len: std::ops::RangeInclusive<usize>,
) -> Result<(), String> {
    if len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!(
            "bad {what} '{s}': expected {} to {} digits",
            len.start(),
            len.end()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_cards_parse_and_print_back() {
        for s in ["ready", "pin:1234", "pin:0000:1", "puk", "absent"] {
            assert_eq!(s.parse::<SimCard>().unwrap().to_string(), s);
        }
        assert_eq!(
            "pin:1234".parse::<SimCard>().unwrap(),
            SimCard::Pin {
                pin: "1234".into(),
                tries: 3
            }
        );
        for bad in [
            "pin:12",
            "pin:abcd",
            "pin:1234:0",
            "pin:1234:4",
            "locked",
            "",
        ] {
            assert!(bad.parse::<SimCard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn timelines_parse_and_hold_their_last_phase() {
        let t: RegTimeline = "searching:20s,home".parse().unwrap();
        assert_eq!(t.stat_at(Duration::ZERO), RegStat::Searching);
        assert_eq!(t.stat_at(Duration::from_millis(19_999)), RegStat::Searching);
        assert_eq!(t.stat_at(Duration::from_secs(20)), RegStat::Home);
        assert_eq!(t.stat_at(Duration::from_secs(100_000)), RegStat::Home);
        assert_eq!(t.to_string(), "searching:20000ms,home");
        assert_eq!(t.to_string().parse::<RegTimeline>().unwrap(), t);
        let t: RegTimeline = "searching:500ms, denied:2m ,roaming".parse().unwrap();
        assert_eq!(t.stat_at(Duration::from_millis(499)), RegStat::Searching);
        assert_eq!(t.stat_at(Duration::from_secs(60)), RegStat::Denied);
        assert_eq!(t.stat_at(Duration::from_secs(121)), RegStat::Roaming);
        assert_eq!(
            RegTimeline::default().stat_at(Duration::ZERO),
            RegStat::Home
        );
        assert_eq!(
            "denied".parse::<RegTimeline>().unwrap().to_string(),
            "denied"
        );
        for bad in [
            "",
            "home:x",
            "lost",
            "searching:5h",
            "searching:99999999999999s",
        ] {
            assert!(bad.parse::<RegTimeline>().is_err(), "{bad}");
        }
    }

    #[test]
    fn identities_are_checked() {
        assert!(check_digits("IMEI", DEFAULT_IMEI, 15..=15).is_ok());
        assert!(check_digits("ICCID", DEFAULT_ICCID, 19..=20).is_ok());
        assert!(check_digits("IMEI", "12345", 15..=15).is_err());
        assert!(check_digits("ICCID", "8949x200001234567892", 19..=20).is_err());
    }
}
