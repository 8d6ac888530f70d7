//! Replays the fuzz corpus kept in `fuzz/corpus/` (and any crash reproducers kept in
//! `fuzz/regressions/`) through the same entry points the cargo-fuzz targets use, on stable
//! Rust, so a change that breaks on an input the fuzzer once found fails CI.

use std::path::Path;
use zrooms_server::fuzzing;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries.flatten() {
            if let Ok(bytes) = std::fs::read(e.path()) {
                out.push((e.path().display().to_string(), bytes));
            }
        }
    }
    out
}

#[test]
fn signaling_corpus() {
    let all = inputs("signaling");
    assert!(!all.is_empty(), "the signaling corpus is missing");
    for (_, data) in &all {
        fuzzing::signaling_bytes(data);
    }
}

#[test]
fn token_corpus() {
    let all = inputs("token");
    assert!(!all.is_empty(), "the token corpus is missing");
    for (_, data) in &all {
        fuzzing::token(data);
    }
}

#[test]
fn sdp_datagrams_corpus() {
    let all = inputs("sdp_datagrams");
    assert!(!all.is_empty(), "the sdp_datagrams corpus is missing");
    for (_, data) in &all {
        fuzzing::sdp_datagrams(data);
    }
}
