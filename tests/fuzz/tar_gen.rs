//! Building tar streams for the `unpack` target: entries described by [`Spec`] are written
//! with the `tar` crate's header type, but names, link names and PAX records go in raw, so a
//! stream may say anything a hostile layer could (`..`, absolute names, NUL bytes, long names
//! through GNU `L`/`K` records, PAX `path`/`linkpath`, ustar prefixes). Then
//! [`mutate_header`] rewrites single header fields, fixing the checksum most of the time so
//! that the mutation reaches the unpacker rather than the tar reader's checksum test.

use tar::{EntryType, Header};

use super::rng::Rng;

const BLOCK: usize = 512;

/// Which header layout an entry uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Gnu,
    Ustar,
    Old,
}

/// How a name longer than the 100-byte field is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongNames {
    /// GNU `L` (names) and `K` (link names) records.
    Gnu,
    /// PAX `path` and `linkpath` records.
    Pax,
    /// The ustar prefix field, where the name splits at a `/`; GNU records otherwise.
    Prefix,
    /// Not at all: the name is cut at 100 bytes.
    Truncate,
}

/// What an entry is.
#[derive(Debug, Clone)]
pub enum Body {
    File(Vec<u8>),
    Dir,
    Symlink(Vec<u8>),
    Hardlink(Vec<u8>),
    Fifo,
    Char(u32, u32),
    Block(u32, u32),
    /// A GNU sparse file: data segments at offsets, and the size the file claims.
    Sparse {
        segments: Vec<(u64, Vec<u8>)>,
        real_size: u64,
    },
    /// Any other type flag, with data.
    Other(u8, Vec<u8>),
}

/// One entry of a generated layer.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: Vec<u8>,
    pub body: Body,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
    /// Raw bytes appended to the PAX record data (malformed records).
    pub pax_garbage: Vec<u8>,
    pub format: Format,
    pub long_names: LongNames,
}

impl Spec {
    pub fn new(name: impl Into<Vec<u8>>, body: Body) -> Self {
        let mode = match body {
            Body::Dir => 0o755,
            Body::Symlink(_) => 0o777,
            _ => 0o644,
        };
        Self {
            name: name.into(),
            body,
            mode,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            pax: Vec::new(),
            pax_garbage: Vec::new(),
            format: Format::Gnu,
            long_names: LongNames::Gnu,
        }
    }
}

/// A built stream and where its header blocks start.
#[derive(Debug, Default)]
pub struct Tar {
    pub bytes: Vec<u8>,
    pub headers: Vec<usize>,
}

impl Tar {
    fn push_header(&mut self, header: &Header) {
        self.headers.push(self.bytes.len());
        self.bytes.extend_from_slice(header.as_bytes());
    }

    fn push_data(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        let padding = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.bytes.resize(self.bytes.len() + padding, 0);
    }

    /// A header of `format` and `entry_type` named `name` (cut to the field) carrying `data`.
    fn push_record(&mut self, format: Format, entry_type: EntryType, name: &[u8], data: &[u8]) {
        let mut header = new_header(format);
        set_bytes(&mut header.as_old_mut().name, name);
        header.set_entry_type(entry_type);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        self.push_header(&header);
        self.push_data(data);
    }
}

fn new_header(format: Format) -> Header {
    match format {
        Format::Gnu => Header::new_gnu(),
        Format::Ustar => Header::new_ustar(),
        Format::Old => Header::new_old(),
    }
}

/// Copies `value` into `field`, cut to its size, zero-filling the rest.
fn set_bytes(field: &mut [u8], value: &[u8]) {
    let length = value.len().min(field.len());
    field[..length].copy_from_slice(&value[..length]);
    field[length..].fill(0);
}

/// One PAX record, `"<length> <key>=<value>\n"`, the length counting itself.
pub fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let base = key.len() + value.len() + 3;
    let mut length = base + 1;
    while length != base + length.to_string().len() {
        length = base + length.to_string().len();
    }
    let mut record = format!("{length} ").into_bytes();
    record.extend_from_slice(key);
    record.push(b'=');
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

/// Writes `specs` as a tar stream closed by `end_blocks` zero blocks.
pub fn build(specs: &[Spec], end_blocks: usize) -> Tar {
    let mut tar = Tar::default();
    for spec in specs {
        write_entry(&mut tar, spec);
    }
    tar.bytes.resize(tar.bytes.len() + end_blocks * BLOCK, 0);
    tar
}

fn write_entry(tar: &mut Tar, spec: &Spec) {
    let format = match spec.body {
        // Only the GNU layout has the sparse map.
        Body::Sparse { .. } => Format::Gnu,
        _ => spec.format,
    };
    let link: Option<&[u8]> = match &spec.body {
        Body::Symlink(target) | Body::Hardlink(target) => Some(target),
        _ => None,
    };
    let mut pax = spec.pax.clone();
    let mut header = new_header(format);
    let mut name_field: &[u8] = &spec.name;
    let mut long_name = None;
    if spec.name.len() > 100 {
        match spec.long_names {
            LongNames::Pax => pax.push((b"path".to_vec(), spec.name.clone())),
            LongNames::Prefix if format == Format::Ustar => {
                if let Some(split) = ustar_split(&spec.name) {
                    if let Some(ustar) = header.as_ustar_mut() {
                        set_bytes(&mut ustar.prefix, &spec.name[..split]);
                    }
                    name_field = &spec.name[split + 1..];
                } else {
                    long_name = Some(&spec.name);
                }
            }
            LongNames::Truncate => {}
            _ => long_name = Some(&spec.name),
        }
    }
    let mut long_link = None;
    if let Some(link) = link
        && link.len() > 100
    {
        match spec.long_names {
            LongNames::Pax => pax.push((b"linkpath".to_vec(), link.to_vec())),
            LongNames::Truncate => {}
            _ => long_link = Some(link),
        }
    }
    if let Some(name) = long_name {
        let mut data = name.clone();
        data.push(0);
        tar.push_record(Format::Gnu, EntryType::GNULongName, b"././@LongLink", &data);
    }
    if let Some(link) = long_link {
        let mut data = link.to_vec();
        data.push(0);
        tar.push_record(Format::Gnu, EntryType::GNULongLink, b"././@LongLink", &data);
    }
    if !pax.is_empty() || !spec.pax_garbage.is_empty() {
        let mut data = Vec::new();
        for (key, value) in &pax {
            data.extend_from_slice(&pax_record(key, value));
        }
        data.extend_from_slice(&spec.pax_garbage);
        tar.push_record(
            Format::Ustar,
            EntryType::XHeader,
            b"PaxHeaders/entry",
            &data,
        );
    }

    set_bytes(&mut header.as_old_mut().name, name_field);
    if let Some(link) = link {
        set_bytes(&mut header.as_old_mut().linkname, link);
    }
    header.set_mode(spec.mode);
    header.set_uid(spec.uid);
    header.set_gid(spec.gid);
    header.set_mtime(spec.mtime);
    let (entry_type, data): (EntryType, Vec<u8>) = match &spec.body {
        Body::File(data) => (EntryType::Regular, data.clone()),
        Body::Dir => (EntryType::Directory, Vec::new()),
        Body::Symlink(_) => (EntryType::Symlink, Vec::new()),
        Body::Hardlink(_) => (EntryType::Link, Vec::new()),
        Body::Fifo => (EntryType::Fifo, Vec::new()),
        Body::Char(major, minor) | Body::Block(major, minor) => {
            let _ = header.set_device_major(*major);
            let _ = header.set_device_minor(*minor);
            let entry_type = if matches!(spec.body, Body::Char(..)) {
                EntryType::Char
            } else {
                EntryType::Block
            };
            (entry_type, Vec::new())
        }
        Body::Sparse {
            segments,
            real_size,
        } => {
            return write_sparse(tar, header, segments, *real_size);
        }
        Body::Other(flag, data) => (EntryType::new(*flag), data.clone()),
    };
    header.set_entry_type(entry_type);
    header.set_size(data.len() as u64);
    header.set_cksum();
    tar.push_header(&header);
    tar.push_data(&data);
}

/// Where to split `name` into a ustar prefix (≤ 155 bytes) and name (≤ 100 bytes).
fn ustar_split(name: &[u8]) -> Option<usize> {
    (0..name.len())
        .rev()
        .find(|&i| name[i] == b'/' && i <= 155 && name.len() - i - 1 <= 100 && i > 0)
}

fn write_sparse(tar: &mut Tar, mut header: Header, segments: &[(u64, Vec<u8>)], real_size: u64) {
    header.set_entry_type(EntryType::GNUSparse);
    let stored: usize = segments.iter().map(|(_, data)| data.len()).sum();
    header.set_size(stored as u64);
    let mut extensions: Vec<tar::GnuExtSparseHeader> = Vec::new();
    if let Some(gnu) = header.as_gnu_mut() {
        gnu.set_real_size(real_size);
        for (slot, (offset, data)) in gnu.sparse.iter_mut().zip(segments) {
            slot.set_offset(*offset);
            slot.set_length(data.len() as u64);
        }
        let rest = segments.get(4..).unwrap_or_default();
        for chunk in rest.chunks(21) {
            let mut extension = tar::GnuExtSparseHeader::new();
            for (slot, (offset, data)) in extension.sparse_mut().iter_mut().zip(chunk) {
                slot.set_offset(*offset);
                slot.set_length(data.len() as u64);
            }
            extensions.push(extension);
        }
        gnu.set_is_extended(!extensions.is_empty());
    }
    let count = extensions.len();
    for (index, extension) in extensions.iter_mut().enumerate() {
        extension.set_is_extended(index + 1 < count);
    }
    header.set_cksum();
    tar.push_header(&header);
    for extension in &extensions {
        tar.bytes.extend_from_slice(extension.as_bytes());
    }
    let mut data = Vec::with_capacity(stored);
    for (_, segment) in segments {
        data.extend_from_slice(segment);
    }
    tar.push_data(&data);
}

/// Recomputes the checksum of the header block at `offset`.
pub fn fix_checksum(bytes: &mut [u8], offset: usize) {
    let Some(block) = bytes.get_mut(offset..offset + BLOCK) else {
        return;
    };
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    block[148..156].copy_from_slice(text.as_bytes());
}

/// What a header field holds, for choosing a mutation.
#[derive(Debug, Clone, Copy)]
enum Field {
    Path,
    Number,
    Type,
    Magic,
    Text,
    Flag,
}

/// (offset, length, kind) of the fields of ustar and GNU headers (they overlap after 345).
const FIELDS: &[(usize, usize, Field)] = &[
    (0, 100, Field::Path),    // name
    (100, 8, Field::Number),  // mode
    (108, 8, Field::Number),  // uid
    (116, 8, Field::Number),  // gid
    (124, 12, Field::Number), // size
    (136, 12, Field::Number), // mtime
    (156, 1, Field::Type),    // typeflag
    (157, 100, Field::Path),  // linkname
    (257, 8, Field::Magic),   // magic + version
    (265, 32, Field::Text),   // uname
    (329, 8, Field::Number),  // devmajor
    (337, 8, Field::Number),  // devminor
    (345, 155, Field::Path),  // ustar prefix
    (386, 12, Field::Number), // GNU sparse[0].offset
    (398, 12, Field::Number), // GNU sparse[0].numbytes
    (410, 12, Field::Number), // GNU sparse[1].offset
    (482, 1, Field::Flag),    // GNU isextended
    (483, 12, Field::Number), // GNU realsize
];

/// Path fragments a hostile header would hold; `@P` stands for the parent directory's
/// absolute path.
const PATH_TOKENS: &[&str] = &[
    "../",
    "/",
    "..",
    "./",
    "../canary",
    "../sibling/fza",
    "@P/canary",
    "@P/fza",
    "fzl/fza",
    "fzl/../../canary",
    ".wh..",
    ".wh.fza",
    ".wh..wh..opq",
    "",
    "//",
    "/../../../",
];

/// Rewrites one field of the header at `offset`.
pub fn mutate_header(rng: &mut Rng, bytes: &mut [u8], offset: usize, parent: &str) {
    if offset + BLOCK > bytes.len() {
        return;
    }
    let (start, length, kind) = rng.pick(FIELDS);
    let field = &mut bytes[offset + start..offset + start + length];
    match kind {
        Field::Path => {
            let token = rng.pick(PATH_TOKENS).replace("@P", parent).into_bytes();
            match rng.below(3) {
                // Replace the whole field.
                0 => set_bytes(field, &token),
                // Prefix the current value with the token.
                1 => {
                    let current: Vec<u8> = field.iter().copied().take_while(|&b| b != 0).collect();
                    let mut value = token;
                    value.extend_from_slice(&current);
                    set_bytes(field, &value);
                }
                // Overwrite somewhere inside.
                _ => {
                    let at = rng.below(length);
                    for (slot, byte) in field[at..].iter_mut().zip(token) {
                        *slot = byte;
                    }
                }
            }
        }
        Field::Number => write_number(rng, field),
        Field::Type => field[0] = rng.pick(b"0123456789gxLKSVMADNI\0\xff"),
        Field::Magic => {
            let magic: &[u8] = rng.pick(&[
                b"ustar\x0000".as_slice(),
                b"ustar  \0",
                b"\0\0\0\0\0\0\0\0",
                b"USTAR\x0000",
            ]);
            field.copy_from_slice(magic);
        }
        Field::Text => {
            let at = rng.below(length);
            field[at] = rng.byte();
        }
        Field::Flag => field[0] = rng.pick(&[0, 1, b'1', 0xff]),
    }
    if !rng.one_in(7) {
        fix_checksum(bytes, offset);
    }
}

/// Writes a number into a numeric field: octal of an interesting value, GNU base-256, or
/// junk.
fn write_number(rng: &mut Rng, field: &mut [u8]) {
    let value = rng.interesting_u64();
    match rng.below(6) {
        // Base-256: high bit set, big-endian value in the remaining bytes.
        0 => {
            field.fill(0);
            field[0] = 0x80;
            let be = value.to_be_bytes();
            let room = field.len() - 1;
            let take = room.min(8);
            field[1 + room - take..].copy_from_slice(&be[8 - take..]);
        }
        // Negative base-256 (all ones prefix).
        1 => {
            field.fill(0xff);
            let at = rng.below(field.len());
            field[at] = rng.byte();
        }
        // Junk: spaces, letters, no terminator.
        2 => {
            for slot in field.iter_mut() {
                *slot = rng.pick(b" 0789x-+\0");
            }
        }
        // Octal, as wide as the field allows.
        _ => {
            let text = format!("{value:o}");
            let width = field.len() - 1;
            let text = if text.len() > width {
                &text[text.len() - width..]
            } else {
                &text
            };
            let padded = format!("{text:0>width$}");
            set_bytes(field, padded.as_bytes());
        }
    }
}
