//! The D-Bus conversation with systemd's manager (`org.freedesktop.systemd1`): starting and
//! stopping transient units and waiting for their jobs.
//!
//! The cgroup manager is synchronous and may be called from anywhere (a blocking-pool
//! thread, the reconciler at start), so each call runs as a task on a small runtime of its
//! own and the caller waits on a plain channel: never `block_on` inside another runtime.
//! The runtime lives for the whole process (a runtime cannot be dropped from async code),
//! and one connection is kept and re-opened after a transport failure, as runc does.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use zbus::zvariant::{self, OwnedObjectPath};
use zbus::{MatchRule, MessageStream};

use super::super::CgroupError;
use super::properties::Value;

/// The manager's well-known name, object and interface.
const DESTINATION: &str = "org.freedesktop.systemd1";
const OBJECT: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// Replies that mean "nothing to do" rather than failure.
const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";
const UNIT_EXISTS: &str = "org.freedesktop.systemd1.UnitExists";
/// How long one unit operation (connect, call, job) may take: systemd finishes these jobs in
/// milliseconds; a bus that stops answering must not hang a pod start forever.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of systemd's manager on one bus address.
#[derive(Clone)]
pub(crate) struct SystemdBus {
    inner: Arc<Inner>,
}

struct Inner {
    address: String,
    connection: tokio::sync::Mutex<Option<zbus::Connection>>,
}

impl std::fmt::Debug for SystemdBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemdBus")
            .field("address", &self.inner.address)
            .finish_non_exhaustive()
    }
}

/// How a job ended, from `JobRemoved`'s result string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum JobEnd {
    Done,
    Other(String),
}

impl SystemdBus {
    /// A client for the bus at `address` (D-Bus address syntax); connects on first use.
    pub(crate) fn new(address: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                address: address.to_owned(),
                connection: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The bus address.
    pub(crate) fn address(&self) -> &str {
        &self.inner.address
    }

    /// `StartTransientUnit(name, "replace", properties)` and waits for its job. A unit that
    /// already exists (a retry after a crash) counts as started.
    pub(crate) fn start_unit(
        &self,
        name: &str,
        properties: Vec<(&'static str, Value)>,
    ) -> Result<(), CgroupError> {
        let name = name.to_owned();
        self.run(
            &name.clone(),
            "StartTransientUnit",
            move |inner| async move {
                let conn = inner.connect().await?;
                let mut jobs = job_signals(&conn).await.map_err(|e| inner.bus_error(&e))?;
                let props: Vec<(&str, zvariant::Value<'_>)> = properties
                    .into_iter()
                    .map(|(key, value)| (key, to_variant(value)))
                    .collect();
                let aux: Vec<(&str, Vec<(&str, zvariant::Value<'_>)>)> = Vec::new();
                let reply = conn
                    .call_method(
                        Some(DESTINATION),
                        OBJECT,
                        Some(MANAGER),
                        "StartTransientUnit",
                        &(name.as_str(), "replace", props, aux),
                    )
                    .await;
                let job = match reply {
                    Ok(reply) => job_path(&reply)
                        .map_err(|e| inner.call_error(&name, "StartTransientUnit", &e))?,
                    Err(err) if error_name(&err).as_deref() == Some(UNIT_EXISTS) => return Ok(()),
                    Err(err) => return Err(inner.call_error(&name, "StartTransientUnit", &err)),
                };
                match wait_job(&mut jobs, &job).await {
                    JobEnd::Done => Ok(()),
                    JobEnd::Other(result) => Err(CgroupError::SystemdJob {
                        unit: name,
                        method: "StartTransientUnit",
                        result,
                    }),
                }
            },
        )
    }

    /// `StopUnit(name, "replace")`, waits for its job, then `ResetFailedUnit` so a failed
    /// unit does not linger. A unit systemd does not know is already stopped.
    pub(crate) fn stop_unit(&self, name: &str) -> Result<(), CgroupError> {
        let name = name.to_owned();
        self.run(&name.clone(), "StopUnit", move |inner| async move {
            let conn = inner.connect().await?;
            let mut jobs = job_signals(&conn).await.map_err(|e| inner.bus_error(&e))?;
            let reply = conn
                .call_method(
                    Some(DESTINATION),
                    OBJECT,
                    Some(MANAGER),
                    "StopUnit",
                    &(name.as_str(), "replace"),
                )
                .await;
            match reply {
                Ok(reply) => {
                    let job =
                        job_path(&reply).map_err(|e| inner.call_error(&name, "StopUnit", &e))?;
                    if let JobEnd::Other(result) = wait_job(&mut jobs, &job).await {
                        return Err(CgroupError::SystemdJob {
                            unit: name,
                            method: "StopUnit",
                            result,
                        });
                    }
                }
                Err(err) if error_name(&err).as_deref() == Some(NO_SUCH_UNIT) => {}
                Err(err) => return Err(inner.call_error(&name, "StopUnit", &err)),
            }
            let reset = conn
                .call_method(
                    Some(DESTINATION),
                    OBJECT,
                    Some(MANAGER),
                    "ResetFailedUnit",
                    &(name.as_str(),),
                )
                .await;
            if let Err(err) = reset
                && error_name(&err).as_deref() != Some(NO_SUCH_UNIT)
            {
                // Only bookkeeping in systemd: the unit is stopped either way.
                tracing::debug!(unit = %name, error = %err, "ResetFailedUnit failed");
            }
            Ok(())
        })
    }

    /// Runs `operation` on the driver's runtime and waits for it, with the operation timeout.
    fn run<T, F, Fut>(
        &self,
        unit: &str,
        method: &'static str,
        operation: F,
    ) -> Result<T, CgroupError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = Result<T, CgroupError>> + Send + 'static,
    {
        let runtime = runtime().map_err(|reason| CgroupError::SystemdBus {
            address: self.inner.address.clone(),
            reason,
        })?;
        let inner = Arc::clone(&self.inner);
        let future = operation(Arc::clone(&inner));
        let (done, result) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let outcome = match tokio::time::timeout(OPERATION_TIMEOUT, future).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    // A bus that stopped answering: start over with a new connection.
                    inner.forget().await;
                    Err(CgroupError::SystemdBus {
                        address: inner.address.clone(),
                        reason: format!("no answer within {OPERATION_TIMEOUT:?}"),
                    })
                }
            };
            let _ = done.send(outcome);
        });
        result.recv().unwrap_or_else(|_| {
            Err(CgroupError::Systemd {
                unit: unit.to_owned(),
                method,
                error: String::new(),
                reason: "the D-Bus task ended without an answer".to_owned(),
            })
        })
    }
}

impl Inner {
    /// The kept connection, or a new one (then subscribed to the manager's signals).
    async fn connect(&self) -> Result<zbus::Connection, CgroupError> {
        let mut kept = self.connection.lock().await;
        if let Some(conn) = kept.as_ref() {
            return Ok(conn.clone());
        }
        let conn = zbus::connection::Builder::address(self.address.as_str())
            .map_err(|e| self.bus_error(&e))?
            .build()
            .await
            .map_err(|e| self.bus_error(&e))?;
        // systemd sends JobRemoved only while some client is subscribed. This first call is
        // also where a bus without systemd on it shows.
        conn.call_method(Some(DESTINATION), OBJECT, Some(MANAGER), "Subscribe", &())
            .await
            .map_err(|err| CgroupError::SystemdBus {
                address: self.address.clone(),
                reason: format!("systemd's manager does not answer on it: {err}"),
            })?;
        *kept = Some(conn.clone());
        Ok(conn)
    }

    async fn forget(&self) {
        self.connection.lock().await.take();
    }

    fn bus_error(&self, err: &zbus::Error) -> CgroupError {
        CgroupError::SystemdBus {
            address: self.address.clone(),
            reason: err.to_string(),
        }
    }

    /// A failed call: systemd's refusal, or the bus failing under it (then the connection is
    /// dropped so the next call reconnects).
    fn call_error(&self, unit: &str, method: &'static str, err: &zbus::Error) -> CgroupError {
        match error_name(err) {
            Some(error) => CgroupError::Systemd {
                unit: unit.to_owned(),
                method,
                reason: format!("{err} (bus {})", self.address),
                error,
            },
            None => {
                if let Ok(mut kept) = self.connection.try_lock() {
                    kept.take();
                }
                self.bus_error(err)
            }
        }
    }
}

/// The process-wide runtime driving D-Bus connections (one worker thread).
fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("carrack-dbus")
                .enable_all()
                .build()
                .map_err(|err| format!("cannot start the D-Bus runtime: {err}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The manager's `JobRemoved` signals, subscribed before the call so none is missed.
async fn job_signals(conn: &zbus::Connection) -> zbus::Result<MessageStream> {
    let rule = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .path(OBJECT)?
        .interface(MANAGER)?
        .member("JobRemoved")?
        .build();
    MessageStream::for_match_rule(rule, conn, Some(256)).await
}

/// Waits for the `JobRemoved` of `job`. A stream that ends (the bus went away) is a failed
/// job; the operation timeout bounds the wait.
async fn wait_job(jobs: &mut MessageStream, job: &OwnedObjectPath) -> JobEnd {
    while let Some(message) = jobs.next().await {
        let Ok(message) = message else { continue };
        let Ok((_id, path, _unit, result)) = message
            .body()
            .deserialize::<(u32, OwnedObjectPath, String, String)>()
        else {
            continue;
        };
        if &path == job {
            return if result == "done" {
                JobEnd::Done
            } else {
                JobEnd::Other(result)
            };
        }
    }
    JobEnd::Other("the bus connection closed before the job finished".to_owned())
}

fn job_path(reply: &zbus::Message) -> zbus::Result<OwnedObjectPath> {
    reply.body().deserialize::<OwnedObjectPath>()
}

/// The D-Bus error name of a method error reply, if that is what `err` is.
fn error_name(err: &zbus::Error) -> Option<String> {
    match err {
        zbus::Error::MethodError(name, _, _) => Some(name.as_str().to_owned()),
        zbus::Error::FDO(fdo) => Some(zbus::DBusError::name(fdo.as_ref()).as_str().to_owned()),
        _ => None,
    }
}

fn to_variant(value: Value) -> zvariant::Value<'static> {
    match value {
        Value::Bool(value) => zvariant::Value::from(value),
        Value::U64(value) => zvariant::Value::from(value),
        Value::Str(value) => zvariant::Value::from(value),
        Value::Strs(values) => zvariant::Value::from(values),
        Value::U32s(values) => zvariant::Value::from(values),
    }
}
