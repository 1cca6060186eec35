//! What the runtime knows about a pod that the plugins need: [`PodNetwork`] and its parts.
//!
//! These are this module's own types (the `cni` leaf must not see CRI or store types); the
//! sandbox layer fills them from the CRI request. They turn into the two per-pod inputs of a
//! plugin run: `CNI_ARGS` (the pod's identity, as kubelet's dockershim and containerd pass it)
//! and the `runtimeConfig` entries for the capabilities a plugin declares. They are also
//! serialised into the result cache so that `DEL` can be replayed after a restart.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::conf::PluginConf;
use super::error::CniError;

/// A pod's network attachment request: identity, netns and the capability arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PodNetwork {
    /// The pod sandbox id: `CNI_CONTAINERID` and the cache key. 1-128 of `[A-Za-z0-9_.-]`.
    pub pod_id: String,
    /// The pod name (`K8S_POD_NAME`).
    pub name: String,
    /// The pod namespace (`K8S_POD_NAMESPACE`).
    pub namespace: String,
    /// The pod UID (`K8S_POD_UID`).
    pub uid: String,
    /// The pinned network namespace (`CNI_NETNS`), e.g. `/run/carrack/netns/<id>`.
    pub netns_path: PathBuf,
    /// Host port mappings (`portMappings` capability); entries with `host_port` 0 are not
    /// passed, as kubelet only publishes ports with a host port.
    pub port_mappings: Vec<PortMapping>,
    /// Pod DNS settings (`dns` capability).
    pub dns: Option<Dns>,
    /// Traffic shaping (`bandwidth` capability).
    pub bandwidth: Option<Bandwidth>,
    /// Address ranges to allocate from (`ipRanges` capability): a list of range sets, one set
    /// per address the pod should get (e.g. one IPv4 set and one IPv6 set).
    pub ip_ranges: Vec<Vec<IpRange>>,
}

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The transport protocol.
    pub protocol: Protocol,
    /// The port inside the pod.
    pub container_port: u16,
    /// The port on the node; 0 = not published.
    pub host_port: u16,
    /// The node address to bind; empty = all.
    #[serde(default)]
    pub host_ip: String,
}

/// A port mapping's transport protocol, spelled lowercase on the wire (`tcp`, `udp`, `sctp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The lowercase name used in `portMappings`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

/// Pod DNS settings as the `dns` capability carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dns {
    /// Name server addresses.
    pub servers: Vec<String>,
    /// Search domains.
    pub searches: Vec<String>,
    /// Resolver options (`ndots:5`).
    pub options: Vec<String>,
}

/// Traffic shaping for the `bandwidth` capability; rates in bits per second, bursts in bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Bandwidth {
    /// Ingress rate, bit/s.
    pub ingress_rate: u64,
    /// Ingress burst, bits.
    pub ingress_burst: u64,
    /// Egress rate, bit/s.
    pub egress_rate: u64,
    /// Egress burst, bits.
    pub egress_burst: u64,
}

/// One address range of the `ipRanges` capability (host-local's range syntax).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IpRange {
    /// The subnet, `10.22.0.0/16`.
    pub subnet: String,
    /// First address to hand out, if restricted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range_start: Option<IpAddr>,
    /// Last address to hand out, if restricted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range_end: Option<IpAddr>,
    /// The gateway, if not the subnet's first address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

/// Longest pod id accepted (it is a file name in the cache dir).
const MAX_ID_LEN: usize = 128;

impl PodNetwork {
    /// Refuses ids that are unsafe as file names or as `CNI_CONTAINERID`, and names that would
    /// break the `;`/`=` syntax of `CNI_ARGS`.
    pub fn validate(&self) -> Result<(), CniError> {
        validate_pod_id(&self.pod_id)?;
        for (what, value) in [
            ("name", &self.name),
            ("namespace", &self.namespace),
            ("uid", &self.uid),
        ] {
            if value.contains([';', '=']) || value.chars().any(char::is_control) {
                return Err(CniError::InvalidArgument {
                    container_id: self.pod_id.clone(),
                    reason: format!("pod {what} {value:?} contains ';', '=' or a control char"),
                });
            }
        }
        Ok(())
    }

    /// `CNI_ARGS` for this pod.
    pub fn cni_args(&self) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            self.namespace, self.name, self.pod_id, self.uid
        )
    }

    /// The `runtimeConfig` entries for `plugin`: only capabilities it declares and for which
    /// the pod has a value. `None` when there are none (no `runtimeConfig` key is added).
    pub fn runtime_config(&self, plugin: &PluginConf) -> Option<Map<String, Value>> {
        let mut config = Map::new();
        for capability in &plugin.capabilities {
            let value = match capability.as_str() {
                "portMappings" => {
                    let mappings: Vec<Value> = self
                        .port_mappings
                        .iter()
                        .filter(|mapping| mapping.host_port != 0)
                        .map(port_mapping_json)
                        .collect();
                    (!mappings.is_empty()).then_some(Value::Array(mappings))
                }
                "dns" => self.dns.as_ref().map(|dns| {
                    serde_json::json!({
                        "servers": dns.servers,
                        "searches": dns.searches,
                        "options": dns.options,
                    })
                }),
                "bandwidth" => self
                    .bandwidth
                    .as_ref()
                    .and_then(|bandwidth| serde_json::to_value(bandwidth).ok()),
                "ipRanges" if !self.ip_ranges.is_empty() => {
                    serde_json::to_value(&self.ip_ranges).ok()
                }
                _ => None,
            };
            if let Some(value) = value {
                config.insert(capability.clone(), value);
            }
        }
        (!config.is_empty()).then_some(config)
    }
}

fn port_mapping_json(mapping: &PortMapping) -> Value {
    let mut entry = serde_json::json!({
        "hostPort": mapping.host_port,
        "containerPort": mapping.container_port,
        "protocol": mapping.protocol.as_str(),
    });
    if !mapping.host_ip.is_empty()
        && let Value::Object(object) = &mut entry
    {
        object.insert("hostIP".to_owned(), Value::String(mapping.host_ip.clone()));
    }
    entry
}

/// A pod id must be usable as `CNI_CONTAINERID` and as a cache file name.
pub(crate) fn validate_pod_id(pod_id: &str) -> Result<(), CniError> {
    let valid = !pod_id.is_empty()
        && pod_id.len() <= MAX_ID_LEN
        && !pod_id.starts_with('.')
        && pod_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(CniError::InvalidArgument {
            container_id: pod_id.to_owned(),
            reason: "a pod id is 1-128 characters of [A-Za-z0-9_.-], not starting with '.'"
                .to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(capabilities: &[&str]) -> PluginConf {
        PluginConf {
            plugin_type: "p".to_owned(),
            capabilities: capabilities.iter().map(|cap| (*cap).to_owned()).collect(),
            raw: Map::new(),
        }
    }

    fn pod() -> PodNetwork {
        PodNetwork {
            pod_id: "abc123".to_owned(),
            name: "web".to_owned(),
            namespace: "default".to_owned(),
            uid: "u-1".to_owned(),
            netns_path: PathBuf::from("/run/netns/x"),
            port_mappings: vec![
                PortMapping {
                    protocol: Protocol::Udp,
                    container_port: 53,
                    host_port: 5353,
                    host_ip: "127.0.0.1".to_owned(),
                },
                PortMapping {
                    protocol: Protocol::Tcp,
                    container_port: 80,
                    host_port: 0,
                    host_ip: String::new(),
                },
            ],
            dns: Some(Dns {
                servers: vec!["10.0.0.10".to_owned()],
                searches: vec!["svc.cluster.local".to_owned()],
                options: vec!["ndots:5".to_owned()],
            }),
            bandwidth: Some(Bandwidth {
                ingress_rate: 1000,
                ingress_burst: 2000,
                egress_rate: 3000,
                egress_burst: 4000,
            }),
            ip_ranges: vec![vec![IpRange {
                subnet: "10.9.0.0/24".to_owned(),
                ..IpRange::default()
            }]],
        }
    }

    #[test]
    fn cni_pod_args_and_validation() {
        let pod = pod();
        assert_eq!(
            pod.cni_args(),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;\
             K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=u-1"
        );
        pod.validate().expect("valid");
        let bad = PodNetwork {
            name: "a;b".to_owned(),
            ..pod.clone()
        };
        assert!(bad.validate().is_err());
        for id in ["", "../x", ".hidden", "a/b"] {
            let bad = PodNetwork {
                pod_id: id.to_owned(),
                ..pod.clone()
            };
            assert!(bad.validate().is_err(), "{id}");
        }
    }

    #[test]
    fn cni_pod_runtime_config_only_declared_capabilities() {
        let pod = pod();
        assert_eq!(pod.runtime_config(&plugin(&[])), None);
        let config = pod
            .runtime_config(&plugin(&["portMappings", "bandwidth", "unknownCap"]))
            .expect("some");
        assert_eq!(
            Value::Object(config),
            serde_json::json!({
                "portMappings": [{"hostPort": 5353, "containerPort": 53, "protocol": "udp",
                                  "hostIP": "127.0.0.1"}],
                "bandwidth": {"ingressRate": 1000, "ingressBurst": 2000,
                              "egressRate": 3000, "egressBurst": 4000},
            })
        );
        let config = pod
            .runtime_config(&plugin(&["dns", "ipRanges"]))
            .expect("some");
        assert_eq!(
            Value::Object(config),
            serde_json::json!({
                "dns": {"servers": ["10.0.0.10"], "searches": ["svc.cluster.local"],
                        "options": ["ndots:5"]},
                "ipRanges": [[{"subnet": "10.9.0.0/24"}]],
            })
        );
        let no_ports = PodNetwork {
            port_mappings: Vec::new(),
            ..pod
        };
        assert_eq!(no_ports.runtime_config(&plugin(&["portMappings"])), None);
    }
}
