//! The messages the layer logs when it is built, captured per test thread
//! from a `tracing` subscriber.

mod common;
mod support;

use common::{KEY, app, auth_layer};
use support::LogCapture;
use tower_api_key::ApiKeyLayer;
use tracing::Level;

/// Runs `build` with this thread's events captured, and returns the
/// logged lines, each starting with its level.
fn capture_logs<T>(build: impl FnOnce() -> T) -> Vec<String> {
    let (capture, guard) = LogCapture::start(Level::TRACE);
    drop(build());
    drop(guard);
    capture.lines()
}

/// Returns the lines logged at `level` that contain `text`.
fn lines_with<'a>(logs: &'a [String], level: &str, text: &str) -> Vec<&'a String> {
    logs.iter()
        .filter(|line| line.starts_with(level) && line.contains(text))
        .collect()
}

#[test]
fn disabled_layer_warns_unsecured() {
    let logs = capture_logs(ApiKeyLayer::disabled);

    assert_eq!(lines_with(&logs, "WARN", "UNSECURED").len(), 1, "{logs:#?}");
    assert!(lines_with(&logs, "INFO", "enabled").is_empty(), "{logs:#?}");
}

#[test]
fn unset_env_var_warns_unsecured() {
    let logs = capture_logs(|| {
        app::configure_auth(
            ApiKeyLayer::builder().named_key_from_env("admin", "STARTUP_LOGS_TEST_NEVER_SET"),
        )
        .build()
        .unwrap()
    });

    assert_eq!(lines_with(&logs, "WARN", "UNSECURED").len(), 1, "{logs:#?}");
}

#[test]
fn enabled_layer_logs_info() {
    let logs = capture_logs(|| auth_layer(KEY));

    let enabled = lines_with(&logs, "INFO", "API key authentication enabled");
    assert_eq!(enabled.len(), 1, "{logs:#?}");
    assert!(enabled[0].contains("X-API-Key"), "{}", enabled[0]);
    assert!(lines_with(&logs, "WARN", "").is_empty(), "{logs:#?}");
    assert!(!logs.concat().contains(KEY), "the key is logged: {logs:#?}");
}

#[test]
fn short_key_warns() {
    let short_key = "short-key-12345";
    assert_eq!(short_key.len(), 15);

    let logs = capture_logs(|| auth_layer(short_key));

    assert_eq!(
        lines_with(&logs, "WARN", "shorter than 16 characters").len(),
        1,
        "{logs:#?}"
    );
    assert_eq!(
        lines_with(&logs, "INFO", "API key authentication enabled").len(),
        1
    );
    assert!(
        !logs.concat().contains(short_key),
        "the key is logged: {logs:#?}"
    );
}

#[test]
fn sixteen_character_key_does_not_warn() {
    let key = "sixteen-chars-16";
    assert_eq!(key.len(), 16);

    let logs = capture_logs(|| auth_layer(key));

    assert!(lines_with(&logs, "WARN", "").is_empty(), "{logs:#?}");
}

#[test]
fn each_build_logs_once() {
    let logs = capture_logs(|| {
        let first = auth_layer(KEY);
        let second = auth_layer(KEY);
        (first, second)
    });

    assert_eq!(
        lines_with(&logs, "INFO", "API key authentication enabled").len(),
        2,
        "{logs:#?}"
    );
}

#[test]
fn applying_layer_logs_nothing() {
    let layer = auth_layer(KEY);

    // axum applies the layer to each route and the fallback separately.
    let logs = capture_logs(|| app::app(layer));

    assert!(logs.is_empty(), "{logs:#?}");
}
