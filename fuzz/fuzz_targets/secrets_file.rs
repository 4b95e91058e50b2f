//! `config::SecretsFile::parse`: a pap-secrets/chap-secrets file. Never panics.
#![no_main]

use std::path::Path;

use eqlplus_dialer::config::SecretsFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = SecretsFile::parse(text, Path::new("/etc/eqlplus-dialer/secrets"));
    }
});
