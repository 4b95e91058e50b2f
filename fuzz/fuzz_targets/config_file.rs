//! `config::Config::parse`: a configuration file as a user (or a typo) writes it. Never
//! panics; every error names the file and a line.
#![no_main]

use std::path::Path;

use eqlplus_dialer::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent/eqlplus-dialer/eqlplus-dialer.toml");
    if let Err(errors) = Config::parse(text, path) {
        assert!(!errors.0.is_empty(), "a failure has at least one error");
        let shown = errors.to_string();
        assert!(shown.contains("eqlplus-dialer.toml"), "errors name the file: {shown}");
    }
});
