//! A tiny HTTP/1.1 server for tests, listening on the loopback of a test node's
//! network namespace: the token service of the token-auth registry, and fake
//! registries that misbehave on purpose (stall mid-blob, serve what a real
//! registry would refuse).
//!
//! One request per connection (`Connection: close`), a thread per connection,
//! and a handler that writes the whole answer itself, so a handler can also
//! send half an answer and then hold the connection. Stopped (and every
//! connection thread joined) on drop; a handler that holds a connection must
//! poll [`Exchange::stopping`] so that drop does not wait for it.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

/// How long a connection may take to send its request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the accept loop looks at the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(10);

/// Largest request head read (request line plus headers).
const MAX_HEAD: usize = 64 * 1024;

/// A parsed request head (these servers never read request bodies).
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every value of query parameter `name`, percent-decoded.
    pub fn query_all(&self, name: &str) -> Vec<String> {
        let Some((_, query)) = self.target.split_once('?') else {
            return Vec::new();
        };
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .filter(|(key, _)| *key == name)
            .map(|(_, value)| percent_decode(value))
            .collect()
    }
}

/// One connection being answered.
#[derive(Debug)]
pub struct Exchange<'a> {
    /// The request.
    pub request: &'a Request,
    /// The connection; the handler writes the response here.
    pub stream: &'a mut TcpStream,
    /// Set when the server is being dropped.
    stop: &'a AtomicBool,
}

impl Exchange<'_> {
    /// Whether the server is shutting down; a handler holding a connection returns then.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sends a complete response with `Content-Length` and `Connection: close`.
    pub fn respond(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<()> {
        self.head(status, headers, Some(body.len() as u64))?;
        if self.request.method != "HEAD" {
            self.stream.write_all(body)?;
        }
        self.stream.flush()
    }

    /// Sends a JSON response.
    pub fn json(&mut self, status: u16, body: &serde_json::Value) -> io::Result<()> {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.respond(status, &[("Content-Type", "application/json")], &bytes)
    }

    /// Sends only the status line and headers (with `Content-Length` when given);
    /// the handler writes (some of) the body itself.
    pub fn head(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        content_length: Option<u64>,
    ) -> io::Result<()> {
        let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(length) = content_length {
            head.push_str(&format!("Content-Length: {length}\r\n"));
        }
        head.push_str("Connection: close\r\n\r\n");
        self.stream.write_all(head.as_bytes())?;
        self.stream.flush()
    }

    /// Keeps the connection open, sending nothing, until the server stops or
    /// `limit` has passed: what a stalled transfer looks like from the client.
    pub fn hold(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while !self.stopping() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What answers requests: called once per connection, on that connection's thread.
pub type Handler = dyn Fn(&mut Exchange<'_>) -> io::Result<()> + Send + Sync;

/// A running server; stopped on drop.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl HttpServer {
    /// Binds `addr` (e.g. `127.0.0.1:5001`) inside the network namespace at
    /// `netns_path` and serves every connection with `handler`.
    pub fn start(
        netns_path: &Path,
        addr: &str,
        handler: impl Fn(&mut Exchange<'_>) -> io::Result<()> + Send + Sync + 'static,
    ) -> io::Result<HttpServer> {
        let netns = File::open(netns_path)?;
        let addr: SocketAddr = addr
            .parse()
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {err}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let (bound_tx, bound_rx) = mpsc::channel::<io::Result<()>>();
        let accept = {
            let stop = Arc::clone(&stop);
            let requests = Arc::clone(&requests);
            std::thread::Builder::new()
                .name(format!("test-http-{addr}"))
                .spawn(move || {
                    let listener = setns(&netns, CloneFlags::CLONE_NEWNET)
                        .map_err(io::Error::from)
                        .and_then(|()| TcpListener::bind(addr))
                        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener));
                    let listener = match listener {
                        Ok(listener) => {
                            let _ = bound_tx.send(Ok(()));
                            listener
                        }
                        Err(err) => {
                            let _ = bound_tx.send(Err(err));
                            return;
                        }
                    };
                    accept_loop(&listener, &stop, &handler, &requests);
                })?
        };
        match bound_rx.recv() {
            Ok(Ok(())) => Ok(HttpServer {
                addr,
                stop,
                accept: Some(accept),
                requests,
            }),
            Ok(Err(err)) => {
                let _ = accept.join();
                Err(io::Error::new(err.kind(), format!("bind {addr}: {err}")))
            }
            Err(_) => {
                let _ = accept.join();
                Err(io::Error::other(format!("server thread for {addr} died")))
            }
        }
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take()
            && accept.join().is_err()
        {
            eprintln!("carrack test: http server {} panicked", self.addr);
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    stop: &Arc<AtomicBool>,
    handler: &Arc<Handler>,
    requests: &Arc<Mutex<Vec<Request>>>,
) {
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let stop = Arc::clone(stop);
                let handler = Arc::clone(handler);
                let requests = Arc::clone(requests);
                let spawned = std::thread::Builder::new()
                    .name("test-http-conn".to_owned())
                    .spawn(move || {
                        if let Err(err) = serve(stream, &stop, &*handler, &requests) {
                            // Clients hang up on purpose in these tests (stall aborts).
                            if !matches!(
                                err.kind(),
                                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                            ) {
                                eprintln!("carrack test: http connection: {err}");
                            }
                        }
                    });
                match spawned {
                    Ok(handle) => connections.push(handle),
                    Err(err) => eprintln!("carrack test: spawn http connection thread: {err}"),
                }
                connections.retain(|handle| !handle.is_finished());
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL);
            }
            Err(err) => {
                eprintln!("carrack test: http accept: {err}");
                std::thread::sleep(ACCEPT_POLL);
            }
        }
    }
    for connection in connections {
        let _ = connection.join();
    }
}

fn serve(
    mut stream: TcpStream,
    stop: &AtomicBool,
    handler: &Handler,
    requests: &Mutex<Vec<Request>>,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let Some(request) = read_head(&stream)? else {
        return Ok(());
    };
    requests
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(request.clone());
    let mut exchange = Exchange {
        request: &request,
        stream: &mut stream,
        stop,
    };
    handler(&mut exchange)
}

/// Reads the request line and headers; `None` if the client closed first.
fn read_head(stream: &TcpStream) -> io::Result<Option<Request>> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = String::new();
        let read = reader.read_line(&mut line)?;
        if read == 0 {
            if lines.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside the request head",
            ));
        }
        total += read;
        if total > MAX_HEAD {
            return Err(io::Error::other("request head too large"));
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let mut parts = lines[0].split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let headers = lines[1..]
        .iter()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Ok(Some(Request {
        method,
        target,
        headers,
    }))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Decodes `%XX` escapes and `+` (form encoding) in a query value.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        index += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        index += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
