//! Parsing chat scripts in the syntax of pppd's `chat(8)`.
//!
//! A script is a sequence of strings that alternate between *expect* and *send*. In the
//! expect position a keyword (`ABORT`, `TIMEOUT`, `SAY`, …) may stand instead; its argument
//! then takes the following send position, exactly as chat.c does it. An expect string may
//! carry sub-expects: `ogin:-BREAK-ogin:` means "expect `ogin:`; if that times out send a
//! BREAK and expect `ogin:` again".
//!
//! Escapes are resolved here, once; `\T` and `\U` stay symbolic ([`SendPiece::Phone`],
//! [`SendPiece::Phone2`]) and are substituted when the engine sends them, so a script is
//! parsed once and run with any phone number or secret.

use std::fmt;
use std::time::Duration;

/// chat(8)'s default per-expect timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(45);
/// chat(8)'s limit on ABORT and REPORT strings.
pub const MAX_ABORTS: usize = 50;
/// Longest expect string chat(8) accepts (its match buffer is this large).
pub const MAX_EXPECT_LEN: usize = 1024;
/// Longest ABORT/REPORT string (chat(8)'s fail buffer holds 49 characters and a NUL).
pub const MAX_ABORT_LEN: usize = 49;

/// Where something is in a script: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A parse error naming the place and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}:{}:{}: {message}", pos.line, pos.column)]
pub struct ParseError {
    pub source_name: String,
    pub pos: Pos,
    pub message: String,
}

/// One piece of a string to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendPiece {
    /// Literal bytes.
    Bytes(Vec<u8>),
    /// `\T`: the phone number.
    Phone,
    /// `\U`: the second value (an APN, a password); never logged.
    Phone2,
    /// `\K`: a BREAK on the line.
    Break,
    /// `\d`: one second's delay.
    Delay,
    /// `\p`: a pause of 1/100 s.
    Pause,
}

/// A string to send, resolved into pieces.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SendSpec {
    pub pieces: Vec<SendPiece>,
    /// `\q` was given: the string is not shown in logs.
    pub quiet: bool,
}

impl SendSpec {
    /// Whether sending this reveals the secret second value.
    pub fn is_secret(&self) -> bool {
        self.quiet || self.pieces.contains(&SendPiece::Phone2)
    }
}

/// An expect string with its sub-expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectSpec {
    /// What to wait for first; empty means "nothing" (`''`).
    pub first: Vec<u8>,
    /// On timeout: send `.0`, then expect `.1` (or, if there is no `.1`, carry on as matched).
    pub alternates: Vec<(SendSpec, Option<Vec<u8>>)>,
}

/// What a step of a script does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    Expect(ExpectSpec),
    Send(SendSpec),
    Abort(Vec<u8>),
    ClrAbort(Vec<u8>),
    Report(Vec<u8>),
    ClrReport(Vec<u8>),
    Timeout(Duration),
    Say(String),
    Echo(bool),
    Hangup(bool),
}

/// One step and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub kind: StepKind,
    pub pos: Pos,
}

/// A parsed chat script.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Script {
    pub steps: Vec<Step>,
}

/// A raw token of a script and where it started.
#[derive(Debug, Clone)]
struct Token {
    text: String,
    pos: Pos,
}

impl Script {
    /// Parses script text, as `chat -f FILE` reads it. `source_name` (a path) prefixes errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Script, ParseError> {
        let tokens = tokenize(text, source_name)?;
        build(tokens, source_name)
    }

    /// Builds a script from separate strings, as chat(8) takes them on its command line
    /// (the shell has already removed the quotes). Errors name the argument number as column.
    pub fn from_args<S: AsRef<str>>(args: &[S]) -> Result<Script, ParseError> {
        let tokens = args
            .iter()
            .enumerate()
            .map(|(i, a)| Token {
                text: a.as_ref().to_string(),
                pos: Pos {
                    line: 1,
                    column: i + 1,
                },
            })
            .collect();
        build(tokens, "command line")
    }

    /// Whether any send uses `\T`.
    pub fn uses_phone(&self) -> bool {
        self.uses(&SendPiece::Phone)
    }

    /// Whether any send uses `\U`.
    pub fn uses_phone2(&self) -> bool {
        self.uses(&SendPiece::Phone2)
    }

    /// Where the sends that use `\U` are.
    pub fn phone2_positions(&self) -> Vec<Pos> {
        self.steps
            .iter()
            .filter(|s| match &s.kind {
                StepKind::Send(spec) => spec.pieces.contains(&SendPiece::Phone2),
                StepKind::Expect(e) => e
                    .alternates
                    .iter()
                    .any(|(s, _)| s.pieces.contains(&SendPiece::Phone2)),
                _ => false,
            })
            .map(|s| s.pos)
            .collect()
    }

    fn uses(&self, piece: &SendPiece) -> bool {
        self.steps.iter().any(|s| match &s.kind {
            StepKind::Send(spec) => spec.pieces.contains(piece),
            StepKind::Expect(e) => e.alternates.iter().any(|(s, _)| s.pieces.contains(piece)),
            _ => false,
        })
    }
}

/// Splits text into tokens the way chat.c's do_file does: blanks separate, `'…'` and `"…"`
/// quote (a backslash inside quotes protects the next character), a line that starts with
/// `#` is a comment. Tokens never span lines.
fn tokenize(text: &str, source_name: &str) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    for (line_index, line) in text.lines().enumerate() {
        let line_no = line_index + 1;
        if line.starts_with('#') {
            continue;
        }
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == ' ' || c == '\t' || c == '\r' {
                i += 1;
                continue;
            }
            if c == '"' || c == '\'' {
                let start = i + 1;
                let mut j = start;
                loop {
                    match chars.get(j) {
                        None => {
                            return Err(ParseError {
                                source_name: source_name.to_string(),
                                pos: Pos {
                                    line: line_no,
                                    column: i + 1,
                                },
                                message: format!(
                                    "unterminated quote: expected a closing {c} before the end of the line"
                                ),
                            });
                        }
                        Some(&q) if q == c => break,
                        Some('\\') => j += 2,
                        Some(_) => j += 1,
                    }
                }
                let end = j.min(chars.len());
                tokens.push(Token {
                    text: chars[start..end].iter().collect(),
                    pos: Pos {
                        line: line_no,
                        column: start + 1,
                    },
                });
                i = end + 1;
            } else {
                let start = i;
                while i < chars.len() && !matches!(chars[i], ' ' | '\t' | '\r') {
                    i += 1;
                }
                tokens.push(Token {
                    text: chars[start..i].iter().collect(),
                    pos: Pos {
                        line: line_no,
                        column: start + 1,
                    },
                });
            }
        }
    }
    Ok(tokens)
}

const KEYWORDS: [&str; 8] = [
    "ABORT",
    "CLR_ABORT",
    "REPORT",
    "CLR_REPORT",
    "TIMEOUT",
    "SAY",
    "ECHO",
    "HANGUP",
];

fn build(tokens: Vec<Token>, source_name: &str) -> Result<Script, ParseError> {
    let err = |pos: Pos, message: String| ParseError {
        source_name: source_name.to_string(),
        pos,
        message,
    };
    let mut steps = Vec::new();
    let mut aborts = 0usize;
    let mut reports = 0usize;
    let mut it = tokens.into_iter();
    // The expect/send alternation is a property of the token stream: a keyword sits in an
    // expect slot and its argument in the following send slot.
    while let Some(expect) = it.next() {
        let pos = expect.pos;
        if let Some(keyword) = KEYWORDS.iter().find(|k| **k == expect.text) {
            let Some(arg) = it.next() else {
                return Err(err(
                    pos,
                    format!("{keyword} needs an argument: expected a string after it"),
                ));
            };
            let kind = keyword_step(keyword, &arg).map_err(|m| err(arg.pos, m))?;
            match kind {
                StepKind::Abort(_) => aborts += 1,
                StepKind::Report(_) => reports += 1,
                _ => {}
            }
            if aborts > MAX_ABORTS || reports > MAX_ABORTS {
                return Err(err(
                    arg.pos,
                    format!("too many {keyword} strings (at most {MAX_ABORTS})"),
                ));
            }
            steps.push(Step { kind, pos: arg.pos });
            continue;
        }
        let spec = parse_expect(&expect.text).map_err(|m| err(pos, m))?;
        steps.push(Step {
            kind: StepKind::Expect(spec),
            pos,
        });
        if let Some(send) = it.next() {
            steps.push(Step {
                kind: StepKind::Send(parse_send_token(&send.text)),
                pos: send.pos,
            });
        }
    }
    Ok(Script { steps })
}

fn keyword_step(keyword: &str, arg: &Token) -> Result<StepKind, String> {
    let bounded = |what: &str| -> Result<Vec<u8>, String> {
        let s = clean_expect(&arg.text);
        if s.len() > MAX_ABORT_LEN {
            Err(format!(
                "{what} string is too long ({} characters, at most {MAX_ABORT_LEN})",
                s.len()
            ))
        } else if s.is_empty() {
            Err(format!(
                "{what} string is empty: expected the text to watch for"
            ))
        } else {
            Ok(s)
        }
    };
    let on_off = |what: &str| match arg.text.as_str() {
        "ON" | "on" => Ok(true),
        "OFF" | "off" => Ok(false),
        other => Err(format!("{what} expects ON or OFF, found '{other}'")),
    };
    Ok(match keyword {
        "ABORT" => StepKind::Abort(bounded("ABORT")?),
        "CLR_ABORT" => StepKind::ClrAbort(bounded("CLR_ABORT")?),
        "REPORT" => StepKind::Report(bounded("REPORT")?),
        "CLR_REPORT" => StepKind::ClrReport(bounded("CLR_REPORT")?),
        "TIMEOUT" => {
            let cleaned = String::from_utf8_lossy(&clean_expect(&arg.text)).into_owned();
            let secs: i64 = cleaned.trim().parse().map_err(|_| {
                format!("TIMEOUT expects a number of seconds, found '{}'", arg.text)
            })?;
            // chat(8): zero or negative restores the default.
            if secs <= 0 {
                StepKind::Timeout(DEFAULT_TIMEOUT)
            } else {
                StepKind::Timeout(Duration::from_secs(secs.min(86_400) as u64))
            }
        }
        "SAY" => StepKind::Say(say_text(&arg.text)),
        "ECHO" => StepKind::Echo(on_off("ECHO")?),
        "HANGUP" => StepKind::Hangup(on_off("HANGUP")?),
        // KEYWORDS and this match list the same words; should they ever differ, the script
        // is refused rather than the program stopped.
        other => return Err(format!("'{other}' is not a keyword this chat knows")),
    })
}

/// Splits `a-b-c` into expect `a`, then (send `b`, expect `c`) pairs; `\-` does not split.
fn parse_expect(text: &str) -> Result<ExpectSpec, String> {
    let parts = split_unescaped(text, '-');
    let mut parts = parts.into_iter();
    let first = clean_expect(parts.next().unwrap_or(""));
    check_expect_len(&first)?;
    let mut alternates = Vec::new();
    while let Some(send) = parts.next() {
        let expect = match parts.next() {
            Some(e) => {
                let e = clean_expect(e);
                check_expect_len(&e)?;
                Some(e)
            }
            None => None,
        };
        alternates.push((parse_send_token(send), expect));
    }
    Ok(ExpectSpec { first, alternates })
}

fn check_expect_len(s: &[u8]) -> Result<(), String> {
    if s.len() > MAX_EXPECT_LEN {
        Err(format!(
            "expect string is too long ({} characters, at most {MAX_EXPECT_LEN})",
            s.len()
        ))
    } else {
        Ok(())
    }
}

/// chat.c's expect_strtok: split on `sep`, where a backslash protects the next character.
/// A trailing separator yields no empty final part, as in chat.c.
fn split_unescaped(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    if start < text.len() || parts.is_empty() {
        parts.push(&text[start..]);
    }
    parts
}

/// A send string, with chat(8)'s two special words.
fn parse_send_token(text: &str) -> SendSpec {
    match text {
        "EOT" => SendSpec {
            pieces: vec![SendPiece::Bytes(vec![0x04])],
            quiet: false,
        },
        "BREAK" => SendSpec {
            pieces: vec![SendPiece::Break],
            quiet: false,
        },
        _ => clean_send(text),
    }
}

/// Escapes of an expect (or ABORT/REPORT) string, as chat.c's `clean(s, 0)`.
pub fn clean_expect(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        i += 1;
        if c == b'^' {
            match bytes.get(i) {
                None => {
                    out.push(b'^');
                }
                Some(&n) => {
                    i += 1;
                    if n & 0x1f != 0 {
                        out.push(n & 0x1f);
                    }
                }
            }
            continue;
        }
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = bytes.get(i) else { break };
        i += 1;
        match e {
            b'b' => out.push(0x08),
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b's' => out.push(b' '),
            b't' => out.push(b'\t'),
            b'T' | b'U' => out.extend_from_slice(&[b'\\', e]),
            b'q' => {}
            b'0'..=b'7' => {
                let (value, used) = octal(&bytes[i - 1..]);
                i += used - 1;
                if value != 0 {
                    out.push(value);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Escapes of a send string, as chat.c's `clean(s, 1)` followed by put_string.
fn clean_send(text: &str) -> SendSpec {
    let mut spec = SendSpec::default();
    let mut bytes_acc: Vec<u8> = Vec::new();
    let mut add_return = true;
    let input = text.as_bytes();
    let mut i = 0;
    let flush = |acc: &mut Vec<u8>, spec: &mut SendSpec| {
        if !acc.is_empty() {
            spec.pieces.push(SendPiece::Bytes(std::mem::take(acc)));
        }
    };
    while i < input.len() {
        let c = input[i];
        i += 1;
        if c == b'^' {
            match input.get(i) {
                None => bytes_acc.push(b'^'),
                Some(&n) => {
                    i += 1;
                    if n & 0x1f != 0 {
                        bytes_acc.push(n & 0x1f);
                    }
                }
            }
            continue;
        }
        if c != b'\\' {
            bytes_acc.push(c);
            continue;
        }
        let Some(&e) = input.get(i) else {
            bytes_acc.push(b'\\');
            break;
        };
        i += 1;
        let piece = |p: SendPiece, acc: &mut Vec<u8>, spec: &mut SendSpec| {
            flush(acc, spec);
            spec.pieces.push(p);
        };
        match e {
            b'b' => bytes_acc.push(0x08),
            b'c' if i == input.len() => add_return = false,
            b'd' => piece(SendPiece::Delay, &mut bytes_acc, &mut spec),
            b'p' => piece(SendPiece::Pause, &mut bytes_acc, &mut spec),
            b'K' => piece(SendPiece::Break, &mut bytes_acc, &mut spec),
            b'T' => piece(SendPiece::Phone, &mut bytes_acc, &mut spec),
            b'U' => piece(SendPiece::Phone2, &mut bytes_acc, &mut spec),
            b'q' => spec.quiet = true,
            b'r' => bytes_acc.push(b'\r'),
            b'n' => bytes_acc.push(b'\n'),
            b's' => bytes_acc.push(b' '),
            b't' => bytes_acc.push(b'\t'),
            b'N' => bytes_acc.push(0),
            b'0'..=b'7' => {
                let (value, used) = octal(&input[i - 1..]);
                i += used - 1;
                bytes_acc.push(value);
            }
            // `\\`, `\c` not at the end, and unknown escapes send the character itself.
            other => bytes_acc.push(other),
        }
    }
    if add_return {
        bytes_acc.push(b'\r');
    }
    flush(&mut bytes_acc, &mut spec);
    spec
}

/// Up to three octal digits at the start of `s` (which starts with one): (value, digits used).
fn octal(s: &[u8]) -> (u8, usize) {
    let mut value: u32 = 0;
    let mut used = 0;
    for &d in s.iter().take(3) {
        if !(b'0'..=b'7').contains(&d) {
            break;
        }
        value = (value << 3) | u32::from(d - b'0');
        used += 1;
    }
    ((value & 0xff) as u8, used)
}

/// SAY's argument: send-string escapes, shown to the user (without the trailing CR chat adds).
fn say_text(text: &str) -> String {
    let spec = clean_send(&format!("{text}\\c"));
    let mut out = Vec::new();
    for p in spec.pieces {
        match p {
            SendPiece::Bytes(b) => out.extend(b),
            SendPiece::Phone => out.extend_from_slice(b"\\T"),
            SendPiece::Phone2 => out.extend_from_slice(b"\\U"),
            _ => {}
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Bytes shown the way chat -v shows them: control characters as `^M`, high bit as `M-`.
pub fn visible(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if b & 0x80 != 0 {
            s.push_str("M-");
        }
        let c = b & 0x7f;
        match c {
            0..=31 => {
                s.push('^');
                s.push((c + b'@') as char);
            }
            127 => s.push_str("^?"),
            _ => s.push(c as char),
        }
    }
    s
}

impl fmt::Display for SendPiece {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendPiece::Bytes(b) => f.write_str(&visible(b)),
            SendPiece::Phone => f.write_str("\\T"),
            SendPiece::Phone2 => f.write_str("\\U"),
            SendPiece::Break => f.write_str("\\K"),
            SendPiece::Delay => f.write_str("\\d"),
            SendPiece::Pause => f.write_str("\\p"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_missing_from_the_keyword_match_is_an_error_not_a_panic() {
        let arg = Token {
            text: "x".into(),
            pos: Pos { line: 1, column: 1 },
        };
        let e = keyword_step("NOT-A-KEYWORD", &arg).unwrap_err();
        assert!(e.contains("'NOT-A-KEYWORD' is not a keyword"), "{e}");
    }

    fn parse(s: &str) -> Script {
        Script::parse(s, "test.chat").unwrap()
    }

    fn bytes(s: &[u8]) -> SendSpec {
        SendSpec {
            pieces: vec![SendPiece::Bytes(s.to_vec())],
            quiet: false,
        }
    }

    fn expect(s: &[u8]) -> StepKind {
        StepKind::Expect(ExpectSpec {
            first: s.to_vec(),
            alternates: vec![],
        })
    }

    #[test]
    fn pairs_and_empty_expect() {
        let s = parse("'' ATZ\nOK ATDT\\T\nCONNECT ''\n");
        let kinds: Vec<_> = s.steps.iter().map(|s| s.kind.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                expect(b""),
                StepKind::Send(bytes(b"ATZ\r")),
                expect(b"OK"),
                StepKind::Send(SendSpec {
                    pieces: vec![
                        SendPiece::Bytes(b"ATDT".to_vec()),
                        SendPiece::Phone,
                        SendPiece::Bytes(b"\r".to_vec())
                    ],
                    quiet: false
                }),
                expect(b"CONNECT"),
                StepKind::Send(bytes(b"\r")),
            ]
        );
        assert!(s.uses_phone());
        assert!(!s.uses_phone2());
    }

    #[test]
    fn keywords_take_the_send_slot() {
        let s = parse(
            "ABORT BUSY ABORT 'NO CARRIER' REPORT CONNECT TIMEOUT 10 ECHO ON HANGUP OFF\nSAY 'dialing\\n' CLR_ABORT BUSY CLR_REPORT CONNECT '' AT",
        );
        let kinds: Vec<_> = s.steps.iter().map(|s| s.kind.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                StepKind::Abort(b"BUSY".to_vec()),
                StepKind::Abort(b"NO CARRIER".to_vec()),
                StepKind::Report(b"CONNECT".to_vec()),
                StepKind::Timeout(Duration::from_secs(10)),
                StepKind::Echo(true),
                StepKind::Hangup(false),
                StepKind::Say("dialing\n".into()),
                StepKind::ClrAbort(b"BUSY".to_vec()),
                StepKind::ClrReport(b"CONNECT".to_vec()),
                expect(b""),
                StepKind::Send(bytes(b"AT\r")),
            ]
        );
    }

    #[test]
    fn timeout_zero_restores_default() {
        let s = parse("TIMEOUT 0");
        assert_eq!(s.steps[0].kind, StepKind::Timeout(DEFAULT_TIMEOUT));
    }

    #[test]
    fn sub_expects() {
        let s = parse("ogin:-BREAK-ogin: ppp ogin:--ogin: x a-b");
        let StepKind::Expect(e) = &s.steps[0].kind else {
            panic!()
        };
        assert_eq!(e.first, b"ogin:");
        assert_eq!(
            e.alternates,
            vec![(
                SendSpec {
                    pieces: vec![SendPiece::Break],
                    quiet: false
                },
                Some(b"ogin:".to_vec())
            )]
        );
        let StepKind::Expect(e) = &s.steps[2].kind else {
            panic!()
        };
        assert_eq!(e.alternates, vec![(bytes(b"\r"), Some(b"ogin:".to_vec()))]);
        let StepKind::Expect(e) = &s.steps[4].kind else {
            panic!()
        };
        assert_eq!(e.first, b"a");
        assert_eq!(e.alternates, vec![(bytes(b"b\r"), None)]);
    }

    #[test]
    fn escaped_dash_does_not_split() {
        let s = parse("a\\-b x");
        assert_eq!(s.steps[0].kind, expect(b"a-b"));
    }

    #[test]
    fn send_escapes() {
        let spec = clean_send("\\b\\n\\N\\r\\s\\t\\\\x\\101^C^@q\\c");
        assert_eq!(spec, bytes(b"\x08\n\0\r \t\\xA\x03q"));
        let spec = clean_send("a\\db\\pc\\Kd");
        assert_eq!(
            spec.pieces,
            vec![
                SendPiece::Bytes(b"a".to_vec()),
                SendPiece::Delay,
                SendPiece::Bytes(b"b".to_vec()),
                SendPiece::Pause,
                SendPiece::Bytes(b"c".to_vec()),
                SendPiece::Break,
                SendPiece::Bytes(b"d\r".to_vec()),
            ]
        );
        // \c only suppresses the CR at the very end; elsewhere it is a plain 'c'.
        assert_eq!(clean_send("a\\cb"), bytes(b"acb\r"));
        // A lone trailing backslash is sent as itself.
        assert_eq!(clean_send("a\\"), bytes(b"a\\\r"));
        let q = clean_send("\\qsecret");
        assert!(q.quiet && q.is_secret());
        assert!(clean_send("pw\\U").is_secret());
        assert_eq!(parse_send_token("EOT"), bytes(b"\x04"));
        assert_eq!(parse_send_token("BREAK").pieces, vec![SendPiece::Break]);
    }

    #[test]
    fn expect_escapes() {
        assert_eq!(clean_expect("a\\rb\\nc\\sd\\te\\\\f"), b"a\rb\nc d\te\\f");
        assert_eq!(clean_expect("\\d\\K\\p\\N\\c"), b"dKpNc");
        assert_eq!(clean_expect("\\T"), b"\\T");
        assert_eq!(clean_expect("^M^J"), b"\r\n");
        assert_eq!(clean_expect("x^"), b"x^");
        assert_eq!(clean_expect("\\000z\\x"), b"zx");
        assert_eq!(clean_expect("trail\\"), b"trail");
    }

    #[test]
    fn comments_quotes_and_positions() {
        let s = parse("# comment ABORT\n  \"a b\"   'c\\'d'\n");
        assert_eq!(s.steps.len(), 2);
        assert_eq!(s.steps[0].kind, expect(b"a b"));
        assert_eq!(s.steps[0].pos, Pos { line: 2, column: 4 });
        assert_eq!(s.steps[1].kind, StepKind::Send(bytes(b"c'd\r")));
        assert_eq!(
            s.steps[1].pos,
            Pos {
                line: 2,
                column: 12
            }
        );
    }

    #[test]
    fn unquoted_token_keeps_inner_quotes() {
        let s = parse("OK AT+CGDCONT=1,\"IP\",\"\\U\"");
        let StepKind::Send(spec) = &s.steps[1].kind else {
            panic!()
        };
        assert_eq!(
            spec.pieces,
            vec![
                SendPiece::Bytes(b"AT+CGDCONT=1,\"IP\",\"".to_vec()),
                SendPiece::Phone2,
                SendPiece::Bytes(b"\"\r".to_vec())
            ]
        );
    }

    #[test]
    fn errors_name_file_line_column() {
        let e = Script::parse("'' ATZ\nOK 'ATDT\n", "dial.chat").unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, column: 4 });
        assert_eq!(
            e.to_string(),
            "dial.chat:2:4: unterminated quote: expected a closing ' before the end of the line"
        );
        let e = Script::parse("'' AT\nABORT", "x").unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, column: 1 });
        assert!(e.message.contains("ABORT needs an argument"));
        let e = Script::parse("TIMEOUT soon", "x").unwrap_err();
        assert_eq!(e.pos, Pos { line: 1, column: 9 });
        assert!(e.message.contains("TIMEOUT expects a number"));
        let e = Script::parse("ECHO maybe", "x").unwrap_err();
        assert!(e.message.contains("ON or OFF"));
        let long = "x".repeat(60);
        let e = Script::parse(&format!("ABORT {long}"), "x").unwrap_err();
        assert!(e.message.contains("too long"));
        let many = "ABORT X ".repeat(51);
        let e = Script::parse(&many, "x").unwrap_err();
        assert!(e.message.contains("too many ABORT"));
    }

    #[test]
    fn from_args_like_the_command_line() {
        let s = Script::from_args(&["", "ATZ", "OK", "ATDT123", "CONNECT"]).unwrap();
        assert_eq!(s.steps.len(), 5);
        assert_eq!(s.steps[4].kind, expect(b"CONNECT"));
        let e = Script::from_args(&["ECHO"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "command line:1:1: ECHO needs an argument: expected a string after it"
        );
    }

    #[test]
    fn visible_like_chat() {
        assert_eq!(visible(b"OK\r\n\x7f\xc1"), "OK^M^J^?M-A");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in ".{0,200}") {
            let _ = Script::parse(&text, "fuzz");
        }

        #[test]
        fn never_panics_on_escape_soup(text in "[\\\\^'\"a-z0-7 \\-\\n#]{0,120}") {
            let _ = Script::parse(&text, "fuzz");
        }
    }
}
