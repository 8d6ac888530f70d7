//! Token parsing (see `zrooms_server::fuzzing::token`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| zrooms_server::fuzzing::token(data));
