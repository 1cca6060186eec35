//! OOM-kill counting: the container's cgroup files that count the kernel OOM killer's kills
//! (`oom_kill <n>` in v2 `memory.events` and v1 `memory.oom_control`), read before the start
//! and after the exit; a higher count afterwards means a process of the container was killed.

use std::path::PathBuf;

/// The sum of the `oom_kill` counters in `files`; a missing file, line or number counts 0 (the
/// memory controller may be off, or the kernel too old to count).
pub(super) fn oom_kills(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| parse_oom_kill(&text))
        .fold(0, u64::saturating_add)
}

/// The value of the `oom_kill` line of a cgroup event file.
fn parse_oom_kill(text: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_oom_kill_lines_of_v1_and_v2_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let v2 = dir.path().join("memory.events");
        std::fs::write(
            &v2,
            "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\noom_group_kill 0\n",
        )
        .expect("write");
        let v1 = dir.path().join("memory.oom_control");
        std::fs::write(&v1, "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n").expect("write");
        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, "oom_kill many\n").expect("write");
        let missing = dir.path().join("missing");
        assert_eq!(oom_kills(std::slice::from_ref(&v2)), 2);
        assert_eq!(oom_kills(&[v2, v1, garbage, missing.clone()]), 7);
        assert_eq!(oom_kills(&[missing]), 0);
        assert_eq!(oom_kills(&[]), 0);
    }
}
