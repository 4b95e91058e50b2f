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
    assert_eq!(c.lines, vec![expected]);
    assert_eq!(c.balancer, defaults.balancer);
    assert_eq!(c.control, defaults.control);
    assert_eq!(c.daemon, defaults.daemon);
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
    assert!(
        e.message.contains("missing field `device`"),
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

#[test]
fn ppp_timeout_is_read_and_checked() {
    let c = parse("[[line]]\ndevice = \"/dev/ttyS1\"\nppp_timeout = 12.5\n").unwrap();
    assert_eq!(c.lines[0].ppp_timeout, Duration::from_millis(12_500));
    let e = one_error("[[line]]\ndevice = \"/dev/ttyS1\"\nppp_timeout = 0\n");
    assert_eq!(e.option, "line[1].ppp_timeout");
}
