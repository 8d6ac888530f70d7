//! The SFU's handling of a peer's SDP and first UDP datagrams (see
//! `zrooms_server::fuzzing::sdp_datagrams`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    zrooms_server::fuzzing::sdp_datagrams(data);
});
