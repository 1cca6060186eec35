//! A private D-Bus bus with a fake systemd manager on it, for the systemd cgroup driver's
//! root tests.
//!
//! [`FakeSystemd::start`] runs Debian's `dbus-daemon` with a config file of its own (a
//! socket in a temp dir, anyone may own any name) and serves `org.freedesktop.systemd1` on
//! it with zbus: `StartTransientUnit`, `StopUnit`, `ResetFailedUnit` and `Subscribe`, each
//! finished with a `JobRemoved` signal. Like systemd it makes a unit's cgroup (in the
//! hierarchies it "manages": cpu, memory, pids), moves the `PIDs` of a scope into it, and on
//! stop kills what is left and removes the cgroup, child units first. Every call is
//! recorded. Everything lives under the slice `<top>.slice`, which `Drop` removes with the
//! bus.
//!
//! Not part of `support`'s module list: only `tests/systemd.rs` includes it (by path), so the
//! other test binaries do not compile a D-Bus service.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue};

use crate::support::cleanup::{self, CGROUP_ROOT};
use crate::support::process;

/// The v1 hierarchies the fake manages, as systemd manages its accounting controllers.
pub const MANAGED: [&str; 3] = ["cpu", "memory", "pids"];

/// One call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    /// `StartTransientUnit`, `StopUnit`, `ResetFailedUnit`.
    pub method: String,
    /// The unit named.
    pub unit: String,
    /// The properties (`StartTransientUnit` only).
    pub properties: BTreeMap<String, OwnedValue>,
}

impl Call {
    /// Property `name` as `T`, panicking with the call when absent or of another type.
    pub fn property<T>(&self, name: &str) -> T
    where
        T: TryFrom<OwnedValue>,
    {
        let value = self
            .properties
            .get(name)
            .unwrap_or_else(|| panic!("{} has no property {name}: {self:?}", self.unit));
        let cloned = value.try_clone().expect("clone value");
        T::try_from(cloned)
            .unwrap_or_else(|_| panic!("property {name} of {} has another type", self.unit))
    }
}

/// systemd's errors, as the real one names them.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.freedesktop.systemd1")]
enum ManagerError {
    #[zbus(error)]
    ZBus(zbus::Error),
    NoSuchUnit(String),
    UnitExists(String),
    Failed(String),
}

/// The manager object.
struct Manager {
    calls: Arc<Mutex<Vec<Call>>>,
    /// Started units and their cgroup paths (relative to a hierarchy).
    units: Arc<Mutex<BTreeMap<String, String>>>,
    next_job: u32,
}

impl Manager {
    fn record(&self, method: &str, unit: &str, properties: BTreeMap<String, OwnedValue>) {
        self.calls.lock().expect("calls").push(Call {
            method: method.to_owned(),
            unit: unit.to_owned(),
            properties,
        });
    }

    async fn finish_job(
        &mut self,
        emitter: &SignalEmitter<'_>,
        unit: &str,
    ) -> Result<OwnedObjectPath, ManagerError> {
        self.next_job += 1;
        let id = self.next_job;
        let job = OwnedObjectPath::try_from(format!("/org/freedesktop/systemd1/job/{id}"))
            .map_err(|err| ManagerError::Failed(err.to_string()))?;
        // Before the reply, as systemd may: the client must have subscribed first.
        Self::job_removed(emitter, id, job.as_ref(), unit, "done").await?;
        Ok(job)
    }
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl Manager {
    async fn subscribe(&self) {}

    async fn start_transient_unit(
        &mut self,
        name: String,
        _mode: String,
        properties: Vec<(String, OwnedValue)>,
        _aux: Vec<(String, Vec<(String, OwnedValue)>)>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<OwnedObjectPath, ManagerError> {
        let properties: BTreeMap<String, OwnedValue> = properties.into_iter().collect();
        let call = Call {
            method: "StartTransientUnit".to_owned(),
            unit: name.clone(),
            properties,
        };
        self.calls.lock().expect("calls").push(call.clone());
        if self.units.lock().expect("units").contains_key(&name) {
            return Err(ManagerError::UnitExists(format!("unit {name} exists")));
        }
        let path = if name.ends_with(".slice") {
            slice_path(&name)
        } else {
            let slice: String = call
                .properties
                .get("Slice")
                .and_then(|value| value.try_clone().ok())
                .and_then(|value| String::try_from(value).ok())
                .ok_or_else(|| ManagerError::Failed(format!("scope {name} names no Slice")))?;
            format!("{}/{name}", slice_path(&slice))
        };
        for hierarchy in MANAGED {
            let dir = Path::new(CGROUP_ROOT).join(hierarchy).join(&path);
            std::fs::create_dir_all(&dir)
                .map_err(|err| ManagerError::Failed(format!("{}: {err}", dir.display())))?;
            if let Some(pids) = call.properties.get("PIDs") {
                let pids: Vec<u32> = pids
                    .try_clone()
                    .ok()
                    .and_then(|value| Vec::<u32>::try_from(value).ok())
                    .unwrap_or_default();
                for pid in pids {
                    std::fs::write(dir.join("cgroup.procs"), pid.to_string()).map_err(|err| {
                        ManagerError::Failed(format!("move {pid} to {}: {err}", dir.display()))
                    })?;
                }
            }
        }
        self.units.lock().expect("units").insert(name.clone(), path);
        self.finish_job(&emitter, &name).await
    }

    async fn stop_unit(
        &mut self,
        name: String,
        _mode: String,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<OwnedObjectPath, ManagerError> {
        self.record("StopUnit", &name, BTreeMap::new());
        let Some(path) = self.units.lock().expect("units").remove(&name) else {
            return Err(ManagerError::NoSuchUnit(format!("unit {name} not loaded")));
        };
        // Child units go with their slice.
        self.units
            .lock()
            .expect("units")
            .retain(|_, child| !child.starts_with(&format!("{path}/")));
        for hierarchy in MANAGED {
            let dir = Path::new(CGROUP_ROOT).join(hierarchy).join(&path);
            if dir.is_dir() {
                cleanup::remove_cgroups(&path_in(hierarchy, &dir));
            }
        }
        self.finish_job(&emitter, &name).await
    }

    async fn reset_failed_unit(&self, name: String) -> Result<(), ManagerError> {
        self.record("ResetFailedUnit", &name, BTreeMap::new());
        Ok(())
    }

    #[zbus(signal)]
    async fn job_removed(
        emitter: &SignalEmitter<'_>,
        id: u32,
        job: ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

/// `dir` relative to `hierarchy`'s mount, for [`cleanup::remove_cgroups`] (which takes a
/// path below every hierarchy; only the managed ones hold it).
fn path_in(hierarchy: &str, dir: &Path) -> String {
    dir.strip_prefix(Path::new(CGROUP_ROOT).join(hierarchy))
        .map(|rest| rest.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Where systemd keeps slice `name`: each dash opens a level.
pub fn slice_path(name: &str) -> String {
    let stem = name.trim_end_matches(".slice");
    let mut parts = Vec::new();
    let mut prefix = String::new();
    for word in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(word);
        parts.push(format!("{prefix}.slice"));
    }
    parts.join("/")
}

/// A private bus (`dbus-daemon`) with the fake manager on it.
pub struct FakeSystemd {
    dir: tempfile::TempDir,
    bus: Child,
    top: String,
    calls: Arc<Mutex<Vec<Call>>>,
    _connection: Option<zbus::Connection>,
}

impl FakeSystemd {
    /// Starts the bus and the manager; units live under `<top>.slice`.
    pub async fn start(top: &str) -> FakeSystemd {
        Self::start_with(top, true).await
    }

    /// Starts the bus alone: nobody owns systemd's name on it.
    pub async fn bus_only(top: &str) -> FakeSystemd {
        Self::start_with(top, false).await
    }

    async fn start_with(top: &str, serve: bool) -> FakeSystemd {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("bus.sock");
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n \
                 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
                 <busconfig>\n  <type>custom</type>\n  <listen>unix:path={}</listen>\n  \
                 <auth>EXTERNAL</auth>\n  <policy context=\"default\">\n    \
                 <allow user=\"*\"/>\n    <allow own=\"*\"/>\n    \
                 <allow send_destination=\"*\"/>\n    <allow receive_sender=\"*\"/>\n  \
                 </policy>\n</busconfig>\n",
                socket.display()
            ),
        )
        .expect("write bus config");
        let bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .arg("--nopidfile")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("run dbus-daemon (Debian package dbus-daemon)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "dbus-daemon did not listen");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let calls = Arc::new(Mutex::new(Vec::new()));
        let manager = Manager {
            calls: Arc::clone(&calls),
            units: Arc::new(Mutex::new(BTreeMap::new())),
            next_job: 0,
        };
        let address = format!("unix:path={}", socket.display());
        let connection = if serve {
            let connection = zbus::connection::Builder::address(address.as_str())
                .expect("address")
                .name("org.freedesktop.systemd1")
                .expect("name")
                .serve_at("/org/freedesktop/systemd1", manager)
                .expect("serve")
                .build()
                .await
                .expect("fake systemd on the bus");
            Some(connection)
        } else {
            None
        };
        FakeSystemd {
            dir,
            bus,
            top: top.to_owned(),
            calls,
            _connection: connection,
        }
    }

    /// The bus address, for `cgroups.systemd_bus_address`.
    pub fn address(&self) -> String {
        format!("unix:path={}", self.dir.path().join("bus.sock").display())
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }

    /// The calls of `method` for `unit`.
    pub fn calls_for(&self, method: &str, unit: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|call| call.method == method && call.unit == unit)
            .collect()
    }

    /// The directories of the `<top>.slice` tree in every hierarchy, below the top itself.
    pub fn leftovers(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(CGROUP_ROOT)
            .into_iter()
            .flatten()
            .flatten()
        {
            let top = entry.path().join(format!("{}.slice", self.top));
            for child in std::fs::read_dir(&top).into_iter().flatten().flatten() {
                if child.file_type().is_ok_and(|kind| kind.is_dir()) {
                    found.push(child.path());
                }
            }
        }
        found
    }
}

impl Drop for FakeSystemd {
    fn drop(&mut self) {
        if let Err(err) = process::terminate(&mut self.bus, Duration::from_secs(2)) {
            eprintln!("carrack test cleanup: dbus-daemon: {err}");
        }
        cleanup::remove_cgroups(&format!("{}.slice", self.top));
    }
}
