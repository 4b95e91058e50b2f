//! The balancer's one nftables table, `inet eqlplus`, rendered as nft script text and applied
//! with `nft -f -`: every script is one nft transaction, so the kernel switches from the old
//! state to the new one atomically. Nothing outside this table is ever named.
//!
//! Layout:
//! - `prerouting` (mangle) and `output` (route, so a new mark re-routes local traffic):
//!   packets of a marked connection get the connection's mark back (`ct mark` → `meta mark`);
//!   new IPv4 connections not addressed to this host go through `mark_new`. In `output`, a
//!   packet that already carries one of our marks keeps it: it is a probe of upstream
//!   tracking, whose socket chose its line (`SO_MARK`) whatever the balance.
//! - `mark_new`: a DNS server of a line → that line; (sticky) a known client→destination pair →
//!   its line; otherwise `numgen inc mod N map @pick`, the policy's slot table. The choice is
//!   stored in the conntrack entry.
//! - `postrouting` (nat): masquerade on every slave, so replies come back on the same line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::Duration;

pub use crate::net::nft::NftError;

/// The table's family and name.
pub const TABLE: &str = "inet eqlplus";
/// Marks of balanced connections are `MARK_BASE | slot` (slot 1..=255).
pub const MARK_BASE: u32 = 0x0000_e100;
/// Mask that recognises our marks.
pub const MARK_MASK: u32 = 0xffff_ff00;

/// What `mark_new` and the sets/maps hold for the current lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    /// Slave interface names (masquerade; their replies are not re-marked).
    pub slaves: Vec<String>,
    /// The policy's slot table: one mark per slot.
    pub pick: Vec<u32>,
    /// DNS server → mark of its line.
    pub dns: Vec<(Ipv4Addr, u32)>,
    /// Keep client→destination pairs on one line for this long (the sticky policy).
    pub sticky: Option<Duration>,
}

/// The script that creates the table, its chains, sets and maps, with nothing selected yet.
/// It starts by deleting any table of that name (a crashed earlier run's), in one transaction.
pub fn render_create(sticky_hold: Duration) -> String {
    let hold = sticky_hold.as_secs().max(1);
    format!(
        "table {TABLE} {{}}
delete table {TABLE}
table {TABLE} {{
  set slaves {{ type ifname; }}
  map pick {{ typeof numgen inc mod 64 : meta mark; }}
  map dns {{ typeof ip daddr : meta mark; }}
  map sticky {{ typeof ip saddr . ip daddr : meta mark; flags dynamic,timeout; timeout {hold}s; }}
  chain mark_new {{ }}
  chain prerouting {{
    type filter hook prerouting priority mangle; policy accept;
    iifname @slaves return
    ct mark and {MARK_MASK:#010x} == {MARK_BASE:#010x} meta mark set ct mark return
    ct state new fib daddr type local return
    ct state new meta nfproto ipv4 jump mark_new
  }}
  chain output {{
    type route hook output priority mangle; policy accept;
    ct mark and {MARK_MASK:#010x} == {MARK_BASE:#010x} meta mark set ct mark return
    meta mark and {MARK_MASK:#010x} == {MARK_BASE:#010x} return
    ct state new fib daddr type local return
    ct state new meta nfproto ipv4 jump mark_new
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname @slaves masquerade
  }}
}}
"
    )
}

/// The script that replaces the selection: sets, maps and `mark_new`, in one transaction.
/// The sticky map's learned pairs are kept (see [`render_forget`] for a dead line's).
pub fn render_select(sel: &Selection) -> String {
    let mut s = String::new();
    for what in ["chain", "map", "map", "set"]
        .iter()
        .zip(["mark_new", "pick", "dns", "slaves"])
    {
        let _ = writeln!(s, "flush {} {TABLE} {}", what.0, what.1);
    }
    if !sel.pick.is_empty() {
        let elements: Vec<String> = sel
            .pick
            .iter()
            .enumerate()
            .map(|(i, m)| format!("{i} : {m:#010x}"))
            .collect();
        let _ = writeln!(s, "add element {TABLE} pick {{ {} }}", elements.join(", "));
    }
    if !sel.dns.is_empty() {
        let elements: Vec<String> = sel
            .dns
            .iter()
            .map(|(a, m)| format!("{a} : {m:#010x}"))
            .collect();
        let _ = writeln!(s, "add element {TABLE} dns {{ {} }}", elements.join(", "));
    }
    if !sel.slaves.is_empty() {
        let names: Vec<String> = sel.slaves.iter().map(|n| format!("\"{n}\"")).collect();
        let _ = writeln!(s, "add element {TABLE} slaves {{ {} }}", names.join(", "));
    }
    let rule = |s: &mut String, text: &str| {
        let _ = writeln!(s, "add rule {TABLE} mark_new {text}");
    };
    rule(
        &mut s,
        "meta mark set ip daddr map @dns ct mark set meta mark accept",
    );
    if sel.pick.is_empty() {
        // No line: leave new connections unmarked (the main table says unreachable).
        return s;
    }
    let pair = "ip saddr . ip daddr";
    if sel.sticky.is_some() {
        rule(
            &mut s,
            &format!(
                "meta mark set {pair} map @sticky update @sticky {{ {pair} : meta mark }} ct mark set meta mark accept"
            ),
        );
    }
    rule(
        &mut s,
        &format!("meta mark set numgen inc mod {} map @pick", sel.pick.len()),
    );
    if sel.sticky.is_some() {
        rule(&mut s, &format!("update @sticky {{ {pair} : meta mark }}"));
    }
    rule(&mut s, "ct mark set meta mark");
    s
}

/// Deletes the sticky pairs that point at `mark` (a line that went away).
pub fn render_forget(pairs: &[(Ipv4Addr, Ipv4Addr)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let keys: Vec<String> = pairs.iter().map(|(s, d)| format!("{s} . {d}")).collect();
    format!("delete element {TABLE} sticky {{ {} }}\n", keys.join(", "))
}

/// The script that removes the table (shutdown).
pub fn render_delete() -> String {
    format!("table {TABLE} {{}}\ndelete table {TABLE}\n")
}

/// What the table holds, as far as drift goes: each chain's rule count and each set's or map's
/// element count (`None`: the dynamic sticky map, whose elements come and go by themselves).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableShape {
    pub chains: BTreeMap<String, usize>,
    pub sets: BTreeMap<String, Option<usize>>,
}

impl TableShape {
    /// What differs from `expected`, in words (for the log).
    pub fn differences(&self, expected: &TableShape) -> Vec<String> {
        let mut out = Vec::new();
        for (chain, rules) in &expected.chains {
            match self.chains.get(chain) {
                None => out.push(format!("chain {chain} missing")),
                Some(n) if n != rules => {
                    out.push(format!("chain {chain} has {n} of {rules} rules"))
                }
                Some(_) => {}
            }
        }
        for (set, elements) in &expected.sets {
            match self.sets.get(set) {
                None => out.push(format!("set {set} missing")),
                Some(n) if elements.is_some() && n != elements => out.push(format!(
                    "set {set} has {} of {} elements",
                    n.unwrap_or(0),
                    elements.unwrap_or(0)
                )),
                Some(_) => {}
            }
        }
        out
    }
}

/// The shape [`render_create`] followed by [`render_select`]`(sel)` gives the table.
pub fn expected_shape(sel: &Selection) -> TableShape {
    let mut shape = TableShape::default();
    let create = render_create(Duration::from_secs(1));
    // Rules of the base chains: the lines between a chain's `type … hook` line and its `}`.
    let mut current: Option<String> = None;
    for line in create.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("chain ") {
            let name = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            shape.chains.insert(name.clone(), 0);
            current = (!rest.contains('}')).then_some(name);
        } else if line == "}" {
            current = None;
        } else if let Some(chain) = &current
            && !line.starts_with("type ")
            && !line.is_empty()
            && let Some(n) = shape.chains.get_mut(chain)
        {
            *n += 1;
        }
    }
    let select = render_select(sel);
    let mark_new = select
        .lines()
        .filter(|l| l.starts_with(&format!("add rule {TABLE} mark_new ")))
        .count();
    shape.chains.insert("mark_new".into(), mark_new);
    shape.sets.insert("slaves".into(), Some(sel.slaves.len()));
    shape.sets.insert("pick".into(), Some(sel.pick.len()));
    shape.sets.insert("dns".into(), Some(sel.dns.len()));
    shape.sets.insert("sticky".into(), None);
    shape
}

/// Reads a table's shape from `nft -j list table` output.
pub fn parse_shape(json: &[u8]) -> Result<TableShape, NftError> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| NftError::Parse(e.to_string()))?;
    let mut shape = TableShape::default();
    let items = v["nftables"].as_array().cloned().unwrap_or_default();
    for item in &items {
        if let Some(name) = item["chain"]["name"].as_str() {
            shape.chains.entry(name.to_string()).or_insert(0);
        }
        for kind in ["set", "map"] {
            if let Some(name) = item[kind]["name"].as_str() {
                let n = item[kind]["elem"].as_array().map_or(0, Vec::len);
                let dynamic = item[kind]["flags"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == "dynamic"))
                    || item[kind]["flags"] == "dynamic";
                shape.sets.insert(name.to_string(), (!dynamic).then_some(n));
            }
        }
    }
    for item in &items {
        if let Some(chain) = item["rule"]["chain"].as_str() {
            *shape.chains.entry(chain.to_string()).or_insert(0) += 1;
        }
    }
    Ok(shape)
}

/// Parses `nft -j list map … sticky`: elements are `[{"concat": [saddr, daddr]}, mark]`,
/// or `[{"elem": {"val": {"concat": …}, …}}, mark]` when they carry timeouts.
pub fn parse_sticky_json(json: &[u8]) -> Result<Vec<(Ipv4Addr, Ipv4Addr, u32)>, NftError> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| NftError::Parse(e.to_string()))?;
    let mut pairs = Vec::new();
    let items = v["nftables"].as_array().cloned().unwrap_or_default();
    for item in items {
        let Some(elems) = item["map"]["elem"].as_array() else {
            continue;
        };
        for e in elems {
            let (Some(key), Some(mark)) = (e.get(0), e.get(1).and_then(|m| m.as_u64())) else {
                continue;
            };
            let concat = key
                .get("concat")
                .or_else(|| key.pointer("/elem/val/concat"));
            let addrs: Vec<Ipv4Addr> = concat
                .and_then(|c| c.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().and_then(|s| s.parse().ok()))
                        .collect()
                })
                .unwrap_or_default();
            if let [s, d] = addrs[..] {
                pairs.push((s, d, mark as u32));
            }
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_script_owns_one_table() {
        let s = render_create(Duration::from_secs(600));
        assert!(s.starts_with("table inet eqlplus {}\ndelete table inet eqlplus\n"));
        assert!(s.contains("timeout 600s"));
        assert!(s.contains("ct mark and 0xffffff00 == 0x0000e100 meta mark set ct mark return"));
        assert!(s.contains("oifname @slaves masquerade"));
        // Only our table is ever named.
        for line in s.lines() {
            if line.starts_with("table") || line.starts_with("delete") {
                assert!(line.contains("inet eqlplus"), "{line}");
            }
        }
    }

    #[test]
    fn select_script_golden() {
        let sel = Selection {
            slaves: vec!["eq-ttyS0".into(), "eq-ttyS1".into()],
            pick: vec![0xe101, 0xe101, 0xe102, 0xe101],
            dns: vec![("10.64.0.53".parse().unwrap(), 0xe101)],
            sticky: None,
        };
        assert_eq!(
            render_select(&sel),
            "flush chain inet eqlplus mark_new
flush map inet eqlplus pick
flush map inet eqlplus dns
flush set inet eqlplus slaves
add element inet eqlplus pick { 0 : 0x0000e101, 1 : 0x0000e101, 2 : 0x0000e102, 3 : 0x0000e101 }
add element inet eqlplus dns { 10.64.0.53 : 0x0000e101 }
add element inet eqlplus slaves { \"eq-ttyS0\", \"eq-ttyS1\" }
add rule inet eqlplus mark_new meta mark set ip daddr map @dns ct mark set meta mark accept
add rule inet eqlplus mark_new meta mark set numgen inc mod 4 map @pick
add rule inet eqlplus mark_new ct mark set meta mark
"
        );
    }

    #[test]
    fn sticky_and_empty_selections() {
        let sel = Selection {
            slaves: vec!["eq-a".into()],
            pick: vec![0xe101],
            dns: vec![],
            sticky: Some(Duration::from_secs(60)),
        };
        let s = render_select(&sel);
        assert!(s.contains("map @sticky update @sticky"));
        assert!(s.contains(
            "add rule inet eqlplus mark_new update @sticky { ip saddr . ip daddr : meta mark }"
        ));
        let s = render_select(&Selection::default());
        assert!(!s.contains("numgen"), "no line: nothing is picked");
        assert_eq!(render_forget(&[]), "");
        assert_eq!(
            render_forget(&[(
                "10.1.0.2".parse().unwrap(),
                "198.51.100.10".parse().unwrap()
            )]),
            "delete element inet eqlplus sticky { 10.1.0.2 . 198.51.100.10 }\n"
        );
    }

    #[test]
    fn sticky_json_forms() {
        let json = br#"{"nftables": [{"metainfo": {}}, {"map": {"family": "inet", "name": "sticky", "table": "eqlplus",
          "elem": [[{"concat": ["10.1.0.2", "198.51.100.10"]}, 57601],
                   [{"elem": {"val": {"concat": ["10.1.0.3", "198.51.100.11"]}, "timeout": 600, "expires": 590}}, 57602],
                   [{"concat": ["bogus", "198.51.100.11"]}, 1]]}}]}"#;
        let pairs = parse_sticky_json(json).unwrap();
        assert_eq!(
            pairs,
            vec![
                (
                    "10.1.0.2".parse().unwrap(),
                    "198.51.100.10".parse().unwrap(),
                    57601
                ),
                (
                    "10.1.0.3".parse().unwrap(),
                    "198.51.100.11".parse().unwrap(),
                    57602
                ),
            ]
        );
        assert!(parse_sticky_json(b"not json").is_err());
        assert!(parse_sticky_json(b"{}").unwrap().is_empty());
    }
}
