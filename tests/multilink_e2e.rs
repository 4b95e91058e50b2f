//! The daemon against the simulated ISP that answers Multilink PPP (a multilink world): two
//! lines saying `bundle = "isp"` form one bundle (one IPCP, one slave, one balancer entry), a
//! third line without it gets plain PPP from the same ISP beside it, and the ISP hanging up one
//! member leaves the bundle up while the line redials and rejoins. Root only.

mod support;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use eqlplus_dialer::sim::DialAnswer;
use eqlplus_dialer::sim::world::{line_local, multilink_plain_local};
use support::daemon::{Extra, World, all};
use support::require_root;
use support::tmux::{Tmux, have_tmux, line_row, monitor_command, state_of};

#[test]
fn a_bundle_and_a_plain_line_share_the_multilink_isp() {
    if !require_root("a_bundle_and_a_plain_line_share_the_multilink_isp") {
        return;
    }
    let world = World::new_multilink(&vec![vec![DialAnswer::Connect(Some(57_600))]; 3], &[]);
    let member = "bundle = \"isp\"\n".to_string();
    world.write_config_with(
        &["5551001", "5551002", "5551003"],
        &[None, None, None],
        "",
        &Extra {
            top: String::new(),
            lines: vec![member.clone(), member, String::new()],
        },
    );
    let _daemon = world.start_daemon();
    // Three lines and the bundle.
    world.wait_for(
        "the lines and the bundle up",
        Duration::from_secs(30),
        |s| all(s, "up", 4),
    );
    let status = world.status();
    let entry = |name: &str| {
        status["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .clone()
    };
    let bundle = entry("isp");
    assert_eq!(bundle["local"], line_local(1).to_string(), "{bundle}");
    assert_eq!(
        bundle["members"].as_array().map(Vec::len),
        Some(2),
        "{bundle}"
    );
    // No /dev/ppp here: the bundle is on TUN, and so are its members' calls.
    assert!(
        entry("ttyS1")["slave_kind"]
            .as_str()
            .is_some_and(|k| k.starts_with("TUN (a member of bundle isp, on TUN: auto: ")),
        "{}",
        entry("ttyS1")
    );
    assert!(
        bundle["slave_kind"]
            .as_str()
            .is_some_and(|k| k.starts_with("TUN (auto: ")),
        "{bundle}"
    );
    // The bundle's speed (its weight in the balance) is its members' together.
    assert_eq!(bundle["connect_speed"], 2 * 57_600, "{bundle}");
    assert_eq!(
        entry("ttyS3")["local"],
        multilink_plain_local(3).to_string(),
        "the plain line's own address"
    );
    // The monitor, in a real terminal: the bundle's row names its members, theirs the bundle.
    if have_tmux() {
        let tmux = Tmux::start(
            world.dir.path(),
            "monitor",
            &monitor_command(
                "",
                std::path::Path::new(&world.socket()),
                "--interval 200ms",
            ),
        );
        let screen = tmux.wait_for("the bundle's row", |s| {
            line_row(s, "isp").is_some_and(|r| r.contains("bundle of ttyS"))
        });
        assert_eq!(state_of(&screen, "isp"), Some("up"), "{screen}");
        for member in ["ttyS1", "ttyS2"] {
            let row = line_row(&screen, member).unwrap_or_default();
            assert!(row.contains("in bundle isp"), "{screen}");
        }
        assert!(
            !line_row(&screen, "ttyS3")
                .unwrap_or_default()
                .contains("bundle"),
            "{screen}"
        );
        tmux.keys(&["q"]);
        tmux.wait_dead();
    }
    // New connections go over both balancer entries: the bundle and the plain line.
    assert_eq!(world.connect(20), 20);
    let hits: HashMap<Ipv4Addr, usize> = std::mem::take(&mut *world.hits.lock().unwrap());
    assert!(hits.get(&line_local(1)).is_some_and(|n| *n > 0), "{hits:?}");
    assert!(
        hits.get(&multilink_plain_local(3)).is_some_and(|n| *n > 0),
        "{hits:?}"
    );
    // The ISP hangs up ttyS1: the bundle carries on over ttyS2 meanwhile, and ttyS1 rejoins.
    let names: Vec<String> = status["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap_or("").to_string())
        .collect();
    let (tty_s1, isp) = (
        names.iter().position(|n| n == "ttyS1").unwrap(),
        names.iter().position(|n| n == "isp").unwrap(),
    );
    world.sim.hang_up(1).unwrap();
    world.wait_for("ttyS1 off", Duration::from_secs(10), |s| s[tty_s1] != "up");
    assert_eq!(world.states()[isp], "up", "the bundle stays up");
    world.wait_for_status(
        "the bundle's speed is one member's",
        Duration::from_secs(5),
        |s| s["lines"][isp]["connect_speed"] == 57_600,
    );
    assert_eq!(
        world.connect(6),
        6,
        "the bundle and the plain line still carry"
    );
    world.wait_for("ttyS1 back", Duration::from_secs(30), |s| all(s, "up", 4));
    assert_eq!(
        world.status()["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == "isp")
            .and_then(|b| b["members"].as_array().map(Vec::len)),
        Some(2)
    );
}

/// Lines that say `bundle = "isp"` calling ISPs that do not speak Multilink (they reject
/// MRRU): each line comes up as a plain line of its own, balanced per connection, and the
/// bundle stays down with no member.
#[test]
fn bundle_lines_fall_back_to_plain_lines_where_the_isp_rejects_multilink() {
    if !require_root("bundle_lines_fall_back_to_plain_lines_where_the_isp_rejects_multilink") {
        return;
    }
    let world = World::new(&vec![vec![DialAnswer::Connect(Some(57_600))]; 2], &[]);
    let member = "bundle = \"isp\"\n".to_string();
    world.write_config_with(
        &["5551001", "5551002"],
        &[None, None],
        "",
        &Extra {
            top: String::new(),
            lines: vec![member.clone(), member],
        },
    );
    let _daemon = world.start_daemon();
    world.wait_for_status("both lines up on their own", Duration::from_secs(30), |s| {
        let lines = s["lines"].as_array().cloned().unwrap_or_default();
        let state = |name: &str| {
            lines
                .iter()
                .find(|l| l["name"] == name)
                .map(|l| l["state"].clone())
        };
        state("ttyS1") == Some("up".into()) && state("ttyS2") == Some("up".into())
    });
    let status = world.status();
    let lines = status["lines"].as_array().unwrap();
    let entry = |name: &str| lines.iter().find(|l| l["name"] == name).unwrap().clone();
    for (i, name) in [(1, "ttyS1"), (2, "ttyS2")] {
        let line = entry(name);
        assert_eq!(line["local"], line_local(i).to_string(), "{line}");
        assert!(line["bundle"].is_null(), "not a member: {line}");
        // No /dev/ppp here: the call's slave is its bundle's kind, TUN, and status says why.
        assert!(
            line["slave_kind"]
                .as_str()
                .is_some_and(|k| k.starts_with("TUN (a member of bundle isp, on TUN: ")),
            "{line}"
        );
    }
    let bundle = entry("isp");
    assert_eq!(bundle["state"], "down", "{bundle}");
    assert_eq!(bundle["members"], serde_json::json!([]), "{bundle}");
    // Both lines carry new connections, each from its own address.
    assert_eq!(world.connect(20), 20);
    let hits: HashMap<Ipv4Addr, usize> = std::mem::take(&mut *world.hits.lock().unwrap());
    for i in [1, 2] {
        assert!(hits.get(&line_local(i)).is_some_and(|n| *n > 0), "{hits:?}");
    }
}
