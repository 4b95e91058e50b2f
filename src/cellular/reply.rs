//! Typed views of a cellular modem's answers (3GPP TS 27.007): SIM state (`+CPIN`),
//! registration (`+CREG`, `+CGREG`, `+CEREG`), operator (`+COPS`), signal (`+CSQ`, `+CESQ`),
//! identity (`+CGSN`, `+CCID`/`+ICCID`) and errors (`+CME ERROR`). Each parser takes one line
//! as the modem sent it and returns `None` for anything else; none panics on any input.

use serde::{Deserialize, Serialize};

/// What `AT+CPIN?` says of the SIM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SimState {
    Ready,
    /// Wants its PIN.
    Pin,
    /// Locked after three wrong PINs: wants its PUK (only a person should give it).
    Puk,
    /// No SIM in the modem (`+CME ERROR: 10`).
    Absent,
    /// Anything else (`PH-SIM PIN`, `SIM PIN2`, …), as the modem said it.
    Other(String),
}

impl std::fmt::Display for SimState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimState::Ready => f.write_str("ready"),
            SimState::Pin => f.write_str("PIN required"),
            SimState::Puk => f.write_str("PUK required"),
            SimState::Absent => f.write_str("no SIM"),
            SimState::Other(s) => f.write_str(s),
        }
    }
}

/// `+CPIN: READY` and the rest.
pub fn parse_cpin(line: &str) -> Option<SimState> {
    let value = field_text(line, "+CPIN:")?;
    Some(match value.as_str() {
        "READY" => SimState::Ready,
        "SIM PIN" => SimState::Pin,
        "SIM PUK" => SimState::Puk,
        other => SimState::Other(other.to_string()),
    })
}

/// The network registration state (`<stat>` of +CREG/+CGREG/+CEREG).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Registration {
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
    /// 6–11: registered for SMS only, emergency only, …: no data.
    Limited,
}

impl Registration {
    pub fn from_stat(stat: u32) -> Registration {
        match stat {
            0 => Registration::NotSearching,
            1 => Registration::Home,
            2 => Registration::Searching,
            3 => Registration::Denied,
            5 => Registration::Roaming,
            6..=11 => Registration::Limited,
            _ => Registration::Unknown,
        }
    }

    /// Registered for data: home or roaming.
    pub fn registered(self) -> bool {
        matches!(self, Registration::Home | Registration::Roaming)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Registration::NotSearching => "not searching",
            Registration::Home => "registered",
            Registration::Searching => "searching",
            Registration::Denied => "denied",
            Registration::Unknown => "unknown",
            Registration::Roaming => "roaming",
            Registration::Limited => "limited service",
        }
    }

    /// Which of two answers (e.g. CREG and CEREG) says more: registered beats denied beats
    /// searching beats the rest.
    pub fn rank(self) -> u8 {
        match self {
            Registration::Home | Registration::Roaming => 4,
            Registration::Denied => 3,
            Registration::Searching => 2,
            Registration::Limited => 1,
            Registration::NotSearching | Registration::Unknown => 0,
        }
    }
}

/// `+CREG: <n>,<stat>[,…]` (the answer to `AT+CREG?`) or the unsolicited `+CREG: <stat>[,
/// "<lac>",…]`; likewise `+CGREG` and `+CEREG`. The command's name without `+` and `:` is
/// `name` (`CREG`).
pub fn parse_registration(line: &str, name: &str) -> Option<Registration> {
    let fields = fields(line, &format!("+{name}:"))?;
    let stat = match fields.as_slice() {
        [stat] => stat,
        // The query's answer: <n>,<stat>; the unsolicited form's second field is a quoted
        // area code.
        [_, second, ..] if !second.starts_with('"') => second,
        [stat, ..] => stat,
        [] => return None,
    };
    stat.trim().parse().ok().map(Registration::from_stat)
}

/// `+COPS: <mode>[,<format>,"<oper>"[,<AcT>]]`: the operator's name and the access technology,
/// if registered.
pub fn parse_cops(line: &str) -> Option<(Option<String>, Option<AccessTech>)> {
    let fields = fields(line, "+COPS:")?;
    fields.first()?.trim().parse::<u32>().ok()?;
    let operator = fields
        .get(2)
        .map(|o| unquote(o))
        .filter(|o| !o.is_empty())
        .map(|o| printable(&o, 32));
    let act = fields
        .get(3)
        .and_then(|a| a.trim().parse::<u32>().ok())
        .map(AccessTech::from_act);
    Some((operator, act))
}

/// The radio access technology (`<AcT>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessTech {
    Gsm,
    Umts,
    Lte,
    Nr,
    Other,
}

impl AccessTech {
    pub fn from_act(act: u32) -> AccessTech {
        match act {
            0 | 1 | 3 => AccessTech::Gsm,
            2 | 4 | 5 | 6 => AccessTech::Umts,
            7 | 9 => AccessTech::Lte,
            11..=13 => AccessTech::Nr,
            _ => AccessTech::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AccessTech::Gsm => "2G",
            AccessTech::Umts => "3G",
            AccessTech::Lte => "LTE",
            AccessTech::Nr => "5G",
            AccessTech::Other => "other",
        }
    }
}

/// Received signal strength.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// dBm.
    pub dbm: i32,
    /// 0–4 bars.
    pub bars: u8,
}

/// `+CSQ: <rssi>,<ber>`: rssi 0–31 is -113 + 2·rssi dBm, 99 unknown.
pub fn parse_csq(line: &str) -> Option<Option<Signal>> {
    let fields = fields(line, "+CSQ:")?;
    let rssi: u32 = fields.first()?.trim().parse().ok()?;
    Some((rssi <= 31).then(|| {
        let dbm = -113 + 2 * rssi as i32;
        Signal {
            dbm,
            // The usual bands: <-100 marginal, -100..-90 ok, -90..-80 good, above excellent.
            bars: match dbm {
                ..-109 => 0,
                -109..-99 => 1,
                -99..-89 => 2,
                -89..-79 => 3,
                _ => 4,
            },
        }
    }))
}

/// `+CESQ: <rxlev>,<ber>,<rscp>,<ecno>,<rsrq>,<rsrp>`: the best-known measure, LTE's RSRP
/// (0–97: -141 + n dBm) before UMTS's RSCP (0–96: -121 + n) before GSM's RXLEV (0–63:
/// -111 + n); 255/99 are unknown.
pub fn parse_cesq(line: &str) -> Option<Option<Signal>> {
    let fields = fields(line, "+CESQ:")?;
    if fields.len() < 6 {
        return None;
    }
    let n = |i: usize| fields[i].trim().parse::<u32>().ok();
    let rxlev = n(0)?;
    let rscp = n(2)?;
    let rsrp = n(5)?;
    Some(if rsrp <= 97 {
        let dbm = -141 + rsrp as i32;
        // LTE RSRP bands: >= -80 excellent, -90 good, -100 fair, -110 poor.
        Some(Signal {
            dbm,
            bars: match dbm {
                ..-115 => 0,
                -115..-105 => 1,
                -105..-95 => 2,
                -95..-85 => 3,
                _ => 4,
            },
        })
    } else if rscp <= 96 {
        let dbm = -121 + rscp as i32;
        Some(Signal {
            dbm,
            bars: bars_from_rssi_like(dbm),
        })
    } else if rxlev <= 63 {
        let dbm = -111 + rxlev as i32;
        Some(Signal {
            dbm,
            bars: bars_from_rssi_like(dbm),
        })
    } else {
        None
    })
}

fn bars_from_rssi_like(dbm: i32) -> u8 {
    match dbm {
        ..-109 => 0,
        -109..-99 => 1,
        -99..-89 => 2,
        -89..-79 => 3,
        _ => 4,
    }
}

/// An IMEI line (the answer to `AT+CGSN`): 14–16 digits, alone or after `+CGSN:`.
pub fn parse_imei(line: &str) -> Option<String> {
    let text = line.trim();
    let text = text.strip_prefix("+CGSN:").map_or(text, str::trim);
    let text = unquote(text);
    (14..=16)
        .contains(&text.len())
        .then_some(())
        .filter(|()| text.bytes().all(|b| b.is_ascii_digit()))
        .map(|()| text.to_string())
}

/// An ICCID line (`AT+CCID`, `AT+ICCID`, `AT^ICCID`, `AT+QCCID`): 18–22 digits (the last may be
/// `F`), alone or after the command's name.
pub fn parse_iccid(line: &str) -> Option<String> {
    let text = line.trim();
    let text = ["+CCID:", "+ICCID:", "^ICCID:", "+QCCID:"]
        .iter()
        .find_map(|p| text.strip_prefix(p))
        .map_or(text, str::trim);
    let text = unquote(text);
    let ok = (18..=22).contains(&text.len())
        && text
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_digit() || (i + 1 == text.len() && b == b'F'));
    ok.then(|| text.to_string())
}

/// `+CME ERROR: <n>` or `+CME ERROR: <text>`: the error's number where given (10 no SIM, 11
/// PIN required, 12 PUK required, 16 incorrect password, …) and its text.
pub fn parse_cme_error(line: &str) -> Option<CmeError> {
    let rest = line.trim().strip_prefix("+CME ERROR:")?.trim();
    Some(match rest.parse::<u32>() {
        Ok(code) => CmeError {
            code: Some(code),
            text: cme_text(code).map_or_else(|| format!("error {code}"), str::to_string),
        },
        Err(_) => {
            let text = printable(rest, 64);
            CmeError {
                code: cme_code(&text),
                text,
            }
        }
    })
}

/// A `+CME ERROR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmeError {
    pub code: Option<u32>,
    pub text: String,
}

impl CmeError {
    /// No SIM in the modem.
    pub fn sim_absent(&self) -> bool {
        self.code == Some(10)
    }

    /// The PIN given was wrong.
    pub fn wrong_password(&self) -> bool {
        self.code == Some(16)
    }
}

const CME_TEXTS: [(u32, &str); 8] = [
    (3, "operation not allowed"),
    (4, "operation not supported"),
    (10, "SIM not inserted"),
    (11, "SIM PIN required"),
    (12, "SIM PUK required"),
    (13, "SIM failure"),
    (14, "SIM busy"),
    (16, "incorrect password"),
];

fn cme_text(code: u32) -> Option<&'static str> {
    CME_TEXTS.iter().find(|(c, _)| *c == code).map(|(_, t)| *t)
}

fn cme_code(text: &str) -> Option<u32> {
    CME_TEXTS
        .iter()
        .find(|(_, t)| t.eq_ignore_ascii_case(text))
        .map(|(c, _)| *c)
}

/// The comma-separated fields after `prefix` (case as sent), quotes kept; commas inside
/// quotes do not split.
fn fields(line: &str, prefix: &str) -> Option<Vec<String>> {
    let rest = line.trim().strip_prefix(prefix)?.trim();
    if rest.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in rest.chars().take(256) {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    out.push(current);
    Some(out)
}

/// The single value after `prefix`, unquoted.
fn field_text(line: &str, prefix: &str) -> Option<String> {
    let rest = line.trim().strip_prefix(prefix)?.trim();
    Some(printable(&unquote(rest), 64))
}

fn unquote(s: &str) -> String {
    let t = s.trim();
    t.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(t)
        .to_string()
}

/// At most `max` characters, control characters replaced: modem text ends up in status.
fn printable(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sim_states() {
        assert_eq!(parse_cpin("+CPIN: READY"), Some(SimState::Ready));
        assert_eq!(parse_cpin("+CPIN: SIM PIN\r"), Some(SimState::Pin));
        assert_eq!(parse_cpin("+CPIN: SIM PUK"), Some(SimState::Puk));
        assert_eq!(
            parse_cpin("+CPIN: PH-SIM PIN"),
            Some(SimState::Other("PH-SIM PIN".into()))
        );
        assert_eq!(parse_cpin("OK"), None);
    }

    #[test]
    fn registration_query_and_unsolicited() {
        let r = |l| parse_registration(l, "CREG");
        assert_eq!(r("+CREG: 0,1"), Some(Registration::Home));
        assert_eq!(
            r("+CREG: 2,5,\"1A2B\",\"01C3D4\",7"),
            Some(Registration::Roaming)
        );
        assert_eq!(r("+CREG: 2"), Some(Registration::Searching));
        assert_eq!(
            r("+CREG: 3,\"1A2B\",\"01C3D4\""),
            Some(Registration::Denied)
        );
        assert_eq!(
            parse_registration("+CEREG: 0,1", "CEREG"),
            Some(Registration::Home)
        );
        assert_eq!(parse_registration("+CEREG: 0,1", "CREG"), None);
        assert_eq!(r("+CREG: x,y"), None);
        assert!(Registration::Roaming.registered() && !Registration::Denied.registered());
    }

    #[test]
    fn operator_and_technology() {
        assert_eq!(
            parse_cops("+COPS: 0,0,\"Vodafone DE\",7"),
            Some((Some("Vodafone DE".into()), Some(AccessTech::Lte)))
        );
        assert_eq!(parse_cops("+COPS: 0"), Some((None, None)));
        assert_eq!(
            parse_cops("+COPS: 0,0,\"A,B\",2"),
            Some((Some("A,B".into()), Some(AccessTech::Umts)))
        );
        assert_eq!(parse_cops("+COPS: nope"), None);
    }

    #[test]
    fn signal_in_dbm_and_bars() {
        assert_eq!(
            parse_csq("+CSQ: 21,99"),
            Some(Some(Signal { dbm: -71, bars: 4 }))
        );
        assert_eq!(parse_csq("+CSQ: 99,99"), Some(None));
        assert_eq!(
            parse_csq("+CSQ: 5,0"),
            Some(Some(Signal { dbm: -103, bars: 1 }))
        );
        assert_eq!(
            parse_cesq("+CESQ: 99,99,255,255,20,45"),
            Some(Some(Signal { dbm: -96, bars: 2 }))
        );
        assert_eq!(
            parse_cesq("+CESQ: 40,0,255,255,255,255"),
            Some(Some(Signal { dbm: -71, bars: 4 }))
        );
        assert_eq!(parse_cesq("+CESQ: 99,99,255,255,255,255"), Some(None));
        assert_eq!(parse_cesq("+CESQ: 1,2"), None);
    }

    #[test]
    fn identities() {
        assert_eq!(
            parse_imei("356938035643809"),
            Some("356938035643809".into())
        );
        assert_eq!(
            parse_imei("+CGSN: \"356938035643809\""),
            Some("356938035643809".into())
        );
        assert_eq!(parse_imei("OK"), None);
        assert_eq!(
            parse_iccid("+CCID: 89441000303020001234"),
            Some("89441000303020001234".into())
        );
        assert_eq!(
            parse_iccid("+ICCID: 8944100030302000123F"),
            Some("8944100030302000123F".into())
        );
        assert_eq!(
            parse_iccid("8944100030302000123"),
            Some("8944100030302000123".into())
        );
        assert_eq!(parse_iccid("+CCID: 12F4"), None);
    }

    #[test]
    fn cme_errors() {
        let e = parse_cme_error("+CME ERROR: 16").unwrap();
        assert!(e.wrong_password());
        assert_eq!(e.text, "incorrect password");
        let e = parse_cme_error("+CME ERROR: SIM not inserted").unwrap();
        assert!(e.sim_absent());
        assert_eq!(parse_cme_error("ERROR"), None);
    }

    proptest! {
        /// Untrusted input: no parser panics on any line.
        #[test]
        fn no_parser_panics(line in "\\PC{0,80}", prefix in prop::sample::select(vec![
            "+CPIN: ", "+CREG: ", "+CEREG: ", "+COPS: ", "+CSQ: ", "+CESQ: ", "+CME ERROR: ",
            "+CCID: ", "+CGSN: ", "",
        ])) {
            let line = format!("{prefix}{line}");
            let _ = parse_cpin(&line);
            let _ = parse_registration(&line, "CREG");
            let _ = parse_registration(&line, "CEREG");
            let _ = parse_cops(&line);
            let _ = parse_csq(&line);
            let _ = parse_cesq(&line);
            let _ = parse_imei(&line);
            let _ = parse_iccid(&line);
            let _ = parse_cme_error(&line);
        }
    }
}
