//! Token04 vectors made by Node's crypto from the published layout
//! (`scripts/gen-token-vectors.mjs`): the Rust verifier must agree with each, both layouts.

use serde::Deserialize;
use zrooms_token::{verify, Check};

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    token: String,
    secret: String,
    app_id: u32,
    user_id: String,
    now: i64,
    expect: Expect,
}

#[derive(Deserialize)]
struct Expect {
    ok: Option<Granted>,
    code: Option<u32>,
}

#[derive(Deserialize)]
struct Granted {
    nonce: i64,
    expire: i64,
    room_id: String,
    login: bool,
    publish: bool,
    stream_ids: Option<Vec<String>>,
}

#[test]
fn independent_vectors_agree() {
    let text = include_str!("fixtures/token04-vectors.json");
    let file: File = serde_json::from_str(text).expect("vectors file");
    assert!(file.vectors.len() >= 30, "the vector file lost vectors");
    let (mut oks, mut errs) = (0, 0);
    for v in &file.vectors {
        let got = verify(
            &v.token,
            v.secret.as_bytes(),
            v.app_id,
            &v.user_id,
            v.now,
            Check::ANY,
        );
        match (&v.expect.ok, v.expect.code, got) {
            (Some(want), None, Ok(got)) => {
                oks += 1;
                assert_eq!(got.claims.nonce, want.nonce, "{}", v.name);
                assert_eq!(got.claims.expire, want.expire, "{}", v.name);
                assert_eq!(got.claims.user_id, v.user_id, "{}", v.name);
                assert_eq!(got.privileges.room_id, want.room_id, "{}", v.name);
                assert_eq!(got.privileges.login, want.login, "{}", v.name);
                assert_eq!(got.privileges.publish, want.publish, "{}", v.name);
                assert_eq!(got.privileges.stream_ids, want.stream_ids, "{}", v.name);
            }
            (None, Some(code), Err(e)) => {
                errs += 1;
                assert_eq!(e.code(), code, "{}", v.name);
            }
            (_, _, got) => panic!(
                "{}: expected {:?}/{:?}, got {got:?}",
                v.name,
                v.expect.code,
                v.expect.ok.is_some()
            ),
        }
    }
    assert!(oks >= 8 && errs >= 20, "{oks} accepted, {errs} refused");
}
