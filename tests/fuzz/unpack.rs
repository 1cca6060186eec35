//! Target `unpack`: `unpack_layer` on hostile and mutated tar streams, with the check that
//! nothing outside the layer directory changes.
//!
//! Layout, created once per run and repaired after a case that broke it:
//!
//! ```text
//! <scratch>/                      the scratch root: holds only `p`
//!     p/                          the layer's parent
//!         layer/                  the destination, emptied before every case
//!         canary                  a file with known content
//!         sibling/inner           a directory next to the layer, and a file in it
//! ```
//!
//! Generated streams reach the parent through `..`, through absolute paths of the form
//! `/proc/self/fd/<n>` (an fd the target holds on `p`, the same number every run, so that
//! saved inputs replay), and through symlinks and hard links built from both.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use carrack::image_service::digest::Algorithm;
use carrack::image_service::unpack::{Compression, UnpackError, UnpackOptions, unpack_layer};
use rustix::fs::{Mode, OFlags};

use super::Target;
use super::mutate::mutate;
use super::rng::Rng;
use super::tar_gen::{Body, Format, LongNames, Spec, build, fix_checksum, mutate_header};

const CANARY: &[u8] = b"canary: must never change\n";
const INNER: &[u8] = b"inner: must never change\n";
/// The lowest fd number the parent's and the root's handles get in the fuzz run (see the
/// module doc); other users of [`UnpackTarget`] in the same process pass another base.
pub const FD_BASE: i32 = 900;
/// Largest sparse real size generated.
const SPARSE_REAL_MAX: u64 = 4 << 20;
/// Set to generate the cases of known, unfixed issues too (see `known_issue_*` in
/// tests/fuzz.rs); default runs leave them out so that CI stays green until they are fixed:
/// sparse entries claiming more than [`SPARSE_CLAIM_MAX`] (the unpacker scans every byte of a
/// hole, which does not count against `max_uncompressed_bytes`), and directory trees deeper
/// than [`DEPTH_MAX`] (replacing one recurses once per level, which overflows a 2 MiB stack
/// in a debug build near 2000 levels).
pub const KNOWN_ISSUES_ENV: &str = "CARRACK_FUZZ_KNOWN_ISSUES";
/// Largest sparse real size a (mutated) case may claim, known issues aside.
const SPARSE_CLAIM_MAX: u64 = 64 << 20;
/// Deepest directory tree generated, known issues aside.
const DEPTH_MAX: usize = 800;

/// Decompression-bomb limits the cases run with.
const LIMITS: [u64; 4] = [64 << 10, 256 << 10, 1 << 20, 8 << 10];

const TAR_DICTIONARY: &[&[u8]] = &[
    b"../",
    b"..",
    b"/",
    b"./",
    b".wh.",
    b".wh..wh..opq",
    b"\0",
    b"ustar\x0000",
    b"ustar  \0",
    b"././@LongLink",
    b"0000644\0",
    b"77777777777\0",
    b"\x80\0\0\0\0\0\0\0\xff\xff\xff\xff",
    b"30 path=../../fza\n",
    b"30 linkpath=../canary\n",
    b"20 size=999999999\n",
    b"99999999999 x=y\n",
    b"SCHILY.xattr.",
    b"GNU.sparse.",
];

/// File names the generator uses most; [`GlobalWatch`] looks for them outside the scratch
/// tree, with whiteouts and [`WATCHED_NAMES`].
const NAMES: &[&str] = &[
    "fza", "fzb", "fzc", "fzd", "fze", "fzl", "fzm", "fzs", "fzh", "fzi",
];

/// Names other than `fz*` and `.wh.*` the generator writes, looked for outside the scratch
/// tree too (it also writes `p` and `f`, too common to watch for there).
const WATCHED_NAMES: &[&str] = &["canary", "sibling", "inner", "layer"];

/// Special names a well-formed layer may use in any position.
const CLEAN_SPECIAL_NAMES: &[&str] = &[
    ".", "", "canary", "sibling", "layer", "p", "fz name", "fz\u{ff}",
];

/// Names with a meaning to the unpacker.
const SPECIAL_NAMES: &[&str] = &[
    ".wh.fza",
    ".wh.fzd",
    ".wh.fzl",
    ".wh..wh..opq",
    ".wh..wh.plnk",
    ".wh..wh.aufs",
    ".wh.",
    ".wh..",
    ".wh...",
    "..",
    ".",
    "",
    "canary",
    "sibling",
    "layer",
    "p",
    "fz\u{ff}\u{fe}",
    "fz name",
    "fz\nname",
];

/// Tree-wide settings the generator needs.
#[derive(Debug, Clone)]
struct Places {
    /// `/proc/self/fd/<n>` on the layer's parent.
    parent: String,
    /// `/proc/self/fd/<n>` on the scratch root.
    root: String,
}

/// Builds one entry list.
struct Gen<'r> {
    rng: &'r mut Rng,
    places: &'r Places,
    /// Generate only what a well-formed layer may hold (no `..`, no invalid headers), so the
    /// case gets past the name checks and the hostile part is in links and whiteouts.
    clean: bool,
    names: Vec<Vec<u8>>,
    specs: Vec<Spec>,
}

impl Gen<'_> {
    fn component(&mut self) -> Vec<u8> {
        match self.rng.below(12) {
            0 if self.clean => self.rng.pick(CLEAN_SPECIAL_NAMES).as_bytes().to_vec(),
            0 => self.rng.pick(SPECIAL_NAMES).as_bytes().to_vec(),
            1 => {
                let lengths: &[usize] = if self.clean {
                    &[100, 155, 254, 255]
                } else {
                    &[100, 155, 254, 255, 256]
                };
                let length = self.rng.pick(lengths);
                let mut name = b"fz".to_vec();
                name.resize(length, b'x');
                name
            }
            _ => self.rng.pick(NAMES).as_bytes().to_vec(),
        }
    }

    fn fresh_path(&mut self) -> Vec<u8> {
        let depth = match self.rng.below(10) {
            0 => self.rng.range(4, 20),
            _ => self.rng.range(1, 3),
        };
        let mut path = Vec::new();
        for index in 0..depth {
            if index > 0 {
                path.push(b'/');
            }
            path.extend(self.component());
        }
        path
    }

    /// A path for a new entry: often one already used or below one, sometimes dressed with a
    /// prefix that must not matter (`/`, `./`) or must be refused (`../`).
    fn path(&mut self) -> Vec<u8> {
        let mut path = match self.rng.below(11) {
            0..=2 if !self.names.is_empty() => self.rng.pick_ref(&self.names).clone(),
            // An ancestor of an earlier entry: replacing a directory with its whole tree.
            10 if !self.names.is_empty() => {
                let mut path = self.rng.pick_ref(&self.names).clone();
                let slashes: Vec<usize> = (0..path.len()).filter(|&i| path[i] == b'/').collect();
                if !slashes.is_empty() {
                    path.truncate(self.rng.pick(&slashes));
                }
                path
            }
            3 | 4 if !self.names.is_empty() => {
                let mut path = self.rng.pick_ref(&self.names).clone();
                path.push(b'/');
                path.extend(self.component());
                path
            }
            _ => self.fresh_path(),
        };
        if self.clean
            && path
                .split(|&b| b == b'/')
                .any(|c| c.starts_with(b".wh.") && c != b".wh..wh..opq")
        {
            // A whiteout name used as a directory is refused: keep clean paths clean.
            path = self.rng.pick(NAMES).as_bytes().to_vec();
        }
        if self.clean && self.rng.one_in(8) {
            // A whiteout or opaque marker as the last component.
            let whiteout: &[u8] = self.rng.pick(&[
                b".wh..wh..opq".as_slice(),
                b".wh.fza",
                b".wh.fzd",
                b".wh.fzl",
            ]);
            match path.iter().rposition(|&b| b == b'/') {
                Some(slash) => path.truncate(slash + 1),
                None => path.clear(),
            }
            path.extend_from_slice(whiteout);
        }
        if self.rng.one_in(6) {
            let choices = if self.clean {
                [0, 1, 3, 6, 7]
            } else {
                [2, 4, 5, 6, 7]
            };
            let prefix = match self.rng.pick(&choices) {
                0 => "/".to_owned(),
                1 => "./".to_owned(),
                2 => "../".to_owned(),
                3 => "//".to_owned(),
                4 => "/../".to_owned(),
                5 => "./../".to_owned(),
                6 => format!("{}/", self.places.parent),
                _ => format!("{}/p/", self.places.root),
            };
            let mut prefixed = prefix.into_bytes();
            prefixed.extend(path);
            path = prefixed;
        }
        if self.rng.one_in(10) {
            path.push(b'/');
        }
        path
    }

    /// A symlink target that points outside the layer, or at a sibling entry.
    fn symlink_target(&mut self) -> Vec<u8> {
        let parent = &self.places.parent;
        let choices = [
            "..".to_owned(),
            "../..".to_owned(),
            "../../..".to_owned(),
            "../canary".to_owned(),
            "../sibling".to_owned(),
            "../sibling/inner".to_owned(),
            "/".to_owned(),
            ".".to_owned(),
            "fza".to_owned(),
            "fzl".to_owned(),
            "fzm".to_owned(),
            "fzl/fza".to_owned(),
            parent.clone(),
            format!("{parent}/canary"),
            format!("{parent}/sibling"),
            format!("{parent}/layer/fzd"),
            self.places.root.clone(),
            "/fza".to_owned(),
            String::new(),
            format!("{}fza", "../".repeat(40)),
        ];
        if !self.names.is_empty() && self.rng.one_in(4) {
            return self.rng.pick_ref(&self.names).clone();
        }
        loop {
            let target = self.rng.pick_ref(&choices).clone();
            if !(self.clean && target.is_empty()) {
                return target.into_bytes();
            }
        }
    }

    /// A hard link target: an earlier entry, or something outside.
    fn link_target(&mut self) -> Vec<u8> {
        let own = if self.clean {
            !self.rng.one_in(5)
        } else {
            self.rng.one_in(2)
        };
        if !self.names.is_empty() && own {
            return self.rng.pick_ref(&self.names).clone();
        }
        let parent = &self.places.parent;
        if self.clean {
            let choices = [
                format!("{parent}/canary"),
                format!("{parent}/sibling/inner"),
                "fzl/canary".to_owned(),
                "/canary".to_owned(),
                "fza".to_owned(),
            ];
            return self.rng.pick_ref(&choices).clone().into_bytes();
        }
        let choices = [
            "../canary".to_owned(),
            format!("{parent}/canary"),
            format!("{parent}/sibling/inner"),
            "fzl/canary".to_owned(),
            "fzl/inner".to_owned(),
            "fzl/../canary".to_owned(),
            "/canary".to_owned(),
            "canary".to_owned(),
            String::new(),
            "..".to_owned(),
            "/".to_owned(),
            ".".to_owned(),
            "fzl".to_owned(),
            "fzd".to_owned(),
        ];
        self.rng.pick_ref(&choices).clone().into_bytes()
    }

    fn data(&mut self) -> Vec<u8> {
        let length = match self.rng.below(30) {
            // Past the smaller decompression-bomb limits.
            0 => self.rng.range(60_000, 150_000),
            1 | 2 => 0,
            _ => self.rng.length(1500),
        };
        // A random pattern repeated: cheap to make, and compressible.
        let pattern: Vec<u8> = (0..self.rng.range(1, 64))
            .map(|_| self.rng.byte())
            .collect();
        let mut data = Vec::with_capacity(length + pattern.len());
        while data.len() < length {
            data.extend_from_slice(&pattern);
        }
        data.truncate(length);
        data
    }

    fn sparse(&mut self) -> Body {
        let count = match self.rng.below(6) {
            0 => self.rng.range(5, 30),
            _ => self.rng.range(0, 4),
        };
        let mut offset = 0u64;
        let mut segments = Vec::new();
        // Huge holes: the layer limit must refuse them before any scanning.
        let huge_holes = self.rng.one_in(4);
        for index in 0..count {
            let hole = if huge_holes {
                self.rng.interesting_u64() >> 2
            } else {
                self.rng.below(64 * 1024) as u64
            };
            offset = offset.saturating_add(hole);
            // Every segment but the last is a whole number of blocks, as the format wants.
            let blocks = self.rng.range(0, 3);
            let mut length = blocks * 512;
            if index + 1 == count || self.rng.one_in(10) {
                length += self.rng.below(512);
            }
            let data: Vec<u8> = (0..length).map(|_| self.rng.byte() | 1).collect();
            segments.push((offset, data));
            offset = offset.saturating_add(length as u64);
        }
        let real_size = match self.rng.below(5) {
            0 => self.rng.interesting_u64() % SPARSE_REAL_MAX,
            _ => offset.saturating_add(self.rng.below(100_000) as u64),
        };
        Body::Sparse {
            segments,
            real_size: if huge_holes {
                real_size
            } else {
                real_size.min(SPARSE_REAL_MAX)
            },
        }
    }

    fn body(&mut self) -> Body {
        match self.rng.below(20) {
            0..=5 => Body::File(self.data()),
            6..=8 => Body::Dir,
            9..=11 => Body::Symlink(self.symlink_target()),
            12..=14 => Body::Hardlink(self.link_target()),
            15 => Body::Fifo,
            16 => {
                let (major, minor) =
                    self.rng
                        .pick(&[(0, 0), (1, 3), (1, 5), (4, 1), (u32::MAX, 0)]);
                Body::Char(major, minor)
            }
            17 => Body::Block(7, 0),
            18 => self.sparse(),
            _ if self.clean => Body::Other(b'7', self.data()),
            _ => {
                let flag = self.rng.pick(b"7gxVMDNAI1\0Z");
                Body::Other(flag, self.data())
            }
        }
    }

    /// Dresses an entry with random metadata, PAX records and header layout.
    fn decorate(&mut self, spec: &mut Spec) {
        let rng = &mut *self.rng;
        if rng.one_in(3) {
            spec.mode = match rng.below(10) {
                0 => 0,
                1 => 0o4755,
                2 => 0o2755,
                3 => 0o1777,
                4 => 0o7777,
                5 => 0o777,
                6 => rng.next_u64() as u32 & 0o7_777_777,
                _ => rng.next_u64() as u32 & 0o7777,
            };
        }
        if rng.one_in(3) {
            // Mostly valid owners; now and then one chown cannot take.
            let ids: &[u64] = if rng.one_in(10) && !self.clean {
                &[4_294_967_295, 1 << 32, u64::MAX]
            } else {
                &[0, 1000, 65534, 4_294_967_294]
            };
            spec.uid = rng.pick(ids);
            spec.gid = rng.pick(&[0, 1000, 65534, spec.uid]);
        }
        if rng.one_in(5) {
            spec.mtime = rng.pick(&[0, 1, 0o77_777_777_777, 1 << 40, u64::MAX >> 1]);
        }
        spec.format = rng.pick(&[Format::Gnu, Format::Gnu, Format::Ustar, Format::Old]);
        spec.long_names = rng.pick(&[
            LongNames::Gnu,
            LongNames::Pax,
            LongNames::Prefix,
            LongNames::Truncate,
        ]);
        if rng.one_in(4) {
            let count = rng.range(1, 3);
            for _ in 0..count {
                let pick = if self.clean {
                    rng.pick(&[1, 2, 3, 4, 9, 14, 15, 16])
                } else {
                    rng.below(16)
                };
                let (key, value): (&[u8], Vec<u8>) = match pick {
                    0 => (
                        b"mtime",
                        rng.pick(&[
                            "1.5",
                            "-1.25",
                            "abc",
                            "99999999999999999999",
                            "",
                            "-",
                            "1.",
                            "-0.000000001",
                        ])
                        .as_bytes()
                        .to_vec(),
                    ),
                    1 => (b"SCHILY.xattr.user.fz", b"value".to_vec()),
                    2 => (b"SCHILY.xattr.trusted.overlay.opaque", b"y".to_vec()),
                    3 => (b"SCHILY.xattr.trusted.overlay.redirect", b"/fza".to_vec()),
                    4 => (
                        b"SCHILY.xattr.security.capability",
                        vec![
                            1, 0, 0, 2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                        ],
                    ),
                    5 => (b"SCHILY.xattr.", b"x".to_vec()),
                    6 => (b"SCHILY.xattr.user.", Vec::new()),
                    7 => (b"GNU.sparse.major", b"1".to_vec()),
                    8 => (b"path", b"../fza".to_vec()),
                    9 => (
                        b"path",
                        format!("{}/canary", self.places.parent).into_bytes(),
                    ),
                    10 => (b"linkpath", b"../canary".to_vec()),
                    11 => (
                        b"size",
                        rng.pick(&["99999999", "-1", "0", "18446744073709551616"])
                            .as_bytes()
                            .to_vec(),
                    ),
                    12 => (
                        b"uid",
                        rng.pick(&["0", "-5", "4294967296"]).as_bytes().to_vec(),
                    ),
                    13 => (b"SCHILY.xattr.user.big", vec![b'v'; 70_000]),
                    14 => (b"hdrcharset", b"BINARY".to_vec()),
                    16 => (
                        b"mtime",
                        rng.pick(&["1.5", "-1.25", "1700000000.123456789"])
                            .as_bytes()
                            .to_vec(),
                    ),
                    _ => (b"comment", b"fuzz".to_vec()),
                };
                spec.pax.push((key.to_vec(), value));
            }
        }
        if rng.one_in(30) && !self.clean {
            spec.pax_garbage = rng
                .pick(&[b"5 a\n".as_slice(), b"999 x=y\n", b"x", b"0 =\n", b"3 =\n"])
                .to_vec();
        }
    }

    fn push(&mut self, name: Vec<u8>, body: Body) {
        let mut spec = Spec::new(name.clone(), body);
        self.decorate(&mut spec);
        self.names.push(name);
        self.specs.push(spec);
    }

    /// An entry placed under `dir` (typically a symlink planted just before).
    fn under(&mut self, dir: &[u8]) {
        let mut name = dir.to_vec();
        name.push(b'/');
        let leaf: &[u8] = self.rng.pick(&[
            b"fza".as_slice(),
            b"canary",
            b"inner",
            b".wh.canary",
            b".wh..wh..opq",
            b"fzd/fzb",
        ]);
        name.extend_from_slice(leaf);
        let body = match self.rng.below(6) {
            0 => Body::Dir,
            1 => Body::Hardlink(b"fza".to_vec()),
            2 => Body::Symlink(b"..".to_vec()),
            3 => Body::Fifo,
            _ => Body::File(b"escaped".to_vec()),
        };
        self.push(name, body);
    }

    /// One of the classic layer attacks, as a start.
    fn pattern(&mut self) {
        let outward = |g: &mut Self| -> Vec<u8> {
            let parent = g.places.parent.clone();
            g.rng
                .pick_ref(&[
                    "..".to_owned(),
                    "../sibling".to_owned(),
                    parent.clone(),
                    format!("{parent}/sibling"),
                    "/".to_owned(),
                    "../../p".to_owned(),
                ])
                .clone()
                .into_bytes()
        };
        let canary = |g: &mut Self| -> Vec<u8> {
            let parent = g.places.parent.clone();
            let choices = if g.clean {
                vec![
                    format!("{parent}/canary"),
                    format!("{parent}/sibling/inner"),
                ]
            } else {
                vec![
                    "../canary".to_owned(),
                    format!("{parent}/canary"),
                    "../sibling/inner".to_owned(),
                ]
            };
            g.rng.pick_ref(&choices).clone().into_bytes()
        };
        let pattern = if self.clean {
            // Not 7 (escapes by `..` in long names) nor 13 (the root as a non-directory).
            self.rng.pick(&[0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12])
        } else {
            self.rng.below(14)
        };
        match pattern {
            // A symlinked parent.
            0 => {
                let target = outward(self);
                self.push(b"fzl".to_vec(), Body::Symlink(target));
                for _ in 0..self.rng.range(1, 3) {
                    self.under(b"fzl");
                }
            }
            // Symlink, then a file of the same name (must replace the link, not follow it).
            1 => {
                let target = canary(self);
                self.push(b"fzs".to_vec(), Body::Symlink(target));
                let body = match self.rng.below(4) {
                    0 => Body::Dir,
                    1 => Body::Hardlink(b"fzs".to_vec()),
                    2 => Body::Fifo,
                    _ => Body::File(b"overwritten".to_vec()),
                };
                self.push(b"fzs".to_vec(), body);
            }
            // A hard link to something outside, directly or through a symlink.
            2 => {
                if self.rng.one_in(2) {
                    let target = outward(self);
                    self.push(b"fzl".to_vec(), Body::Symlink(target));
                }
                let target = match self.rng.below(3) {
                    0 => b"fzl/canary".to_vec(),
                    _ => canary(self),
                };
                self.push(b"fzh".to_vec(), Body::Hardlink(target));
                if self.rng.one_in(2) {
                    self.push(b"fzh".to_vec(), Body::File(b"through the link".to_vec()));
                }
            }
            // A symlink chain ending outside.
            3 => {
                let target = outward(self);
                self.push(b"fzl".to_vec(), Body::Symlink(b"fzm".to_vec()));
                self.push(b"fzm".to_vec(), Body::Symlink(target));
                self.under(b"fzl");
            }
            // A directory replaced by a symlink, then used as a directory.
            4 => {
                self.push(b"fzd".to_vec(), Body::Dir);
                self.push(b"fzd/fza".to_vec(), Body::File(b"a".to_vec()));
                let target = outward(self);
                self.push(b"fzd".to_vec(), Body::Symlink(target));
                self.under(b"fzd");
            }
            // Whiteouts and opaque markers around directories and links.
            5 => {
                let name = self.rng.pick(&["fzd", "fzl", "fza"]).as_bytes().to_vec();
                let mut whiteout = b".wh.".to_vec();
                whiteout.extend_from_slice(&name);
                self.push(whiteout, Body::File(Vec::new()));
                if self.rng.one_in(2) {
                    self.push(name.clone(), Body::Dir);
                }
                self.under(&name);
                if self.rng.one_in(2) {
                    let target = outward(self);
                    self.push(b"fzl".to_vec(), Body::Symlink(target));
                    self.push(b"fzl/.wh..wh..opq".to_vec(), Body::File(Vec::new()));
                }
            }
            // Links between the layer's own files, then replacements.
            6 => {
                self.push(b"fza".to_vec(), Body::File(b"a".to_vec()));
                self.push(b"fzh".to_vec(), Body::Hardlink(b"fza".to_vec()));
                self.push(b"fzh".to_vec(), Body::File(b"h".to_vec()));
                let target = canary(self);
                self.push(b"fza".to_vec(), Body::Symlink(target));
                self.push(b"fzi".to_vec(), Body::Hardlink(b"fza".to_vec()));
                self.push(b"fzi".to_vec(), Body::File(b"i".to_vec()));
            }
            // Escapes hidden in long names and PAX records.
            7 => {
                let mut name = b"../".to_vec();
                name.extend(std::iter::repeat_n(b'x', 150));
                let mut spec = Spec::new(name, Body::File(b"long".to_vec()));
                spec.long_names = self.rng.pick(&[LongNames::Gnu, LongNames::Pax]);
                self.specs.push(spec);
                let mut spec = Spec::new(b"fza".to_vec(), Body::File(b"pax".to_vec()));
                spec.pax.push((b"path".to_vec(), canary(self)));
                self.specs.push(spec);
                let mut spec = Spec::new(b"fzh".to_vec(), Body::Hardlink(b"fza".to_vec()));
                spec.pax.push((b"linkpath".to_vec(), canary(self)));
                self.specs.push(spec);
            }
            // Sparse files.
            8 => {
                let body = self.sparse();
                self.push(b"fzsparse".to_vec(), body);
            }
            // Deep paths and long components, near PATH_MAX and NAME_MAX.
            9 => {
                let component = self.rng.pick(&[1usize, 100, 254, 255]);
                let most = if self.clean { 4095 } else { 4200 };
                let mut depth = self.rng.range(1, most / (component + 1));
                if !known_issues() {
                    depth = depth.min(DEPTH_MAX);
                }
                let mut name = Vec::new();
                for index in 0..depth {
                    if index > 0 {
                        name.push(b'/');
                    }
                    name.push(b'f');
                    name.resize(name.len() + component.saturating_sub(1), b'z');
                }
                let body = if self.rng.one_in(2) {
                    Body::Dir
                } else {
                    Body::File(b"deep".to_vec())
                };
                self.push(name, body);
                if self.rng.one_in(2) {
                    // Then replace the top of the tree.
                    let mut top = vec![b'f'];
                    top.resize(component, b'z');
                    let body = self.body();
                    self.push(top, body);
                }
            }
            // Symlink loops.
            10 => {
                self.push(b"fzl".to_vec(), Body::Symlink(b"fzl".to_vec()));
                self.push(b"fzm".to_vec(), Body::Symlink(b"fzl/fzm".to_vec()));
                self.under(b"fzl");
                self.under(b"fzm");
            }
            // A directory without permissions, then entries inside it.
            11 => {
                let mut spec = Spec::new(b"fzd".to_vec(), Body::Dir);
                spec.mode = 0;
                self.specs.push(spec);
                self.names.push(b"fzd".to_vec());
                self.under(b"fzd");
            }
            // Hard links to directories and to the layer root.
            12 => {
                self.push(b"fzd".to_vec(), Body::Dir);
                let target: &[u8] = self.rng.pick(&[b"fzd".as_slice(), b".", b"/", b"./"]);
                self.push(b"fzh".to_vec(), Body::Hardlink(target.to_vec()));
            }
            // The layer root named as something else than a directory.
            _ => {
                let name: &[u8] = self.rng.pick(&[b".".as_slice(), b"/", b"./", b"//"]);
                let body = self.body();
                self.push(name.to_vec(), body);
            }
        }
    }
}

fn generate_specs(rng: &mut Rng, places: &Places, clean: bool) -> Vec<Spec> {
    let mut generator = Gen {
        rng,
        places,
        clean,
        names: Vec::new(),
        specs: Vec::new(),
    };
    if generator.rng.one_in(2) {
        generator.pattern();
    }
    let extra = generator.rng.length(10);
    for _ in 0..extra {
        let name = generator.path();
        let body = generator.body();
        generator.push(name, body);
    }
    let mut specs = generator.specs;
    if specs.len() > 1 && rng.one_in(8) {
        let a = rng.below(specs.len());
        let b = rng.below(specs.len());
        specs.swap(a, b);
    }
    specs
}

/// How a case's input encodes its options: one byte of flags, then the (compressed) stream.
#[derive(Debug, Clone, Copy)]
struct Flags {
    compression: Compression,
    limit: u64,
    algorithm: Algorithm,
    devices: bool,
}

impl Flags {
    fn decode(byte: u8) -> Self {
        Self {
            compression: match byte & 3 {
                1 => Compression::Gzip,
                2 => Compression::Zstd,
                _ => Compression::None,
            },
            limit: LIMITS[usize::from((byte >> 2) & 3)],
            algorithm: if byte & 0x10 != 0 {
                Algorithm::Sha512
            } else {
                Algorithm::Sha256
            },
            devices: byte & 0x20 != 0,
        }
    }
}

fn known_issues() -> bool {
    std::env::var_os(KNOWN_ISSUES_ENV).is_some()
}

/// Whether the tar reader would see a sparse entry claiming more than `SPARSE_CLAIM_MAX`
/// bytes (the tar crate reports a sparse entry's size as its real size).
fn claims_huge_hole(tar: &[u8]) -> bool {
    let mut archive = tar::Archive::new(tar);
    let Ok(entries) = archive.entries() else {
        return false;
    };
    for entry in entries {
        let Ok(entry) = entry else {
            return false;
        };
        if entry.header().entry_type().is_gnu_sparse() && entry.size() > SPARSE_CLAIM_MAX {
            return true;
        }
    }
    false
}

fn gzip(data: &[u8], members: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let chunk = data.len().div_ceil(members.max(1)).max(1);
    for part in data.chunks(chunk) {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = encoder.write_all(part);
        out.extend_from_slice(&encoder.finish().unwrap_or_default());
    }
    out
}

fn zstd(data: &[u8], frames: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let chunk = data.len().div_ceil(frames.max(1)).max(1);
    for part in data.chunks(chunk) {
        out.extend_from_slice(&zstd::encode_all(part, 1).unwrap_or_default());
    }
    out
}

/// The fds and paths of the watched tree.
#[derive(Debug)]
struct Tree {
    root: PathBuf,
    parent: PathBuf,
    layer: PathBuf,
    /// Held open so that `/proc/self/fd/<n>` names them.
    handles: Vec<OwnedFd>,
    fd_base: i32,
}

impl Tree {
    fn create(root: &Path, fd_base: i32) -> std::io::Result<Self> {
        let parent = root.join("p");
        std::fs::create_dir_all(parent.join("layer"))?;
        std::fs::create_dir_all(parent.join("sibling"))?;
        std::fs::write(parent.join("canary"), CANARY)?;
        std::fs::write(parent.join("sibling/inner"), INNER)?;
        let mut handles = Vec::new();
        for (path, min) in [(&parent, fd_base), (&root.to_path_buf(), fd_base + 1)] {
            let fd = rustix::fs::open(
                path,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            handles.push(rustix::io::fcntl_dupfd_cloexec(fd.as_fd(), min)?);
        }
        Ok(Self {
            root: root.to_path_buf(),
            layer: parent.join("layer"),
            parent,
            handles,
            fd_base,
        })
    }

    fn places(&self) -> Places {
        let fd_path = |fd: &OwnedFd| {
            use std::os::fd::AsRawFd;
            format!("/proc/self/fd/{}", fd.as_raw_fd())
        };
        Places {
            parent: fd_path(&self.handles[0]),
            root: fd_path(&self.handles[1]),
        }
    }

    /// Empties the layer directory (a fresh one for every case).
    fn reset_layer(&self) -> std::io::Result<()> {
        if let Err(first) = remove_tree(&self.layer) {
            // Unpacked modes may keep a non-root user out: open everything up and retry.
            make_removable(&self.layer);
            remove_tree(&self.layer).map_err(|_| first)?;
        }
        std::fs::create_dir(&self.layer)
    }

    /// What must not change while a layer is unpacked.
    fn snapshot(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let watched = [
            ("root", self.root.clone()),
            ("p", self.parent.clone()),
            ("p/canary", self.parent.join("canary")),
            ("p/sibling", self.parent.join("sibling")),
            ("p/sibling/inner", self.parent.join("sibling/inner")),
        ];
        for (label, path) in watched {
            match std::fs::symlink_metadata(&path) {
                Ok(meta) => lines.push(format!(
                    "{label}: ino={} mode={:o} nlink={} uid={} gid={} size={} mtime={}.{} ctime={}.{}",
                    meta.ino(),
                    meta.mode(),
                    meta.nlink(),
                    meta.uid(),
                    meta.gid(),
                    meta.size(),
                    meta.mtime(),
                    meta.mtime_nsec(),
                    meta.ctime(),
                    meta.ctime_nsec(),
                )),
                Err(error) => lines.push(format!("{label}: {error}")),
            }
            if let Ok(entries) = std::fs::read_dir(&path) {
                let mut names: Vec<String> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                lines.push(format!("{label}/: {}", names.join(" ")));
            } else if let Ok(content) = std::fs::read(&path) {
                lines.push(format!(
                    "{label} content: {}",
                    String::from_utf8_lossy(&content)
                ));
            }
            let xattrs = xattr_names(&path);
            if !xattrs.is_empty() {
                lines.push(format!("{label} xattrs: {xattrs}"));
            }
        }
        lines
    }

    /// Whether the tree around the layer is as created.
    fn pristine(&self, snapshot: &[String]) -> bool {
        let has = |needle: &str| snapshot.iter().any(|line| line == needle);
        let canary = format!("p/canary content: {}", String::from_utf8_lossy(CANARY));
        let inner = format!(
            "p/sibling/inner content: {}",
            String::from_utf8_lossy(INNER)
        );
        has("root/: p")
            && has("p/: canary layer sibling")
            && has("p/sibling/: inner")
            && has(&canary)
            && has(&inner)
    }
}

/// How many fds this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |entries| entries.count())
}

fn xattr_names(path: &Path) -> String {
    let mut buffer = vec![0u8; 4096];
    match rustix::fs::llistxattr(path, &mut buffer) {
        Ok(length) => String::from_utf8_lossy(&buffer[..length]).replace('\0', " "),
        Err(error) => format!("<{error}>"),
    }
}

fn remove_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Gives every directory below `path` mode 0700 (without following symlinks).
fn make_removable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.filter_map(Result::ok) {
                make_removable(&entry.path());
            }
        }
    }
}

/// Target `unpack`.
#[derive(Debug)]
pub struct UnpackTarget {
    tree: Mutex<Tree>,
    places: Places,
    /// Whether to check that a case leaves no fd open (only where nothing else runs).
    count_fds: bool,
}

impl UnpackTarget {
    /// A target unpacking below `scratch`, holding its directory fds at `fd_base` and up.
    /// With `count_fds`, a case that leaves more fds open than it found is a failure; only
    /// for a process where nothing else opens files meanwhile.
    pub fn new(scratch: &Path, fd_base: i32, count_fds: bool) -> Self {
        let tree = Tree::create(scratch, fd_base).expect("create the unpack fuzz tree");
        let places = tree.places();
        Self {
            tree: Mutex::new(tree),
            places,
            count_fds,
        }
    }
}

fn unpack_label(
    result: &Result<carrack::image_service::unpack::UnpackedLayer, UnpackError>,
) -> String {
    match result {
        Ok(layer) => {
            format!("ok({} entries)", layer.entries.min(3)).replace("3 entries", "3+ entries")
        }
        Err(error) => {
            let debug = format!("{error:?}");
            let variant: String = debug.chars().take_while(|c| c.is_alphanumeric()).collect();
            let reason = match error {
                UnpackError::InvalidName { reason, .. }
                | UnpackError::InvalidWhiteout { reason, .. }
                | UnpackError::Escape { reason, .. }
                | UnpackError::HardlinkTarget { reason, .. } => format!(
                    "({})",
                    reason
                        .split_whitespace()
                        .take(3)
                        .collect::<Vec<_>>()
                        .join("-")
                ),
                UnpackError::Write { op, .. } => format!("({op})"),
                UnpackError::InvalidHeader { reason, .. } => format!(
                    "({})",
                    reason
                        .split_whitespace()
                        .filter(|word| !word.bytes().any(|b| b.is_ascii_digit()))
                        .take(2)
                        .collect::<Vec<_>>()
                        .join("-")
                ),
                _ => String::new(),
            };
            format!("{variant}{reason}")
        }
    }
}

impl Target for UnpackTarget {
    fn name(&self) -> &'static str {
        "unpack"
    }

    fn weight(&self) -> u32 {
        10
    }

    fn generate(&self, rng: &mut Rng) -> Vec<u8> {
        let clean = rng.one_in(2);
        let specs = generate_specs(rng, &self.places, clean);
        let end_blocks = if clean {
            2
        } else {
            rng.pick(&[2, 2, 2, 0, 1, 3])
        };
        let mut tar = build(&specs, end_blocks);
        // Header-field rewrites, then generic havoc, each in some of the cases.
        if !clean && rng.one_in(2) && !tar.headers.is_empty() {
            for _ in 0..rng.range(1, 3) {
                let offset = rng.pick(&tar.headers);
                mutate_header(rng, &mut tar.bytes, offset, &self.places.parent);
            }
        }
        if !clean && rng.one_in(3) {
            mutate(rng, &mut tar.bytes, TAR_DICTIONARY, 4, 1 << 20);
            if rng.one_in(2) {
                // Keep the first header readable so the damage lands deeper in the stream.
                fix_checksum(&mut tar.bytes, 0);
            }
        }
        let mut flags = rng.byte() & 0x2f;
        if rng.one_in(16) {
            // SHA-512 DiffIDs are rare, and slow in a debug build.
            flags |= 0x10;
        }
        if !rng.one_in(4) {
            // Mostly the two larger limits, so that cases get past the first entries.
            flags = (flags & !0x0c) | (rng.range(1, 2) as u8) << 2;
        }
        if !rng.one_in(4) {
            // Device nodes only in some cases.
            flags &= !0x20;
        }
        if !clean && !known_issues() && claims_huge_hole(&tar.bytes) {
            // Fall back to the stream as built, whose holes are small (see SPARSE_CLAIM_MAX).
            tar = build(&specs, end_blocks);
        }
        let compression = Flags::decode(flags).compression;
        let mut payload = match compression {
            Compression::Gzip => gzip(&tar.bytes, rng.range(1, 3)),
            Compression::Zstd => zstd(&tar.bytes, rng.range(1, 3)),
            Compression::None => tar.bytes,
        };
        if !clean && compression != Compression::None && rng.one_in(4) {
            mutate(rng, &mut payload, &[], 3, 1 << 20);
        }
        let mut input = Vec::with_capacity(payload.len() + 1);
        input.push(flags);
        input.extend_from_slice(&payload);
        input
    }

    fn run(&self, input: &[u8]) -> Result<String, String> {
        let (flags, stream) = match input.split_first() {
            Some((&flags, stream)) => (Flags::decode(flags), stream),
            None => (Flags::decode(0), input),
        };
        let options = UnpackOptions {
            allow_device_nodes: flags.devices,
            max_uncompressed_bytes: flags.limit,
            diff_id_algorithm: flags.algorithm,
        };
        let fds_before = self.count_fds.then(open_fds);
        let result = self
            .contained(|layer| unpack_layer(stream, flags.compression, layer, &options))
            .map_err(|escape| {
                format!(
                    "ESCAPE: unpacking ({:?}, limit {}) {escape}",
                    flags.compression, flags.limit
                )
            })?;
        if let Some(before) = fds_before {
            let after = open_fds();
            if after > before {
                return Err(format!(
                    "fd leak: {} fds open after the case, {before} before; result: {result:?}",
                    after
                ));
            }
        }
        if let Err(error) = &result {
            let _ = (error.to_string(), error.kind());
        }
        Ok(unpack_label(&result))
    }
}

impl UnpackTarget {
    /// Runs `action` on a fresh, empty layer directory and checks that nothing outside it
    /// changed. `Err` describes the change (and the tree is rebuilt for the next case).
    pub fn contained<T: std::fmt::Debug>(
        &self,
        action: impl FnOnce(&Path) -> T,
    ) -> Result<T, String> {
        let mut tree = self
            .tree
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        tree.reset_layer()
            .map_err(|error| format!("cannot reset the layer directory: {error}"))?;
        let before = tree.snapshot();
        if !tree.pristine(&before) {
            return Err(format!(
                "broken tree: the watched tree is not as created\n{}",
                before.join("\n")
            ));
        }
        let result = action(&tree.layer);
        let after = tree.snapshot();
        if after == before {
            return Ok(result);
        }
        let changed: Vec<&String> = after.iter().filter(|line| !before.contains(line)).collect();
        let was: Vec<&String> = before.iter().filter(|line| !after.contains(line)).collect();
        let description = format!(
            "changed the tree outside the layer; result: {result:?}\n  before: {}\n  after:  {}",
            was.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n          "),
            changed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n          "),
        );
        // Rebuild the tree so later cases start clean; the fds keep their numbers.
        let root = tree.root.clone();
        drop(std::mem::take(&mut tree.handles));
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                make_removable(&path);
                let _ = remove_tree(&path).or_else(|_| std::fs::remove_file(&path));
            }
        }
        *tree = Tree::create(&root, tree.fd_base)
            .map_err(|error| format!("rebuild the tree: {error}"))?;
        Err(description)
    }
}

/// Watches the places outside the scratch tree where an escape with an absolute or far
/// relative path would land: none of the fuzzer's names may appear there during the run.
#[derive(Debug)]
pub struct GlobalWatch {
    dirs: Vec<PathBuf>,
    before: BTreeSet<PathBuf>,
}

impl GlobalWatch {
    pub fn new(scratch_base: &Path) -> Self {
        let mut dirs = vec![
            PathBuf::from("/"),
            std::env::temp_dir(),
            scratch_base.to_path_buf(),
        ];
        if let Ok(cwd) = std::env::current_dir() {
            dirs.push(cwd);
        }
        let before = Self::scan(&dirs);
        Self { dirs, before }
    }

    fn scan(dirs: &[PathBuf]) -> BTreeSet<PathBuf> {
        let mut found = BTreeSet::new();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name();
                let name = name.as_encoded_bytes();
                let ours = name.starts_with(b"fz")
                    || name.starts_with(b".wh.")
                    || WATCHED_NAMES
                        .iter()
                        .any(|watched| watched.as_bytes() == name);
                if ours {
                    found.insert(entry.path());
                }
            }
        }
        found
    }

    /// `Err` names what appeared.
    pub fn check(&self) -> Result<(), String> {
        let now = Self::scan(&self.dirs);
        let new: Vec<String> = now
            .difference(&self.before)
            .map(|path| path.display().to_string())
            .collect();
        if new.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "ESCAPE: files appeared outside the scratch tree during the run: {}",
                new.join(", ")
            ))
        }
    }
}
