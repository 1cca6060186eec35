//! The network config one plugin of a list reads on stdin.
//!
//! As the spec's "execution of network configurations" describes: the plugin's own object
//! from the list, with the list's `name` and `cniVersion` injected, `prevResult` when the
//! runtime has one to give (the previous plugin's result during `ADD`; the cached final result
//! for `DEL` and `CHECK`), and `runtimeConfig` carrying only the capabilities the plugin
//! declares.

use serde_json::{Map, Value};

use super::conf::{NetworkConfigList, PluginConf};

/// Serialises the stdin config of `plugin` in `list`.
pub(crate) fn plugin_input(
    list: &NetworkConfigList,
    plugin: &PluginConf,
    prev_result: Option<&Value>,
    runtime_config: Option<Map<String, Value>>,
) -> Vec<u8> {
    let mut config = plugin.raw.clone();
    config.insert("name".to_owned(), Value::String(list.name.clone()));
    config.insert(
        "cniVersion".to_owned(),
        Value::String(list.cni_version.clone()),
    );
    config.remove("prevResult");
    if let Some(prev) = prev_result {
        config.insert("prevResult".to_owned(), prev.clone());
    }
    if let Some(runtime) = runtime_config {
        // Static runtimeConfig keys written in the file stay unless the runtime sets them.
        match config.get_mut("runtimeConfig") {
            Some(Value::Object(existing)) => existing.extend(runtime),
            _ => {
                config.insert("runtimeConfig".to_owned(), Value::Object(runtime));
            }
        }
    }
    // Serialising a map of JSON values cannot fail.
    serde_json::to_vec(&Value::Object(config)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn cni_input_injects_name_version_prev_and_runtime_config() {
        let list = NetworkConfigList::parse(
            br#"{"cniVersion":"0.4.0","name":"net","plugins":[
                {"type":"bridge","name":"ignored","prevResult":{"stale":true}},
                {"type":"portmap","runtimeConfig":{"static":1}}]}"#,
            Path::new("/x/n.conflist"),
        )
        .expect("list");
        let prev = serde_json::json!({"cniVersion": "0.4.0", "ips": []});
        let first: Value =
            serde_json::from_slice(&plugin_input(&list, &list.plugins[0], None, None))
                .expect("json");
        assert_eq!(
            first,
            serde_json::json!({"type": "bridge", "name": "net", "cniVersion": "0.4.0"})
        );
        let mut runtime = Map::new();
        runtime.insert("portMappings".to_owned(), serde_json::json!([]));
        let second: Value = serde_json::from_slice(&plugin_input(
            &list,
            &list.plugins[1],
            Some(&prev),
            Some(runtime),
        ))
        .expect("json");
        assert_eq!(second["prevResult"], prev);
        assert_eq!(
            second["runtimeConfig"],
            serde_json::json!({"static": 1, "portMappings": []})
        );
    }
}
