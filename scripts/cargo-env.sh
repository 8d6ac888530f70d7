# Sourced by the scripts after cargo is known to be there. `napi build` always passes
# `--target <host triple>`, which puts the addon's build in target/<triple>/release; a plain
# `cargo build` or `cargo test` would build every dependency a second time in target/release.
# With the host triple named for every cargo command, the addon, the server, the load
# generator and the tests share one target directory and one build of their dependencies.
CARGO_BUILD_TARGET="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_BUILD_TARGET
