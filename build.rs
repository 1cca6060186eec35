//! Compiles the vendored CRI schema (`proto/api.proto`) and Carrack's image transfer
//! extension (`proto/images.proto`, package `carrack.images.v1`) into tonic clients and
//! servers.
//!
//! Every generated type also derives `serde::Serialize`, so the command line can print any
//! CRI reply as JSON (`carrack inspect`, `--format json`) without a hand-written mapping;
//! the enum fields below print by name (see `src/proto.rs`).

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
