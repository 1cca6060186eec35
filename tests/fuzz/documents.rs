//! Targets `manifest` (manifests and indexes), `image-config` (image configs) and `config`
//! (the daemon's TOML configuration).

use std::path::Path;

use carrack::config::{Config, ConfigError};
use carrack::image_service::digest::Digest;
use carrack::image_service::manifest::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Descriptor, Document, ImageConfig, Manifest,
    ManifestError, OCI_INDEX, OCI_MANIFEST, Platform, chain_ids, parse_document, select_platform,
    user_of,
};
use serde_json::{Value, json};

use super::Target;
use super::mutate::mutate;
use super::rng::Rng;

const JSON_DICTIONARY: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"true",
    b"false",
    b"0",
    b"-0",
    b"-1",
    b"2",
    b"1e309",
    b"18446744073709551616",
    b"9223372036854775807",
    b"-9223372036854775809",
    b"0.5",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"\\",
    b"\"schemaVersion\":",
    b"\"mediaType\":",
    b"\"manifests\":",
    b"\"layers\":",
    b"\"config\":",
    b"\"digest\":",
    b"\"size\":",
    b"\"platform\":",
    b"\"rootfs\":",
    b"\"diff_ids\":",
    b"\"User\":",
    b"\"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    b"{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":",
];

const MEDIA_TYPES: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/json",
    "",
    "text/plain",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.config.v1+json",
];

const CONTENT_TYPES: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    "application/json",
    "application/json; charset=utf-8",
    "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
    "",
    " ; ",
    ";",
    "text/html",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

fn digest_value(rng: &mut Rng, valid: bool) -> Value {
    match if valid { 11 } else { rng.below(12) } {
        0 => Value::Null,
        1 => json!(42),
        2 => json!("sha256:abc"),
        3 => json!(format!("sha256:{}", "A".repeat(64))),
        4 => json!(
            Digest::sha256_of(&rng.next_u64().to_le_bytes())
                .to_string()
                .replace("sha256", "sha512")
        ),
        5 => json!(format!("sha512:{}", "0".repeat(128))),
        _ => json!(Digest::sha256_of(&rng.next_u64().to_le_bytes()).to_string()),
    }
}

fn number_value(rng: &mut Rng, valid: bool) -> Value {
    match if valid { 11 } else { rng.below(12) } {
        0 => json!(-1),
        1 => json!(i64::MIN),
        2 => json!(i64::MAX),
        3 => json!(u64::MAX),
        4 => json!(1.5),
        5 => json!("10"),
        6 => Value::Null,
        7 => json!(0),
        _ => json!(rng.below(1 << 20)),
    }
}

fn string_value(rng: &mut Rng, valid: bool, likely: &[&str]) -> Value {
    match if valid { 9 } else { rng.below(10) } {
        0 => Value::Null,
        1 => json!(rng.below(100)),
        2 => json!(["a"]),
        3 => json!("\u{0}\u{ffff}é"),
        _ => json!(rng.pick(likely)),
    }
}

fn platform_value(rng: &mut Rng, valid: bool) -> Value {
    let mut platform = serde_json::Map::new();
    if !rng.one_in(6) {
        platform.insert(
            "architecture".into(),
            string_value(rng, valid, &["amd64", "arm64", "arm", "386", "", "AMD64"]),
        );
    }
    if !rng.one_in(6) {
        platform.insert(
            "os".into(),
            string_value(rng, valid, &["linux", "windows", ""]),
        );
    }
    if rng.one_in(3) {
        platform.insert(
            "variant".into(),
            string_value(rng, valid, &["v7", "v8", ""]),
        );
    }
    if rng.one_in(8) {
        platform.insert("os.features".into(), json!(["sse4"]));
    }
    Value::Object(platform)
}

fn descriptor_value(rng: &mut Rng, valid: bool, with_platform: bool) -> Value {
    let mut descriptor = serde_json::Map::new();
    if !rng.one_in(5) {
        descriptor.insert("mediaType".into(), string_value(rng, valid, MEDIA_TYPES));
    }
    if valid || !rng.one_in(10) {
        descriptor.insert("digest".into(), digest_value(rng, valid));
    }
    if valid || !rng.one_in(10) {
        descriptor.insert("size".into(), number_value(rng, valid));
    }
    if rng.one_in(6) {
        descriptor.insert(
            "urls".into(),
            match if valid { 0 } else { rng.below(3) } {
                0 => json!(["https://example.com/layer", "file:///etc/passwd"]),
                1 => json!([]),
                _ => json!("not-a-list"),
            },
        );
    }
    if with_platform || rng.one_in(8) {
        descriptor.insert("platform".into(), platform_value(rng, valid));
    }
    if rng.one_in(6) {
        descriptor.insert("annotations".into(), json!({"org.opencontainers.x": "y"}));
    }
    Value::Object(descriptor)
}

fn schema_version(rng: &mut Rng, valid: bool) -> Value {
    match if valid { 9 } else { rng.below(10) } {
        0 => json!(1),
        1 => json!(3),
        2 => json!(-1),
        3 => json!(2.0),
        4 => json!("2"),
        5 => json!(4_294_967_298_u64),
        6 => Value::Null,
        _ => json!(2),
    }
}

fn manifest_value(rng: &mut Rng, valid: bool) -> Value {
    let mut document = serde_json::Map::new();
    let index = rng.one_in(2);
    if valid || !rng.one_in(8) {
        document.insert("schemaVersion".into(), schema_version(rng, valid));
    }
    if rng.one_in(2) {
        let media_type = match (valid, index) {
            (true, true) => json!(rng.pick(&[OCI_INDEX, DOCKER_MANIFEST_LIST])),
            (true, false) => json!(rng.pick(&[OCI_MANIFEST, DOCKER_MANIFEST])),
            (false, _) => string_value(rng, valid, MEDIA_TYPES),
        };
        document.insert("mediaType".into(), media_type);
    }
    if index || (!valid && rng.one_in(8)) {
        let count = rng.length(6);
        let entries: Vec<Value> = (0..count)
            .map(|_| descriptor_value(rng, valid, true))
            .collect();
        document.insert("manifests".into(), Value::Array(entries));
    }
    if !index || (!valid && rng.one_in(8)) {
        if valid || !rng.one_in(10) {
            document.insert("config".into(), descriptor_value(rng, valid, false));
        }
        if valid || !rng.one_in(10) {
            let count = rng.length(6);
            let layers: Vec<Value> = (0..count)
                .map(|_| descriptor_value(rng, valid, false))
                .collect();
            document.insert("layers".into(), Value::Array(layers));
        }
    }
    if rng.one_in(6) {
        document.insert("annotations".into(), json!({"a": "b"}));
    }
    if rng.one_in(10) {
        document.insert("subject".into(), descriptor_value(rng, valid, false));
    }
    Value::Object(document)
}

/// JSON text of `value`, sometimes pretty, sometimes with a duplicated key or mutated.
fn json_bytes(rng: &mut Rng, valid: bool, value: &Value) -> Vec<u8> {
    let mut bytes = if rng.one_in(4) {
        serde_json::to_vec_pretty(value).unwrap_or_default()
    } else {
        serde_json::to_vec(value).unwrap_or_default()
    };
    if valid {
        return bytes;
    }
    if rng.one_in(12) && bytes.first() == Some(&b'{') {
        // A duplicate key: serde refuses it, Go's decoder takes the last one.
        let duplicate: &[u8] = rng.pick(&[
            b"\"schemaVersion\":2,".as_slice(),
            b"\"mediaType\":\"application/vnd.oci.image.index.v1+json\",",
            b"\"layers\":[],",
        ]);
        bytes.splice(1..1, duplicate.iter().copied());
    }
    if rng.one_in(2) {
        mutate(rng, &mut bytes, JSON_DICTIONARY, 4, 1 << 16);
    }
    bytes
}

/// Splits an input into a short header string and the rest: `[len][header][rest]`.
fn split_input(input: &[u8]) -> (String, &[u8]) {
    let Some((&length, rest)) = input.split_first() else {
        return (String::new(), input);
    };
    let length = usize::from(length).min(rest.len());
    let (header, body) = rest.split_at(length);
    (String::from_utf8_lossy(header).into_owned(), body)
}

fn join_input(header: &str, body: &[u8]) -> Vec<u8> {
    let header = &header.as_bytes()[..header.len().min(255)];
    let mut input = vec![header.len() as u8];
    input.extend_from_slice(header);
    input.extend_from_slice(body);
    input
}

fn manifest_label(error: &ManifestError) -> String {
    match error {
        ManifestError::UnsupportedMediaType { .. } => "unsupported-media-type".to_owned(),
        ManifestError::Malformed { what, .. } => format!("malformed-{}", what.replace(' ', "-")),
        ManifestError::Invalid { what, reason } => format!(
            "invalid-{}({})",
            what.replace(' ', "-"),
            reason
                .split_whitespace()
                .filter(|w| !w.starts_with("sha"))
                .take(3)
                .collect::<Vec<_>>()
                .join("-")
        ),
        ManifestError::NoMatchingPlatform { .. } => "no-platform".to_owned(),
    }
}

/// Target `manifest`: `parse_document` and `select_platform`.
#[derive(Debug)]
pub struct ManifestTarget;

impl Target for ManifestTarget {
    fn name(&self) -> &'static str {
        "manifest"
    }

    fn weight(&self) -> u32 {
        3
    }

    fn generate(&self, rng: &mut Rng) -> Vec<u8> {
        let mut content_type = rng.pick(CONTENT_TYPES).to_string();
        if rng.one_in(10) {
            let mut bytes = content_type.into_bytes();
            mutate(rng, &mut bytes, &[b";", b" ", b"+json", b","], 2, 200);
            content_type = String::from_utf8_lossy(&bytes).into_owned();
        }
        let valid = rng.one_in(2);
        let value = manifest_value(rng, valid);
        join_input(&content_type, &json_bytes(rng, valid, &value))
    }

    fn run(&self, input: &[u8]) -> Result<String, String> {
        let (content_type, body) = split_input(input);
        let document = match parse_document(&content_type, body) {
            Ok(document) => document,
            Err(error) => {
                let _ = error.to_string();
                return Ok(manifest_label(&error));
            }
        };
        match &document {
            Document::Manifest(manifest) => {
                if let Some(layer) = manifest.layers.iter().find(|layer| layer.size < 0) {
                    return Err(format!(
                        "negative layer size: manifest accepted with a layer of {} bytes",
                        layer.size
                    ));
                }
                if manifest.schema_version != 2 {
                    return Err(format!(
                        "schema version: manifest accepted with schemaVersion {}",
                        manifest.schema_version
                    ));
                }
            }
            Document::Index(index) => {
                if index.schema_version != 2 {
                    return Err(format!(
                        "schema version: index accepted with schemaVersion {}",
                        index.schema_version
                    ));
                }
                let _ = select_platform(index, &Platform::host()).map_err(|e| e.to_string());
                for entry in &index.manifests {
                    if let Some(platform) = &entry.platform {
                        select_platform(index, platform).map_err(|error| {
                            format!("select_platform: misses the index's own platform {platform}, {error}")
                        })?;
                    }
                }
            }
        }
        // What was accepted must come back the same through serde, as the store keeps it.
        let reserialized = match &document {
            Document::Manifest(manifest) => serde_json::to_vec(manifest),
            Document::Index(index) => serde_json::to_vec(index),
        }
        .map_err(|error| format!("serialize accepted document: {error}"))?;
        let again = parse_document(&content_type, &reserialized).map_err(|error| {
            format!(
                "serde round trip: accepted document does not parse back ({error}); reserialized as {}",
                String::from_utf8_lossy(&reserialized)
            )
        })?;
        if again != document {
            return Err(format!(
                "serde round trip: changed the document {document:?} -> {again:?}"
            ));
        }
        Ok(match document {
            Document::Manifest(_) => "ok-manifest",
            Document::Index(_) => "ok-index",
        }
        .to_owned())
    }
}

fn config_value(rng: &mut Rng, valid: bool, layers: usize) -> Value {
    let mut config = serde_json::Map::new();
    if !rng.one_in(6) {
        config.insert(
            "architecture".into(),
            string_value(rng, valid, &["amd64", "arm64"]),
        );
    }
    if !rng.one_in(6) {
        config.insert("os".into(), string_value(rng, valid, &["linux", ""]));
    }
    if rng.one_in(2) {
        config.insert(
            "created".into(),
            string_value(rng, valid, &["2024-01-01T00:00:00Z", "yesterday", ""]),
        );
    }
    if !rng.one_in(4) {
        let mut defaults = serde_json::Map::new();
        let users = [
            "",
            "0",
            "1000",
            "1000:1000",
            "nobody",
            "nobody:nogroup",
            ":1000",
            "-1",
            "99999999999999999999",
            "4294967296",
            "+5",
            "0x10",
            "root:",
            "\u{0}",
        ];
        if !rng.one_in(3) {
            defaults.insert("User".into(), string_value(rng, valid, &users));
        }
        if rng.one_in(2) {
            defaults.insert("Env".into(), json!(["PATH=/usr/bin", "A", "=x"]));
        }
        if rng.one_in(2) {
            defaults.insert(
                "Entrypoint".into(),
                if !valid && rng.one_in(4) {
                    json!("sh")
                } else {
                    json!(["/bin/sh", "-c"])
                },
            );
        }
        if rng.one_in(2) {
            defaults.insert(
                "Cmd".into(),
                if rng.one_in(4) {
                    Value::Null
                } else {
                    json!(["true"])
                },
            );
        }
        if rng.one_in(3) {
            defaults.insert(
                "WorkingDir".into(),
                string_value(rng, valid, &["/", "rel", "/a/../b"]),
            );
        }
        if rng.one_in(3) {
            defaults.insert(
                "Labels".into(),
                if !valid && rng.one_in(4) {
                    json!({"a": 1})
                } else {
                    json!({"a": "b"})
                },
            );
        }
        if rng.one_in(3) {
            defaults.insert(
                "StopSignal".into(),
                string_value(rng, valid, &["SIGTERM", "9", ""]),
            );
        }
        if rng.one_in(3) {
            defaults.insert("Volumes".into(), json!({"/data": {}}));
        }
        if rng.one_in(3) {
            defaults.insert("ExposedPorts".into(), json!({"80/tcp": {}, "x": null}));
        }
        config.insert(
            "config".into(),
            if rng.one_in(10) {
                Value::Null
            } else {
                Value::Object(defaults)
            },
        );
    }
    if valid || !rng.one_in(10) {
        let count = match rng.below(4) {
            0 if !valid => rng.length(8),
            _ => layers,
        };
        let diff_ids: Vec<Value> = (0..count).map(|_| digest_value(rng, valid)).collect();
        let mut rootfs = serde_json::Map::new();
        if !rng.one_in(4) {
            rootfs.insert(
                "type".into(),
                string_value(rng, valid, &["layers", "other"]),
            );
        }
        if valid || !rng.one_in(10) {
            rootfs.insert("diff_ids".into(), Value::Array(diff_ids));
        }
        config.insert("rootfs".into(), Value::Object(rootfs));
    }
    if rng.one_in(2) {
        let count = rng.length(5);
        let history: Vec<Value> = (0..count)
            .map(|_| {
                json!({
                    "created": "2024-01-01T00:00:00Z",
                    "created_by": "/bin/sh -c #(nop) ADD file",
                    "empty_layer": if valid || rng.one_in(2) { json!(true) } else { json!("yes") },
                })
            })
            .collect();
        config.insert("history".into(), Value::Array(history));
    }
    Value::Object(config)
}

fn manifest_with_layers(layers: usize) -> Manifest {
    let descriptor = |n: usize| Descriptor {
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip".to_owned(),
        digest: Digest::sha256_of(&n.to_le_bytes()),
        size: n as i64,
        urls: None,
        platform: None,
    };
    Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_owned()),
        config: descriptor(usize::MAX),
        layers: (0..layers).map(descriptor).collect(),
    }
}

/// Target `image-config`: `ImageConfig::parse` and what reads its fields.
#[derive(Debug)]
pub struct ImageConfigTarget;

impl Target for ImageConfigTarget {
    fn name(&self) -> &'static str {
        "image-config"
    }

    fn weight(&self) -> u32 {
        2
    }

    fn generate(&self, rng: &mut Rng) -> Vec<u8> {
        let layers = rng.length(8);
        let valid = rng.one_in(2);
        let value = config_value(rng, valid, layers);
        let mut input = vec![layers as u8];
        input.extend(json_bytes(rng, valid, &value));
        input
    }

    fn run(&self, input: &[u8]) -> Result<String, String> {
        let (layers, body) = match input.split_first() {
            Some((&layers, body)) => (usize::from(layers % 16), body),
            None => (0, input),
        };
        let manifest = manifest_with_layers(layers);
        let config = match ImageConfig::parse(body, &manifest) {
            Ok(config) => config,
            Err(error) => {
                let _ = error.to_string();
                return Ok(manifest_label(&error));
            }
        };
        if config.rootfs.diff_ids.len() != layers {
            return Err(format!(
                "diff id count: config with {} diff ids accepted for {layers} layers",
                config.rootfs.diff_ids.len()
            ));
        }
        let chain = chain_ids(&config.rootfs.diff_ids);
        if chain.len() != layers || chain.first() != config.rootfs.diff_ids.first() {
            return Err("chain ids do not match the diff ids".to_owned());
        }
        let (uid, name) = user_of(config.user());
        if uid.is_some() && !name.is_empty() {
            return Err(format!(
                "user_of: {:?} gives both a uid and a name",
                config.user()
            ));
        }
        let reserialized =
            serde_json::to_vec(&config).map_err(|error| format!("serialize config: {error}"))?;
        let again = ImageConfig::parse(&reserialized, &manifest)
            .map_err(|error| format!("accepted config does not round-trip: {error}"))?;
        if again != config {
            return Err(format!(
                "serde round trip: changed the config {config:?} -> {again:?}"
            ));
        }
        Ok(if uid.is_some() {
            "ok-uid"
        } else if name.is_empty() {
            "ok-no-user"
        } else {
            "ok-user-name"
        }
        .to_owned())
    }
}

const TOML_DICTIONARY: &[&[u8]] = &[
    b"[",
    b"]",
    b"[[",
    b"]]",
    b"=",
    b"\"",
    b"'",
    b"'''",
    b"\"\"\"",
    b"\n",
    b"#",
    b".",
    b"{",
    b"}",
    b",",
    b"\\u0000",
    b"\\U0010FFFF",
    b"\\",
    b"1e400",
    b"nan",
    b"-inf",
    b"0x7fffffffffffffff",
    b"9223372036854775808",
    b"-9223372036854775808",
    b"0o777",
    b"1979-05-27T07:32:00Z",
    b"true",
    b"[registry.mirrors.\"docker.io\"]\n",
    b"[images]\n",
    b"endpoints = [\"http://127.0.0.1:5000\"]\n",
];

const STRINGS: &[&str] = &[
    "/var/lib/carrack",
    "/run/carrack",
    "/",
    "",
    "relative/path",
    "info",
    "debug",
    "carrack=debug,tonic=warn",
    "carrack=bogus",
    "=",
    ",,",
    "[{",
    "json",
    "text",
    "systemd",
    "cgroupfs",
    "/carrack",
    "carrack",
    "http://127.0.0.1:5000",
    "https://mirror.example.com",
    "http://",
    "ftp://x",
    "https://user:pass@host/path?q#f",
    "127.0.0.1:0",
    "[::1]:10010",
    "localhost:0",
    "0.0.0.0:99999",
    "linux/amd64",
    "linux/arm/v7",
    "windows",
    "/a/../b",
    "\u{0}",
    "é",
];

/// The type of a config key, with values worth trying for it.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Str(&'static [&'static str]),
    Int,
    Bool,
    Array(&'static [&'static str]),
}

const PATHS: &[&str] = &[
    "/var/lib/carrack",
    "/run/carrack",
    "/",
    "relative/path",
    "/a/../b",
    "",
];
const ENDPOINTS: &[&str] = &[
    "http://127.0.0.1:5000",
    "https://mirror.example.com",
    "https://user:pass@host/path?q#f",
    "http://",
    "ftp://x",
    "mirror:5000",
    "",
];

fn toml_value(rng: &mut Rng, valid: bool, kind: Kind) -> String {
    let kind = if valid || !rng.one_in(4) {
        kind
    } else {
        rng.pick(&[
            Kind::Str(STRINGS),
            Kind::Int,
            Kind::Bool,
            Kind::Array(STRINGS),
        ])
    };
    let string = |rng: &mut Rng, likely: &[&str]| {
        toml_string(if rng.one_in(5) {
            rng.pick(STRINGS)
        } else {
            rng.pick(likely)
        })
    };
    match kind {
        Kind::Str(likely) => string(rng, likely),
        Kind::Int => match rng.below(if valid { 8 } else { 12 }) {
            0 => "0".to_owned(),
            1 => "-1".to_owned(),
            2 => i64::MAX.to_string(),
            8 => i64::MIN.to_string(),
            9 => rng.pick(&["1.5", "inf", "nan", "-0.0", "1e400"]).to_owned(),
            10 => "1979-05-27T07:32:00Z".to_owned(),
            11 => "{ a = 1 }".to_owned(),
            _ => rng.below(100).to_string(),
        },
        Kind::Bool => rng.pick(&["true", "false"]).to_owned(),
        Kind::Array(likely) => {
            let count = rng.length(3);
            let items: Vec<String> = (0..count).map(|_| string(rng, likely)).collect();
            format!("[{}]", items.join(", "))
        }
    }
}

fn toml_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Target `config`: `Config::parse`.
#[derive(Debug)]
pub struct ConfigTarget;

impl Target for ConfigTarget {
    fn name(&self) -> &'static str {
        "config"
    }

    fn weight(&self) -> u32 {
        2
    }

    fn generate(&self, rng: &mut Rng) -> Vec<u8> {
        const SECTIONS: &[(&str, &[(&str, Kind)])] = &[
            (
                "",
                &[
                    ("root_dir", Kind::Str(PATHS)),
                    ("state_dir", Kind::Str(PATHS)),
                    ("socket_path", Kind::Str(PATHS)),
                ],
            ),
            (
                "log",
                &[
                    (
                        "level",
                        Kind::Str(&[
                            "info",
                            "debug",
                            "carrack=debug,tonic=warn",
                            "carrack=bogus",
                            "=",
                            ",,",
                            "[{",
                        ]),
                    ),
                    ("format", Kind::Str(&["json", "text", "JSON"])),
                ],
            ),
            (
                "cgroups",
                &[
                    ("driver", Kind::Str(&["systemd", "cgroupfs", "none"])),
                    ("root", Kind::Str(PATHS)),
                    (
                        "default_parent",
                        Kind::Str(&["/carrack", "carrack", "/", ""]),
                    ),
                ],
            ),
            (
                "cni",
                &[
                    ("conf_dir", Kind::Str(PATHS)),
                    ("bin_dirs", Kind::Array(PATHS)),
                ],
            ),
            (
                "registry.mirrors.\"docker.io\"",
                &[
                    ("endpoints", Kind::Array(ENDPOINTS)),
                    ("use_upstream", Kind::Bool),
                ],
            ),
            (
                "registry.mirrors.\"127.0.0.1:5000\"",
                &[("endpoints", Kind::Array(ENDPOINTS))],
            ),
            (
                "registry.mirrors.\"a/b\"",
                &[("endpoints", Kind::Array(ENDPOINTS))],
            ),
            ("registry.mirrors.\"\"", &[("use_upstream", Kind::Bool)]),
            (
                "images",
                &[
                    (
                        "platform",
                        Kind::Str(&["linux/amd64", "linux/arm/v7", "windows", "", "linux/"]),
                    ),
                    ("max_concurrent_downloads", Kind::Int),
                    ("stall_timeout_secs", Kind::Int),
                    ("allow_device_nodes", Kind::Bool),
                    ("max_layer_bytes", Kind::Int),
                ],
            ),
            (
                "streaming",
                &[(
                    "address",
                    Kind::Str(&["127.0.0.1:0", "[::1]:10010", "localhost:0", "0.0.0.0:99999"]),
                )],
            ),
            ("unknown", &[("key", Kind::Str(STRINGS))]),
        ];
        let valid = rng.one_in(2);
        let mut text = String::new();
        if rng.one_in(6) {
            text = Config::default().to_toml();
        } else {
            for (section, keys) in SECTIONS {
                if !section.is_empty() {
                    if !rng.one_in(2) || (valid && *section == "unknown") {
                        continue;
                    }
                    text.push_str(&format!("\n[{section}]\n"));
                }
                for &(key, kind) in *keys {
                    if rng.one_in(2) {
                        let key = if !valid && rng.one_in(30) {
                            "bogus_key"
                        } else {
                            key
                        };
                        text.push_str(&format!("{key} = {}\n", toml_value(rng, valid, kind)));
                    }
                }
            }
        }
        let mut bytes = text.into_bytes();
        if !valid {
            mutate(rng, &mut bytes, TOML_DICTIONARY, 4, 1 << 14);
        }
        bytes
    }

    fn run(&self, input: &[u8]) -> Result<String, String> {
        let text = String::from_utf8_lossy(input);
        let origin = Path::new("/etc/carrack/fuzz.toml");
        let config = match Config::parse(&text, origin) {
            Ok(config) => config,
            Err(error) => {
                let _ = error.to_string();
                return Ok(match error {
                    ConfigError::Parse { .. } => "parse-error".to_owned(),
                    ConfigError::Invalid { key, .. } => format!("invalid({key})"),
                    ConfigError::Read { .. } => "read-error".to_owned(),
                });
            }
        };
        let _ = config.streaming_address();
        let toml = config.to_toml();
        let again = Config::parse(&toml, origin).map_err(|error| {
            format!(
                "to_toml round trip: accepted config does not parse back ({error})\n--- to_toml:\n{toml}"
            )
        })?;
        if again != config {
            return Err(format!(
                "to_toml round trip: changed the config {config:?} -> {again:?}"
            ));
        }
        Ok("ok".to_owned())
    }
}
