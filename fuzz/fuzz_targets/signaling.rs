//! A peer's signaling bytes: each line is one WebSocket text frame, sent in turn by two
//! connections of an in-memory server (see `zrooms_server::fuzzing::signaling`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    zrooms_server::fuzzing::signaling_bytes(data);
});
