//! The example server's key sources, in process: the named keys of
//! `API_KEYS_FILE`, the admin key, `GET /whoami`, reloads through the key
//! set handle, and the debug log of accepted key names.
//!
//! [`KeySources::from_env`] reads `ADMIN_API_KEY`, `ADMIN_API_KEY_FILE` and
//! `API_KEYS_FILE`. Changing the environment while another thread reads it
//! is undefined behaviour on some platforms, so each test changes and reads
//! it only while holding [`ENV_LOCK`].

mod common;

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once, PoisonError};

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::http::{Method, StatusCode};
use common::app;
use common::app::keys::KeySources;
use common::{Call, assert_unauthorized, body_json, call};
use serde_json::{Value, json};
use tower_api_key::{ApiKeyLayer, KeySetHandle};
use tracing::Level;

const ADMIN_KEY: &str = "admin-key-0123456789abcdef";
const CI_KEY: &str = "ci-key-0123456789abcdef";
const OPS_KEY: &str = "ops-key-0123456789abcdef";

static ENV_LOCK: Mutex<()> = Mutex::new(());

/// Sets `ADMIN_API_KEY` (or removes it for `None`) and `API_KEYS_FILE`,
/// reads the key sources as the example's `main` does, and removes the
/// variables again. `ADMIN_API_KEY_FILE` is always unset.
fn sources_from_env(
    admin_key: Option<&str>,
    keys_file: Option<&str>,
) -> Result<KeySources, String> {
    let _guard = ENV_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let settings = [
        ("ADMIN_API_KEY", admin_key),
        ("ADMIN_API_KEY_FILE", None),
        ("API_KEYS_FILE", keys_file),
    ];

    for (name, value) in settings {
        // SAFETY: ENV_LOCK is held, the other tests in this binary read or
        // write the environment only while holding it, and none of them calls
        // C code that reads it (DNS resolution, for example).
        unsafe {
            match value {
                Some(value) => std::env::set_var(name, value),
                None => std::env::remove_var(name),
            }
        }
    }

    let sources = KeySources::from_env().map_err(|err| err.to_string());

    for (name, _) in settings {
        // SAFETY: as above.
        unsafe { std::env::remove_var(name) };
    }
    sources
}

/// Builds the layer from the keys `sources` hold now, as `main` does.
fn layer_from(sources: &KeySources) -> ApiKeyLayer {
    let keys = sources.load().expect("the test keys are valid");
    app::configure_auth(ApiKeyLayer::builder().key_set(keys))
        .build()
        .expect("the test configuration is valid")
}

/// Writes `contents` to a file named `name` in this test binary's own
/// temporary directory, and returns its path.
fn write_keys_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("server-keys-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the temporary directory");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write the key file");
    path
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("the temporary path is UTF-8")
}

fn whoami() -> Call {
    Call::new(Method::GET, "/whoami")
}

/// Sends `GET /whoami` with `key` and returns the body, after checking the
/// status and content type.
async fn whoami_body(app: &Router, key: Option<&str>, label: &str) -> Value {
    let response = call(app, &whoami(), key).await;

    assert_eq!(response.status(), StatusCode::OK, "{label}");
    assert_eq!(
        response.headers()[CONTENT_TYPE],
        "application/json",
        "{label}: content type"
    );
    body_json(response).await
}

// ==== startup ====

#[tokio::test]
async fn file_keys_answer_with_own_name() {
    let path = write_keys_file(
        "two-keys",
        &format!("# clients\nci:{CI_KEY}\n\nops:{OPS_KEY}\n"),
    );
    let sources = sources_from_env(None, Some(path_str(&path))).unwrap();
    let app = app::app(layer_from(&sources));

    let body = whoami_body(&app, Some(CI_KEY), "ci").await;
    assert_eq!(body, json!({ "key": "ci" }));

    let body = whoami_body(&app, Some(OPS_KEY), "ops").await;
    assert_eq!(body, json!({ "key": "ops" }));

    let response = call(&app, &whoami(), Some(ADMIN_KEY)).await;
    assert_unauthorized(response, "Invalid API key", "a key not in the file").await;
}

#[tokio::test]
async fn admin_key_named_admin() {
    let sources = sources_from_env(Some(ADMIN_KEY), None).unwrap();
    let app = app::app(layer_from(&sources));

    let body = whoami_body(&app, Some(ADMIN_KEY), "admin").await;

    assert_eq!(body, json!({ "key": "admin" }));
}

#[tokio::test]
async fn admin_and_file_keys_combined() {
    let path = write_keys_file("with-admin", &format!("ci:{CI_KEY}\n"));
    let sources = sources_from_env(Some(ADMIN_KEY), Some(path_str(&path))).unwrap();
    let app = app::app(layer_from(&sources));

    let body = whoami_body(&app, Some(ADMIN_KEY), "admin").await;
    assert_eq!(body, json!({ "key": "admin" }));

    let body = whoami_body(&app, Some(CI_KEY), "ci").await;
    assert_eq!(body, json!({ "key": "ci" }));
}

#[tokio::test]
async fn admin_name_clash_is_error() {
    let path = write_keys_file("clash", &format!("admin:{CI_KEY}\nops:{OPS_KEY}\n"));
    let sources = sources_from_env(Some(ADMIN_KEY), Some(path_str(&path))).unwrap();

    let message = sources.load().unwrap_err().to_string();

    assert!(message.starts_with("API_KEYS_FILE: "), "{message}");
    assert!(message.contains(path_str(&path)), "{message}");
    assert!(message.contains("named `admin`"), "{message}");
    assert!(message.contains("ADMIN_API_KEY"), "{message}");
    for key in [ADMIN_KEY, CI_KEY, OPS_KEY] {
        assert!(!message.contains(key), "the error shows a key: {message}");
    }
}

#[tokio::test]
async fn admin_name_in_file_alone_accepted() {
    let path = write_keys_file("admin-in-file", &format!("admin:{CI_KEY}\n"));
    let sources = sources_from_env(None, Some(path_str(&path))).unwrap();
    let app = app::app(layer_from(&sources));

    let body = whoami_body(&app, Some(CI_KEY), "admin from the file").await;

    assert_eq!(body, json!({ "key": "admin" }));
}

#[tokio::test]
async fn invalid_line_error_names_line() {
    let path = write_keys_file("bad-line", &format!("ci:{CI_KEY}\n{OPS_KEY}\n"));
    let sources = sources_from_env(None, Some(path_str(&path))).unwrap();

    let message = sources.load().unwrap_err().to_string();

    assert!(message.starts_with("API_KEYS_FILE: "), "{message}");
    assert!(message.contains("line 2"), "{message}");
    assert!(
        !message.contains(CI_KEY),
        "the error shows a key: {message}"
    );
    assert!(
        !message.contains(OPS_KEY),
        "the error shows a key: {message}"
    );
}

#[tokio::test]
async fn missing_keys_file_is_error() {
    let path = std::env::temp_dir().join("server-keys-test-no-such-file");
    let sources = sources_from_env(Some(ADMIN_KEY), Some(path_str(&path))).unwrap();

    let message = sources.load().unwrap_err().to_string();

    assert!(message.starts_with("API_KEYS_FILE: "), "{message}");
    assert!(message.contains(path_str(&path)), "{message}");
}

#[tokio::test]
async fn invalid_admin_key_is_error() {
    let padded = format!("{ADMIN_KEY} ");

    let message = sources_from_env(Some(&padded), None).unwrap_err();

    assert!(message.starts_with("ADMIN_API_KEY"), "{message}");
    assert!(
        !message.contains(ADMIN_KEY),
        "the error shows a key: {message}"
    );
}

#[tokio::test]
async fn no_keys_disables_auth() {
    for keys_file in [None, Some("")] {
        let sources = sources_from_env(None, keys_file).unwrap();
        let layer = layer_from(&sources);
        assert!(!layer.is_enabled(), "API_KEYS_FILE {keys_file:?}");
        let app = app::app(layer);

        let body = whoami_body(&app, None, "authentication disabled").await;

        assert_eq!(body, json!({ "key": null }), "API_KEYS_FILE {keys_file:?}");
    }
}

// ==== reload ====

/// Returns the handle of a layer built from `sources`, and the app behind it.
fn reloadable_app(sources: &KeySources) -> (KeySetHandle, Router) {
    let layer = layer_from(sources);
    let handle = layer.key_set_handle().expect("authentication is enabled");
    (handle, app::app(layer))
}

#[tokio::test]
async fn reload_drops_revoked_key() {
    let path = write_keys_file("revoke", &format!("ci:{CI_KEY}\nops:{OPS_KEY}\n"));
    let sources = sources_from_env(Some(ADMIN_KEY), Some(path_str(&path))).unwrap();
    let (handle, app) = reloadable_app(&sources);

    std::fs::write(&path, format!("ci:{CI_KEY}\n")).unwrap();
    let logs = capture_logs(|| sources.reload(Some(&handle)));

    let response = call(&app, &whoami(), Some(OPS_KEY)).await;
    assert_unauthorized(response, "Invalid API key", "revoked ops").await;
    let body = whoami_body(&app, Some(CI_KEY), "ci").await;
    assert_eq!(body, json!({ "key": "ci" }));
    let body = whoami_body(&app, Some(ADMIN_KEY), "admin").await;
    assert_eq!(body, json!({ "key": "admin" }));

    let replaced = lines_with(&logs, "INFO", "API key set replaced: 2 key(s)");
    assert_eq!(replaced.len(), 1, "{logs:#?}");
    assert!(
        replaced[0].contains(r#"["ci", "admin"]"#),
        "{}",
        replaced[0]
    );
    assert_no_key_in(&logs);
}

#[tokio::test]
async fn reload_with_broken_file_keeps_keys() {
    let path = write_keys_file("broken", &format!("ci:{CI_KEY}\nops:{OPS_KEY}\n"));
    let sources = sources_from_env(None, Some(path_str(&path))).unwrap();
    let (handle, app) = reloadable_app(&sources);

    std::fs::write(&path, format!("ci:{CI_KEY}\nops {OPS_KEY}\n")).unwrap();
    let logs = capture_logs(|| sources.reload(Some(&handle)));

    let body = whoami_body(&app, Some(OPS_KEY), "ops").await;
    assert_eq!(body, json!({ "key": "ops" }));
    let body = whoami_body(&app, Some(CI_KEY), "ci").await;
    assert_eq!(body, json!({ "key": "ci" }));

    let failed = lines_with(&logs, "ERROR", "failed to reload API keys");
    assert_eq!(failed.len(), 1, "{logs:#?}");
    assert!(
        failed[0].contains("keeping the previous 2 key(s)"),
        "{}",
        failed[0]
    );
    assert!(failed[0].contains("line 2"), "{}", failed[0]);
    assert!(lines_with(&logs, "", "replaced").is_empty(), "{logs:#?}");
    assert_no_key_in(&logs);
}

#[tokio::test]
async fn reload_with_admin_clash_keeps_keys() {
    let path = write_keys_file("reload-clash", &format!("ci:{CI_KEY}\n"));
    let sources = sources_from_env(Some(ADMIN_KEY), Some(path_str(&path))).unwrap();
    let (handle, app) = reloadable_app(&sources);

    std::fs::write(&path, format!("admin:{OPS_KEY}\n")).unwrap();
    let logs = capture_logs(|| sources.reload(Some(&handle)));

    let body = whoami_body(&app, Some(ADMIN_KEY), "admin").await;
    assert_eq!(body, json!({ "key": "admin" }));
    let response = call(&app, &whoami(), Some(OPS_KEY)).await;
    assert_unauthorized(response, "Invalid API key", "admin from the file").await;

    let failed = lines_with(&logs, "ERROR", "named `admin`");
    assert_eq!(failed.len(), 1, "{logs:#?}");
    assert_no_key_in(&logs);
}

#[test]
fn reload_without_keys_file_changes_nothing() {
    let sources = sources_from_env(Some(ADMIN_KEY), None).unwrap();
    let handle = layer_from(&sources).key_set_handle().unwrap();

    let logs = capture_logs(|| sources.reload(Some(&handle)));

    assert_eq!(
        lines_with(&logs, "INFO", "API_KEYS_FILE is not set").len(),
        1,
        "{logs:#?}"
    );
    let names: Vec<String> = handle.load().names().map(ToString::to_string).collect();
    assert_eq!(names, ["admin"]);
}

#[test]
fn reload_when_disabled_changes_nothing() {
    let sources = sources_from_env(None, None).unwrap();

    let logs = capture_logs(|| sources.reload(None));

    assert_eq!(
        lines_with(&logs, "INFO", "authentication is disabled").len(),
        1,
        "{logs:#?}"
    );
}

// ==== request log ====

#[tokio::test]
async fn accepted_request_logs_key_name() {
    let path = write_keys_file("logged", &format!("ci:{CI_KEY}\n"));
    let sources = sources_from_env(None, Some(path_str(&path))).unwrap();
    let app = app::app(layer_from(&sources));
    let buffer = LogBuffer::default();
    let _capture = CaptureGuard::start(&buffer);

    let response = call(&app, &whoami(), Some(CI_KEY)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = call(&app, &Call::new(Method::GET, "/docs"), None).await;
    assert_eq!(response.status(), StatusCode::OK);

    let logs = buffer.lines();
    let accepted = lines_with(&logs, "DEBUG", "request accepted");
    assert_eq!(accepted.len(), 1, "{logs:#?}");
    assert!(accepted[0].contains("key=ci"), "{}", accepted[0]);
    assert!(accepted[0].contains(r#"path="/whoami""#), "{}", accepted[0]);
    assert_no_key_in(&logs);
}

// ==== log capture ====

/// An in-memory log destination that every clone appends to.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|line| line.trim_start().to_owned())
            .collect()
    }
}

impl io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

thread_local! {
    /// Where the global subscriber writes this thread's events, if anywhere.
    static CAPTURE: RefCell<Option<LogBuffer>> = const { RefCell::new(None) };
}

/// Writes to the current thread's capture buffer, or nowhere.
struct ThreadWriter;

impl io::Write for ThreadWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        CAPTURE.with(|capture| match capture.borrow_mut().as_mut() {
            Some(buffer) => buffer.write(bytes),
            None => Ok(bytes.len()),
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Captures this thread's events into a buffer until dropped.
///
/// One global subscriber serves every test, and each test thread picks its
/// own buffer. Per-thread subscribers (`set_default`) share tracing's
/// process-wide callsite cache, and with tests running in parallel an event
/// was sometimes dropped from the capturing thread.
struct CaptureGuard;

impl CaptureGuard {
    fn start(buffer: &LogBuffer) -> Self {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(|| ThreadWriter)
                .with_max_level(Level::TRACE)
                .with_ansi(false)
                .without_time()
                .with_target(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in this test binary");
        });
        CAPTURE.with(|capture| *capture.borrow_mut() = Some(buffer.clone()));
        Self
    }
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|capture| *capture.borrow_mut() = None);
    }
}

/// Runs `action` with this thread's events captured, and returns the lines
/// it logged.
fn capture_logs(action: impl FnOnce()) -> Vec<String> {
    let buffer = LogBuffer::default();
    let capture = CaptureGuard::start(&buffer);
    action();
    drop(capture);
    buffer.lines()
}

/// Returns the lines logged at `level` that contain `text`.
fn lines_with<'a>(logs: &'a [String], level: &str, text: &str) -> Vec<&'a String> {
    logs.iter()
        .filter(|line| line.starts_with(level) && line.contains(text))
        .collect()
}

fn assert_no_key_in(logs: &[String]) {
    let text = logs.concat();
    for key in [ADMIN_KEY, CI_KEY, OPS_KEY] {
        assert!(!text.contains(key), "a key is logged: {logs:#?}");
    }
}
