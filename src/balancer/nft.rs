//! The balancer's one nftables table, `inet eqlplus`: created (and rebuilt) as nft script text
//! applied with `nft -f -`, one nft transaction; its sets and maps then filled over netlink
//! ([`contents`], applied by `net::nftset` in one nf_tables transaction), so the kernel
//! switches from the old selection to the new one atomically and no process is started per
//! change. The rules never change while the daemon runs. Nothing outside this table is ever
//! named.
//!
//! Layout:
//! - `prerouting` (mangle) and `output` (route, so a new mark re-routes local traffic):
//!   packets of a marked connection get the connection's mark back (`ct mark` → `meta mark`);
//!   new IPv4 connections not addressed to this host go through `mark_new`. In `output`, a
//!   packet that already carries one of our marks keeps it: it is a probe of upstream
//!   tracking, whose socket chose its line (`SO_MARK`) whatever the balance.
//! - `mark_new`: a DNS server of a line → that line; (sticky) a known client→destination pair →
//!   its line; otherwise `numgen inc mod 256 map @pick`, the policy's slot table spread over
//!   256 slots ([`spread`]). The choice is stored in the conntrack entry.
//! - `postrouting` (nat): masquerade on every slave, so replies come back on the same line.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

pub use crate::net::nft::NftError;
use crate::net::nftset::SetContents;

/// The table's family and name.
pub const TABLE: &str = "inet eqlplus";
/// The table's name alone.
pub const TABLE_NAME: &str = "eqlplus";
/// Slots of the pick map: `numgen inc mod PICK_SLOTS`. A power of two, so the policies' tables
/// of 1, 2, 4 … 64 slots fit exactly; and more than the most lines a configuration may have
/// (255), so a round-robin over every one of them still gives each a slot.
pub const PICK_SLOTS: usize = 256;
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
}

/// The script that creates the table, its chains, rules, sets and maps, with nothing selected
/// yet; `sticky` adds the sticky policy's rules. It starts by deleting any table of that name
/// (a crashed earlier run's), in one transaction.
pub fn render_create(sticky_hold: Duration, sticky: bool) -> String {
    let hold = sticky_hold.as_secs().max(1);
    let ours = format!("meta mark and {MARK_MASK:#010x} == {MARK_BASE:#010x}");
    let pair = "ip saddr . ip daddr";
    let (sticky_lookup, sticky_learn) = if sticky {
        (
            format!(
                "\n    meta mark set {pair} map @sticky update @sticky {{ {pair} : meta mark }} ct mark set meta mark accept"
            ),
            format!("\n    {ours} update @sticky {{ {pair} : meta mark }}"),
        )
    } else {
        (String::new(), String::new())
    };
    format!(
        "table {TABLE} {{}}
delete table {TABLE}
table {TABLE} {{
  set slaves {{ type ifname; }}
  map pick {{ typeof numgen inc mod {PICK_SLOTS} : meta mark; }}
  map dns {{ typeof ip daddr : meta mark; }}
  map sticky {{ typeof ip saddr . ip daddr : meta mark; flags dynamic,timeout; timeout {hold}s; }}
  chain mark_new {{
    meta mark set ip daddr map @dns ct mark set meta mark accept{sticky_lookup}
    meta mark set numgen inc mod {PICK_SLOTS} map @pick{sticky_learn}
    ct mark set meta mark
  }}
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

/// The `add element` statements that fill the sets and maps with `sel`, to append to
/// [`render_create`]'s script so a rebuilt table has its selection in the same transaction
/// (no instant where new connections find an empty pick map). `None` where a slave name is
/// not one nft's syntax can carry as it is (the caller then fills the sets by netlink).
pub fn render_elements(sel: &Selection) -> Option<String> {
    if !sel.slaves.iter().all(|s| crate::net::valid_ifname(s)) {
        return None;
    }
    let mut script = String::new();
    let pick = spread(&sel.pick, PICK_SLOTS);
    if !pick.is_empty() {
        let elements: Vec<String> = pick
            .iter()
            .enumerate()
            .map(|(slot, mark)| format!("{slot} : {mark:#010x}"))
            .collect();
        script += &format!("add element {TABLE} pick {{ {} }}\n", elements.join(", "));
    }
    if !sel.dns.is_empty() {
        let elements: Vec<String> = sel
            .dns
            .iter()
            .map(|(addr, mark)| format!("{addr} : {mark:#010x}"))
            .collect();
        script += &format!("add element {TABLE} dns {{ {} }}\n", elements.join(", "));
    }
    if !sel.slaves.is_empty() {
        let elements: Vec<String> = sel.slaves.iter().map(|s| format!("\"{s}\"")).collect();
        script += &format!("add element {TABLE} slaves {{ {} }}\n", elements.join(", "));
    }
    Some(script)
}

/// The sets' and maps' contents for a selection, in the kernel's layout: the pick map's slot
/// (host order, as numgen writes it) → mark (host order); a DNS server (network order) →
/// mark; the slaves' names (16 bytes, NUL-padded). An empty pick map picks nothing: the
/// lookup fails and new connections stay unmarked (the main table says unreachable).
pub fn contents(sel: &Selection) -> Vec<SetContents> {
    let mark = |m: &u32| Some(m.to_ne_bytes().to_vec());
    vec![
        SetContents {
            set: "pick".into(),
            elements: spread(&sel.pick, PICK_SLOTS)
                .iter()
                .enumerate()
                .map(|(slot, m)| ((slot as u32).to_ne_bytes().to_vec(), mark(m)))
                .collect(),
        },
        SetContents {
            set: "dns".into(),
            elements: sel
                .dns
                .iter()
                .map(|(a, m)| (a.octets().to_vec(), mark(m)))
                .collect(),
        },
        SetContents {
            set: "slaves".into(),
            elements: sel
                .slaves
                .iter()
                .map(|name| {
                    let mut key = [0u8; 16];
                    let n = name.len().min(15);
                    key[..n].copy_from_slice(&name.as_bytes()[..n]);
                    (key.to_vec(), None)
                })
                .collect(),
        },
    ]
}

/// The policy's slot table (at most `slots` long: the policies make at most one slot per line
/// or 64) over `slots` slots: repeated where its length divides them (the exact ratio), else each mark's share
/// apportioned (largest remainder) and the slots interleaved in smooth weighted round-robin
/// order.
pub fn spread(pick: &[u32], slots: usize) -> Vec<u32> {
    if pick.is_empty() || slots == 0 {
        return Vec::new();
    }
    if slots.is_multiple_of(pick.len()) {
        return pick.iter().copied().cycle().take(slots).collect();
    }
    // Each mark's count, in order of first appearance.
    let mut counts: Vec<(u32, usize)> = Vec::new();
    for m in pick {
        match counts.iter_mut().find(|(c, _)| c == m) {
            Some((_, n)) => *n += 1,
            None => counts.push((*m, 1)),
        }
    }
    // Largest remainder; a table no longer than the slots gives every mark one at least.
    let total = pick.len();
    let mut shares: Vec<usize> = counts.iter().map(|(_, n)| n * slots / total).collect();
    let mut by_remainder: Vec<usize> = (0..counts.len()).collect();
    by_remainder.sort_by_key(|&i| std::cmp::Reverse(counts[i].1 * slots % total));
    let left = slots.saturating_sub(shares.iter().sum());
    for &i in by_remainder.iter().take(left) {
        shares[i] += 1;
    }
    // Smooth weighted round-robin: each step the highest running credit goes next.
    let mut credit = vec![0i64; counts.len()];
    let sum = shares.iter().sum::<usize>() as i64;
    (0..slots)
        .map(|_| {
            for (c, w) in credit.iter_mut().zip(&shares) {
                *c += *w as i64;
            }
            let best = (0..credit.len())
                .max_by_key(|&i| (credit[i], std::cmp::Reverse(i)))
                .unwrap_or(0);
            credit[best] -= sum;
            counts[best].0
        })
        .collect()
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

/// The shape [`render_create`]`(_, sticky)` then [`contents`]`(sel)` give the table.
pub fn expected_shape(sel: &Selection, sticky: bool) -> TableShape {
    let mut shape = TableShape::default();
    let create = render_create(Duration::from_secs(1), sticky);
    // Rules of the chains: the lines between a chain's line and its `}`, but `type … hook`.
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
    for c in contents(sel) {
        shape.sets.insert(c.set, Some(c.elements.len()));
    }
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
        let s = render_create(Duration::from_secs(600), false);
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
    fn a_rebuild_carries_the_selection_in_its_own_transaction() {
        let sel = Selection {
            slaves: vec!["eq-l1".into(), "eq-l2".into()],
            pick: vec![0xe101, 0xe102],
            dns: vec![("10.64.1.1".parse().unwrap(), 0xe101)],
        };
        let script = render_elements(&sel).unwrap();
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with(
            "add element inet eqlplus pick { 0 : 0x0000e101, 1 : 0x0000e102, 2 : 0x0000e101"
        ));
        assert_eq!(lines[0].matches(" : ").count(), PICK_SLOTS);
        assert_eq!(
            lines[1],
            "add element inet eqlplus dns { 10.64.1.1 : 0x0000e101 }"
        );
        assert_eq!(
            lines[2],
            "add element inet eqlplus slaves { \"eq-l1\", \"eq-l2\" }"
        );
        // Nothing selected: nothing to add (nft refuses an empty element list).
        assert_eq!(render_elements(&Selection::default()).unwrap(), "");
        // A name nft's syntax cannot carry as it is: the caller fills the sets by netlink.
        let odd = Selection {
            slaves: vec!["a\"b".into()],
            ..Selection::default()
        };
        assert_eq!(render_elements(&odd), None);
    }

    #[test]
    fn the_rules_are_made_once_with_the_table() {
        let plain = render_create(Duration::from_secs(600), false);
        assert!(plain.contains(
            "  chain mark_new {
    meta mark set ip daddr map @dns ct mark set meta mark accept
    meta mark set numgen inc mod 256 map @pick
    ct mark set meta mark
  }"
        ));
        let sticky = render_create(Duration::from_secs(60), true);
        assert!(sticky.contains("meta mark set ip saddr . ip daddr map @sticky update @sticky"));
        assert!(sticky.contains(
            "meta mark and 0xffffff00 == 0x0000e100 update @sticky { ip saddr . ip daddr : meta mark }"
        ));
        assert_eq!(
            expected_shape(&Selection::default(), false).chains["mark_new"],
            3
        );
        assert_eq!(
            expected_shape(&Selection::default(), true).chains["mark_new"],
            5
        );
        assert_eq!(
            expected_shape(&Selection::default(), true).chains["prerouting"],
            4
        );
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
    fn contents_in_the_kernels_layout() {
        let sel = Selection {
            slaves: vec!["eq-ttyS0".into()],
            pick: vec![0xe101, 0xe101, 0xe102, 0xe101],
            dns: vec![("10.64.0.53".parse().unwrap(), 0xe101)],
        };
        let c = contents(&sel);
        assert_eq!(c[0].set, "pick");
        assert_eq!(c[0].elements.len(), PICK_SLOTS);
        assert_eq!(
            c[0].elements[2],
            (
                2u32.to_ne_bytes().to_vec(),
                Some(0xe102u32.to_ne_bytes().to_vec())
            )
        );
        assert_eq!(
            c[1].elements,
            vec![(vec![10, 64, 0, 53], Some(0xe101u32.to_ne_bytes().to_vec()))]
        );
        assert_eq!(
            c[2].elements,
            vec![(b"eq-ttyS0\0\0\0\0\0\0\0\0".to_vec(), None)]
        );
        let shape = expected_shape(&sel, false);
        assert_eq!(shape.sets["pick"], Some(PICK_SLOTS));
        // Round-robin over the most lines a configuration may have: every one gets slots.
        let all = Selection {
            pick: (1..=255).collect(),
            ..Selection::default()
        };
        let picked: std::collections::BTreeSet<Vec<u8>> = contents(&all)[0]
            .elements
            .iter()
            .filter_map(|(_, m)| m.clone())
            .collect();
        assert_eq!(picked.len(), 255);
        assert!(
            contents(&Selection::default())
                .iter()
                .all(|c| c.elements.is_empty())
        );
    }

    #[test]
    fn spread_keeps_the_ratio_and_interleaves() {
        let count = |t: &[u32], m: u32| t.iter().filter(|x| **x == m).count();
        let four = [1, 1, 2, 1];
        assert_eq!(spread(&four, 64), four.repeat(16));
        let three = spread(&[1, 2, 3], 64);
        assert_eq!(
            (count(&three, 1), count(&three, 2), count(&three, 3)),
            (22, 21, 21)
        );
        assert_eq!(&three[..6], &[1, 2, 3, 1, 2, 3]);
        // 5:2 over 7 slots → 46:18 of 64 (45.7:18.3).
        let t: Vec<u32> = [1, 1, 1, 1, 1, 2, 2].to_vec();
        let s = spread(&t, 64);
        assert_eq!((count(&s, 1), count(&s, 2)), (46, 18));
        assert!(s.windows(4).all(|w| w.contains(&1)), "interleaved: {s:?}");
        // Many marks with one slot each all keep one.
        let many: Vec<u32> = (0..63).collect();
        assert!((0..63).all(|m| count(&spread(&many, 64), m) >= 1));
        assert!(spread(&[], 64).is_empty());
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
