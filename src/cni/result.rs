//! Plugin results: the typed view of what `ADD` returned, and the pod IPs derived from it.
//!
//! One parser covers the result formats of spec 0.3.0 to 1.1.0: in 0.3.x/0.4.0 each `ips[]`
//! entry carries `version: "4"|"6"`, from 1.0.0 on it does not (the address says it). The raw
//! JSON is kept next to the typed fields: it is what is cached, fed to the next plugin as
//! `prevResult`, and returned to the caller, so no field a plugin adds is lost.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;
use serde_json::Value;

/// A plugin's successful `ADD` (or `CHECK` input) result.
#[derive(Debug, Clone, PartialEq)]
pub struct CniResult {
    /// The result's `cniVersion`.
    pub cni_version: String,
    /// Interfaces created or configured.
    pub interfaces: Vec<Interface>,
    /// Addresses assigned.
    pub ips: Vec<IpConfig>,
    /// Routes installed.
    pub routes: Vec<Route>,
    /// DNS information the plugin reports (informational; kubelet writes resolv.conf).
    pub dns: ResultDns,
    /// The result exactly as the plugin printed it.
    pub raw: Value,
}

/// One interface of a result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    /// Interface name (`eth0`, `cni0`, `veth1234`).
    pub name: String,
    /// Hardware address, possibly empty.
    pub mac: String,
    /// The netns path the interface is in; empty for host-side interfaces.
    pub sandbox: String,
}

/// One assigned address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpConfig {
    /// Address with prefix length, `10.22.0.5/16`.
    pub address: IpNet,
    /// The gateway, if the plugin reported one.
    pub gateway: Option<IpAddr>,
    /// Index into [`CniResult::interfaces`] of the interface holding the address.
    pub interface: Option<usize>,
}

/// One route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Destination network.
    pub dst: IpNet,
    /// Next hop; `None` means the interface's default gateway.
    pub gw: Option<IpAddr>,
}

/// The result's `dns` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ResultDns {
    /// Name servers.
    pub nameservers: Vec<String>,
    /// Local domain.
    pub domain: String,
    /// Search domains.
    pub search: Vec<String>,
    /// Resolver options.
    pub options: Vec<String>,
}

/// An address with its prefix length (CIDR notation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    /// The address (not necessarily the network address).
    pub addr: IpAddr,
    /// Prefix length: at most 32 for IPv4, 128 for IPv6.
    pub prefix_len: u8,
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not in address/prefix form"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} has an invalid address"))?;
        let prefix_len: u8 = prefix
            .parse()
            .map_err(|_| format!("{text:?} has an invalid prefix length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(format!("{text:?} has a prefix length above {max}"));
        }
        Ok(Self { addr, prefix_len })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResult {
    #[serde(default)]
    cni_version: Option<String>,
    #[serde(default)]
    interfaces: Option<Vec<WireInterface>>,
    #[serde(default)]
    ips: Option<Vec<WireIp>>,
    #[serde(default)]
    routes: Option<Vec<WireRoute>>,
    #[serde(default)]
    dns: Option<ResultDns>,
}

#[derive(Deserialize)]
struct WireInterface {
    name: String,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    sandbox: Option<String>,
}

#[derive(Deserialize)]
struct WireIp {
    #[serde(default)]
    version: Option<String>,
    address: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    interface: Option<i64>,
}

#[derive(Deserialize)]
struct WireRoute {
    dst: String,
    #[serde(default)]
    gw: Option<String>,
}

fn optional_ip(text: Option<String>, what: &str) -> Result<Option<IpAddr>, String> {
    match text.as_deref() {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| format!("{what} {text:?} is not an ip address")),
    }
}

impl CniResult {
    /// Parses a result object; errors are lowercase reasons.
    pub fn from_json(raw: Value) -> Result<Self, String> {
        if !raw.is_object() {
            return Err("the result is not a json object".to_owned());
        }
        let wire = WireResult::deserialize(&raw).map_err(|err| err.to_string())?;
        let interfaces = wire
            .interfaces
            .unwrap_or_default()
            .into_iter()
            .map(|iface| Interface {
                name: iface.name,
                mac: iface.mac.unwrap_or_default(),
                sandbox: iface.sandbox.unwrap_or_default(),
            })
            .collect();
        let ips = wire
            .ips
            .unwrap_or_default()
            .into_iter()
            .map(|ip| {
                let address: IpNet = ip.address.parse()?;
                let family_ok = match ip.version.as_deref() {
                    None | Some("") => true,
                    Some("4") => address.addr.is_ipv4(),
                    Some("6") => address.addr.is_ipv6(),
                    Some(_) => false,
                };
                if !family_ok {
                    return Err(format!(
                        "ip version {:?} does not match address {address}",
                        ip.version.unwrap_or_default()
                    ));
                }
                Ok(IpConfig {
                    address,
                    gateway: optional_ip(ip.gateway, "gateway")?,
                    interface: ip.interface.and_then(|index| usize::try_from(index).ok()),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let routes = wire
            .routes
            .unwrap_or_default()
            .into_iter()
            .map(|route| {
                Ok(Route {
                    dst: route.dst.parse()?,
                    gw: optional_ip(route.gw, "route gateway")?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            cni_version: wire.cni_version.unwrap_or_default(),
            interfaces,
            ips,
            routes,
            dns: wire.dns.unwrap_or_default(),
            raw,
        })
    }

    /// The addresses of the pod's interface `ifname` (an interface of that name inside a
    /// sandbox). Plugins that do not link addresses to interfaces get all their addresses
    /// counted, as containerd does.
    pub fn pod_ips(&self, ifname: &str) -> Vec<IpAddr> {
        let on_pod_interface: Vec<IpAddr> = self
            .ips
            .iter()
            .filter(|ip| {
                ip.interface
                    .and_then(|index| self.interfaces.get(index))
                    .is_some_and(|iface| iface.name == ifname && !iface.sandbox.is_empty())
            })
            .map(|ip| ip.address.addr)
            .collect();
        if on_pod_interface.is_empty() {
            self.ips.iter().map(|ip| ip.address.addr).collect()
        } else {
            on_pod_interface
        }
    }
}

/// What `setup` reports to the sandbox layer.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkStatus {
    /// The pod IP: the first IPv4 address of the pod interface, else its first address.
    pub primary_ip: Option<IpAddr>,
    /// The pod interface's other addresses, in result order.
    pub additional_ips: Vec<IpAddr>,
    /// The final result of the plugin chain, as cached.
    pub result_json: Value,
}

impl NetworkStatus {
    /// Derives the pod IPs from the chain's final result.
    pub fn from_result(result: &CniResult, ifname: &str) -> Self {
        let mut ips = result.pod_ips(ifname);
        let primary_index = ips
            .iter()
            .position(IpAddr::is_ipv4)
            .or((!ips.is_empty()).then_some(0));
        let primary_ip = primary_index.map(|index| ips.remove(index));
        Self {
            primary_ip,
            additional_ips: ips,
            result_json: result.raw.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_result_parses_0_4_0_with_versions() {
        let raw = serde_json::json!({
            "cniVersion": "0.4.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
                {"name": "veth1", "mac": "aa:bb:cc:dd:ee:02"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/netns/p"}
            ],
            "ips": [
                {"version": "6", "address": "fd00::5/64", "gateway": "fd00::1", "interface": 2},
                {"version": "4", "address": "10.22.0.5/16", "gateway": "10.22.0.1", "interface": 2},
                {"version": "4", "address": "10.99.0.1/24", "interface": 0}
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.1.0.0/16", "gw": "10.22.0.254"}],
            "dns": {"nameservers": ["10.0.0.10"], "search": ["cluster.local"]}
        });
        let result = CniResult::from_json(raw.clone()).expect("parse");
        assert_eq!(result.cni_version, "0.4.0");
        assert_eq!(result.interfaces[2].sandbox, "/run/netns/p");
        assert_eq!(result.ips[1].address.to_string(), "10.22.0.5/16");
        assert_eq!(result.ips[1].gateway, "10.22.0.1".parse().ok());
        assert_eq!(result.ips[1].interface, Some(2));
        assert_eq!(result.routes[1].gw, "10.22.0.254".parse().ok());
        assert_eq!(result.routes[0].gw, None);
        assert_eq!(result.dns.nameservers, ["10.0.0.10"]);
        let status = NetworkStatus::from_result(&result, "eth0");
        assert_eq!(status.primary_ip, "10.22.0.5".parse().ok());
        assert_eq!(
            status.additional_ips,
            ["fd00::5".parse::<IpAddr>().expect("ip")]
        );
        assert_eq!(status.result_json, raw);
    }

    #[test]
    fn cni_result_parses_1_0_0_without_versions() {
        let raw = serde_json::json!({
            "cniVersion": "1.0.0",
            "ips": [{"address": "fd00::7/64"}, {"address": "192.168.5.7/24", "gateway": ""}],
            "interfaces": null
        });
        let result = CniResult::from_json(raw).expect("parse");
        assert_eq!(result.ips.len(), 2);
        assert_eq!(result.ips[1].gateway, None);
        // No interface links: every address counts; IPv4 first as primary.
        let status = NetworkStatus::from_result(&result, "eth0");
        assert_eq!(status.primary_ip, "192.168.5.7".parse().ok());
        assert_eq!(
            status.additional_ips,
            ["fd00::7".parse::<IpAddr>().expect("ip")]
        );
    }

    #[test]
    fn cni_result_rejects_malformed() {
        for raw in [
            serde_json::json!([]),
            serde_json::json!({"ips": [{"address": "10.0.0.1"}]}),
            serde_json::json!({"ips": [{"address": "10.0.0.1/33"}]}),
            serde_json::json!({"ips": [{"version": "6", "address": "10.0.0.1/8"}]}),
            serde_json::json!({"routes": [{"dst": "nowhere"}]}),
        ] {
            assert!(CniResult::from_json(raw.clone()).is_err(), "{raw}");
        }
        let empty = CniResult::from_json(serde_json::json!({"cniVersion": "1.0.0"})).expect("ok");
        let status = NetworkStatus::from_result(&empty, "eth0");
        assert_eq!(status.primary_ip, None);
        assert!(status.additional_ips.is_empty());
    }
}
