//! Tests of the snapshot store on temp dirs; the overlay mount test needs root.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::*;
use crate::error_kind::ErrorKind;

fn meta(parent: Option<&str>) -> LayerMeta {
    LayerMeta {
        parent: parent.map(str::to_owned),
        diff_id: format!("sha256:{}", "d".repeat(64)),
        size: 42,
    }
}

fn open(root: &Path) -> Snapshotter {
    // No syncfs in unit tests: it flushes the whole shared disk.
    let options = SnapshotterOptions {
        sync_on_commit: false,
    };
    Snapshotter::open_with(root, options).unwrap().0
}

/// Commits a layer holding `files` (relative path, contents).
fn add_layer(
    snapshotter: &Snapshotter,
    chain_id: &str,
    parent: Option<&str>,
    files: &[(&str, &str)],
) -> LayerInfo {
    let ingest = snapshotter.begin_layer(chain_id).unwrap();
    for (path, contents) in files {
        let path = ingest.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }
    ingest.commit(meta(parent)).unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn ids(chain_ids: &[&str]) -> Vec<String> {
    chain_ids.iter().map(|id| (*id).to_owned()).collect()
}

#[test]
fn handles_can_move_to_blocking_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Snapshotter>();
    assert_send_sync::<LayerIngest>();
}

#[test]
fn open_creates_a_private_layout_and_clears_ingest() {
    let tmp = TempDir::new().unwrap();
    open(tmp.path());
    let base = tmp.path().join("snapshots");
    assert_eq!(entries(&base), ["active", "ingest", "layers"]);
    assert_eq!(
        fs::metadata(&base).unwrap().permissions().mode() & 0o777,
        0o700
    );

    fs::create_dir_all(base.join("ingest/layer-7/fs/usr")).unwrap();
    fs::write(base.join("ingest/stray"), b"x").unwrap();
    fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
    let (_, report) = Snapshotter::open_with(tmp.path(), SnapshotterOptions::default()).unwrap();
    assert_eq!(report.removed_ingest, 2);
    assert_eq!(entries(&base.join("ingest")), Vec::<String>::new());
    assert_eq!(
        fs::metadata(&base).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn committed_layers_are_found_listed_and_survive_reopen() {
    let tmp = TempDir::new().unwrap();
    let snapshotter = open(tmp.path());
    assert!(snapshotter.layer("sha256:a").is_none());
    let a = add_layer(
        &snapshotter,
        "sha256:a",
        None,
        &[("etc/os-release", "ID=test")],
    );
    let b = add_layer(
        &snapshotter,
        "sha256:b",
        Some("sha256:a"),
        &[("bin/sh", "elf")],
    );
    assert_eq!(a.id, "1");
    assert_eq!(b.id, "2");
    assert_eq!(
        a.path,
        tmp.path()
            .canonicalize()
            .unwrap()
            .join("snapshots/layers/1/fs")
    );
    assert_eq!(
        fs::read_to_string(a.path.join("etc/os-release")).unwrap(),
        "ID=test"
    );
    assert_eq!(b.parent.as_deref(), Some("sha256:a"));
    assert_eq!(
        (b.size, b.diff_id.as_str()),
        (42, meta(None).diff_id.as_str())
    );
    assert_eq!(snapshotter.layer("sha256:b"), Some(b.clone()));
    assert_eq!(snapshotter.list_layers(), vec![a.clone(), b.clone()]);
    assert_eq!(
        entries(&tmp.path().join("snapshots/ingest")),
        Vec::<String>::new()
    );

    drop(snapshotter);
    let (reopened, report) =
        Snapshotter::open_with(tmp.path(), SnapshotterOptions::default()).unwrap();
    assert_eq!(report.layers, 2);
    assert_eq!(reopened.list_layers(), vec![a, b]);
    // Numbering continues after the highest existing layer.
    let c = add_layer(&reopened, "sha256:c", Some("sha256:b"), &[]);
    assert_eq!(c.id, "3");
}

#[test]
fn dropped_ingest_leaves_nothing() {
    let tmp = TempDir::new().unwrap();
    let snapshotter = open(tmp.path());
    let ingest = snapshotter.begin_layer("sha256:a").unwrap();
    fs::write(ingest.path().join("partial"), b"half a layer").unwrap();
    assert_eq!(ingest.chain_id(), "sha256:a");
    drop(ingest);
    assert_eq!(
        entries(&tmp.path().join("snapshots/ingest")),
        Vec::<String>::new()
    );
    assert!(snapshotter.layer("sha256:a").is_none());
}

#[test]
fn racing_commits_of_one_chain_id_keep_the_first() {
    let tmp = TempDir::new().unwrap();
    let snapshotter = open(tmp.path());
    let first = snapshotter.begin_layer("sha256:same").unwrap();
    let second = snapshotter.begin_layer("sha256:same").unwrap();
    fs::write(first.path().join("who"), b"first").unwrap();
    fs::write(second.path().join("who"), b"second").unwrap();
    let committed = first.commit(meta(None)).unwrap();
    let again = second.commit(meta(None)).unwrap();
    assert_eq!(committed, again);
    assert_eq!(fs::read(again.path.join("who")).unwrap(), b"first");
    assert_eq!(entries(&tmp.path().join("snapshots/layers")), ["1"]);
    assert_eq!(
        entries(&tmp.path().join("snapshots/ingest")),
        Vec::<String>::new()
    );
}

#[test]
fn broken_layer_and_active_dirs_are_removed_at_open() {
    let tmp = TempDir::new().unwrap();
    let snapshotter = open(tmp.path());
    add_layer(&snapshotter, "sha256:a", None, &[]);
    drop(snapshotter);
    let base = tmp.path().join("snapshots");
    fs::create_dir_all(base.join("layers/9/fs")).unwrap();
    fs::create_dir_all(base.join("layers/not-a-number")).unwrap();
    fs::create_dir_all(base.join("layers/5/fs")).unwrap();
    fs::write(base.join("layers/5/meta.json"), b"{ torn").unwrap();
    fs::create_dir_all(base.join("active/ctr/upper")).unwrap();
    let (reopened, report) =
        Snapshotter::open_with(tmp.path(), SnapshotterOptions::default()).unwrap();
    assert_eq!(report.removed_broken, 4);
    assert_eq!(entries(&base.join("layers")), ["1"]);
    assert_eq!(entries(&base.join("active")), Vec::<String>::new());
    assert_eq!(reopened.list_layers().len(), 1);
}

#[test]
fn invalid_ids_are_refused() {
    let tmp = TempDir::new().unwrap();
    let snapshotter = open(tmp.path());
    for bad in ["", "a\nb", &"x".repeat(256)] {
        let error = snapshotter.begin_layer(bad).unwrap_err();
        assert!(
            matches!(error, SnapshotError::InvalidChainId { .. }),
            "{error}"
        );
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);
    }
    for bad in ["", "..", ".hidden", "a/b", "../../etc", &"c".repeat(129)] {
        let error = snapshotter.prepare_active(bad, &[]).unwrap_err();
        assert!(
            matches!(error, SnapshotError::InvalidContainerId { .. }),
            "{bad:?}: {error}"
        );
        assert!(snapshotter.remove_active(bad).is_err());
    }
    assert_eq!(
        entries(&tmp.path().join("snapshots/active")),
        Vec::<String>::new()
    );
}

#[test]
fn active_snapshots_stack_lowers_top_first() {
    let tmp = TempDir::new().unwrap();
    let snapshotter = open(tmp.path());
    let a = add_layer(&snapshotter, "sha256:a", None, &[]);
    let b = add_layer(&snapshotter, "sha256:b", Some("sha256:a"), &[]);
    let c = add_layer(&snapshotter, "sha256:c", Some("sha256:b"), &[]);
    let spec = snapshotter
        .prepare_active("ctr1", &ids(&["sha256:a", "sha256:b", "sha256:c"]))
        .unwrap();
    assert_eq!(spec.lower_dirs, vec![c.path, b.path, a.path]);
    assert!(spec.upper_dir.is_dir() && spec.work_dir.is_dir());
    assert_eq!(spec.upper_dir.parent(), spec.work_dir.parent());
    assert_eq!(
        snapshotter.active_mount_spec("ctr1").unwrap(),
        Some(spec.clone())
    );
    assert_eq!(snapshotter.active_mount_spec("ctr2").unwrap(), None);

    let error = snapshotter
        .prepare_active("ctr1", &ids(&["sha256:a"]))
        .unwrap_err();
    assert!(
        matches!(error, SnapshotError::ActiveExists { .. }),
        "{error}"
    );
    assert_eq!(error.kind(), ErrorKind::AlreadyExists);

    let error = snapshotter
        .prepare_active("ctr2", &ids(&["sha256:a", "sha256:missing"]))
        .unwrap_err();
    assert!(
        matches!(&error, SnapshotError::LayerNotFound { chain_id } if chain_id == "sha256:missing"),
        "{error}"
    );
    assert_eq!(error.kind(), ErrorKind::NotFound);
    assert_eq!(entries(&tmp.path().join("snapshots/active")), ["ctr1"]);
    assert_eq!(
        entries(&tmp.path().join("snapshots/ingest")),
        Vec::<String>::new()
    );

    drop(snapshotter);
    let reopened = open(tmp.path());
    assert_eq!(
        reopened.active_mount_spec("ctr1").unwrap(),
        Some(spec.clone())
    );
    assert!(reopened.remove_active("ctr1").unwrap());
    assert!(!spec.upper_dir.exists());
    assert!(!reopened.remove_active("ctr1").unwrap());
    assert_eq!(
        entries(&tmp.path().join("snapshots/ingest")),
        Vec::<String>::new()
    );
}

#[test]
fn image_without_layers_gets_an_empty_lower() {
    let tmp = TempDir::new().unwrap();
    let snapshotter = open(tmp.path());
    let spec = snapshotter.prepare_active("scratch", &[]).unwrap();
    assert_eq!(spec.lower_dirs.len(), 1);
    assert_eq!(entries(&spec.lower_dirs[0]), Vec::<String>::new());
}

#[test]
fn layers_in_use_cannot_be_removed() {
    let tmp = TempDir::new().unwrap();
    let snapshotter = open(tmp.path());
    let a = add_layer(&snapshotter, "sha256:a", None, &[("f", "x")]);
    add_layer(&snapshotter, "sha256:b", Some("sha256:a"), &[]);
    snapshotter
        .prepare_active("ctr", &ids(&["sha256:a", "sha256:b"]))
        .unwrap();

    let error = snapshotter.remove_layer("sha256:b").unwrap_err();
    assert!(
        matches!(&error, SnapshotError::LayerInUse { user, .. } if user == "container ctr"),
        "{error}"
    );
    assert_eq!(error.kind(), ErrorKind::FailedPrecondition);
    snapshotter.remove_active("ctr").unwrap();

    let error = snapshotter.remove_layer("sha256:a").unwrap_err();
    assert!(
        matches!(&error, SnapshotError::LayerInUse { user, .. } if user == "layer sha256:b"),
        "{error}"
    );
    assert!(snapshotter.remove_layer("sha256:b").unwrap());
    assert!(snapshotter.remove_layer("sha256:a").unwrap());
    assert!(!snapshotter.remove_layer("sha256:a").unwrap());
    assert!(!a.path.exists());
    assert!(snapshotter.list_layers().is_empty());
    assert_eq!(
        entries(&tmp.path().join("snapshots/layers")),
        Vec::<String>::new()
    );
    assert_eq!(
        entries(&tmp.path().join("snapshots/ingest")),
        Vec::<String>::new()
    );
}

#[test]
fn usage_counts_hardlinked_inodes_once() {
    let tmp = TempDir::new().unwrap();
    let snapshotter = open(tmp.path());
    let empty = snapshotter.usage().unwrap();
    assert_eq!(empty, Usage::default());

    let layer = add_layer(
        &snapshotter,
        "sha256:a",
        None,
        &[("big", &"x".repeat(64 * 1024))],
    );
    let before = snapshotter.usage().unwrap();
    // layers/1, layers/1/fs, layers/1/meta.json, layers/1/fs/big
    assert_eq!(before.layers.inodes, 4);
    assert!(before.layers.bytes >= 64 * 1024);
    fs::hard_link(layer.path.join("big"), layer.path.join("big-link")).unwrap();
    fs::hard_link(layer.path.join("big"), layer.path.join("big-link2")).unwrap();
    assert_eq!(snapshotter.usage().unwrap().layers, before.layers);

    let spec = snapshotter
        .prepare_active("ctr", &ids(&["sha256:a"]))
        .unwrap();
    fs::write(spec.upper_dir.join("written"), vec![1u8; 8192]).unwrap();
    let after = snapshotter.usage().unwrap();
    assert_eq!(after.layers, before.layers);
    // active/ctr, upper, work, lowers.json, upper/written
    assert_eq!(after.active.inodes, 5);
    assert!(after.active.bytes >= 8192);
    assert_eq!(fs::metadata(layer.path.join("big")).unwrap().nlink(), 3);
}

/// Unmounts (lazily) on drop so a failing test does not leave a mount behind.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

/// Mounts `spec` on a fresh dir under `tmp`, or says why the test cannot run here.
fn try_mount(spec: &MountSpec, tmp: &Path) -> Option<(PathBuf, impl Drop)> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: overlay mounts need root");
        return None;
    }
    let target = tmp.join("merged");
    fs::create_dir_all(&target).unwrap();
    match mount_overlay(spec, &target) {
        Ok(()) => Some((target.clone(), MountGuard(target))),
        Err(error) if error.kind() == ErrorKind::PermissionDenied => {
            eprintln!("skipping: cannot mount here: {error}");
            None
        }
        Err(error) => panic!("mount failed: {error}"),
    }
}

#[test]
fn overlay_of_three_layers_shows_the_merged_view() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let tmp = TempDir::new().unwrap();
    let snapshotter = open(tmp.path());
    add_layer(
        &snapshotter,
        "sha256:1",
        None,
        &[
            ("a.txt", "1"),
            ("gone.txt", "g"),
            ("d/x", "x"),
            ("d/y", "y"),
        ],
    );
    // Layer 2: delete gone.txt (whiteout device) and replace d wholesale (opaque).
    let ingest = snapshotter.begin_layer("sha256:2").unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        ingest.path().join("gone.txt"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .unwrap();
    fs::create_dir(ingest.path().join("d")).unwrap();
    rustix::fs::setxattr(
        ingest.path().join("d"),
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    fs::write(ingest.path().join("d/z"), "z").unwrap();
    ingest.commit(meta(Some("sha256:1"))).unwrap();
    add_layer(
        &snapshotter,
        "sha256:3",
        Some("sha256:2"),
        &[("a.txt", "3")],
    );

    let spec = snapshotter
        .prepare_active("ctr", &ids(&["sha256:1", "sha256:2", "sha256:3"]))
        .unwrap();
    let Some((merged, guard)) = try_mount(&spec, tmp.path()) else {
        return;
    };
    assert_eq!(fs::read_to_string(merged.join("a.txt")).unwrap(), "3");
    assert!(!merged.join("gone.txt").exists());
    assert_eq!(entries(&merged.join("d")), ["z"]);
    assert_eq!(entries(&merged), ["a.txt", "d"]);
    fs::write(merged.join("new"), "n").unwrap();
    assert_eq!(fs::read_to_string(spec.upper_dir.join("new")).unwrap(), "n");

    unmount_overlay(&merged).unwrap();
    std::mem::forget(guard);
    assert_eq!(entries(&merged), Vec::<String>::new());
    assert!(snapshotter.remove_active("ctr").unwrap());
}

#[test]
fn many_layers_mount_with_lowerdir_plus() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let tmp = TempDir::new().unwrap();
    let snapshotter = open(tmp.path());
    let mut chain = Vec::new();
    for layer in 0..120 {
        let chain_id = format!("sha256:{layer:064}");
        let parent = chain.last().map(String::as_str);
        let name = format!("f{layer}");
        add_layer(&snapshotter, &chain_id, parent, &[(name.as_str(), "x")]);
        chain.push(chain_id);
    }
    let spec = snapshotter.prepare_active("many", &chain).unwrap();
    let Some((merged, _guard)) = try_mount(&spec, tmp.path()) else {
        return;
    };
    assert_eq!(fs::read_dir(&merged).unwrap().count(), 120);
}

#[test]
fn mount_errors_name_the_target_and_step() {
    let tmp = TempDir::new().unwrap();
    let spec = MountSpec {
        lower_dirs: vec![tmp.path().join("missing")],
        upper_dir: tmp.path().join("upper"),
        work_dir: tmp.path().join("work"),
    };
    let target = tmp.path().join("target");
    fs::create_dir(&target).unwrap();
    let error = mount_overlay(&spec, &target).unwrap_err();
    assert!(
        matches!(&error, SnapshotError::Mount { target: t, .. } if *t == target),
        "{error}"
    );
    assert!(error.to_string().contains("failed"), "{error}");
}

#[test]
fn audit_reports_leftovers_unindexed_dirs_and_missing_parts() {
    let tmp = TempDir::new().unwrap();
    let snapshotter = open(tmp.path());
    add_layer(&snapshotter, "base", None, &[("a", "1")]);
    let top = add_layer(&snapshotter, "top", Some("base"), &[("b", "2")]);
    snapshotter
        .prepare_active("c1", &ids(&["base", "top"]))
        .unwrap();
    assert_eq!(snapshotter.audit(), Vec::new());
    assert_eq!(
        snapshotter.active_lowers().get("c1"),
        Some(&ids(&["base", "top"]))
    );

    let base = tmp.path().join("snapshots");
    let held = snapshotter.begin_layer("pending").unwrap();
    fs::create_dir(base.join("layers").join("999")).unwrap();
    fs::create_dir(base.join("active").join("stray")).unwrap();
    fs::remove_dir_all(&top.path).unwrap();
    fs::remove_dir_all(base.join("active").join("c1").join("work")).unwrap();
    let findings = snapshotter.audit();
    let text: Vec<String> = findings.iter().map(ToString::to_string).collect();
    assert_eq!(findings.len(), 5, "{text:#?}");
    assert!(matches!(
        &findings[0],
        SnapshotFinding::IngestLeftover { path } if path.starts_with(base.join("ingest"))
    ));
    assert!(findings.contains(&SnapshotFinding::Unindexed {
        path: base.join("layers").join("999")
    }));
    assert!(findings.contains(&SnapshotFinding::Unindexed {
        path: base.join("active").join("stray")
    }));
    assert!(findings.contains(&SnapshotFinding::LayerIncomplete {
        chain_id: "top".to_owned(),
        path: top.path.clone()
    }));
    assert!(text.iter().any(|t| t.contains("c1") && t.contains("work")));
    drop(held);
}
