//! The example server binary over real TCP on 127.0.0.1: key reloads on
//! SIGHUP, `GET /whoami`, startup errors, and a clean exit on SIGTERM.
//!
//! Each test runs `target/<profile>/examples/server`, which `cargo test`
//! builds along with the test targets. A run limited to test targets, such
//! as `cargo test --test server_reload`, does not build it, so build it
//! first with `cargo build --example server`.
//!
//! NOTE: in such a limited run an existing example binary is used even when
//! it is older than the sources.

#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const CI_KEY: &str = "ci-key-0123456789abcdef";
const OPS_KEY: &str = "ops-key-0123456789abcdef";

/// Upper bound on every wait for a log line, covering a slow start on a
/// loaded machine. Waits end as soon as the line appears.
const LOG_TIMEOUT: Duration = Duration::from_secs(10);

/// Upper bound on the wait for the process to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Upper bound on connecting, sending and reading one HTTP exchange.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// The example server as a child process. Dropping it kills the process,
/// so a failing test leaves nothing running.
struct ServerProcess {
    child: Child,
    /// Lines of stdout and stderr, in the order the reader threads got them.
    output: Receiver<String>,
    /// Every line received so far.
    lines: Vec<String>,
}

/// One HTTP response, read until the server closed the connection.
struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl ServerProcess {
    /// Starts the server with `vars` set and every other variable the server
    /// reads unset, logging without colours.
    fn spawn(vars: &[(&str, &str)]) -> Self {
        let mut command = Command::new(server_binary());
        for name in [
            "ADMIN_API_KEY",
            "ADMIN_API_KEY_FILE",
            "API_KEYS_FILE",
            "BIND",
            "RUST_LOG",
        ] {
            command.env_remove(name);
        }
        command
            .env("NO_COLOR", "1")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start the example server");

        let (sender, output) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        for stream in [
            Box::new(stdout) as Box<dyn Read + Send>,
            Box::new(stderr) as Box<dyn Read + Send>,
        ] {
            let sender = sender.clone();
            // Each thread ends when the process closes its end of the pipe.
            thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
        }

        Self {
            child,
            output,
            lines: Vec::new(),
        }
    }

    /// Starts the server on an ephemeral loopback port and returns it once
    /// it logs the address it listens on.
    fn start(vars: &[(&str, &str)]) -> (Self, SocketAddr) {
        let mut vars = vars.to_vec();
        vars.push(("BIND", "127.0.0.1:0"));
        let mut server = Self::spawn(&vars);

        let line = server.wait_for_line("listening on http://", 1);
        let address = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|address| address.parse().ok())
            .unwrap_or_else(|| panic!("no socket address in {line:?}"));
        (server, address)
    }

    /// Waits until `count` lines of output contain `text` and returns the
    /// last of them. Panics with the output so far after [`LOG_TIMEOUT`].
    fn wait_for_line(&mut self, text: &str, count: usize) -> String {
        let deadline = Instant::now() + LOG_TIMEOUT;
        loop {
            let found: Vec<&String> = self.lines.iter().filter(|l| l.contains(text)).collect();
            if found.len() >= count {
                return found[count - 1].clone();
            }

            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(remaining) {
                Ok(line) => self.lines.push(line),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no {count} line(s) containing {text:?} within {LOG_TIMEOUT:?}; output:\n{}",
                    self.lines.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "the server closed its output before {count} line(s) containing {text:?}; \
                     output:\n{}",
                    self.lines.join("\n")
                ),
            }
        }
    }

    /// Sends the signal `name` (`HUP`, `TERM`) with the `kill` command.
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("run the kill command");
        assert!(status.success(), "kill -s {name} failed: {status}");
    }

    /// Waits up to [`EXIT_TIMEOUT`] for the process to exit, then collects
    /// the rest of its output.
    fn wait_for_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + EXIT_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("query the server process") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit within {EXIT_TIMEOUT:?}; output:\n{}",
                self.lines.join("\n")
            );
            thread::sleep(Duration::from_millis(20));
        };

        // The pipes are closed once the process has exited, so the reader
        // threads end and the channel disconnects.
        while let Ok(line) = self.output.recv_timeout(LOG_TIMEOUT) {
            self.lines.push(line);
        }
        status
    }

    /// Sends SIGTERM and checks that the server shuts down cleanly.
    fn stop(mut self) {
        self.signal("TERM");

        let status = self.wait_for_exit();

        let output = self.lines.join("\n");
        assert!(status.success(), "exit status {status}; output:\n{output}");
        assert!(output.contains("received SIGTERM"), "{output}");
        assert!(output.contains("server stopped"), "{output}");
        for key in [CI_KEY, OPS_KEY] {
            assert!(!output.contains(key), "a key is logged:\n{output}");
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Returns the example binary's path: the test binary is
/// `target/<profile>/deps/<name>`, the example `target/<profile>/examples/server`.
fn server_binary() -> PathBuf {
    let test_binary = std::env::current_exe().expect("the test binary's path");
    let profile_dir = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("the test binary is in target/<profile>/deps");
    let path = profile_dir.join("examples").join("server");
    assert!(
        path.is_file(),
        "{} does not exist; `cargo test` builds it, or run `cargo build --example server`",
        path.display()
    );
    path
}

/// Sends `GET path` with `key` in `X-API-Key`, over a connection that the
/// server closes after the response.
fn get(address: SocketAddr, path: &str, key: Option<&str>) -> HttpResponse {
    let mut stream =
        TcpStream::connect_timeout(&address, HTTP_TIMEOUT).expect("connect to the server");
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(HTTP_TIMEOUT)).unwrap();

    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(key) = key {
        request.push_str(&format!("X-API-Key: {key}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .expect("send the request");

    let mut raw = String::new();
    stream
        .read_to_string(&mut raw)
        .expect("read the response until the server closes the connection");
    parse_response(&raw)
}

fn parse_response(raw: &str) -> HttpResponse {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {raw:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status code in {raw:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
        .collect();

    HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("the body is not JSON ({err}): {}", self.body))
    }
}

/// Asserts a 200 from `GET /whoami` naming `name`.
fn assert_whoami(address: SocketAddr, key: &str, name: &str) {
    let response = get(address, "/whoami", Some(key));

    assert_eq!(response.status, 200, "{name}: {}", response.body);
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{name}"
    );
    assert_eq!(response.json(), json!({ "key": name }));
}

/// Asserts a 401 from the API-key layer for `GET /whoami` with `key`.
fn assert_rejected(address: SocketAddr, key: &str, label: &str) {
    let response = get(address, "/whoami", Some(key));

    assert_eq!(response.status, 401, "{label}: {}", response.body);
    assert_eq!(
        response.header("www-authenticate"),
        Some("ApiKey"),
        "{label}"
    );
    assert_eq!(
        response.json()["detail"],
        "Invalid API key.",
        "{label}: {}",
        response.body
    );
}

/// Writes `contents` to `name` in this test binary's own temporary
/// directory, replacing the file if it exists, and returns its path.
fn write_keys_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("server-reload-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the temporary directory");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write the key file");
    path
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("the temporary path is UTF-8")
}

#[test]
fn sighup_reload_revokes_key() {
    let path = write_keys_file("revoke", &format!("ci:{CI_KEY}\nops:{OPS_KEY}\n"));
    let (mut server, address) = ServerProcess::start(&[("API_KEYS_FILE", path_str(&path))]);
    assert_whoami(address, CI_KEY, "ci");
    assert_whoami(address, OPS_KEY, "ops");

    std::fs::write(&path, format!("# ops revoked\nci:{CI_KEY}\n")).unwrap();
    server.signal("HUP");
    let replaced = server.wait_for_line("API key set replaced", 1);

    assert!(replaced.contains("1 key(s)"), "{replaced}");
    assert!(replaced.contains(r#"names=["ci"]"#), "{replaced}");
    assert_rejected(address, OPS_KEY, "revoked ops");
    assert_whoami(address, CI_KEY, "ci");
    server.stop();
}

#[test]
fn sighup_with_broken_file_keeps_keys() {
    let path = write_keys_file("broken", &format!("ci:{CI_KEY}\nops:{OPS_KEY}\n"));
    let (mut server, address) = ServerProcess::start(&[("API_KEYS_FILE", path_str(&path))]);

    std::fs::write(&path, format!("ci:{CI_KEY}\nops {OPS_KEY}\n")).unwrap();
    server.signal("HUP");
    let failed = server.wait_for_line("failed to reload API keys", 1);

    assert!(failed.contains(" ERROR "), "{failed}");
    assert!(failed.contains("keeping the previous 2 key(s)"), "{failed}");
    assert!(failed.contains("line 2"), "{failed}");
    assert_whoami(address, CI_KEY, "ci");
    assert_whoami(address, OPS_KEY, "ops");

    std::fs::write(&path, format!("ops:{OPS_KEY}\n")).unwrap();
    server.signal("HUP");
    server.wait_for_line("API key set replaced", 1);

    assert_rejected(address, CI_KEY, "ci after the fixed file");
    assert_whoami(address, OPS_KEY, "ops");
    server.stop();
}

#[test]
fn sighup_without_keys_keeps_serving() {
    let (mut server, address) = ServerProcess::start(&[]);
    server.wait_for_line("UNSECURED", 1);

    server.signal("HUP");
    server.wait_for_line("no keys to reload", 1);

    let response = get(address, "/whoami", None);
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json(), json!({ "key": null }));
    server.stop();
}

#[test]
fn accepted_request_logs_key_name() {
    let path = write_keys_file("logged", &format!("ci:{CI_KEY}\n"));
    let (mut server, address) = ServerProcess::start(&[
        ("API_KEYS_FILE", path_str(&path)),
        ("RUST_LOG", "info,server=debug"),
    ]);

    assert_whoami(address, CI_KEY, "ci");
    let accepted = server.wait_for_line("request accepted", 1);

    assert!(accepted.contains("DEBUG"), "{accepted}");
    assert!(accepted.contains("key=ci"), "{accepted}");
    server.stop();
}

#[test]
fn admin_name_clash_stops_startup() {
    let path = write_keys_file("clash", &format!("admin:{CI_KEY}\n"));
    let mut server = ServerProcess::spawn(&[
        ("ADMIN_API_KEY", OPS_KEY),
        ("API_KEYS_FILE", path_str(&path)),
        ("BIND", "127.0.0.1:0"),
    ]);

    let status = server.wait_for_exit();

    let output = server.lines.join("\n");
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("error: invalid API key configuration: API_KEYS_FILE: "),
        "{output}"
    );
    assert!(output.contains("named `admin`"), "{output}");
    assert!(!output.contains("listening"), "{output}");
    for key in [CI_KEY, OPS_KEY] {
        assert!(!output.contains(key), "a key is shown:\n{output}");
    }
}
