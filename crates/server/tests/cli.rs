//! The command line: `--help`, usage errors (exit 2), bad configs (exit 1, nothing started),
//! `--check-config`, and where the listening address comes from (flag, environment, file).

use std::process::{Command, Stdio};

mod common;

fn server() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zrooms-server"));
    for (var, _) in std::env::vars().filter(|(v, _)| v.starts_with("ZROOMS_")) {
        c.env_remove(var);
    }
    c
}

fn run(c: &mut Command) -> (i32, String, String) {
    let out = c.output().expect("zrooms-server runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts the server, reads the first line it prints, and stops it.
fn first_line(c: &mut Command) -> String {
    let (mut child, line) = common::spawn_listening(c.stderr(Stdio::null()));
    let _ = child.kill();
    let _ = child.wait();
    line
}

/// A config file in the temp directory, removed when dropped.
struct ConfigFile(std::path::PathBuf);

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl std::ops::Deref for ConfigFile {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

fn config_file(name: &str, text: &str) -> ConfigFile {
    let file = format!("zrooms-cli-{}-{name}", std::process::id());
    let path = std::env::temp_dir().join(file);
    std::fs::write(&path, text).unwrap();
    ConfigFile(path)
}

#[test]
fn help_names_every_option_and_its_variable() {
    let (code, out, _) = run(server().arg("--help"));
    assert_eq!(code, 0);
    for word in [
        "--host",
        "--port",
        "--config",
        "--check-config",
        "ZROOMS_HOST",
        "ZROOMS_PORT",
        "ZROOMS_CONFIG",
    ] {
        assert!(out.contains(word), "--help lacks {word}:\n{out}");
    }
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    for args in [
        vec!["--no-such-flag"],
        vec!["--port", "seventy"],
        vec!["--port", "70000"],
        vec!["--host", "not an address"],
        vec!["--port"],
    ] {
        let (code, out, err) = run(server().args(&args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("error"), "{args:?}: {err}");
        assert!(!out.contains("listening"), "{args:?} started: {out}");
    }
    // A bad value from the environment is a usage error too.
    let (code, _, err) = run(server().env("ZROOMS_PORT", "x").arg("--check-config"));
    assert_eq!(code, 2, "{err}");
}

#[test]
fn bad_configs_exit_1_and_start_nothing() {
    let missing = ConfigFile(std::env::temp_dir().join("zrooms-cli-no-such-file.toml"));
    let invalid = config_file("invalid.toml", "media_workers = \"many\"\n");
    let unknown = config_file("unknown.toml", "no_such_key = 1\n");
    let host = config_file("host.toml", "host = \"over there\"\n");
    for (path, says) in [
        (&missing, "cannot read"),
        (&invalid, "bad config"),
        (&unknown, "no_such_key"),
        (&host, "host"),
    ] {
        for check in [true, false] {
            let mut c = server();
            c.arg("--config").arg(&**path).args(["--port", "0"]);
            if check {
                c.arg("--check-config");
            }
            let (code, out, err) = run(&mut c);
            assert_eq!(code, 1, "{}: {err}", path.display());
            assert!(err.contains(says), "{}: {err}", path.display());
            assert!(!out.contains("listening"), "{}: {out}", path.display());
        }
    }
}

#[test]
fn check_config_says_what_the_settings_resolve_to() {
    let file = config_file(
        "ok.toml",
        "host = \"127.0.0.2\"\nport = 9123\nmedia_workers = 3\n\n[[app]]\napp_id = 7\n",
    );
    // The file's address.
    let (code, out, err) = run(server().arg("--config").arg(&*file).arg("--check-config"));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("config ok: listen 127.0.0.2:9123;"),
        "{out}"
    );
    assert!(
        out.contains("1 app(s)") && out.contains("media workers 3"),
        "{out}"
    );
    // The environment over the file, the flag over the environment; the config file from
    // the environment.
    let (code, out, _) = run(server()
        .env("ZROOMS_CONFIG", &*file)
        .env("ZROOMS_PORT", "9200")
        .env("ZROOMS_HOST", "127.0.0.3")
        .args(["--port", "9300", "--check-config"]));
    assert_eq!(code, 0);
    assert!(
        out.starts_with("config ok: listen 127.0.0.3:9300;"),
        "{out}"
    );
    // Nothing given: the development default on 127.0.0.1:9000.
    let (code, out, _) = run(server().arg("--check-config"));
    assert_eq!(code, 0);
    assert!(
        out.starts_with("config ok: listen 127.0.0.1:9000;") && out.contains("default on"),
        "{out}"
    );
}

#[test]
fn every_config_key_also_comes_from_the_environment() {
    let file = config_file("workers.toml", "media_workers = 2\n");
    let (code, out, err) = run(server()
        .arg("--config")
        .arg(&*file)
        .env("ZROOMS_MEDIA_WORKERS", "4")
        .arg("--check-config"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("media workers 4"), "{out}");
    // A bad value is refused, naming the variable.
    let (code, _, err) = run(server()
        .env("ZROOMS_REPLAY_WINDOW", "lots")
        .arg("--check-config"));
    assert_eq!(code, 1);
    assert!(err.contains("ZROOMS_REPLAY_WINDOW"), "{err}");
    // The SDK's and the tests' own variables are not config keys.
    let (code, _, err) = run(server()
        .env("ZROOMS_CHROMIUM", "/usr/bin/chromium")
        .env("ZROOMS_LOG", "trace")
        .arg("--check-config"));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn the_port_from_the_environment_is_the_one_listened_on() {
    let line = first_line(
        server()
            .env("ZROOMS_PORT", "0")
            .env("ZROOMS_HOST", "127.0.0.1"),
    );
    assert!(line.starts_with("listening on ws://127.0.0.1:"), "{line}");
    assert!(
        !line.contains(":9000 "),
        "port 0 from the environment: {line}"
    );
}

/// TLS files: both or neither (a usage error on the command line, a config error from the
/// file or environment), unreadable or mismatched ones refused before anything listens, and a
/// good pair makes the server say `wss://`.
#[test]
fn tls_files_are_checked_before_anything_listens() {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let cert = config_file("cert.pem", &made.cert.pem());
    let key = config_file("key.pem", &made.signing_key.serialize_pem());
    let other = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
    let wrong_key = config_file("wrong-key.pem", &other.signing_key.serialize_pem());
    let junk = config_file("junk.pem", "not a certificate\n");
    let (code, _, err) = run(server().arg("--tls-cert").arg(&*cert));
    assert_eq!(code, 2, "--tls-cert alone: {err}");
    let (code, _, err) = run(server()
        .env("ZROOMS_TLS_CERT", &*cert)
        .arg("--check-config"));
    assert_eq!(code, 1, "tls_cert alone: {err}");
    assert!(err.contains("tls_cert and tls_key go together"), "{err}");
    for (c, k, says) in [
        (&junk, &key, "junk.pem"),
        (&cert, &junk, "TLS key"),
        (&cert, &wrong_key, "TLS certificate and key"),
    ] {
        for check in [true, false] {
            let mut cmd = server();
            cmd.arg("--tls-cert").arg(&**c).arg("--tls-key").arg(&**k);
            cmd.args(["--port", "0"]);
            if check {
                cmd.arg("--check-config");
            }
            let (code, out, err) = run(&mut cmd);
            assert_eq!(code, 1, "{says}: {err}");
            assert!(err.contains(says), "{says}: {err}");
            assert!(!out.contains("listening"), "{says}: {out}");
        }
    }
    let (code, out, err) = run(server()
        .env("ZROOMS_TLS_CERT", &*cert)
        .env("ZROOMS_TLS_KEY", &*key)
        .arg("--check-config"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(TLS)"), "{out}");
    let line = first_line(
        server()
            .args(["--port", "0", "--tls-cert"])
            .arg(&*cert)
            .arg("--tls-key")
            .arg(&*key),
    );
    assert!(line.starts_with("listening on wss://127.0.0.1:"), "{line}");
}
