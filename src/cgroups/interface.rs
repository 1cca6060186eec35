//! Reading and writing cgroup interface files, with errors that name the file and value.
//!
//! Files are opened without `O_CREAT`: on a real cgroup filesystem a missing interface file
//! means the controller (or feature, such as swap accounting) is absent, and creating a
//! regular file there is impossible anyway. Callers decide whether absence is an error.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::error::CgroupError;

/// Writes `value` to the interface file `path` in one `write(2)`.
///
/// The kernel parses each write as a whole; `O_TRUNC` is a no-op on cgroupfs but keeps plain
/// files (test fixtures) holding exactly the last value.
pub(super) fn write(path: &Path, controller: &str, value: &str) -> Result<(), CgroupError> {
    let result = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut file| file.write_all(value.as_bytes()));
    result.map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        controller: controller.to_owned(),
        value: value.to_owned(),
        source,
    })
}

/// The file's content, or `None` when it does not exist.
pub(super) fn read_optional(path: &Path) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// A file holding one unsigned number, or `None` when it does not exist.
pub(super) fn read_u64(path: &Path) -> Result<Option<u64>, CgroupError> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    parse_u64(path, text.trim()).map(Some)
}

/// A "flat keyed" file (`memory.stat`, `cpu.stat`, `memory.events`, `memory.oom_control`):
/// one `key value` pair per line. Lines that are not a key and a number are skipped, since
/// kernels add fields over time.
pub(super) fn read_keyed(path: &Path) -> Result<Option<BTreeMap<String, u64>>, CgroupError> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    Ok(Some(parse_keyed(&text)))
}

fn parse_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The pids listed in a `cgroup.procs` file, or `None` when the cgroup does not exist.
pub(super) fn read_pids(path: &Path) -> Result<Option<Vec<i32>>, CgroupError> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    text.split_whitespace()
        .map(|pid| {
            pid.parse().map_err(|_| CgroupError::Parse {
                path: path.to_owned(),
                reason: format!("{pid:?} is not a pid"),
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn parse_u64(path: &Path, text: &str) -> Result<u64, CgroupError> {
    text.parse().map_err(|_| CgroupError::Parse {
        path: path.to_owned(),
        reason: format!("{text:?} is not an unsigned number"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files_skip_unknown_shapes() {
        let map = parse_keyed("usage_usec 1500\nnr_periods 0\nsome avg10=0.00\nbad\n");
        assert_eq!(map.get("usage_usec"), Some(&1500));
        assert_eq!(map.get("nr_periods"), Some(&0));
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn missing_files_are_none_and_bad_numbers_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_u64(&dir.path().join("absent")).expect("read"), None);
        let file = dir.path().join("pids.current");
        std::fs::write(&file, "max\n").expect("write");
        assert!(matches!(read_u64(&file), Err(CgroupError::Parse { .. })));
        std::fs::write(&file, "12\n").expect("write");
        assert_eq!(read_u64(&file).expect("read"), Some(12));
    }

    #[test]
    fn write_never_creates_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = write(&dir.path().join("memory.max"), "memory", "1").expect_err("absent");
        assert!(matches!(err, CgroupError::Write { .. }), "{err}");
        assert!(!dir.path().join("memory.max").exists());
    }
}
