//! Targets `reference` (image references) and `digest` (content digests).

use carrack::image_service::digest::Digest;
use carrack::image_service::reference::{Reference, ReferenceError, parse_image_id};

use super::Target;
use super::mutate::mutate;
use super::rng::Rng;

const HEX: &[u8] = b"0123456789abcdef";

/// Longest error message accepted for any input (see `ReferenceTarget::run`).
const MESSAGE_MAX: usize = 6000;

/// Tokens that mean something to the reference grammar or to the code that uses references.
const REFERENCE_DICTIONARY: &[&[u8]] = &[
    b"/",
    b":",
    b"@",
    b".",
    b"..",
    b"_",
    b"__",
    b"___",
    b"-",
    b"--",
    b"sha256:",
    b"sha512:",
    b"docker.io/",
    b"index.docker.io/",
    b"library/",
    b"localhost",
    b"localhost:5000/",
    b"[",
    b"]",
    b"[::1]",
    b"::",
    b"A",
    b"Z",
    b" ",
    b"\0",
    b"\n",
    "é".as_bytes(),
    "\u{202e}".as_bytes(),
    "ｂ".as_bytes(),
    b"%2f",
    b"0",
    b"65535",
    b"65536",
    b"99999",
    b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
];

const REGISTRIES: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "localhost",
    "localhost:5000",
    "registry.k8s.io",
    "127.0.0.1:5000",
    "[::1]:5000",
    "[fe80::1]",
    "[::1]",
    "Example.com",
    "REG",
    "a-b.c",
    "quay.io",
    "host:0",
    "host:65535",
    "host:65536",
    "host:00080",
    "-bad.io",
    "bad-.io",
    "a..b",
    "a_b.io",
];

/// `sha256:<64 hex>` or `sha512:<128 hex>`, usually well-formed, sometimes slightly off.
fn digest_text(rng: &mut Rng) -> String {
    let (algorithm, length) = match rng.below(8) {
        0 => ("sha512", 128),
        1 => ("SHA256", 64),
        2 => ("md5", 32),
        3 => ("", 64),
        _ => ("sha256", 64),
    };
    let length = match rng.below(8) {
        0 => length - 1,
        1 => length + 1,
        2 => rng.length(140),
        _ => length,
    };
    let mut hex: String = (0..length).map(|_| rng.pick(HEX) as char).collect();
    if rng.one_in(8) {
        hex = hex.to_uppercase();
    }
    if algorithm.is_empty() && rng.one_in(2) {
        hex
    } else {
        format!("{algorithm}:{hex}")
    }
}

fn path_component(rng: &mut Rng) -> String {
    let alnum = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let length = match rng.below(10) {
        0 => rng.range(100, 260),
        1 => rng.range(230, 260),
        _ => rng.range(1, 10),
    };
    let mut component = String::new();
    while component.len() < length {
        let run = rng.range(1, 6);
        for _ in 0..run {
            component.push(rng.pick(alnum) as char);
        }
        if component.len() < length && rng.one_in(3) {
            component.push_str(rng.pick(&[".", "_", "__", "-", "---", "_.", "A", ".."]));
        }
    }
    component
}

fn tag(rng: &mut Rng) -> String {
    let word = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-";
    let length = match rng.below(8) {
        0 => rng.range(120, 135),
        _ => rng.range(1, 12),
    };
    (0..length).map(|_| rng.pick(word) as char).collect()
}

/// A reference-shaped string: `[registry/]path[:tag][@digest]`, or noise.
pub fn reference_text(rng: &mut Rng) -> Vec<u8> {
    let mut text = String::new();
    if rng.one_in(12) {
        let length = rng.length(300);
        let bytes: Vec<u8> = (0..length).map(|_| rng.byte()).collect();
        return bytes;
    }
    if rng.one_in(20) {
        // A bare image id, or one with an algorithm.
        let digest = digest_text(rng);
        return digest
            .split_once(':')
            .map_or(digest.clone(), |(_, hex)| hex.to_owned())
            .into_bytes();
    }
    if rng.one_in(2) {
        text.push_str(rng.pick(REGISTRIES));
        text.push('/');
    }
    let components = rng.range(1, 4);
    for index in 0..components {
        if index > 0 {
            text.push('/');
        }
        text.push_str(&path_component(rng));
    }
    if rng.one_in(2) {
        text.push(':');
        text.push_str(&tag(rng));
    }
    if rng.one_in(3) {
        text.push('@');
        text.push_str(&digest_text(rng));
    }
    let mut bytes = text.into_bytes();
    if rng.one_in(2) {
        mutate(rng, &mut bytes, REFERENCE_DICTIONARY, 3, 1024);
    }
    bytes
}

fn reference_label(error: &ReferenceError) -> String {
    match error {
        ReferenceError::Empty => "empty".to_owned(),
        ReferenceError::Invalid { reason, .. } => format!("invalid({})", short(reason)),
        ReferenceError::NameTooLong { .. } => "too-long".to_owned(),
        ReferenceError::Digest { .. } => "bad-digest".to_owned(),
        ReferenceError::ImageId { .. } => "image-id".to_owned(),
    }
}

/// The first words of a reason, for outcome labels.
fn short(reason: &str) -> String {
    reason
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join("-")
}

/// Target `reference`: `Reference::parse` and `parse_image_id`.
#[derive(Debug)]
pub struct ReferenceTarget;

impl Target for ReferenceTarget {
    fn name(&self) -> &'static str {
        "reference"
    }

    fn weight(&self) -> u32 {
        2
    }

    fn generate(&self, rng: &mut Rng) -> Vec<u8> {
        reference_text(rng)
    }

    fn run(&self, input: &[u8]) -> Result<String, String> {
        let text = String::from_utf8_lossy(input);
        if let Some(id) = parse_image_id(&text)
            && id.to_string().parse::<Digest>().as_ref() != Ok(&id)
        {
            return Err(format!(
                "image id round trip: {text:?} parsed to {id}, which does not round-trip"
            ));
        }
        let reference = match Reference::parse(&text) {
            Ok(reference) => reference,
            Err(error) => {
                // The message repeats at most 300 characters of the input (and 200 of a
                // digest), each escaped in at most 10 (`\u{10ffff}`): bounded whatever the
                // input's length.
                let message = error.to_string();
                if message.len() > MESSAGE_MAX {
                    return Err(format!(
                        "long error message: a {}-byte input gets a {}-byte message",
                        text.len(),
                        message.len()
                    ));
                }
                return Ok(reference_label(&error));
            }
        };
        reference.validate().map_err(|error| {
            format!(
                "validate refuses: parse accepted {text:?} as {reference:?}, validate says {error}"
            )
        })?;
        let shown = reference.to_string();
        let again = Reference::parse(&shown).map_err(|error| {
            format!(
                "display round trip: {text:?} parses to {reference:?}, displayed as {shown:?}, which does not parse: {error}"
            )
        })?;
        if again != reference {
            return Err(format!(
                "display round trip: {text:?} parses to {reference:?}, displayed as {shown:?}, which parses to {again:?}"
            ));
        }
        if again.to_string() != shown {
            return Err(format!("unstable display: {shown:?} then {again}"));
        }
        let json = serde_json::to_string(&reference).map_err(|e| format!("serialize: {e}"))?;
        let back: Reference = serde_json::from_str(&json)
            .map_err(|error| format!("serde round trip of {shown:?} fails: {error}"))?;
        if back != reference {
            return Err(format!("serde round trip: {shown:?} gives {back:?}"));
        }
        // The accessors the registry client and the store use must not panic either.
        let _ = (
            reference.name(),
            reference.repo_tag(),
            reference.manifest_reference(),
        );
        Ok(match (&reference.tag, &reference.digest) {
            (Some(_), Some(_)) => "ok-tag-digest",
            (Some(_), None) => "ok-tag",
            (None, _) => "ok-digest",
        }
        .to_owned())
    }
}

/// Target `digest`: `Digest: FromStr`.
#[derive(Debug)]
pub struct DigestTarget;

impl Target for DigestTarget {
    fn name(&self) -> &'static str {
        "digest"
    }

    fn weight(&self) -> u32 {
        1
    }

    fn generate(&self, rng: &mut Rng) -> Vec<u8> {
        let mut bytes = digest_text(rng).into_bytes();
        if rng.one_in(2) {
            mutate(rng, &mut bytes, REFERENCE_DICTIONARY, 3, 512);
        }
        bytes
    }

    fn run(&self, input: &[u8]) -> Result<String, String> {
        let text = String::from_utf8_lossy(input);
        let digest = match text.parse::<Digest>() {
            Ok(digest) => digest,
            Err(error) => {
                let message = error.to_string();
                if message.len() > MESSAGE_MAX {
                    return Err(format!("long error message: {} bytes", message.len()));
                }
                return Ok(format!("invalid({})", short(error.reason)));
            }
        };
        let shown = digest.to_string();
        if shown != text {
            return Err(format!(
                "display differs: {text:?} parses but displays as {shown:?}"
            ));
        }
        if shown.parse::<Digest>().as_ref() != Ok(&digest) {
            return Err(format!("display round trip: {shown:?} does not parse back"));
        }
        let json = serde_json::to_string(&digest).map_err(|e| format!("serialize: {e}"))?;
        if serde_json::from_str::<Digest>(&json).ok().as_ref() != Some(&digest) {
            return Err(format!("serde round trip: {shown:?} fails"));
        }
        if digest.hex().bytes().any(|b| !HEX.contains(&b)) {
            return Err(format!(
                "bad hex: {shown:?} has a hex part that is not lowercase hex"
            ));
        }
        // A digest is used as a file name: no separators.
        if digest.hex().contains(['/', '.', '\0']) {
            return Err(format!("unsafe file name: {shown:?}"));
        }
        let _ = digest.matches(input);
        Ok(format!("ok-{:?}", digest.algorithm()))
    }
}
