//! An index of a tar file's regular members (path → offset and size), so an importer can
//! read `manifest.json` first and then the members it names, in any order, straight from the
//! file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::ArchiveError;

/// Members of an archive on disk.
#[derive(Debug)]
pub struct Entries {
    path: PathBuf,
    file: File,
    /// Normalised member path → (offset of the data, size).
    members: HashMap<String, (u64, u64)>,
}

/// `./a//b/` → `a/b`.
pub fn normalize(member: &str) -> String {
    member
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect::<Vec<_>>()
        .join("/")
}

impl Entries {
    /// Indexes the tar at `path`. Symlinks (Docker's legacy format links identical layers)
    /// are resolved to the member they point at.
    pub fn open(path: &Path) -> Result<Self, ArchiveError> {
        let io = |source| ArchiveError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let mut archive = tar::Archive::new(file.try_clone().map_err(io)?);
        let mut members = HashMap::new();
        let mut links = Vec::new();
        for entry in archive.entries_with_seek().map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = normalize(&String::from_utf8_lossy(&entry.path_bytes()));
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    members.insert(name, (entry.raw_file_position(), entry.size()));
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Some(target) = entry.link_name_bytes() {
                        let target = String::from_utf8_lossy(&target).into_owned();
                        let resolved = if entry.header().entry_type() == tar::EntryType::Link
                            || target.starts_with('/')
                        {
                            normalize(&target)
                        } else {
                            let dir = name.rsplit_once('/').map_or("", |(dir, _)| dir);
                            resolve_relative(dir, &target)
                        };
                        links.push((name, resolved));
                    }
                }
                _ => {}
            }
        }
        for (name, target) in links {
            if let Some(found) = members.get(&target).copied() {
                members.insert(name, found);
            }
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            members,
        })
    }

    /// Whether the archive has `member`.
    pub fn contains(&self, member: &str) -> bool {
        self.members.contains_key(&normalize(member))
    }

    /// The size of `member`.
    pub fn size(&self, member: &str) -> Result<u64, ArchiveError> {
        self.locate(member).map(|(_, size)| size)
    }

    fn locate(&self, member: &str) -> Result<(u64, u64), ArchiveError> {
        self.members
            .get(&normalize(member))
            .copied()
            .ok_or_else(|| ArchiveError::Missing {
                member: member.to_owned(),
            })
    }

    /// A reader of `member`'s data.
    pub fn reader(&self, member: &str) -> Result<impl Read + use<>, ArchiveError> {
        let (offset, size) = self.locate(member)?;
        let io = |source| ArchiveError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = self.file.try_clone().map_err(io)?;
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        Ok(file.take(size))
    }

    /// `member`'s data, refused if larger than `limit` bytes (documents, not layers).
    pub fn read_small(&self, member: &str, limit: usize) -> Result<Vec<u8>, ArchiveError> {
        let size = self.size(member)?;
        if size > limit as u64 {
            return Err(ArchiveError::invalid(format!(
                "{member} has {size} bytes, more than the {limit} a document may have"
            )));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        self.reader(member)?
            .read_to_end(&mut bytes)
            .map_err(|source| ArchiveError::Io {
                path: self.path.clone(),
                source,
            })?;
        Ok(bytes)
    }
}

fn resolve_relative(dir: &str, target: &str) -> String {
    let mut parts: Vec<&str> = dir.split('/').filter(|part| !part.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_read_in_any_order_and_links_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        let mut builder = tar::Builder::new(File::create(&path).unwrap());
        for (name, data) in [
            ("./manifest.json", &b"[]"[..]),
            ("abc/layer.tar", b"layer bytes"),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, data).unwrap();
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_cksum();
        builder
            .append_link(&mut header, "def/layer.tar", "../abc/layer.tar")
            .unwrap();
        builder.into_inner().unwrap();

        let entries = Entries::open(&path).unwrap();
        assert_eq!(
            entries.read_small("def/layer.tar", 100).unwrap(),
            b"layer bytes"
        );
        assert_eq!(entries.read_small("manifest.json", 100).unwrap(), b"[]");
        assert!(entries.read_small("abc/layer.tar", 3).is_err());
        assert!(matches!(
            entries.reader("nope"),
            Err(ArchiveError::Missing { .. })
        ));
    }
}
