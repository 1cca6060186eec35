//! `RunPodSandbox`: reserve the name, then acquire each resource with its undo step pushed —
//! pod dir and files, namespaces, /dev/shm, cgroup, network — and commit the record last.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use tracing::Instrument;

use super::files::{self, PodFilesSpec};
use super::namespaces::{self, NamespaceSetup};
use super::{
    PodSpec, SandboxError, SandboxService, bandwidth, new_id, pid_init, reconcile, sysctl, userns,
};
use crate::cgroups::Resources;
use crate::cni::{Bandwidth, IpRange, PodNetwork};
use crate::events::ContainerEventKind;
use crate::executor::sys::NewNamespaces;
use crate::failpoint;
use crate::rollback::Rollback;
use crate::store::{NamespaceMode, PodRecord, PodState, pod_name_key};

impl SandboxService {
    /// Runs a pod and returns its id. On failure everything acquired so far is released.
    /// Runs a pod; `deadline` is the client's, past which the result is kept for its retry.
    pub async fn run(
        self: &Arc<Self>,
        spec: PodSpec,
        deadline: Option<std::time::Instant>,
    ) -> Result<String, SandboxError> {
        // Finished even when the client gives up; its retry gets the pod (see `resumable`).
        let name = pod_name_key(
            &spec.metadata.name,
            &spec.metadata.namespace,
            &spec.metadata.uid,
            spec.metadata.attempt,
        );
        let service = Arc::clone(self);
        self.resumable
            .run(
                name,
                deadline,
                |id| self.store.pods.get(id).is_some(),
                async move { service.run_now(spec).await },
            )
            .await
    }

    async fn run_now(&self, spec: PodSpec) -> Result<String, SandboxError> {
        if !spec.runtime_handler.is_empty() {
            return Err(SandboxError::UnknownHandler {
                handler: spec.runtime_handler.clone(),
            });
        }
        let own_network = spec.namespaces.network != NamespaceMode::Node;
        let own_ipc = spec.namespaces.ipc != NamespaceMode::Node;
        if spec.namespaces.user.is_some() {
            if !self.settings.user_namespaces {
                return Err(SandboxError::Unsupported {
                    id: spec.metadata.name.clone(),
                    feature: "a pod user namespace (hostUsers: false) on this node (the kernel or the filesystem of the root dir cannot stack an overlay on idmapped layers)",
                });
            }
            // Its network namespace is its own, owned by its user namespace; the node's is
            // not (the `user_namespaces_host_network` feature is not reported).
            if !own_network {
                return Err(SandboxError::Unsupported {
                    id: spec.metadata.name.clone(),
                    feature: "a pod user namespace (hostUsers: false) with the node's network",
                });
            }
        }
        let sysctls = sysctl::validate(&spec.sysctls, own_network, own_ipc)
            .map_err(|reason| SandboxError::InvalidConfig { reason })?;
        let hostname = pod_hostname(&spec)?;
        let bandwidth = bandwidth::from_annotations(&spec.annotations)
            .map_err(|reason| SandboxError::InvalidConfig { reason })?;
        let id = new_id();
        // Held until the pod is committed or rolled back: the periodic pass that finishes cut-short
        // network teardowns (`recover.rs`) would otherwise see this pod's fresh CNI attachment
        // on a record not yet ready, and release it under the pod.
        let _guard = self.locks.lock(&id).await;

        let name_key = pod_name_key(
            &spec.metadata.name,
            &spec.metadata.namespace,
            &spec.metadata.uid,
            spec.metadata.attempt,
        );
        tracing::info_span!("pod.reserve_name")
            .in_scope(|| self.store.pod_names.reserve(&name_key, &id))?;
        let mut rollback = Rollback::default();
        {
            let store = Arc::clone(&self.store);
            let (name_key, id) = (name_key.clone(), id.clone());
            rollback.push("release name", move || {
                store.pod_names.release(&name_key, &id);
                Ok(())
            });
        }
        let result = self
            .acquire(
                &id,
                &name_key,
                &spec,
                hostname,
                sysctls,
                bandwidth,
                own_network,
                own_ipc,
                &mut rollback,
            )
            .await;
        match result {
            Ok(()) => {
                rollback.commit();
                // The pod is ready as soon as it exists (there is no pause process to start).
                if let Some(pod) = self.store.pods.get(&id) {
                    self.publish(ContainerEventKind::Created, Arc::clone(&pod));
                    self.publish(ContainerEventKind::Started, pod);
                }
                Ok(id)
            }
            Err(err) => {
                let failed = rollback.run();
                if !failed.is_empty() {
                    tracing::error!(pod = %id, steps = ?failed, "pod cleanup incomplete after failed run");
                }
                Err(err)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn acquire(
        &self,
        id: &str,
        name_key: &str,
        spec: &PodSpec,
        hostname: String,
        sysctls: Vec<sysctl::Sysctl>,
        bandwidth: Option<Bandwidth>,
        own_network: bool,
        own_ipc: bool,
        rollback: &mut Rollback,
    ) -> Result<(), SandboxError> {
        let io = |action: &'static str, path: &std::path::Path| {
            let (id, path) = (id.to_owned(), path.to_owned());
            move |source| SandboxError::Io {
                id,
                action,
                path,
                source,
            }
        };

        // Pod directory and files.
        let phase = tracing::info_span!("pod.files").entered();
        let pod_dir = self.settings.state_dir.join("pods").join(id);
        fs::create_dir_all(&pod_dir).map_err(io("create pod dir", &pod_dir))?;
        fs::set_permissions(&pod_dir, fs::Permissions::from_mode(0o711))
            .map_err(io("set mode of pod dir", &pod_dir))?;
        {
            let pod_dir = pod_dir.clone();
            rollback.push("remove pod dir", move || {
                fs::remove_dir_all(&pod_dir)
                    .or_else(ignore_not_found)
                    .map_err(|e| e.to_string())
            });
        }
        files::write(
            &pod_dir,
            &PodFilesSpec {
                hostname: &hostname,
                dns: spec.dns.as_ref(),
                host_network: !own_network,
                host_resolv_conf: &self.settings.host_resolv_conf,
                host_hosts: &self.settings.host_hosts,
            },
        )
        .map_err(io("write pod files", &pod_dir))?;
        drop(phase);

        // Namespaces (blocking work: a dedicated thread, off the async workers).
        let setup = NamespaceSetup {
            create: NewNamespaces {
                net: own_network,
                ipc: own_ipc,
                uts: own_network,
            },
            hostname: hostname.clone(),
            sysctls,
        };
        let ns_dir = pod_dir.clone();
        let user_mappings = spec.namespaces.user;
        // Spawned inside the span: starting the blocking thread is part of the phase.
        let pinned = async {
            tokio::task::spawn_blocking(move || match user_mappings {
                Some(mappings) => userns::create(&ns_dir, &mappings, setup)
                    .map(|pinned| (pinned.owned, Some(pinned.user))),
                None => namespaces::create(&ns_dir, setup).map(|pinned| (pinned, None)),
            })
            .await
        }
        .instrument(tracing::info_span!(
            "pod.namespaces",
            sysctls = spec.sysctls.len()
        ))
        .await
        .map_err(|err| SandboxError::Io {
            id: id.to_owned(),
            action: "join namespace task",
            path: pod_dir.clone(),
            source: std::io::Error::other(err.to_string()),
        })?
        .map_err(|source| SandboxError::Namespaces {
            id: id.to_owned(),
            source,
        })?;
        let (pinned, userns_path) = pinned;
        {
            let pinned = pinned.clone();
            rollback.push("unpin namespaces", move || {
                namespaces::release(&pinned).map_err(|e| e.to_string())
            });
        }
        if let Some(path) = userns_path.clone() {
            rollback.push("unpin user namespace", move || {
                namespaces::unpin(&path).map_err(|e| e.to_string())
            });
        }

        // The pod's /dev/shm, unless it shares the node's IPC namespace.
        let phase = tracing::info_span!("pod.shm").entered();
        let shm_path = if own_ipc {
            let shm = files::mount_shm(&pod_dir).map_err(io("mount /dev/shm tmpfs", &pod_dir))?;
            let unmount = shm.clone();
            rollback.push("unmount shm", move || {
                files::unmount_shm(&unmount).map_err(|e| e.to_string())
            });
            Some(shm)
        } else {
            None
        };

        failpoint::hit(failpoint::RUN_POD_AFTER_NAMESPACES);
        drop(phase);

        // Pod cgroup.
        let phase = tracing::info_span!("pod.cgroup");
        let entered = phase.clone().entered();
        let cgroup_error = |source| SandboxError::Cgroup {
            id: id.to_owned(),
            source,
        };
        let cgroup_path = self
            .cgroups
            .pod_cgroup_path(
                &spec.cgroup_parent,
                &self.settings.default_cgroup_parent,
                id,
            )
            .map_err(|source| match source.kind() {
                crate::error_kind::ErrorKind::InvalidArgument => SandboxError::InvalidConfig {
                    reason: source.to_string(),
                },
                _ => cgroup_error(source),
            })?;
        // Noted in the pod dir first, so the reconciler can remove the cgroup if we crash
        // before the pod record exists.
        reconcile::write_cgroup_intent(&pod_dir, &cgroup_path, None)
            .map_err(io("write cgroup intent", &pod_dir))?;
        drop(entered);
        // Limits go in with the cgroup: the systemd driver starts the pod's slice with them.
        let limits =
            pod_limits(spec.overhead.as_ref(), spec.resources.as_ref()).unwrap_or_default();
        let created = {
            let cgroups = Arc::clone(&self.cgroups);
            let path = cgroup_path.clone();
            // Blocking: directory writes, or a D-Bus round trip to systemd and its job.
            tokio::task::spawn_blocking(move || cgroups.create_with(&path, &limits, None))
                .instrument(phase.clone())
                .await
                .map_err(|err| SandboxError::Io {
                    id: id.to_owned(),
                    action: "join cgroup task",
                    path: pod_dir.clone(),
                    source: std::io::Error::other(err.to_string()),
                })?
                .map_err(cgroup_error)?
        };
        let entered = phase.entered();
        reconcile::write_cgroup_intent(&pod_dir, &cgroup_path, Some(&created))
            .map_err(io("write cgroup intent", &pod_dir))?;
        {
            let cgroups = Arc::clone(&self.cgroups);
            let (path, created) = (cgroup_path.clone(), created.clone());
            rollback.push("remove pod cgroup", move || {
                cgroups.remove(&path, &created).map_err(|e| e.to_string())
            });
        }
        drop(entered);

        // The init of the pod's shared PID namespace, in the pod's cgroup.
        let pid_init = if spec.namespaces.pid == NamespaceMode::Pod {
            // Moving the init into the pod cgroup is part of the phase (one write per
            // controller on cgroup v1: milliseconds).
            let phase = tracing::info_span!("pod.pid_init");
            let pid = pid_init::start(&self.settings.binary, &pod_dir)
                .instrument(phase.clone())
                .await
                .map_err(io("start pod init", &self.settings.binary))?;
            rollback.push("kill pod init", move || {
                pid_init::kill(pid).map_err(|e| e.to_string())
            });
            phase
                .in_scope(|| self.cgroups.add_process(&cgroup_path, pid))
                .map_err(cgroup_error)?;
            pid
        } else {
            0
        };

        failpoint::hit(failpoint::RUN_POD_AFTER_CGROUP);

        // Record first as not ready, so a crash during network setup leaves a record whose
        // teardown the next start can finish.
        let mut record = PodRecord {
            id: id.to_owned(),
            name_key: name_key.to_owned(),
            metadata: spec.metadata.clone(),
            state: PodState::NotReady,
            created_at_ns: crate::store::now_ns(),
            labels: spec.labels.clone(),
            annotations: spec.annotations.clone(),
            runtime_handler: spec.runtime_handler.clone(),
            hostname,
            log_directory: spec.log_directory.clone(),
            dns: spec.dns.clone(),
            port_mappings: spec.port_mappings.clone(),
            namespaces: spec.namespaces.clone(),
            sysctls: spec.sysctls.clone(),
            privileged: spec.privileged,
            cgroup_parent: spec.cgroup_parent.clone(),
            cgroup_path: cgroup_path.as_str().to_owned(),
            cgroup_created: created
                .dirs()
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            pod_dir: pod_dir.display().to_string(),
            netns_path: pinned.net.as_ref().map(|p| p.display().to_string()),
            ipcns_path: pinned.ipc.as_ref().map(|p| p.display().to_string()),
            utsns_path: pinned.uts.as_ref().map(|p| p.display().to_string()),
            userns_path: userns_path.as_ref().map(|p| p.display().to_string()),
            shm_path: shm_path.as_ref().map(|p| p.display().to_string()),
            ip: None,
            additional_ips: Vec::new(),
            network_attached: false,
            pid_init,
            pidns_path: (pid_init > 0).then(|| format!("/proc/{pid_init}/ns/pid")),
            creating: true,
        };

        // Network.
        if let Some(netns) = &pinned.net {
            record.network_attached = true;
            tracing::info_span!("pod.record").in_scope(|| self.store.pods.put(record.clone()))?;
            {
                let store = Arc::clone(&self.store);
                let id = id.to_owned();
                rollback.push("remove pod record", move || {
                    store.pods.remove(&id).map_err(|e| e.to_string())
                });
            }
            failpoint::hit(failpoint::RUN_POD_AFTER_RECORD);
            let network = PodNetwork {
                pod_id: id.to_owned(),
                name: spec.metadata.name.clone(),
                namespace: spec.metadata.namespace.clone(),
                uid: spec.metadata.uid.clone(),
                netns_path: netns.clone(),
                port_mappings: to_cni_ports(&spec.port_mappings),
                dns: spec.dns.as_ref().map(to_cni_dns),
                bandwidth,
                // One range set per CIDR: a dual-stack node gets an address of each family.
                ip_ranges: self
                    .pod_cidrs()
                    .into_iter()
                    .map(|subnet| {
                        vec![IpRange {
                            subnet,
                            ..IpRange::default()
                        }]
                    })
                    .collect(),
            };
            let status = self
                .cni
                .setup(&network)
                .instrument(tracing::info_span!("pod.network"))
                .await
                .map_err(|source| SandboxError::Network {
                    id: id.to_owned(),
                    source,
                })?;
            record.ip = status.primary_ip.map(|ip| ip.to_string());
            record.additional_ips = status
                .additional_ips
                .iter()
                .map(ToString::to_string)
                .collect();
            failpoint::hit(failpoint::RUN_POD_AFTER_NETWORK);
        }
        record.state = PodState::Ready;
        record.creating = false;
        tracing::info_span!("pod.commit").in_scope(|| self.store.pods.put(record))?;
        tracing::info!(pod = %id, name = %name_key, "pod sandbox running");
        Ok(())
    }
}

fn ignore_not_found(err: std::io::Error) -> std::io::Result<()> {
    if err.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(err)
    }
}

/// The hostname: as requested, else the node's; it must be a valid hostname.
fn pod_hostname(spec: &PodSpec) -> Result<String, SandboxError> {
    // No hostname (kubelet sends none for host-network pods; critest for most pods): the
    // node's, as containerd does. The pod name is not a fallback: it may exceed 64 bytes.
    let hostname = if spec.hostname.is_empty() {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    } else {
        spec.hostname.clone()
    };
    let valid = !hostname.is_empty()
        && hostname.len() <= 64
        && hostname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !valid {
        return Err(SandboxError::InvalidConfig {
            reason: format!(
                "hostname {hostname:?} is not a valid hostname (≤ 64 of [A-Za-z0-9.-])"
            ),
        });
    }
    Ok(hostname)
}

/// The pod cgroup's limits: the containers' sum plus the runtime class overhead.
pub(super) fn pod_limits(
    overhead: Option<&Resources>,
    resources: Option<&Resources>,
) -> Option<Resources> {
    match (overhead, resources) {
        (None, None) => None,
        (Some(one), None) | (None, Some(one)) => Some(one.clone()),
        (Some(overhead), Some(resources)) => {
            let add = |a: Option<i64>, b: Option<i64>| match (a, b) {
                (Some(a), Some(b)) if a > 0 && b > 0 => Some(a.saturating_add(b)),
                (a, b) => a.filter(|v| *v > 0).or(b),
            };
            let mut sum = resources.clone();
            sum.memory_limit = add(resources.memory_limit, overhead.memory_limit);
            sum.cpu_quota = add(resources.cpu_quota, overhead.cpu_quota);
            sum.cpu_shares = match (resources.cpu_shares, overhead.cpu_shares) {
                (Some(a), Some(b)) => Some(a.saturating_add(b)),
                (a, b) => a.or(b),
            };
            Some(sum)
        }
    }
}

/// Ports as CNI's `portMappings` capability wants them; unpublished ports (host port 0) are
/// not passed (validation already bounded both ports to 0..=65535).
fn to_cni_ports(ports: &[crate::store::PortMapping]) -> Vec<crate::cni::PortMapping> {
    ports
        .iter()
        .filter_map(|port| {
            let host_port = u16::try_from(port.host_port).ok().filter(|p| *p > 0)?;
            let container_port = u16::try_from(port.container_port).ok()?;
            Some(crate::cni::PortMapping {
                protocol: match port.protocol {
                    crate::store::Protocol::Tcp => crate::cni::Protocol::Tcp,
                    crate::store::Protocol::Udp => crate::cni::Protocol::Udp,
                    crate::store::Protocol::Sctp => crate::cni::Protocol::Sctp,
                },
                container_port,
                host_port,
                host_ip: port.host_ip.clone(),
            })
        })
        .collect()
}

fn to_cni_dns(dns: &crate::store::DnsConfig) -> crate::cni::Dns {
    crate::cni::Dns {
        servers: dns.servers.clone(),
        searches: dns.searches.clone(),
        options: dns.options.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_defaults_to_the_node_s_and_is_validated() {
        // Regression (56 critest specs): a pod without a hostname whose name is longer than
        // 64 bytes was refused, because the pod name stood in for the hostname.
        let mut spec = PodSpec::default();
        spec.metadata.name = format!("create-PodSandbox-for-container-{}", "x".repeat(40));
        let node = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        assert_eq!(pod_hostname(&spec).unwrap(), node);
        spec.hostname = "bad host".to_owned();
        assert!(pod_hostname(&spec).is_err());
    }
}
