//! The example server's layer configured from one key variable with
//! `named_key_from_env("admin", VAR)` plus the public paths. It reads `VAR`
//! and `VAR_FILE` through `KeySet::insert_from_env`, as the example's `main`
//! reads `ADMIN_API_KEY` and `ADMIN_API_KEY_FILE`.
//!
//! Every test uses its own variable names. Changing the environment while
//! another thread reads it is undefined behaviour on some platforms, so each
//! test changes and reads it only while holding [`ENV_LOCK`].

mod common;

use std::sync::{Mutex, PoisonError};

use axum::http::{Method, StatusCode};
use common::{Call, app, body_json, call};
use tower_api_key::{ApiKeyLayer, ConfigError};

static ENV_LOCK: Mutex<()> = Mutex::new(());

/// Sets (`Some`) or removes (`None`) each variable, builds the layer with
/// the admin key from `var`, and removes the variables again.
fn build_with_env(
    var: &str,
    settings: &[(&str, Option<&str>)],
) -> Result<ApiKeyLayer, ConfigError> {
    let _guard = ENV_LOCK.lock().unwrap_or_else(PoisonError::into_inner);

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

    let layer =
        app::configure_auth(ApiKeyLayer::builder().named_key_from_env("admin", var)).build();

    for (name, _) in settings {
        // SAFETY: as above.
        unsafe { std::env::remove_var(name) };
    }
    layer
}

fn list() -> Call {
    Call::new(Method::GET, "/memories?user_id=alice")
}

#[tokio::test]
async fn unset_var_disables_auth() {
    let layer = build_with_env("SERVER_ENV_TEST_UNSET", &[]).unwrap();
    assert!(!layer.is_enabled());

    let response = call(&app::app(layer), &list(), None).await;

    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn empty_var_disables_auth() {
    let var = "SERVER_ENV_TEST_EMPTY";

    for value in ["", "   ", "\t"] {
        let layer = build_with_env(var, &[(var, Some(value))]).unwrap();
        assert!(!layer.is_enabled(), "value {value:?}");

        let response = call(&app::app(layer), &list(), None).await;
        assert_eq!(response.status(), StatusCode::OK, "value {value:?}");
    }
}

#[tokio::test]
async fn set_var_enables_auth() {
    let var = "SERVER_ENV_TEST_SET";
    let key = "env-admin-key-0123456789";
    let layer = build_with_env(var, &[(var, Some(key))]).unwrap();
    assert!(layer.is_enabled());
    let app = app::app(layer);

    let response = call(&app, &list(), None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let response = call(&app, &list(), Some(key)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn key_file_enables_auth() {
    let var = "SERVER_ENV_TEST_FILE";
    let file_var = format!("{var}_FILE");
    let key = "file-admin-key-0123456789";
    let path = std::env::temp_dir().join(format!("server-env-test-key-{}", std::process::id()));
    std::fs::write(&path, format!("{key}\n")).unwrap();

    let layer = build_with_env(var, &[(&file_var, Some(path.to_str().unwrap()))]);
    std::fs::remove_file(&path).unwrap();
    let app = app::app(layer.unwrap());

    let response = call(&app, &list(), None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let response = call(&app, &list(), Some(key)).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the file's trailing newline is removed"
    );
}

#[tokio::test]
async fn unreadable_key_file_is_an_error() {
    let var = "SERVER_ENV_TEST_NO_FILE";
    let file_var = format!("{var}_FILE");
    let path = std::env::temp_dir().join("server-env-test-no-such-file");

    let error = build_with_env(var, &[(&file_var, Some(path.to_str().unwrap()))]).unwrap_err();

    let message = error.to_string();
    assert!(message.contains(&file_var), "{message}");
}

#[tokio::test]
async fn invalid_key_error_hides_key() {
    let var = "SERVER_ENV_TEST_INVALID";
    let key = "padded-admin-key-0123456789 ";

    let error = build_with_env(var, &[(var, Some(key))]).unwrap_err();

    let message = error.to_string();
    assert!(message.contains(var), "{message}");
    assert!(
        !message.contains(key.trim()),
        "the error shows the key: {message}"
    );
}

#[tokio::test]
async fn rebuild_after_unset_disables_auth() {
    let var = "SERVER_ENV_TEST_REBUILD";
    let key = "rebuild-admin-key-0123456789";
    let first = app::app(build_with_env(var, &[(var, Some(key))]).unwrap());
    let response = call(&first, &list(), None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "auth on");

    let second = app::app(build_with_env(var, &[(var, None)]).unwrap());

    let response = call(&second, &list(), None).await;
    assert_eq!(response.status(), StatusCode::OK, "auth off after on");
    assert_eq!(body_json(response).await["results"], serde_json::json!([]));
    let response = call(&first, &list(), None).await;
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "the first app keeps its layer"
    );
}
