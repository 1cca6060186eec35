//! The labels the command line puts on what it creates, so later verbs know which pods are
//! its own (one pod per `carrack run` container, removed with it).

/// On pods and containers made by `carrack run`; the value is the container's name.
pub const RUN: &str = "io.carrack.cli/run";

/// The CRI pod namespace (`metadata.namespace`) of pods made by `carrack run`.
pub const POD_NAMESPACE: &str = "carrack-cli";

/// Whether `labels` mark an object made by `carrack run`.
pub fn made_by_run(labels: &std::collections::HashMap<String, String>) -> bool {
    labels.contains_key(RUN)
}
