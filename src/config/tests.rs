use super::*;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse(text, Path::new("/etc/eqlplus-dialer/eqlplus-dialer.toml"))
}

fn one_error(text: &str) -> ConfigError {
    let errors = parse(text).expect_err("an error").0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.into_iter().next().unwrap()
}

#[test]
fn shipped_example_is_valid_and_shows_the_defaults() {
    let text = include_str!("../../config/eqlplus-dialer.toml");
    let c = parse(text).unwrap();
    let defaults = parse("[[line]]\ndevice = \"/dev/ttyS1\"\n").unwrap();
    // Apart from what the example sets on purpose, it states the defaults.
    let mut expected = defaults.lines[0].clone();
    expected.dial_chat = Some("/etc/eqlplus-dialer/chat/hayes-dialup.chat".into());
    expected.phone = Some("5551234".into());
    // A line that dials a number is checked for a cellular modem by default.
    expected.cellular = true;
    assert_eq!(c.lines, vec![expected]);
    assert_eq!(c.balancer, defaults.balancer);
    assert_eq!(c.control, defaults.control);
    assert_eq!(c.daemon, defaults.daemon);
    assert_eq!(
        c.metrics, None,
        "the example's [metrics] is commented out: opt-in"
    );
}

#[test]
fn minimal_line_gets_defaults() {
    let c = parse("[[line]]\ndevice = \"/dev/ttyUSB2\"\n").unwrap();
    let l = &c.lines[0];
    assert_eq!(l.name, "ttyUSB2");
    assert_eq!(l.slave, "eq-ttyUSB2");
    assert_eq!(l.baud, 115_200);
    assert_eq!(l.weight, Weight::Auto);
    assert_eq!(l.redial.holdoff, Duration::from_secs(2));
    assert_eq!(l.lcp_echo_failure, 3);
    assert_eq!(l.ppp_timeout, Duration::from_secs(30));
    assert!(l.enabled);
    assert_eq!(c.balancer.policy, Policy::LeastLoaded);
    assert_eq!(
        c.control.socket,
        PathBuf::from("/run/eqlplus-dialer/control.sock")
    );
}

#[test]
fn relative_paths_are_relative_to_the_file() {
    let c = parse("[daemon]\nsecrets = \"secrets\"\n[[line]]\ndevice = \"/dev/ttyS0\"\ndial_chat = \"chat/d.chat\"\n").unwrap();
    assert_eq!(
        c.daemon.secrets,
        Some(PathBuf::from("/etc/eqlplus-dialer/secrets"))
    );
    assert_eq!(
        c.lines[0].dial_chat,
        Some(PathBuf::from("/etc/eqlplus-dialer/chat/d.chat"))
    );
}

#[test]
fn unknown_keys_are_errors_with_file_line_and_option() {
    let e = one_error("[[line]]\ndevice = \"/dev/ttyS1\"\nbuad = 9600\n");
    assert_eq!((e.line, e.column), (3, 1));
    assert_eq!(e.option, "line[1].buad");
    assert!(e.message.contains("unknown field `buad`"), "{}", e.message);
    let shown = e.to_string();
    assert!(
        shown.starts_with(
            "/etc/eqlplus-dialer/eqlplus-dialer.toml:3:1: line[1].buad: unknown field"
        ),
        "{shown}"
    );
    assert!(shown.contains("hint: check the spelling"), "{shown}");
    let e = one_error("[balancer]\npolicy = \"round-robin\"\nflavour = 1\n");
    assert_eq!(e.option, "balancer.flavour");
    let e = one_error("[deamon]\n");
    assert_eq!(e.line, 1);
}

#[test]
fn bad_values_name_the_option_and_give_hints() {
    let e = one_error("[[line]]\ndevice = \"/dev/ttyS1\"\nbaud = -5\n");
    assert_eq!((e.line, e.option.as_str()), (3, "line[1].baud"));
    assert!(e.hint.unwrap().contains("115200"));
    let e = one_error("[balancer]\npolicy = \"fastest\"\n");
    assert_eq!(
        (e.line, e.column, e.option.as_str()),
        (2, 10, "balancer.policy")
    );
    let e = one_error("[[line]]\ndevice = \"/dev/ttyS1\"\nweight = \"heavy\"\n");
    assert_eq!(e.option, "line[1].weight");
    let e = one_error("[[line]]\ndevice = \"ttyS1\"\n");
    assert!(e.message.contains("not an absolute path"));
    let e = one_error("[[line]]\ndevice = \"/dev/ttyS1\"\nholdoff = -1\n");
    assert_eq!(e.option, "line[1].holdoff");
    let e = one_error("[[line]]\ndevice = \"/dev/ttyS1\"\nflow_control = \"xon\"\n");
    assert!(e.message.contains("unknown flow control"));
    let e = one_error("[[line]]\ndevice = \"/dev/ttyS1\"\nbaud = \"fast\"\n");
    assert_eq!(e.option, "line[1].baud");
    let e = one_error("[[line]]\nbaud = 9600\n");
    assert_eq!(e.option, "line[1].device");
    assert_eq!(e.message, "the line names no modem");
}

#[test]
fn a_line_can_name_its_modem_by_usb_identity() {
    use crate::serial::identity::{DeviceSpec, UsbMatch};
    let c = parse(
        "[[line]]\nname = \"lte1\"\nusb = \"1199:68C0\"\nusb_serial = \"SN123\"\nusb_interface = 3\n\
         imei = \"356938035643809\"\n[[line]]\nname = \"lte2\"\nusb_port = \"1-1.3\"\n\
         iccid = \"8944100030302000123f\"\n",
    )
    .unwrap();
    assert_eq!(
        c.lines[0].device,
        DeviceSpec::Usb(UsbMatch::Device {
            vid: 0x1199,
            pid: 0x68c0,
            serial: Some("SN123".into()),
            interface: Some(3),
        })
    );
    assert_eq!(
        c.lines[0].device.to_string(),
        "USB 1199:68c0 serial SN123 interface 3"
    );
    assert_eq!(c.lines[0].modem_id.imei.as_deref(), Some("356938035643809"));
    // Named after the line: there is no path to name it after.
    assert_eq!(c.lines[0].slave, "eq-lte1");
    assert_eq!(
        c.lines[1].device,
        DeviceSpec::Usb(UsbMatch::Port {
            port: "1-1.3".into(),
            interface: None,
        })
    );
    assert_eq!(
        c.lines[1].modem_id.iccid.as_deref(),
        Some("8944100030302000123F")
    );
    // A path line may insist on an IMEI too.
    let c = parse("[[line]]\ndevice = \"/dev/ttyUSB2\"\nimei = \"356938035643809\"\n").unwrap();
    assert!(c.lines[0].modem_id.is_set());
}

#[test]
fn usb_identity_mistakes_name_the_option() {
    let cases = [
        ("usb = \"1199:68c0\"\n", "line[1].name", "needs a name"),
        (
            "name = \"a\"\nusb = \"1199-68c0\"\n",
            "line[1].usb",
            "not a USB vendor:product",
        ),
        (
            "name = \"a\"\nusb_port = \"usb1\"\n",
            "line[1].usb_port",
            "not a USB port path",
        ),
        (
            "name = \"a\"\ndevice = \"/dev/ttyUSB0\"\nusb = \"1199:68c0\"\n",
            "line[1].device",
            "either device or usb",
        ),
        (
            "name = \"a\"\nusb = \"1199:68c0\"\nusb_port = \"1-1\"\n",
            "line[1].usb_port",
            "either usb or usb_port",
        ),
        (
            "device = \"/dev/ttyS1\"\nusb_interface = 2\n",
            "line[1].usb_interface",
            "narrows",
        ),
        (
            "name = \"a\"\nusb_port = \"1-1\"\nusb_serial = \"x\"\n",
            "line[1].usb_serial",
            "narrows usb",
        ),
        (
            "name = \"a\"\nusb = \"1199:68c0\"\nusb_interface = 300\n",
            "line[1].usb_interface",
            "0-255",
        ),
        (
            "device = \"/dev/ttyS1\"\nimei = \"12345\"\n",
            "line[1].imei",
            "not an IMEI",
        ),
        (
            "device = \"/dev/ttyS1\"\niccid = \"89x\"\n",
            "line[1].iccid",
            "not an ICCID",
        ),
    ];
    for (body, option, message) in cases {
        let e = one_error(&format!("[[line]]\n{body}"));
        assert_eq!(e.option, option, "{body}");
        assert!(e.message.contains(message), "{body}: {}", e.message);
    }
    // Two lines, one modem.
    let e = one_error(
        "[[line]]\nname = \"a\"\nusb_port = \"1-1.2\"\n[[line]]\nname = \"b\"\nusb_port = \"1-1.2\"\n",
    );
    assert_eq!(e.option, "line[2].usb_port");
    assert!(
        e.message.contains("same device as line[1].usb_port"),
        "{}",
        e.message
    );
}

#[test]
fn duplicates_are_reported_all_at_once() {
    let errors = parse(
        "[[line]]\ndevice = \"/dev/ttyS1\"\n[[line]]\ndevice = \"/dev/ttyS1\"\n[[line]]\nname = \"ttyS1\"\ndevice = \"/dev/ttyS2\"\nslave = \"eq-ttyS1\"\n",
    )
    .unwrap_err()
    .0;
    let options: Vec<&str> = errors.iter().map(|e| e.option.as_str()).collect();
    assert!(options.contains(&"line[2].device"), "{options:?}");
    assert!(options.contains(&"line[3].name"), "{options:?}");
    assert!(options.contains(&"line[3].slave"), "{options:?}");
    assert_eq!(
        errors
            .iter()
            .find(|e| e.option == "line[3].name")
            .unwrap()
            .line,
        6
    );
}

#[test]
fn sticky_takes_its_hold() {
    let c = parse("[balancer]\npolicy = \"sticky\"\nsticky_hold = 30\n").unwrap();
    assert_eq!(
        c.balancer.policy,
        Policy::Sticky {
            hold: Duration::from_secs(30)
        }
    );
}

#[test]
fn secrets_lookup_by_secret_name_or_user() {
    let s = SecretsFile::parse("alice * pw1\nshared * pw2\n", Path::new("s")).unwrap();
    let c = parse("[[line]]\ndevice = \"/dev/ttyS1\"\nuser = \"alice\"\n[[line]]\ndevice = \"/dev/ttyS2\"\nuser = \"bob\"\nsecret_name = \"shared\"\n[[line]]\ndevice = \"/dev/ttyS3\"\n").unwrap();
    assert_eq!(line_secret(&c.lines[0], Some(&s)).as_deref(), Some("pw1"));
    assert_eq!(line_secret(&c.lines[1], Some(&s)).as_deref(), Some("pw2"));
    assert_eq!(line_secret(&c.lines[2], Some(&s)), None);
}

proptest::proptest! {
    #[test]
    fn never_panics(text in "[\\[\\]a-z_=\"0-9 .\\n/-]{0,200}") {
        let _ = parse(&text);
    }
}

#[test]
fn log_level_is_read_on_its_own() {
    assert_eq!(
        log_level_from("[daemon]\nlog_level = \"debug\"\n[[line]]\nbuad = 1\n").as_deref(),
        Some("debug")
    );
    assert_eq!(log_level_from("[daemon]\n"), None);
    assert_eq!(log_level_from("not toml ["), None);
}

fn options_of(text: &str) -> Vec<(String, usize)> {
    parse(text)
        .expect_err("errors")
        .0
        .into_iter()
        .map(|e| (e.option, e.line))
        .collect()
}

#[test]
fn routing_ranges_keep_clear_of_the_kernels_rules_and_tables() {
    // rule_base = 32700 once deleted the kernel's 32766/32767 rules.
    for bad in [0, 32_511, 32_700, u32::MAX] {
        let e = one_error(&format!("[balancer]\nrule_base = {bad}\n"));
        assert_eq!(
            (e.option.as_str(), e.line),
            ("balancer.rule_base", 2),
            "{bad}"
        );
        assert!(e.message.contains("32766"), "{}", e.message);
    }
    for good in [1, 7700, 32_510] {
        let c = parse(&format!("[balancer]\nrule_base = {good}\n")).unwrap();
        assert_eq!(c.balancer.routing.rule_base, good);
    }
    for bad in [0, 1, 252, 253, 254, u32::MAX - 255, u32::MAX] {
        let e = one_error(&format!("[balancer]\ntable_base = {bad}\n"));
        assert_eq!(
            (e.option.as_str(), e.line),
            ("balancer.table_base", 2),
            "{bad}"
        );
        assert!(e.message.contains("254 main"), "{}", e.message);
    }
    for good in [255, 7700, u32::MAX - 256] {
        let c = parse(&format!("[balancer]\ntable_base = {good}\n")).unwrap();
        assert_eq!(c.balancer.routing.table_base, good);
    }
}

#[test]
fn at_most_255_lines() {
    let lines = |n: usize| {
        (0..n)
            .map(|i| format!("[[line]]\ndevice = \"/dev/ttyX{i}\"\n"))
            .collect::<String>()
    };
    assert_eq!(parse(&lines(255)).unwrap().lines.len(), 255);
    let e = one_error(&lines(256));
    assert_eq!((e.option.as_str(), e.line), ("line[256]", 511));
    assert!(e.message.contains("at most 255"), "{}", e.message);
}

#[test]
fn one_device_under_two_spellings_is_refused() {
    let e = one_error(
        "[[line]]\ndevice = \"/dev/ttyQ1\"\n[[line]]\nname = \"other\"\ndevice = \"/dev/../dev/./ttyQ1\"\nslave = \"eq-other\"\n",
    );
    assert_eq!((e.option.as_str(), e.line), ("line[2].device", 5));
    assert!(
        e.message
            .contains("/dev/../dev/./ttyQ1 is the same device as line[1].device (/dev/ttyQ1)"),
        "{}",
        e.message
    );
    // A by-id style symlink to the same device.
    let dir = tempfile::tempdir().unwrap();
    let by_id = dir.path().join("usb-Modem-if00");
    std::os::unix::fs::symlink("/dev/null", &by_id).unwrap();
    let text = format!(
        "[[line]]\ndevice = \"/dev/null\"\n[[line]]\nname = \"b\"\ndevice = \"{}\"\nslave = \"eq-b\"\n",
        by_id.display()
    );
    assert_eq!(options_of(&text), [("line[2].device".to_string(), 5)]);
    // Another node with the same device number (as root only).
    let node = dir.path().join("null2");
    let rdev = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/dev/null").unwrap().rdev()
    };
    if nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        rdev,
    )
    .is_ok()
    {
        let text = format!(
            "[[line]]\ndevice = \"/dev/null\"\n[[line]]\nname = \"b\"\ndevice = \"{}\"\nslave = \"eq-b\"\n",
            node.display()
        );
        assert_eq!(options_of(&text), [("line[2].device".to_string(), 5)]);
    }
    // Different devices are fine.
    parse("[[line]]\ndevice = \"/dev/null\"\n[[line]]\ndevice = \"/dev/zero\"\n").unwrap();
}

#[test]
fn bad_log_levels_are_refused() {
    for bad in [
        "inf",
        "verbose",
        "",
        "eqlplus_dialer",
        "eqlplus_dialer=loud",
        "info,debgu",
    ] {
        let e = one_error(&format!("[daemon]\nlog_level = \"{bad}\"\n"));
        assert_eq!(
            (e.option.as_str(), e.line),
            ("daemon.log_level", 2),
            "{bad}"
        );
    }
    for good in [
        "error",
        "warn",
        "info",
        "debug",
        "trace",
        "off",
        "INFO",
        "eqlplus_dialer=debug",
        "info,eqlplus_dialer::ppp=trace",
    ] {
        let c = parse(&format!("[daemon]\nlog_level = \"{good}\"\n")).unwrap();
        assert_eq!(c.daemon.log_level, good);
        assert!(check_log_filter(good).is_ok());
    }
}

#[test]
fn unknown_control_group_is_refused() {
    let e = one_error("[control]\ngroup = \"no-such-group-eqlplus\"\n");
    assert_eq!((e.option.as_str(), e.line), ("control.group", 2));
    assert!(e.message.contains("no group named 'no-such-group-eqlplus'"));
    let c = parse("[control]\ngroup = \"root\"\n").unwrap();
    assert_eq!(c.control.group.as_deref(), Some("root"));
}

#[test]
fn hooks_must_be_executable_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let hook = dir.path().join("ip-up");
    let text = format!("[daemon]\nip_up = \"{}\"\n", hook.display());
    let e = one_error(&text);
    assert_eq!((e.option.as_str(), e.line), ("daemon.ip_up", 2));
    assert!(e.message.contains("No such file"), "{}", e.message);
    std::fs::write(&hook, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = one_error(&text);
    assert!(e.message.contains("is not executable"), "{}", e.message);
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(parse(&text).unwrap().daemon.ip_up, Some(hook));
    let e = one_error(&format!(
        "[daemon]\nip_down = \"{}\"\n",
        dir.path().display()
    ));
    assert_eq!(e.option, "daemon.ip_down");
    assert!(e.message.contains("not a regular file"), "{}", e.message);
}

#[test]
fn durations_have_sane_bounds_and_never_panic() {
    let line = "[[line]]\ndevice = \"/dev/ttyS1\"\n";
    for (option, bad) in [
        ("lcp_echo_interval", "0"),
        ("lcp_echo_interval", "0.0001"),
        ("lcp_echo_interval", "0.05"),
        ("lcp_echo_interval", "1e300"),
        ("lcp_echo_interval", "nan"),
        ("lcp_echo_interval", "inf"),
        ("holdoff", "0"),
        ("holdoff", "1e-9"),
        ("holdoff", "1e30"),
        ("max_delay", "0.00001"),
        ("max_delay", "-inf"),
        ("escape_guard", "0.001"),
        ("escape_guard", "1e20"),
    ] {
        let e = one_error(&format!("{line}{option} = {bad}\n"));
        assert_eq!(
            (e.option.as_str(), e.line),
            (format!("line[1].{option}").as_str(), 3),
            "{option} = {bad}"
        );
    }
    for (option, bad) in [("hook_timeout", "0"), ("hook_timeout", "1e300")] {
        let e = one_error(&format!("[daemon]\n{option} = {bad}\n"));
        assert_eq!(e.option, format!("daemon.{option}"));
    }
    for bad in ["0.001", "1e300", "nan"] {
        let e = one_error(&format!("[balancer]\nsticky_hold = {bad}\n"));
        assert_eq!(e.option, "balancer.sticky_hold");
    }
    let c = parse(&format!("{line}lcp_echo_interval = 0.1\nholdoff = 0.5\n")).unwrap();
    assert_eq!(c.lines[0].lcp_echo_interval, Duration::from_millis(100));
}

/// A config in a scratch directory for [`load_checked`].
fn scratch(config: &str, files: &[(&str, &str, u32)]) -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for (name, text, mode) in files {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    let path = dir.path().join("eqlplus-dialer.toml");
    std::fs::write(&path, config).unwrap();
    (dir, path)
}

#[test]
fn phone2_without_a_value_is_refused_with_its_place() {
    let chat = "ABORT BUSY\n'' AT\nOK 'AT+CGDCONT=1,\"IP\",\"\\U\"'\nOK ATD*99#\nCONNECT ''\n";
    let (_dir, path) = scratch(
        "[[line]]\ndevice = \"/dev/ttyS1\"\ndial_chat = \"gprs.chat\"\n",
        &[("gprs.chat", chat, 0o644)],
    );
    let problems = load_checked(&path).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    let script = path.with_file_name("gprs.chat");
    assert!(
        problems[0].starts_with(&format!("{}:3:5: line ttyS1: \\U", script.display())),
        "{problems:?}"
    );
    // With an APN, or with a secret, \U has its value.
    let (_dir, path) = scratch(
        "[[line]]\ndevice = \"/dev/ttyS1\"\ndial_chat = \"gprs.chat\"\napn = \"internet\"\n",
        &[("gprs.chat", chat, 0o644)],
    );
    load_checked(&path).unwrap();
    let (_dir, path) = scratch(
        "[daemon]\nsecrets = \"secrets\"\n[[line]]\ndevice = \"/dev/ttyS1\"\ndial_chat = \"gprs.chat\"\nuser = \"alice\"\n",
        &[
            ("gprs.chat", chat, 0o644),
            ("secrets", "alice * pw\n", 0o600),
        ],
    );
    load_checked(&path).unwrap();
}

#[test]
fn secrets_writable_by_others_fail_the_shared_check() {
    let (_dir, path) = scratch(
        "[daemon]\nsecrets = \"secrets\"\n[[line]]\ndevice = \"/dev/ttyS1\"\nuser = \"alice\"\n",
        &[("secrets", "alice * pw\n", 0o622)],
    );
    let problems = load_checked(&path).unwrap_err();
    assert!(
        problems[0].contains("readable or writable by group or others (mode 0622)"),
        "{problems:?}"
    );
}

#[test]
fn ppp_timeout_is_read_and_checked() {
    let c = parse("[[line]]\ndevice = \"/dev/ttyS1\"\nppp_timeout = 12.5\n").unwrap();
    assert_eq!(c.lines[0].ppp_timeout, Duration::from_millis(12_500));
    let e = one_error("[[line]]\ndevice = \"/dev/ttyS1\"\nppp_timeout = 0\n");
    assert_eq!(e.option, "line[1].ppp_timeout");
}

#[test]
fn tracking_is_on_by_default_and_set_per_section_and_line() {
    let c = parse("[[line]]\ndevice = \"/dev/ttyS1\"\n").unwrap();
    assert_eq!(c.lines[0].track, crate::track::TrackConfig::default());
    assert!(c.lines[0].track.enabled());
    assert_eq!(c.lines[0].tier, 0);
    let c = parse(
        "[track]\ntargets = [\"ping 192.0.2.1\", \"dns example.com\"]\ninterval = 5\nretry = 0.5\ntimeout = 0.8\ndown = 3\nup = 2\nquorum = 2\nredial_after = 0\n\
         [[line]]\ndevice = \"/dev/ttyS1\"\nmax_latency = 0.4\nmax_loss = 0.2\n\
         [[line]]\ndevice = \"/dev/ttyS2\"\ntrack = false\nbackup = true\n\
         [[line]]\ndevice = \"/dev/ttyS3\"\ntrack_targets = [\"tcp 192.0.2.2:443\"]\ntier = 2\n",
    )
    .unwrap();
    let t = &c.lines[0].track;
    assert_eq!(t.targets.len(), 2);
    assert_eq!(t.targets[1].to_string(), "dns example.com");
    assert_eq!(
        (t.interval, t.retry, t.timeout),
        (
            Duration::from_secs(5),
            Duration::from_millis(500),
            Duration::from_millis(800)
        )
    );
    assert_eq!((t.down, t.up, t.quorum, t.redial_after), (3, 2, 2, None));
    assert_eq!(
        (t.max_latency, t.max_loss),
        (Some(Duration::from_millis(400)), Some(0.2))
    );
    assert!(!c.lines[1].track.enabled());
    assert_eq!(c.lines[1].tier, 1);
    let t = &c.lines[2].track;
    assert_eq!(t.targets.len(), 1);
    assert_eq!(t.quorum, 1, "a line's own targets bound the quorum");
    assert_eq!(c.lines[2].tier, 2);
    // Off for all, on again for one line.
    let c = parse("[track]\nenabled = false\n[[line]]\ndevice = \"/dev/ttyS1\"\n[[line]]\ndevice = \"/dev/ttyS2\"\ntrack = true\n").unwrap();
    assert!(!c.lines[0].track.enabled());
    assert!(c.lines[1].track.enabled());
}

#[test]
fn bad_tracking_options_name_the_option() {
    let e = one_error("[track]\ntargets = [\"ping example.com\"]\n");
    assert_eq!((e.option.as_str(), e.line), ("track.targets", 2));
    assert!(e.message.contains("not an IPv4 address"), "{e}");
    let e = one_error("[track]\ntargets = [\"ping 192.0.2.1\"]\nquorum = 2\n");
    assert_eq!(e.option, "track.quorum");
    let e = one_error("[track]\ndown = 0\n");
    assert_eq!(e.option, "track.down");
    let e = one_error("[track]\nup = 1000\n");
    assert_eq!(e.option, "track.up");
    let e = one_error("[track]\ninterval = 0\n");
    assert_eq!(e.option, "track.interval");
    let e = one_error("[[line]]\ndevice = \"/dev/ttyS1\"\nmax_loss = 1.5\n");
    assert_eq!(e.option, "line[1].max_loss");
    let e = one_error("[[line]]\ndevice = \"/dev/ttyS1\"\ntrack_targets = [\"smtp 1.2.3.4\"]\n");
    assert_eq!((e.option.as_str(), e.line), ("line[1].track_targets", 3));
    let e = one_error("[[line]]\ndevice = \"/dev/ttyS1\"\nbackup = true\ntier = 2\n");
    assert_eq!(e.option, "line[1].tier");
    let e = one_error("[track]\nsometimes = true\n");
    assert!(e.message.contains("sometimes"), "{e}");
}

#[test]
fn metrics_are_opt_in_and_listen_where_told() {
    let line = "[[line]]\ndevice = \"/dev/ttyS1\"\n";
    assert_eq!(parse(line).unwrap().metrics, None);
    let listen = |text: &str| {
        parse(&format!("{text}{line}"))
            .unwrap()
            .metrics
            .unwrap()
            .listen
    };
    assert_eq!(
        listen("[metrics]\n"),
        MetricsListen::Tcp("127.0.0.1:9460".parse().unwrap())
    );
    assert_eq!(
        listen("[metrics]\nlisten = \"[::1]:9100\"\n"),
        MetricsListen::Tcp("[::1]:9100".parse().unwrap())
    );
    assert_eq!(
        listen("[metrics]\nlisten = \"unix:/run/eqlplus-dialer/metrics.sock\"\n"),
        MetricsListen::Unix("/run/eqlplus-dialer/metrics.sock".into())
    );
    assert_eq!(
        listen("[metrics]\nlisten = \"/run/m.sock\"\n"),
        MetricsListen::Unix("/run/m.sock".into())
    );
    assert_eq!(
        listen("[metrics]\nlisten = \"unix:m.sock\"\n"),
        MetricsListen::Unix("/etc/eqlplus-dialer/m.sock".into()),
        "relative to the file, as every path"
    );
    for bad in [
        "localhost:9460",
        "127.0.0.1",
        "127.0.0.1:0",
        "127.0.0.1:99999",
        "unix:",
        "",
    ] {
        let e = one_error(&format!("# metrics\n[metrics]\nlisten = \"{bad}\"\n{line}"));
        assert_eq!(
            (e.option.as_str(), e.line),
            ("metrics.listen", 3),
            "{bad}: {e}"
        );
        assert!(
            e.hint.is_some_and(|h| h.contains("127.0.0.1:9460")),
            "{bad}"
        );
    }
    let long = format!("unix:/{}", "x".repeat(120));
    let e = one_error(&format!("[metrics]\nlisten = \"{long}\"\n{line}"));
    assert!(e.message.contains("longer than"), "{e}");
    let e = one_error(&format!("[metrics]\nport = 9460\n{line}"));
    assert!(e.message.contains("unknown field"), "{e}");
    assert!(
        e.to_string()
            .starts_with("/etc/eqlplus-dialer/eqlplus-dialer.toml:2:"),
        "{e}"
    );
}

#[test]
fn lines_that_name_a_bundle_form_it() {
    let c = parse(
        "[[line]]\ndevice = \"/dev/ttyS1\"\nbundle = \"isp-a\"\n\
         [[line]]\ndevice = \"/dev/ttyS2\"\nbundle = \"isp-a\"\n\
         [[line]]\ndevice = \"/dev/ttyS3\"\n\
         [[line]]\ndevice = \"/dev/ttyS4\"\nbundle = \"isp-b\"\n\
         [[bundle]]\nname = \"isp-b\"\nslave = \"mp-b\"\nmrru = 1600\nshort_seq = true\n",
    )
    .unwrap();
    assert_eq!(c.bundles.len(), 2);
    let a = &c.bundles[1];
    assert_eq!(a.name, "isp-a");
    assert_eq!(a.members, ["ttyS1", "ttyS2"]);
    assert_eq!(
        (a.slave.as_str(), a.mrru, a.short_seq),
        ("eq-isp-a", 1500, false)
    );
    let b = &c.bundles[0];
    assert_eq!(b.members, ["ttyS4"]);
    assert_eq!(
        (b.slave.as_str(), b.mrru, b.short_seq),
        ("mp-b", 1600, true)
    );
    assert_eq!(c.lines[0].bundle.as_deref(), Some("isp-a"));
    assert_eq!(c.lines[2].bundle, None);
}

#[test]
fn bundle_mistakes_name_the_option() {
    let cases = [
        (
            "[[line]]\ndevice = \"/dev/ttyS1\"\n[[bundle]]\nname = \"isp\"\n",
            "bundle[1].name",
            "no line says bundle = \"isp\"",
        ),
        (
            "[[line]]\ndevice = \"/dev/ttyS1\"\nbundle = \"a b\"\n",
            "line[1].bundle",
            "not a valid bundle name",
        ),
        (
            "[[line]]\ndevice = \"/dev/ttyS1\"\nbundle = \"ttyS1\"\n",
            "line[1].bundle",
            "a line's name too",
        ),
        (
            "[[line]]\ndevice = \"/dev/ttyS1\"\nbundle = \"x\"\n[[bundle]]\nname = \"x\"\nslave = \"eq-ttyS1\"\n",
            "bundle[1].name",
            "slave device eq-ttyS1 is line ttyS1's too",
        ),
        (
            "[[line]]\ndevice = \"/dev/ttyS1\"\nbundle = \"x\"\n[[bundle]]\nname = \"x\"\nmrru = 100\n",
            "bundle[1].mrru",
            "outside 296 to 16384",
        ),
    ];
    for (text, option, message) in cases {
        let e = one_error(text);
        assert_eq!(e.option, option, "{text}");
        assert!(e.message.contains(message), "{text}: {}", e.message);
    }
}

#[test]
fn slave_kind_is_auto_ppp_or_tun() {
    let c = parse(
        "[[line]]\ndevice = \"/dev/ttyS1\"\n\
         [[line]]\ndevice = \"/dev/ttyS2\"\nslave_kind = \"ppp\"\n\
         [[line]]\ndevice = \"/dev/ttyS3\"\nslave_kind = \"tun\"\n",
    )
    .unwrap();
    let kinds: Vec<SlaveKind> = c.lines.iter().map(|l| l.slave_kind).collect();
    assert_eq!(kinds, [SlaveKind::Auto, SlaveKind::Ppp, SlaveKind::Tun]);
    let e = one_error("[[line]]\ndevice = \"/dev/ttyS1\"\nslave_kind = \"kernel\"\n");
    assert_eq!(e.option, "line[1].slave_kind");
    assert!(e.message.contains("\"auto\", \"ppp\" or \"tun\""), "{e}");
    let e =
        one_error("[[line]]\ndevice = \"/dev/ttyS1\"\nbundle = \"isp\"\nslave_kind = \"ppp\"\n");
    assert_eq!(e.option, "line[1].slave_kind");
    assert!(e.message.contains("bundle"), "{e}");
    assert!(
        e.hint.as_ref().is_some_and(|h| h.contains("[[bundle]]")),
        "{e}"
    );
    // A bundle's kind is its table's; auto without one.
    let c = parse(
        "[[line]]\ndevice = \"/dev/ttyS1\"\nbundle = \"isp\"\n\
         [[line]]\ndevice = \"/dev/ttyS2\"\nbundle = \"isp\"\n\
         [[line]]\ndevice = \"/dev/ttyS3\"\nbundle = \"other\"\n\
         [[bundle]]\nname = \"isp\"\nslave_kind = \"ppp\"\n",
    )
    .unwrap();
    let kinds: Vec<(&str, SlaveKind)> = c
        .bundles
        .iter()
        .map(|b| (b.name.as_str(), b.slave_kind))
        .collect();
    assert_eq!(kinds, [("isp", SlaveKind::Ppp), ("other", SlaveKind::Auto)]);
    let e = one_error(
        "[[line]]\ndevice = \"/dev/ttyS1\"\nbundle = \"isp\"\n\
         [[bundle]]\nname = \"isp\"\nslave_kind = \"pppd\"\n",
    );
    assert_eq!(e.option, "bundle[1].slave_kind");
}
