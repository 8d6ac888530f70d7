//! A CPU quota for the servers under test (`--server-cpu-quota CORES`): each server process
//! runs in a cgroup of its own that the kernel lets use `CORES` cores' worth of time every
//! 10 ms, however many cores it spreads over. This is how a 2-core box drives the server past
//! its capacity while the load generator's own players still have a core and more to spare:
//! "twice the capacity" is then twice what the quota carries, not twice what the box carries
//! (where the load generator would drown first and the figures say nothing about the server).
//!
//! Linux only, as root: cgroup v2 (`cpu.max`) where `/sys/fs/cgroup` is unified, else the v1
//! `cpu` controller (`cpu.cfs_quota_us`). The cgroup is removed when the run ends.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The quota's period: short, so a throttled server waits at most this long at a time.
const PERIOD_US: u64 = 10_000;

/// The cgroup of the servers under test, once `--server-cpu-quota` made it.
static CGROUP: OnceLock<(PathBuf, f64)> = OnceLock::new();

/// Makes the cgroup for a quota of `cores`.
pub fn set(cores: f64) -> Result<(), String> {
    if !(cores > 0.0 && cores <= 1024.0) {
        return Err(format!(
            "--server-cpu-quota {cores}: a number of cores above 0"
        ));
    }
    let quota = ((cores * PERIOD_US as f64) as u64).max(1000);
    let name = format!("zrooms-loadgen-{}", std::process::id());
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let dir = if v2 {
        Path::new("/sys/fs/cgroup").join(&name)
    } else {
        Path::new("/sys/fs/cgroup/cpu").join(&name)
    };
    let write = |file: &str, value: String| {
        std::fs::write(dir.join(file), &value)
            .map_err(|e| format!("{}: writing {value}: {e}", dir.join(file).display()))
    };
    if v2 {
        // The cpu controller must be on for the root's children (harmless when it is).
        let _ = std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", "+cpu");
    }
    std::fs::create_dir(&dir).map_err(|e| {
        format!(
            "--server-cpu-quota needs root and a cgroup cpu controller: {}: {e}",
            dir.display()
        )
    })?;
    let done = if v2 {
        write("cpu.max", format!("{quota} {PERIOD_US}"))
    } else {
        write("cpu.cfs_period_us", PERIOD_US.to_string())
            .and_then(|_| write("cpu.cfs_quota_us", quota.to_string()))
    };
    if let Err(e) = done {
        let _ = std::fs::remove_dir(&dir);
        return Err(e);
    }
    CGROUP
        .set((dir, cores))
        .map_err(|_| "--server-cpu-quota given twice".to_string())
}

/// The quota in cores, when one is set.
pub fn cores() -> Option<f64> {
    CGROUP.get().map(|(_, c)| *c)
}

/// `program args…` as a command that first moves itself into the cgroup (a shell that then
/// execs, so the server keeps the pid the load generator watches).
pub fn wrap(program: &str, args: &[&str]) -> Option<std::process::Command> {
    let (dir, _) = CGROUP.get()?;
    let mut c = std::process::Command::new("sh");
    c.arg("-c")
        .arg(r#"echo $$ > "$1/cgroup.procs" && shift && exec "$@""#)
        .arg("sh")
        .arg(dir)
        .arg(program)
        .args(args);
    Some(c)
}

/// Removes the cgroup (its servers have been killed by then).
pub fn remove() {
    if let Some((dir, _)) = CGROUP.get() {
        // A killed process leaves its cgroup a moment after `wait`: try for a while.
        for _ in 0..50 {
            if std::fs::remove_dir(dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        eprintln!("could not remove {}", dir.display());
    }
}
