//! Compiles the vendored CRI schema (`proto/api.proto`) and Carrack's image transfer
//! extension (`proto/images.proto`, package `carrack.images.v1`) into tonic clients and
//! servers.
//!
//! Every generated type also derives `serde::Serialize`, so the command line can print any
//! CRI reply as JSON (`carrack inspect`, `--format json`) without a hand-written mapping;
//! the enum fields below print by name (see `src/proto.rs`).
//!
//! It also links the `carrack-monitor` binary statically (see [`link_monitor_statically`]).

/// (field path, serializer in `crate::proto::json`).
const ENUM_FIELDS: &[(&str, &str)] = &[
    (".runtime.v1.Container.state", "container_state"),
    (".runtime.v1.ContainerStatus.state", "container_state"),
    (".runtime.v1.ContainerStatus.stop_signal", "signal"),
    (".runtime.v1.ContainerConfig.stop_signal", "signal"),
    (".runtime.v1.PodSandbox.state", "pod_sandbox_state"),
    (".runtime.v1.PodSandboxStatus.state", "pod_sandbox_state"),
    (".runtime.v1.PortMapping.protocol", "protocol"),
    (".runtime.v1.Mount.propagation", "mount_propagation"),
    (".runtime.v1.NamespaceOption.network", "namespace_mode"),
    (".runtime.v1.NamespaceOption.pid", "namespace_mode"),
    (".runtime.v1.NamespaceOption.ipc", "namespace_mode"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    link_monitor_statically()?;
    println!("cargo:rerun-if-changed=proto/api.proto");
    println!("cargo:rerun-if-changed=proto/images.proto");
    let mut builder = tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .type_attribute(".", "#[derive(serde::Serialize)]");
    for (field, serializer) in ENUM_FIELDS {
        builder = builder.field_attribute(
            field,
            format!("#[serde(serialize_with = \"crate::proto::json::{serializer}\")]"),
        );
    }
    builder.compile_protos(&["proto/api.proto", "proto/images.proto"], &["proto"])?;
    Ok(())
}

/// The system libraries the Rust standard library links on `*-linux-gnu`, and the static
/// archive each is taken from for `carrack-monitor` (`gcc_s`, the unwinder, has no static
/// archive: `libgcc_eh.a` is its static counterpart, as `crt-static` builds use).
const STATIC_LIBS: &[(&str, &str)] = &[
    ("libgcc_s.a", "libgcc_eh.a"),
    ("libc.a", "libc.a"),
    ("libm.a", "libm.a"),
    ("librt.a", "librt.a"),
    ("libpthread.a", "libpthread.a"),
    ("libdl.a", "libdl.a"),
    ("libutil.a", "libutil.a"),
];

/// Links `carrack-monitor` statically, as a fixed-address (non-PIE) executable: every running
/// container has one, and a dynamically linked one maps the whole of libc, libgcc_s and the
/// loader (about 1.5 MiB of RSS per container) and pays for the dynamic loading at each
/// container start. A static PIE would still relocate itself at start, dirtying (and so
/// keeping private, per monitor) about 280 KiB of `.data.rel.ro`; at a fixed address that
/// data stays the file's, shared and droppable.
///
/// Cargo cannot give one binary `-C target-feature=+crt-static`, so the link is steered
/// through the linker instead: `-static -no-pie` (the later `-no-pie` cancels the `-pie`
/// rustc passes), and a search directory holding the static
/// archives under the names rustc asks for (which the linker finds before the shared
/// libraries in the system directories). When an archive is missing (no `libc6-dev`) the
/// binary stays dynamic, with a warning.
fn link_monitor_statically() -> Result<(), Box<dyn std::error::Error>> {
    let target = std::env::var("TARGET")?;
    if !target.ends_with("-linux-gnu") {
        return Ok(());
    }
    let dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("static-libs");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    for (name, archive) in STATIC_LIBS {
        let output = std::process::Command::new(&compiler)
            .arg(format!("-print-file-name={archive}"))
            .output()?;
        let found = std::path::PathBuf::from(String::from_utf8(output.stdout)?.trim());
        // Without the archive the compiler prints the bare name back.
        if !output.status.success() || !found.is_absolute() {
            println!(
                "cargo:warning=no {archive} ({compiler} -print-file-name): carrack-monitor is \
                 linked dynamically"
            );
            return Ok(());
        }
        std::os::unix::fs::symlink(&found, dir.join(name))?;
    }
    println!(
        "cargo:rustc-link-arg-bin=carrack-monitor=-L{}",
        dir.display()
    );
    println!("cargo:rustc-link-arg-bin=carrack-monitor=-static");
    println!("cargo:rustc-link-arg-bin=carrack-monitor=-no-pie");
    println!("cargo:rerun-if-env-changed=CC");
    Ok(())
}
