//! Turning a tar entry name into a safe path relative to the layer directory.
//!
//! Names are normalised the way Docker treats them: leading `/` and `./` are dropped (an
//! absolute name is taken as relative to the layer root), empty and `.` components vanish,
//! and a `..` component is refused outright rather than resolved, because no honest layer
//! needs one. The result is only ever handed to the kernel relative to the layer's directory
//! fd, with symlinks refused (see `tree`), so the normalisation is the first of two fences.

/// Longest file name component Linux accepts (`NAME_MAX`).
const NAME_MAX: usize = 255;
/// Longest path Linux accepts, without the terminating NUL (`PATH_MAX - 1`).
const PATH_MAX: usize = 4095;

/// A normalised, layer-relative path: components separated by single `/`, none of them
/// empty, `.` or `..`. The empty path is the layer root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EntryPath {
    rel: Vec<u8>,
    /// Index of the last `/`, if the path has a parent other than the root.
    last_slash: Option<usize>,
}

impl EntryPath {
    /// Normalises `raw`, or says why it cannot be used.
    pub(super) fn parse(raw: &[u8]) -> Result<Self, &'static str> {
        if raw.is_empty() {
            return Err("empty name");
        }
        if raw.contains(&0) {
            return Err("name contains a NUL byte");
        }
        if raw.len() > PATH_MAX {
            return Err("name is longer than 4095 bytes");
        }
        let mut rel = Vec::with_capacity(raw.len());
        let mut last_slash = None;
        for component in raw.split(|&b| b == b'/') {
            match component {
                b"" | b"." => continue,
                b".." => return Err("name contains a `..` component"),
                _ if component.len() > NAME_MAX => {
                    return Err("a name component is longer than 255 bytes");
                }
                _ => {}
            }
            if !rel.is_empty() {
                last_slash = Some(rel.len());
                rel.push(b'/');
            }
            rel.extend_from_slice(component);
        }
        Ok(Self { rel, last_slash })
    }

    /// Whether this is the layer root itself (`/`, `./`).
    pub(super) fn is_root(&self) -> bool {
        self.rel.is_empty()
    }

    /// The whole relative path.
    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.rel
    }

    /// The parent directory's relative path (empty for the root).
    pub(super) fn parent(&self) -> &[u8] {
        match self.last_slash {
            Some(index) => &self.rel[..index],
            None => b"",
        }
    }

    /// The last component.
    pub(super) fn name(&self) -> &[u8] {
        match self.last_slash {
            Some(index) => &self.rel[index + 1..],
            None => &self.rel,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Result<(String, String, String), &'static str> {
        EntryPath::parse(raw.as_bytes()).map(|path| {
            (
                String::from_utf8_lossy(path.as_bytes()).into_owned(),
                String::from_utf8_lossy(path.parent()).into_owned(),
                String::from_utf8_lossy(path.name()).into_owned(),
            )
        })
    }

    #[test]
    fn unpack_name_normalises() {
        let triple = |a: &str, b: &str, c: &str| Ok((a.into(), b.into(), c.into()));
        assert_eq!(norm("a"), triple("a", "", "a"));
        assert_eq!(norm("./a/b/"), triple("a/b", "a", "b"));
        assert_eq!(norm("/etc//passwd"), triple("etc/passwd", "etc", "passwd"));
        assert_eq!(norm("a/./b/./c"), triple("a/b/c", "a/b", "c"));
        assert!(EntryPath::parse(b"./").unwrap().is_root());
        assert!(EntryPath::parse(b"/").unwrap().is_root());
    }

    #[test]
    fn unpack_name_refuses_bad_names() {
        for bad in ["", "..", "../x", "a/../../x", "a/..", "/../etc"] {
            assert!(norm(bad).is_err(), "{bad}");
        }
        assert!(EntryPath::parse(b"a\0b").is_err());
        assert!(EntryPath::parse(&[b'a'; 256]).is_err());
        assert!(EntryPath::parse(&[b'a'; 255]).is_ok());
        let long = "abcdefgh/".repeat(456);
        assert!(norm(&long).is_err());
    }
}
