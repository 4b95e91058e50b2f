//! `control::server::decode_request`: one line from a control-socket client (anyone who can
//! reach the socket). Never panics; a request it accepts survives encoding and decoding again.
#![no_main]

use eqlplus_dialer::control::server::decode_request;
use eqlplus_dialer::control::{Envelope, PROTOCOL_VERSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode_request(data) {
        Ok(request) => {
            let line = serde_json::to_vec(&Envelope {
                version: PROTOCOL_VERSION,
                request: request.clone(),
            })
            .expect("a request encodes");
            assert_eq!(decode_request(&line), Ok(request));
        }
        Err(message) => assert!(!message.is_empty(), "an error says something"),
    }
});
