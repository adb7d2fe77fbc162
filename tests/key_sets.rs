//! Named keys, key files, rotation through `KeySetHandle`, expiry and
//! hashed keys, through a real axum router.

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::routing::get;
use axum::{Extension, Router};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use support::LogCapture;
use tower::ServiceExt;
use tower_api_key::{ApiKeyLayer, ConfigError, KeyName, KeySet};

const CI_KEY: &str = "ci-key-0123456789abcdef";
const OPS_KEY: &str = "ops-key-0123456789abcdef";

fn app(layer: ApiKeyLayer) -> Router {
    Router::new()
        .route(
            "/whoami",
            get(|Extension(name): Extension<KeyName>| async move { name.to_string() }),
        )
        .layer(layer)
}

/// Sends `GET /whoami` with `key`, returning the status and the body.
async fn whoami(app: &Router, key: &str) -> (StatusCode, String) {
    let request = Request::get("/whoami")
        .header("x-api-key", key)
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn key_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tower-api-key-key-sets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(contents.as_bytes())
        .unwrap();
    path
}

#[tokio::test]
async fn named_keys_reach_handler_with_own_name() {
    let layer = ApiKeyLayer::builder()
        .named_key("ci", CI_KEY)
        .named_key("ops", OPS_KEY)
        .build()
        .unwrap();
    let app = app(layer);

    assert_eq!(
        whoami(&app, CI_KEY).await,
        (StatusCode::OK, "ci".to_owned())
    );
    assert_eq!(
        whoami(&app, OPS_KEY).await,
        (StatusCode::OK, "ops".to_owned())
    );
    assert_eq!(
        whoami(&app, "neither-key-0123456789").await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn revoked_key_is_rejected_after_reload() {
    let path = key_file("revoke.keys", &format!("ci:{CI_KEY}\nops:{OPS_KEY}\n"));
    let layer = ApiKeyLayer::builder().key_file(&path).build().unwrap();
    let handle = layer.key_set_handle().unwrap();
    let app = app(layer);
    assert_eq!(whoami(&app, OPS_KEY).await.0, StatusCode::OK);

    std::fs::write(&path, format!("# ops revoked\nci:{CI_KEY}\n")).unwrap();
    handle.replace(KeySet::from_file(&path).unwrap());

    assert_eq!(whoami(&app, OPS_KEY).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        whoami(&app, CI_KEY).await,
        (StatusCode::OK, "ci".to_owned())
    );
}

#[tokio::test]
async fn broken_reload_keeps_old_set() {
    let path = key_file("broken.keys", &format!("ci:{CI_KEY}\n"));
    let layer = ApiKeyLayer::builder().key_file(&path).build().unwrap();
    let handle = layer.key_set_handle().unwrap();
    let app = app(layer);

    std::fs::write(&path, format!("ci:{CI_KEY}\nops {OPS_KEY}\n")).unwrap();
    let error = KeySet::from_file(&path).unwrap_err();

    assert!(
        matches!(error, ConfigError::KeyFileLine { line: 2, .. }),
        "{error:?}"
    );
    assert!(!error.to_string().contains(OPS_KEY), "{error}");
    assert_eq!(
        whoami(&app, CI_KEY).await,
        (StatusCode::OK, "ci".to_owned())
    );
    assert_eq!(handle.load().len(), 1);
}

#[tokio::test]
async fn expired_key_is_rejected_and_logged_once() {
    let (logs, _guard) = LogCapture::start(tracing::Level::TRACE);
    let mut keys = KeySet::new();
    keys.insert_with_expiry("old", OPS_KEY, SystemTime::now() - Duration::from_secs(1))
        .unwrap();
    keys.insert("ci", CI_KEY).unwrap();
    let app = app(ApiKeyLayer::builder().key_set(keys).build().unwrap());

    assert_eq!(whoami(&app, OPS_KEY).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(whoami(&app, OPS_KEY).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(whoami(&app, CI_KEY).await.0, StatusCode::OK);

    let logs = logs.text();
    assert_eq!(logs.matches("has expired").count(), 1, "{logs}");
    assert!(logs.contains("`old`"), "{logs}");
    assert!(!logs.contains(OPS_KEY), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_gives_consistent_answers() {
    // Both sets accept the same two keys under different names, so every
    // request must succeed, and its name must belong to one set for the
    // key it sent: never a 401, never another key's name.
    let set = |prefix: &str| {
        let mut keys = KeySet::new();
        keys.insert(format!("{prefix}-ci"), CI_KEY).unwrap();
        keys.insert(format!("{prefix}-ops"), OPS_KEY).unwrap();
        keys
    };
    let layer = ApiKeyLayer::builder().key_set(set("old")).build().unwrap();
    let handle = layer.key_set_handle().unwrap();
    let app = app(layer);

    let rotations = tokio::spawn(async move {
        for round in 0..200 {
            handle.replace(set(if round % 2 == 0 { "new" } else { "old" }));
            tokio::task::yield_now().await;
        }
    });

    let mut clients = Vec::new();
    for client in 0..4 {
        let app = app.clone();
        clients.push(tokio::spawn(async move {
            let (key, suffix) = if client % 2 == 0 {
                (CI_KEY, "-ci")
            } else {
                (OPS_KEY, "-ops")
            };
            for _ in 0..200 {
                let (status, name) = whoami(&app, key).await;
                assert_eq!(status, StatusCode::OK);
                assert!(
                    name == format!("old{suffix}") || name == format!("new{suffix}"),
                    "{name}"
                );
            }
        }));
    }

    rotations.await.unwrap();
    for client in clients {
        client.await.unwrap();
    }
}

#[cfg(feature = "hashed-keys")]
#[tokio::test]
async fn hashed_key_is_accepted_without_plaintext() {
    // The SHA-256 digest of CI_KEY, as `printf %s "$KEY" | sha256sum` prints it.
    let digest = sha256_hex(CI_KEY);
    let layer = ApiKeyLayer::builder()
        .named_key("ci", format!("sha256:{digest}"))
        .build()
        .unwrap();
    let debug = format!("{layer:?}");
    let app = app(layer);

    assert_eq!(
        whoami(&app, CI_KEY).await,
        (StatusCode::OK, "ci".to_owned())
    );
    assert_eq!(
        whoami(&app, &format!("sha256:{digest}")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert!(!debug.contains(&digest), "{debug}");
    assert!(!debug.contains(CI_KEY), "{debug}");
}

#[cfg(feature = "hashed-keys")]
fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
