//! A local OCI registry for tests: Debian's `docker-registry` (CNCF distribution)
//! serving `127.0.0.1:5000` inside a test node's network namespace, with
//! filesystem storage in the node's temp dir.
//!
//! Debian's packaged config enables htpasswd auth and listens on every
//! interface, so the harness always writes its own config: loopback only,
//! deletes enabled, and the auth section chosen by [`RegistryAuth`].
//!
//! All HTTP to the registry must come from inside the node's network namespace;
//! [`Registry::run`] runs a closure on such a thread and [`Registry::agent`]
//! gives a `ureq` agent fit for it (no proxy, HTTP errors returned as responses).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::netns;
use super::process;
use super::token::{self, TokenIssuer, TokenPolicy, TokenServer};

/// Debian's registry binary (package `docker-registry`).
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Where the registry listens, inside the node's network namespace. Every node
/// has its own namespace, so every node can use the same address.
pub const REGISTRY_ADDR: &str = "127.0.0.1:5000";

/// How long to wait for `GET /v2/` to answer after starting the registry.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How the registry authenticates clients. Each variant renders its own
/// `auth:` section in [`Registry::config_yaml`] and its own header in
/// [`Registry::authorization`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RegistryAuth {
    /// Anonymous push and pull.
    #[default]
    None,
    /// distribution's `htpasswd` auth: one user, Basic auth on every request.
    /// The file holds a bcrypt hash (the only kind distribution accepts),
    /// written with the `bcrypt` crate so no `htpasswd` tool is needed.
    Basic {
        /// The user name.
        username: String,
        /// Its password.
        password: String,
    },
    /// distribution's `token` auth: 401 with a `Bearer` challenge naming the
    /// token service the node runs on [`token::TOKEN_ADDR`], which hands out
    /// pull tokens as the policy says. The harness mints its own push tokens.
    Token(TokenPolicy),
}

/// Options for starting a [`Registry`].
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Client authentication the registry demands.
    pub auth: RegistryAuth,
}

/// A running `docker-registry` process; stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Registry {
    /// The registry process (`nsenter` execs into it, so this is its pid).
    child: Option<Child>,
    /// Network namespace file the registry runs in.
    netns_path: PathBuf,
    /// Directory holding the config, the storage root and the log.
    dir: PathBuf,
    /// Auth the registry was started with.
    auth: RegistryAuth,
    /// The key signing tokens, with [`RegistryAuth::Token`].
    issuer: Option<Arc<TokenIssuer>>,
    /// The token service, with [`RegistryAuth::Token`]; stopped on drop.
    token_server: Option<TokenServer>,
}

impl Registry {
    /// Writes a config under `dir` (created if needed), starts the registry in
    /// the network namespace at `netns_path`, and waits until `GET /v2/` answers.
    pub fn start(netns_path: &Path, dir: &Path, options: RegistryOptions) -> io::Result<Registry> {
        std::fs::create_dir_all(dir.join("storage"))?;
        let mut registry = Registry {
            child: None,
            netns_path: netns_path.to_path_buf(),
            dir: dir.to_path_buf(),
            auth: options.auth,
            issuer: None,
            token_server: None,
        };
        match &registry.auth {
            RegistryAuth::None => {}
            RegistryAuth::Basic { username, password } => {
                // The lowest cost bcrypt allows: the registry checks it on every request.
                let hash = bcrypt::hash(password, 4).map_err(io::Error::other)?;
                std::fs::write(registry.htpasswd_path(), format!("{username}:{hash}\n"))?;
            }
            RegistryAuth::Token(policy) => {
                let issuer = Arc::new(TokenIssuer::new()?);
                std::fs::write(registry.token_cert_path(), issuer.cert_pem())?;
                registry.token_server = Some(TokenServer::start(
                    netns_path,
                    Arc::clone(&issuer),
                    policy.clone(),
                )?);
                registry.issuer = Some(issuer);
            }
        }
        std::fs::write(registry.config_path(), registry.config_yaml())?;

        let log = File::create(registry.log_path())?;
        let child = Command::new("nsenter")
            .arg(format!("--net={}", netns_path.display()))
            .arg("--")
            .arg(REGISTRY_BIN)
            .arg("serve")
            .arg(registry.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|err| io::Error::new(err.kind(), format!("spawn {REGISTRY_BIN}: {err}")))?;
        registry.child = Some(child);
        // On error, dropping `registry` stops the process.
        registry.wait_ready()?;
        Ok(registry)
    }

    /// `host:port` the registry listens on (inside the node's network namespace).
    pub fn addr(&self) -> &'static str {
        REGISTRY_ADDR
    }

    /// Base URL, e.g. `http://127.0.0.1:5000`.
    pub fn url(&self) -> String {
        format!("http://{REGISTRY_ADDR}")
    }

    /// The registry's combined stdout/stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Path of the registry's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("registry.log")
    }

    /// Path of the config file the harness wrote.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.yml")
    }

    /// Root of the registry's filesystem storage.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.join("storage")
    }

    /// Where the registry keeps the bytes of blob `digest` (`sha256:<hex>`):
    /// tests overwrite it to make the registry serve corrupt content, which it
    /// would refuse to accept through the API.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2.min(hex.len())])
            .join(hex)
            .join("data")
    }

    /// The htpasswd file of [`RegistryAuth::Basic`].
    pub fn htpasswd_path(&self) -> PathBuf {
        self.dir.join("htpasswd")
    }

    /// The token certificate bundle of [`RegistryAuth::Token`].
    pub fn token_cert_path(&self) -> PathBuf {
        self.dir.join("token-cert.pem")
    }

    /// The token service of [`RegistryAuth::Token`].
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token_server.as_ref()
    }

    /// Auth the registry was started with.
    pub fn auth(&self) -> &RegistryAuth {
        &self.auth
    }

    /// Value of the `Authorization` header a pushing/pulling test client must
    /// send for `repository` (e.g. `library/busybox`), if any.
    pub fn authorization(&self, repository: &str) -> Option<String> {
        match &self.auth {
            RegistryAuth::None => None,
            RegistryAuth::Basic { username, password } => Some(format!(
                "Basic {}",
                STANDARD.encode(format!("{username}:{password}"))
            )),
            RegistryAuth::Token(_) => {
                let issuer = self.issuer.as_ref()?;
                match issuer.mint("carrack-test-harness", repository, &["pull", "push"]) {
                    Ok(token) => Some(format!("Bearer {token}")),
                    Err(err) => {
                        eprintln!("carrack test: minting a push token: {err}");
                        None
                    }
                }
            }
        }
    }

    /// Runs `f` on a thread inside the registry's network namespace (where
    /// `127.0.0.1:5000` is this registry).
    pub fn run<T, F>(&self, f: F) -> io::Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        netns::run_in(&self.netns_path, f)
    }

    /// A blocking HTTP agent for talking to the registry from inside
    /// [`Registry::run`]: ignores proxy variables (the registry is on the
    /// node's loopback), returns 4xx/5xx as responses so tests can assert
    /// them, follows no redirects, and bounds every request.
    pub fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .proxy(None)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into()
    }

    /// Stops the registry: SIGTERM, then SIGKILL after a grace period.
    pub fn stop(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            process::terminate(&mut child, Duration::from_secs(5))?;
        }
        Ok(())
    }

    /// The config file the registry runs with.
    fn config_yaml(&self) -> String {
        let auth = match &self.auth {
            RegistryAuth::None => String::new(),
            RegistryAuth::Basic { .. } => format!(
                "auth:\n  htpasswd:\n    realm: carrack-test-registry\n    path: {}\n",
                self.htpasswd_path().display()
            ),
            RegistryAuth::Token(_) => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {bundle}\n",
                realm = TokenServer::realm(),
                service = token::TOKEN_SERVICE,
                issuer = token::TOKEN_ISSUER,
                bundle = self.token_cert_path().display(),
            ),
        };
        // No `health:` section: its storage-driver check only adds log noise.
        // Upload purging is off so no background job touches storage mid-test.
        format!(
            "\
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {REGISTRY_ADDR}
  secret: carrack-test-registry
  headers:
    X-Content-Type-Options: [nosniff]
{auth}",
            storage = self.storage_dir().display(),
        )
    }

    /// Polls `GET /v2/` from inside the namespace until the registry answers
    /// (200, or 401 when auth is on), failing early if the process exits.
    fn wait_ready(&mut self) -> io::Result<()> {
        let url = format!("{}/v2/", self.url());
        let netns_path = self.netns_path.clone();
        let Some(child) = self.child.as_mut() else {
            return Err(io::Error::other("registry process not started"));
        };
        let outcome = netns::run_in(&netns_path, move || -> io::Result<()> {
            let agent = Registry::agent();
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                if let Some(status) = child.try_wait()? {
                    return Err(io::Error::other(format!("registry exited early: {status}")));
                }
                if let Ok(response) = agent.get(&url).call()
                    && matches!(response.status().as_u16(), 200 | 401)
                {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err(io::Error::other(format!(
                        "registry did not answer GET {url} within {READY_TIMEOUT:?}"
                    )));
                }
                std::thread::sleep(process::POLL_INTERVAL);
            }
        })?;
        outcome.map_err(|err| io::Error::other(format!("{err}; registry log:\n{}", self.log())))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            eprintln!("carrack test: stopping registry: {err}");
        }
    }
}
