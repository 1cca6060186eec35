//! Tests of layer extraction on temp dirs, with archives built in the test.
//!
//! Every layer directory sits next to an `outside` directory holding a canary file; hostile
//! archives aim at it, and `assert_contained` checks nothing changed beside the layer.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{Builder, EntryType, Header};
use tempfile::TempDir;

use super::*;
use crate::error_kind::ErrorKind;
use crate::image_service::digest::HashingReader;

const MTIME: u64 = 1_600_000_000;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipping: needs root");
            return;
        }
    };
}

struct Fixture {
    _tmp: TempDir,
    parent: PathBuf,
    dest: PathBuf,
    outside: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let parent = tmp.path().to_path_buf();
        let dest = parent.join("layer");
        let outside = parent.join("outside");
        fs::create_dir(&dest).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("canary"), b"original").unwrap();
        Self {
            _tmp: tmp,
            parent,
            dest,
            outside,
        }
    }

    fn unpack(&self, tar: &[u8]) -> Result<UnpackedLayer, UnpackError> {
        self.unpack_with(tar, &UnpackOptions::default())
    }

    fn unpack_with(
        &self,
        tar: &[u8],
        options: &UnpackOptions,
    ) -> Result<UnpackedLayer, UnpackError> {
        unpack_layer(tar, Compression::None, &self.dest, options)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dest.join(rel)
    }

    /// Nothing but the layer changed: the parent holds exactly `layer` and `outside`, and the
    /// canary is intact and alone.
    fn assert_contained(&self) {
        assert_eq!(names(&self.parent), ["layer", "outside"]);
        assert_eq!(names(&self.outside), ["canary"]);
        assert_eq!(fs::read(self.outside.join("canary")).unwrap(), b"original");
        let meta = fs::symlink_metadata(self.outside.join("canary")).unwrap();
        assert!(meta.file_type().is_file());
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Builds tar streams, including malformed ones the `tar` builder would refuse.
struct Tar(Builder<Vec<u8>>);

impl Tar {
    fn new() -> Self {
        Self(Builder::new(Vec::new()))
    }

    fn header(kind: EntryType, mode: u32, size: u64) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(MTIME);
        header.set_size(size);
        header
    }

    /// Appends an entry with `name` and `link` written into the header verbatim.
    fn raw(&mut self, name: &[u8], kind: EntryType, data: &[u8], link: &[u8]) -> &mut Self {
        let mut header = Self::header(kind, 0o644, data.len() as u64);
        header.as_mut_bytes()[..name.len()].copy_from_slice(name);
        header.as_mut_bytes()[157..157 + link.len()].copy_from_slice(link);
        header.set_cksum();
        self.0.append(&header, data).unwrap();
        self
    }

    fn entry(&mut self, mut header: Header, name: &str, data: &[u8]) -> &mut Self {
        self.0.append_data(&mut header, name, data).unwrap();
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(
            Self::header(EntryType::Regular, 0o644, data.len() as u64),
            name,
            data,
        )
    }

    fn file_owned(&mut self, name: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> &mut Self {
        let mut header = Self::header(EntryType::Regular, mode, data.len() as u64);
        header.set_uid(uid);
        header.set_gid(gid);
        self.entry(header, name, data)
    }

    fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.entry(Self::header(EntryType::Directory, mode, 0), name, b"")
    }

    fn dir_full(&mut self, name: &str, mode: u32, uid: u64, gid: u64, mtime: u64) -> &mut Self {
        let mut header = Self::header(EntryType::Directory, mode, 0);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mtime(mtime);
        self.entry(header, name, b"")
    }

    fn link(&mut self, kind: EntryType, name: &str, target: &str) -> &mut Self {
        let mut header = Self::header(kind, 0o777, 0);
        self.0.append_link(&mut header, name, target).unwrap();
        self
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(EntryType::Symlink, name, target)
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(EntryType::Link, name, target)
    }

    fn device(&mut self, name: &str, kind: EntryType, major: u32, minor: u32) -> &mut Self {
        let mut header = Self::header(kind, 0o660, 0);
        header.set_device_major(major).unwrap();
        header.set_device_minor(minor).unwrap();
        self.entry(header, name, b"")
    }

    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.0
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        self
    }

    fn finish(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.0, Builder::new(Vec::new()));
        builder.into_inner().unwrap()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 1).unwrap()
}

fn mtime_of(path: &Path) -> i64 {
    fs::symlink_metadata(path).unwrap().mtime()
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn media_types_map_to_compression() {
    let cases = [
        (
            "application/vnd.oci.image.layer.v1.tar",
            Some(Compression::None),
        ),
        (
            "application/vnd.oci.image.layer.v1.tar+gzip",
            Some(Compression::Gzip),
        ),
        (
            "application/vnd.oci.image.layer.v1.tar+zstd",
            Some(Compression::Zstd),
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            Some(Compression::None),
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            Some(Compression::Gzip),
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
            Some(Compression::Zstd),
        ),
        (
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            Some(Compression::Gzip),
        ),
        (
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            Some(Compression::Gzip),
        ),
        ("application/vnd.oci.image.config.v1+json", None),
        ("application/vnd.oci.image.layer.v1.tar+bzip2", None),
        ("", None),
    ];
    for (media_type, expected) in cases {
        assert_eq!(
            Compression::from_media_type(media_type),
            expected,
            "{media_type}"
        );
    }
}

#[test]
fn regular_files_get_contents_mode_and_mtime() {
    let fixture = Fixture::new();
    let big: Vec<u8> = (0..(COPY_BUFFER * 3 + 1234))
        .map(|i| (i % 251) as u8)
        .collect();
    let tar = Tar::new()
        .file("etc/hostname", b"carrack\n")
        .file("big.bin", &big)
        .file("empty", b"")
        .finish();
    let layer = fixture.unpack(&tar).unwrap();
    assert_eq!(layer.entries, 3);
    assert_eq!(
        fs::read(fixture.path("etc/hostname")).unwrap(),
        b"carrack\n"
    );
    assert_eq!(fs::read(fixture.path("big.bin")).unwrap(), big);
    assert_eq!(fs::read(fixture.path("empty")).unwrap(), b"");
    assert_eq!(mode_of(&fixture.path("etc/hostname")), 0o644);
    assert_eq!(mtime_of(&fixture.path("big.bin")), MTIME as i64);
    // Implied parents are created 0755.
    assert_eq!(mode_of(&fixture.path("etc")), 0o755);
    fixture.assert_contained();
}

#[test]
fn special_mode_bits_and_owners_are_preserved() {
    require_root!();
    let fixture = Fixture::new();
    let tar = Tar::new()
        .file_owned("bin/su", b"#!", 0o4755, 0, 0)
        .file_owned("bin/wall", b"#!", 0o2755, 0, 5)
        .file_owned("home/u/file", b"x", 0o600, 1000, 1001)
        .dir("tmp", 0o1777)
        .finish();
    fixture.unpack(&tar).unwrap();
    assert_eq!(mode_of(&fixture.path("bin/su")), 0o4755);
    assert_eq!(mode_of(&fixture.path("bin/wall")), 0o2755);
    assert_eq!(mode_of(&fixture.path("tmp")), 0o1777);
    let meta = fs::metadata(fixture.path("home/u/file")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (1000, 1001, 0o600)
    );
    assert_eq!(fs::metadata(fixture.path("bin/wall")).unwrap().gid(), 5);
}

#[test]
fn files_below_a_setgid_directory_keep_their_own_group() {
    require_root!();
    let fixture = Fixture::new();
    let tar = Tar::new()
        .dir_full("shared", 0o2775, 0, 50, MTIME)
        .file_owned("shared/f", b"x", 0o644, 0, 0)
        .dir("shared/sub", 0o755)
        .finish();
    fixture.unpack(&tar).unwrap();
    let file = fs::metadata(fixture.path("shared/f")).unwrap();
    assert_eq!(
        file.gid(),
        0,
        "the header's gid wins over setgid inheritance"
    );
    assert_eq!(
        mode_of(&fixture.path("shared/sub")),
        0o755,
        "no inherited setgid bit"
    );
    assert_eq!(fs::metadata(fixture.path("shared/sub")).unwrap().gid(), 0);
}

#[test]
fn compressed_layers_unpack_and_hash_the_uncompressed_stream() {
    let payload: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let tar = Tar::new()
        .file("data", &payload)
        .file("small", b"s")
        .finish();
    for (compression, blob) in [
        (Compression::None, tar.clone()),
        (Compression::Gzip, gzip(&tar)),
        (Compression::Zstd, zstd(&tar)),
    ] {
        let fixture = Fixture::new();
        let layer = unpack_layer(
            &blob[..],
            compression,
            &fixture.dest,
            &UnpackOptions::default(),
        )
        .unwrap();
        assert_eq!(layer.diff_id, Digest::sha256_of(&tar), "{compression}");
        assert_eq!(layer.uncompressed_bytes, tar.len() as u64);
        assert_eq!(fs::read(fixture.path("data")).unwrap(), payload);
        fixture.assert_contained();
    }
}

#[test]
fn trailing_bytes_after_the_archive_are_hashed_and_read_to_eof() {
    let mut tar = Tar::new().file("a", b"a").finish();
    tar.extend_from_slice(b"bytes after the end-of-archive marker");
    for (compression, blob) in [
        (Compression::None, tar.clone()),
        (Compression::Gzip, gzip(&tar)),
        (Compression::Zstd, zstd(&tar)),
    ] {
        let fixture = Fixture::new();
        let mut reader = HashingReader::new(&blob[..], Algorithm::Sha256);
        let layer = unpack_layer(
            &mut reader,
            compression,
            &fixture.dest,
            &UnpackOptions::default(),
        )
        .unwrap();
        assert_eq!(layer.diff_id, Digest::sha256_of(&tar), "{compression}");
        assert_eq!(layer.uncompressed_bytes, tar.len() as u64);
        assert_eq!(
            reader.bytes_read(),
            blob.len() as u64,
            "{compression}: compressed stream read to EOF"
        );
        assert_eq!(reader.finish().0, Digest::sha256_of(&blob));
    }
}

#[test]
fn sha512_diff_ids_are_supported() {
    let fixture = Fixture::new();
    let tar = Tar::new().file("a", b"a").finish();
    let options = UnpackOptions {
        diff_id_algorithm: Algorithm::Sha512,
        ..UnpackOptions::default()
    };
    let layer = fixture.unpack_with(&tar, &options).unwrap();
    let mut hasher = crate::image_service::digest::Hasher::new(Algorithm::Sha512);
    hasher.update(&tar);
    assert_eq!(layer.diff_id, hasher.finish());
}

#[test]
fn later_directory_entry_updates_metadata_and_dir_times_survive_children() {
    let fixture = Fixture::new();
    let tar = Tar::new()
        .dir_full("d", 0o755, 0, 0, 1000)
        .file("d/f", b"f")
        .dir_full("d", 0o700, 0, 0, 2000)
        .dir_full("e", 0o751, 0, 0, 3000)
        .file("e/g", b"g")
        .finish();
    fixture.unpack(&tar).unwrap();
    assert_eq!(mode_of(&fixture.path("d")), 0o700);
    assert_eq!(mtime_of(&fixture.path("d")), 2000);
    assert_eq!(mode_of(&fixture.path("e")), 0o751);
    assert_eq!(
        mtime_of(&fixture.path("e")),
        3000,
        "creating e/g must not disturb e's mtime"
    );
    assert_eq!(fs::read(fixture.path("d/f")).unwrap(), b"f");
}

#[test]
fn later_directory_entry_updates_owner() {
    require_root!();
    let fixture = Fixture::new();
    let tar = Tar::new()
        .dir("d", 0o755)
        .dir_full("d", 0o750, 7, 8, MTIME)
        .finish();
    fixture.unpack(&tar).unwrap();
    let meta = fs::metadata(fixture.path("d")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (7, 8, 0o750)
    );
}

#[test]
fn layer_root_entry_is_skipped() {
    let fixture = Fixture::new();
    let tar = Tar::new()
        .raw(b"./", EntryType::Directory, b"", b"")
        .file("x", b"x")
        .finish();
    let layer = fixture.unpack(&tar).unwrap();
    assert_eq!(layer.entries, 2);
    assert_eq!(names(&fixture.dest), ["x"]);
}

#[test]
fn symlinks_are_created_verbatim() {
    let fixture = Fixture::new();
    let tar = Tar::new()
        .symlink("etc/localtime", "/usr/share/zoneinfo/UTC")
        .symlink("up", "../../../../outside")
        .finish();
    fixture.unpack(&tar).unwrap();
    assert_eq!(
        fs::read_link(fixture.path("etc/localtime")).unwrap(),
        Path::new("/usr/share/zoneinfo/UTC")
    );
    assert_eq!(
        fs::read_link(fixture.path("up")).unwrap(),
        Path::new("../../../../outside")
    );
    assert_eq!(mtime_of(&fixture.path("up")), MTIME as i64);
    fixture.assert_contained();
}

#[test]
fn hardlinks_share_the_inode() {
    let fixture = Fixture::new();
    let tar = Tar::new()
        .file("bin/busybox", b"elf")
        .hardlink("bin/sh", "bin/busybox")
        .hardlink("sbin/init", "/bin/busybox")
        .finish();
    fixture.unpack(&tar).unwrap();
    let ino = |p: &str| fs::metadata(fixture.path(p)).unwrap().ino();
    assert_eq!(ino("bin/sh"), ino("bin/busybox"));
    assert_eq!(ino("sbin/init"), ino("bin/busybox"));
    assert_eq!(
        fs::metadata(fixture.path("bin/busybox")).unwrap().nlink(),
        3
    );
}

#[test]
fn hardlink_to_a_missing_target_fails() {
    let fixture = Fixture::new();
    let tar = Tar::new().hardlink("sh", "bin/busybox").finish();
    let error = fixture.unpack(&tar).unwrap_err();
    assert!(
        matches!(&error, UnpackError::HardlinkTarget { entry, .. } if entry == "sh"),
        "{error}"
    );
    assert_eq!(error.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn hardlink_escaping_the_layer_fails() {
    let fixture = Fixture::new();
    let tar = Tar::new()
        .raw(b"stolen", EntryType::Link, b"", b"../outside/canary")
        .finish();
    let error = fixture.unpack(&tar).unwrap_err();
    assert!(
        matches!(&error, UnpackError::HardlinkTarget { entry, .. } if entry == "stolen"),
        "{error}"
    );
    assert!(!fixture.path("stolen").exists());
    fixture.assert_contained();
}

#[test]
fn hardlink_through_a_symlink_fails() {
    let fixture = Fixture::new();
    let outside = fixture.outside.to_str().unwrap().to_owned();
    let tar = Tar::new()
        .symlink("door", &outside)
        .hardlink("stolen", "door/canary")
        .finish();
    let error = fixture.unpack(&tar).unwrap_err();
    assert!(
        matches!(&error, UnpackError::HardlinkTarget { .. }),
        "{error}"
    );
    assert_eq!(
        fs::metadata(fixture.outside.join("canary"))
            .unwrap()
            .nlink(),
        1
    );
    fixture.assert_contained();
}

#[test]
fn device_nodes_are_created_only_when_allowed() {
    require_root!();
    let tar = Tar::new()
        .device("dev/null", EntryType::Char, 1, 3)
        .device("dev/loop0", EntryType::Block, 7, 0)
        .device("run/fifo", EntryType::Fifo, 0, 0)
        .finish();

    let fixture = Fixture::new();
    fixture.unpack(&tar).unwrap();
    assert!(!fixture.path("dev/null").exists());
    assert!(!fixture.path("dev/loop0").exists());
    assert!(
        fs::symlink_metadata(fixture.path("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );

    let fixture = Fixture::new();
    let options = UnpackOptions {
        allow_device_nodes: true,
        ..UnpackOptions::default()
    };
    fixture.unpack_with(&tar, &options).unwrap();
    let null = fs::symlink_metadata(fixture.path("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o660);
    let block = fs::symlink_metadata(fixture.path("dev/loop0")).unwrap();
    assert!(block.file_type().is_block_device());
    assert_eq!(block.rdev(), rustix::fs::makedev(7, 0));
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buffer = vec![0u8; 256];
    match rustix::fs::lgetxattr(path, name, &mut buffer) {
        Ok(len) => {
            buffer.truncate(len);
            Some(buffer)
        }
        Err(_) => None,
    }
}

#[test]
fn pax_xattrs_are_applied_and_overlay_control_xattrs_filtered() {
    require_root!();
    let fixture = Fixture::new();
    let tar = Tar::new()
        .pax(&[
            ("SCHILY.xattr.user.note", b"hello"),
            ("SCHILY.xattr.trusted.origin", b"t"),
        ])
        .file("f", b"x")
        .pax(&[
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
        ])
        .dir("d", 0o755)
        .pax(&[("SCHILY.xattr.trusted.overlay.metacopy", b"")])
        .file("m", b"x")
        .pax(&[
            ("SCHILY.xattr.trusted.link", b"l"),
            ("SCHILY.xattr.user.refused", b"u"),
        ])
        .symlink("link", "/nowhere")
        .pax(&[("SCHILY.xattr.trusted.pipe", b"p")])
        .device("pipe", EntryType::Fifo, 0, 0)
        .finish();
    fixture.unpack(&tar).unwrap();
    assert_eq!(
        xattr(&fixture.path("f"), "user.note").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(
        xattr(&fixture.path("f"), "trusted.origin").as_deref(),
        Some(&b"t"[..])
    );
    assert_eq!(
        xattr(&fixture.path("d"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(xattr(&fixture.path("d"), "trusted.overlay.redirect"), None);
    assert_eq!(xattr(&fixture.path("m"), "trusted.overlay.metacopy"), None);
    // Nodes that cannot be opened get theirs by name, without following the link; user.*
    // is not allowed on symlinks and is skipped with a warning.
    assert_eq!(
        xattr(&fixture.path("link"), "trusted.link").as_deref(),
        Some(&b"l"[..])
    );
    assert_eq!(xattr(&fixture.path("link"), "user.refused"), None);
    assert_eq!(
        xattr(&fixture.path("pipe"), "trusted.pipe").as_deref(),
        Some(&b"p"[..])
    );
}

#[test]
fn pax_mtime_and_long_names_are_honoured() {
    let fixture = Fixture::new();
    let long = format!("{}/{}", "d".repeat(200), "f".repeat(200));
    let tar = Tar::new()
        .pax(&[("mtime", b"1234567890.5")])
        .file("t", b"x")
        .file(&long, b"long")
        .finish();
    fixture.unpack(&tar).unwrap();
    let meta = fs::metadata(fixture.path("t")).unwrap();
    assert_eq!(
        (meta.mtime(), meta.mtime_nsec()),
        (1_234_567_890, 500_000_000)
    );
    assert_eq!(fs::read(fixture.path(&long)).unwrap(), b"long");
}

/// A GNU sparse entry: 512 bytes of `a` at 0, 512 bytes of `b` at 8192, size 12288.
fn sparse_tar() -> Vec<u8> {
    let mut header = Header::new_gnu();
    header.as_mut_bytes()[..6].copy_from_slice(b"sparse");
    header.set_entry_type(EntryType::GNUSparse);
    header.set_mode(0o644);
    header.set_mtime(MTIME);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(1024);
    let gnu = header.as_gnu_mut().unwrap();
    gnu.sparse[0].set_offset(0);
    gnu.sparse[0].set_length(512);
    gnu.sparse[1].set_offset(8192);
    gnu.sparse[1].set_length(512);
    gnu.sparse[2].set_offset(12288);
    gnu.sparse[2].set_length(0);
    gnu.set_real_size(12288);
    header.set_cksum();
    let mut data = vec![b'a'; 512];
    data.extend_from_slice(&[b'b'; 512]);
    let mut builder = Builder::new(Vec::new());
    builder.append(&header, &data[..]).unwrap();
    builder.into_inner().unwrap()
}

#[test]
fn gnu_sparse_files_are_written_with_holes() {
    let fixture = Fixture::new();
    fixture.unpack(&sparse_tar()).unwrap();
    let contents = fs::read(fixture.path("sparse")).unwrap();
    let mut expected = vec![0u8; 12288];
    expected[..512].fill(b'a');
    expected[8192..8704].fill(b'b');
    assert_eq!(contents.len(), expected.len());
    assert!(contents == expected, "sparse contents differ");
    let blocks = fs::metadata(fixture.path("sparse")).unwrap().blocks();
    assert!(
        blocks * 512 < 12288,
        "expected holes, {blocks} blocks allocated"
    );
}

#[test]
fn pax_sparse_files_are_refused_not_corrupted() {
    let fixture = Fixture::new();
    let tar = Tar::new()
        .pax(&[
            ("GNU.sparse.major", b"1"),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.realsize", b"8192"),
        ])
        .file("sparse", b"1\n0\n512\n")
        .finish();
    let error = fixture.unpack(&tar).unwrap_err();
    assert!(
        matches!(&error, UnpackError::InvalidHeader { entry, .. } if entry == "sparse"),
        "{error}"
    );
    assert!(!fixture.path("sparse").exists());
}

#[test]
fn existing_entries_are_replaced_not_written_through() {
    let fixture = Fixture::new();
    let canary = fixture.outside.join("canary");
    let tar = Tar::new()
        .file("a", b"old")
        .file("a", b"new")
        .symlink("s", canary.to_str().unwrap())
        .file("s", b"replaces the link")
        .file("d/inner/x", b"x")
        .file("d", b"replaces the tree")
        .symlink("l", canary.to_str().unwrap())
        .dir("l", 0o755)
        .finish();
    fixture.unpack(&tar).unwrap();
    assert_eq!(fs::read(fixture.path("a")).unwrap(), b"new");
    assert!(
        fs::symlink_metadata(fixture.path("s"))
            .unwrap()
            .file_type()
            .is_file()
    );
    assert_eq!(fs::read(fixture.path("s")).unwrap(), b"replaces the link");
    assert_eq!(fs::read(fixture.path("d")).unwrap(), b"replaces the tree");
    assert!(fs::symlink_metadata(fixture.path("l")).unwrap().is_dir());
    fixture.assert_contained();
}

#[test]
fn whiteouts_become_overlay_whiteout_devices() {
    require_root!();
    let fixture = Fixture::new();
    let tar = Tar::new()
        .dir("etc", 0o755)
        .file("etc/.wh.motd", b"")
        .file(".wh.opt", b"")
        .finish();
    fixture.unpack(&tar).unwrap();
    for rel in ["etc/motd", "opt"] {
        let meta = fs::symlink_metadata(fixture.path(rel)).unwrap();
        assert!(meta.file_type().is_char_device(), "{rel}");
        assert_eq!(meta.rdev(), 0, "{rel}");
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "{rel}");
    }
    assert_eq!(names(&fixture.path("etc")), ["motd"]);
    assert_eq!(names(&fixture.dest), ["etc", "opt"]);
}

#[test]
fn whiteout_keeps_an_entry_of_the_same_layer() {
    require_root!();
    let fixture = Fixture::new();
    let tar = Tar::new().file("a", b"kept").file(".wh.a", b"").finish();
    fixture.unpack(&tar).unwrap();
    assert_eq!(fs::read(fixture.path("a")).unwrap(), b"kept");
}

#[test]
fn opaque_marker_sets_the_overlay_xattr() {
    require_root!();
    let fixture = Fixture::new();
    let tar = Tar::new()
        .file("var/lib/.wh..wh..opq", b"")
        .dir("var/lib", 0o700)
        .file("var/lib/new", b"n")
        .file(".wh..wh.plnk/123.456", b"aufs")
        .finish();
    fixture.unpack(&tar).unwrap();
    let lib = fixture.path("var/lib");
    assert_eq!(
        xattr(&lib, "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(mode_of(&lib), 0o700);
    assert_eq!(names(&lib), ["new"]);
    assert_eq!(names(&fixture.dest), ["var"], "aufs metadata is skipped");
}

#[test]
fn invalid_whiteouts_are_refused() {
    for name in [&b".wh.."[..], b"a/.wh...", b"a/.wh.", b"a/.wh.b/c"] {
        let fixture = Fixture::new();
        let tar = Tar::new().raw(name, EntryType::Regular, b"", b"").finish();
        let error = fixture.unpack(&tar).unwrap_err();
        assert!(
            matches!(error, UnpackError::InvalidWhiteout { .. }),
            "{error}"
        );
        fixture.assert_contained();
    }
}

#[test]
fn dot_dot_traversal_is_refused() {
    for name in [
        &b"../escape"[..],
        b"a/../../escape",
        b"a/b/../../../outside/canary",
        b"/../outside/canary",
    ] {
        let fixture = Fixture::new();
        let tar = Tar::new()
            .file("a/b/ok", b"ok")
            .raw(name, EntryType::Regular, b"pwned", b"")
            .finish();
        let error = fixture.unpack(&tar).unwrap_err();
        let shown = String::from_utf8_lossy(name).into_owned();
        assert!(
            matches!(&error, UnpackError::InvalidName { entry, .. } if *entry == shown),
            "{error}"
        );
        assert!(
            error.to_string().contains(&shown),
            "error names the entry: {error}"
        );
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);
        fixture.assert_contained();
    }
}

#[test]
fn absolute_names_land_inside_the_layer() {
    let fixture = Fixture::new();
    let canary = fixture.outside.join("canary");
    let tar = Tar::new()
        .raw(
            canary.to_str().unwrap().as_bytes(),
            EntryType::Regular,
            b"inside",
            b"",
        )
        .raw(b"/etc/passwd", EntryType::Regular, b"root:x:0:0", b"")
        .finish();
    fixture.unpack(&tar).unwrap();
    let inside = fixture.dest.join(canary.strip_prefix("/").unwrap());
    assert_eq!(fs::read(inside).unwrap(), b"inside");
    assert_eq!(fs::read(fixture.path("etc/passwd")).unwrap(), b"root:x:0:0");
    fixture.assert_contained();
}

#[test]
fn symlinked_parent_escape_is_refused() {
    let fixture = Fixture::new();
    let outside = fixture.outside.to_str().unwrap().to_owned();
    for (link, target) in [("door", outside.as_str()), ("etc", "/etc"), ("here", ".")] {
        let tar = Tar::new()
            .symlink(link, target)
            .raw(
                format!("{link}/canary").as_bytes(),
                EntryType::Regular,
                b"pwned",
                b"",
            )
            .finish();
        let error = fixture.unpack(&tar).unwrap_err();
        assert!(
            matches!(&error, UnpackError::Escape { entry, .. } if *entry == format!("{link}/canary")),
            "{error}"
        );
        fixture.assert_contained();
    }
    assert!(!fixture.path("etc/canary").exists());
}

#[test]
fn overlong_and_malformed_names_are_refused() {
    let long_component = "c".repeat(256);
    let long_path = "abcdefg/".repeat(600);
    let cases: [(&str, &[u8]); 3] = [
        ("component", long_component.as_bytes()),
        ("path", long_path.as_bytes()),
        ("nul", b"a\0b"),
    ];
    for (what, name) in cases {
        let fixture = Fixture::new();
        let tar = Tar::new()
            .pax(&[("path", name)])
            .raw(b"placeholder", EntryType::Regular, b"x", b"")
            .finish();
        let error = fixture.unpack(&tar).unwrap_err();
        assert!(
            matches!(error, UnpackError::InvalidName { .. }),
            "{what}: {error}"
        );
        assert_eq!(names(&fixture.dest), Vec::<String>::new(), "{what}");
    }
    let fixture = Fixture::new();
    let tar = Tar::new().raw(b"", EntryType::Regular, b"x", b"").finish();
    let error = fixture.unpack(&tar).unwrap_err();
    assert!(
        matches!(
            error,
            UnpackError::InvalidName {
                reason: "empty name",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn decompression_bomb_is_stopped_at_the_limit() {
    let zeros = vec![0u8; 8 << 20];
    let tar = Tar::new().file("bomb", &zeros).finish();
    let blob = gzip(&tar);
    assert!(blob.len() < 100_000);
    let options = UnpackOptions {
        max_uncompressed_bytes: 1 << 20,
        ..UnpackOptions::default()
    };
    let fixture = Fixture::new();
    let error = unpack_layer(&blob[..], Compression::Gzip, &fixture.dest, &options).unwrap_err();
    assert!(
        matches!(error, UnpackError::TooLarge { limit } if limit == 1 << 20),
        "{error}"
    );
    assert_eq!(error.kind(), ErrorKind::ResourceExhausted);
    assert!(fs::metadata(fixture.path("bomb")).map_or(0, |meta| meta.len()) <= 1 << 20);

    // Exactly at the limit is fine.
    let fixture = Fixture::new();
    let exact = UnpackOptions {
        max_uncompressed_bytes: tar.len() as u64,
        ..UnpackOptions::default()
    };
    unpack_layer(&blob[..], Compression::Gzip, &fixture.dest, &exact).unwrap();
}

#[test]
fn truncated_or_corrupt_compressed_streams_fail() {
    let payload: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let tar = Tar::new().file("data", &payload).finish();
    let gz = gzip(&tar);
    let zs = zstd(&tar);
    let mut corrupt = gz.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle..middle + 16].fill(0xff);
    let cases = [
        (
            "truncated gzip",
            Compression::Gzip,
            gz[..gz.len() / 2].to_vec(),
        ),
        (
            "gzip without trailer",
            Compression::Gzip,
            gz[..gz.len() - 4].to_vec(),
        ),
        ("corrupt gzip", Compression::Gzip, corrupt),
        ("not gzip", Compression::Gzip, tar.clone()),
        (
            "truncated zstd",
            Compression::Zstd,
            zs[..zs.len() / 2].to_vec(),
        ),
    ];
    for (what, compression, blob) in cases {
        let fixture = Fixture::new();
        let error = unpack_layer(
            &blob[..],
            compression,
            &fixture.dest,
            &UnpackOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(error, UnpackError::Decompress { .. }),
            "{what}: {error}"
        );
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);
        fixture.assert_contained();
    }
}

#[test]
fn truncated_tar_fails_naming_the_entry() {
    let tar = Tar::new().file("data", &[7u8; 10_000]).finish();
    let fixture = Fixture::new();
    let error = fixture.unpack(&tar[..4096]).unwrap_err();
    assert!(
        matches!(&error, UnpackError::Archive { entry: Some(entry), .. } if entry == "data"),
        "{error}"
    );
}

#[test]
fn bad_header_checksum_fails() {
    let mut tar = Tar::new().file("a", b"a").finish();
    tar[0] = b'b';
    let fixture = Fixture::new();
    let error = fixture.unpack(&tar).unwrap_err();
    assert!(matches!(error, UnpackError::Archive { .. }), "{error}");
}

#[test]
fn unsupported_entry_types_are_refused() {
    let fixture = Fixture::new();
    let tar = Tar::new()
        .raw(b"volume", EntryType::new(b'V'), b"", b"")
        .finish();
    let error = fixture.unpack(&tar).unwrap_err();
    assert!(
        matches!(&error, UnpackError::UnsupportedType { entry, entry_type: b'V' } if entry == "volume"),
        "{error}"
    );
}

/// A reader that fails after yielding `good` bytes.
struct FailingReader {
    data: Vec<u8>,
    position: usize,
    good: usize,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.position >= self.good {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "registry went away",
            ));
        }
        let end = self.good.min(self.position + buf.len());
        let read = end - self.position;
        buf[..read].copy_from_slice(&self.data[self.position..end]);
        self.position = end;
        Ok(read)
    }
}

#[test]
fn source_read_errors_are_reported_as_such() {
    let tar = Tar::new().file("data", &[1u8; 200_000]).finish();
    for (compression, blob) in [
        (Compression::None, tar.clone()),
        (Compression::Gzip, gzip(&tar)),
    ] {
        let fixture = Fixture::new();
        let good = blob.len() / 2;
        let reader = FailingReader {
            data: blob,
            position: 0,
            good,
        };
        let error = unpack_layer(
            reader,
            compression,
            &fixture.dest,
            &UnpackOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&error, UnpackError::Read { source } if source.kind() == io::ErrorKind::ConnectionReset),
            "{compression}: {error}"
        );
        assert_eq!(error.kind(), ErrorKind::Unavailable);
    }
}

#[test]
fn missing_destination_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let error = unpack_layer(
        &b""[..],
        Compression::None,
        &tmp.path().join("nope"),
        &UnpackOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(error, UnpackError::OpenDest { .. }), "{error}");
}

#[test]
fn overlay_stacks_unpacked_layers_with_whiteouts_and_opaque_dirs() {
    use crate::snapshot::{
        LayerMeta, Snapshotter, SnapshotterOptions, mount_overlay, unmount_overlay,
    };
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let options = SnapshotterOptions {
        sync_on_commit: false,
    };
    let (snapshotter, _) = Snapshotter::open_with(tmp.path(), options).unwrap();
    let layers = [
        Tar::new()
            .dir("etc", 0o755)
            .file("etc/motd", b"hello")
            .file("etc/hostname", b"base")
            .file("var/cache/a", b"a")
            .file("var/cache/b", b"b")
            .finish(),
        Tar::new()
            .file("etc/.wh.motd", b"")
            .dir("var/cache", 0o755)
            .file("var/cache/.wh..wh..opq", b"")
            .file("var/cache/c", b"c")
            .finish(),
        Tar::new().file("etc/hostname", b"top").finish(),
    ];
    let mut chain: Vec<String> = Vec::new();
    for (position, tar) in layers.iter().enumerate() {
        let chain_id = format!("sha256:{position:064}");
        let ingest = snapshotter.begin_layer(&chain_id).unwrap();
        let unpacked = unpack_layer(
            &gzip(tar)[..],
            Compression::Gzip,
            ingest.path(),
            &UnpackOptions::default(),
        )
        .unwrap();
        let meta = LayerMeta {
            parent: chain.last().cloned(),
            diff_id: unpacked.diff_id.to_string(),
            size: unpacked.uncompressed_bytes,
        };
        ingest.commit(meta).unwrap();
        chain.push(chain_id);
    }
    let spec = snapshotter.prepare_active("ctr", &chain).unwrap();
    let merged = tmp.path().join("merged");
    fs::create_dir(&merged).unwrap();
    if let Err(error) = mount_overlay(&spec, &merged) {
        assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
        eprintln!("skipping: cannot mount here: {error}");
        return;
    }
    // Unmount even when an assertion fails, so no mount outlives the test.
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = unmount_overlay(self.0);
        }
    }
    let guard = Unmount(&merged);
    assert_eq!(
        names(&merged.join("etc")),
        ["hostname"],
        "motd is whited out"
    );
    assert_eq!(
        fs::read_to_string(merged.join("etc/hostname")).unwrap(),
        "top"
    );
    assert_eq!(
        names(&merged.join("var/cache")),
        ["c"],
        "the opaque dir hides a and b"
    );
    drop(guard);
    assert_eq!(names(&merged), Vec::<String>::new(), "unmounted");
    assert!(snapshotter.remove_active("ctr").unwrap());
}

#[test]
fn recreating_a_whited_out_name_in_the_same_layer_makes_it_opaque() {
    require_root!();
    let fixture = Fixture::new();
    let tar = Tar::new()
        .file(".wh.d", b"")
        .file("d/new", b"n")
        .file(".wh.e", b"")
        .dir("e", 0o750)
        .file(".wh.f", b"")
        .file("f", b"a file")
        .finish();
    fixture.unpack(&tar).unwrap();
    for dir in ["d", "e"] {
        let path = fixture.path(dir);
        assert!(fs::symlink_metadata(&path).unwrap().is_dir(), "{dir}");
        assert_eq!(
            xattr(&path, "trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..]),
            "{dir}"
        );
    }
    assert_eq!(mode_of(&fixture.path("e")), 0o750);
    assert_eq!(names(&fixture.path("d")), ["new"]);
    assert_eq!(fs::read(fixture.path("f")).unwrap(), b"a file");
}

#[test]
fn a_regular_file_is_not_a_parent() {
    let fixture = Fixture::new();
    let tar = Tar::new()
        .file("a", b"file")
        .raw(b"a/b", EntryType::Regular, b"x", b"")
        .finish();
    let error = fixture.unpack(&tar).unwrap_err();
    assert!(
        matches!(&error, UnpackError::InvalidName { entry, .. } if entry == "a/b"),
        "{error}"
    );
}
