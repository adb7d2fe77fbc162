//! Keys stay secret: `Debug` redacts them, no log line at any level contains
//! a configured or presented key, and the forwarded credential header is
//! marked sensitive or stripped.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use tower::{ServiceExt, service_fn};
use tower_api_key::{
    ApiKeyAuth, ApiKeyLayer, ApiKeyLayerBuilder, ConfigError, KeyName, KeyProblem, KeySet,
    RejectionReason,
};
use tracing::Level;

use support::{LogCapture, collect};

/// Configured keys. Each has a part that occurs nowhere else, so a search
/// of any output for it finds the key and nothing else.
const CI_KEY: &str = "ci-secret-4f1e8a2b9c7d3e5f6a0b";
const OPS_KEY: &str = "ops-secret-8d2c6e0a4b1f9e7d3c5a";
const SHORT_KEY: &str = "short-3e9f";
const EXPIRED_KEY: &str = "expired-secret-1a7c5e9b3d2f8e6a";
const ROTATED_KEY: &str = "rotated-secret-6b0d4f8a2c1e9d7b";

/// Values a client presents that are not keys, but must not be logged
/// either: a client may have sent a real key to the wrong service.
const PRESENTED: &str = "presented-value-5c3a7e1d9b2f";
const PRESENTED_OTHER: &str = "presented-other-0e8b4d6a2c9f";

const SECRETS: &[&str] = &[
    CI_KEY,
    OPS_KEY,
    SHORT_KEY,
    EXPIRED_KEY,
    ROTATED_KEY,
    PRESENTED,
    PRESENTED_OTHER,
];

/// Asserts that `text` contains none of [`SECRETS`], nor a 10-character
/// piece of one.
fn assert_no_secret(label: &str, text: &str) {
    const PIECE: usize = 10;
    for secret in SECRETS {
        for start in 0..=secret.len() - PIECE {
            let piece = &secret[start..start + PIECE];
            assert!(
                !text.contains(piece),
                "{label} shows part of {secret}: {text}"
            );
        }
    }
}

fn builder() -> ApiKeyLayerBuilder {
    let mut expiring = KeySet::new();
    let past = SystemTime::now() - Duration::from_secs(60);
    expiring
        .insert_with_expiry("expired", EXPIRED_KEY, past)
        .unwrap();

    ApiKeyLayer::builder()
        .named_key("ci", CI_KEY)
        .named_key("ops", OPS_KEY)
        .named_key("short", SHORT_KEY)
        .key_set(expiring)
        .bearer(true)
        .exempt("/docs")
}

#[tokio::test]
async fn debug_redacts_every_public_type() {
    let builder = builder().key_from_env("TAK_SECRETS_UNSET_VAR");
    let layer = builder.clone().build().unwrap();
    let handle = layer.key_set_handle().unwrap();
    let keys = handle.load();
    let service = ApiKeyAuth::new(
        service_fn(|_request: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        }),
        &layer,
    );
    let unit_service = ApiKeyAuth::new((), &layer);

    let rejected = service
        .clone()
        .oneshot(Request::get("/m").body(Full::default()).unwrap());
    let rejected = rejected.await.unwrap();
    let accepted = Request::get("/m")
        .header("x-api-key", CI_KEY)
        .body(Full::default())
        .unwrap();
    let accepted = service.clone().oneshot(accepted).await.unwrap();

    let mut pending_service = service.clone();
    let request = Request::get("/m")
        .header("x-api-key", OPS_KEY)
        .body(Full::default())
        .unwrap();
    let future = tower::Service::call(&mut pending_service, request);

    let invalid_key = ApiKeyLayer::new(format!(" {CI_KEY}")).unwrap_err();
    let file_error = ConfigError::KeyFileEmpty {
        setting: "ADMIN_API_KEY_FILE".to_owned(),
        path: "/run/secrets/admin".into(),
    };

    let outputs = [
        ("ApiKeyLayerBuilder", format!("{builder:?}")),
        ("ApiKeyLayer", format!("{layer:?}")),
        ("ApiKeyAuth", format!("{service:?}")),
        ("ApiKeyAuth", format!("{unit_service:?}")),
        ("KeySetHandle", format!("{handle:?}")),
        ("", format!("{keys:?}")),
        ("KeyName", format!("{:?}", KeyName::new("ci").unwrap())),
        ("ResponseFuture", format!("{future:?}")),
        ("ResponseBody", format!("{:?}", rejected.body())),
        ("ResponseBody", format!("{:?}", accepted.body())),
        ("InvalidKey", format!("{invalid_key:?}")),
        ("KeyFileEmpty", format!("{file_error:?}")),
        (
            "SurroundingWhitespace",
            format!("{:?}", KeyProblem::SurroundingWhitespace),
        ),
        ("Invalid", format!("{:?}", RejectionReason::Invalid)),
    ];

    for (type_name, output) in &outputs {
        assert!(output.contains(type_name), "{type_name}: {output}");
        assert_no_secret(type_name, output);
    }
    for (type_name, output) in &outputs[..6] {
        assert!(output.contains("[redacted]"), "{type_name}: {output}");
    }

    // The pretty form is written by the same code, but check it too.
    assert_no_secret("ApiKeyLayer pretty", &format!("{layer:#?}"));
    assert_no_secret("ApiKeyLayerBuilder pretty", &format!("{builder:#?}"));
}

/// The headers the inner service received, recorded per request.
type Forwarded = Arc<Mutex<Vec<HeaderMap>>>;

/// Builds a router with a protected and an exempt route behind `layer`,
/// both recording the headers they receive.
fn recording_app(layer: ApiKeyLayer) -> (Router, Forwarded) {
    let forwarded = Forwarded::default();
    let record = |forwarded: Forwarded| {
        move |headers: HeaderMap| {
            forwarded.lock().unwrap().push(headers);
            async { "ok" }
        }
    };
    let app = Router::new()
        .route("/memories", get(record(Arc::clone(&forwarded))))
        .route("/docs", get(record(Arc::clone(&forwarded))))
        .layer(layer);
    (app, forwarded)
}

async fn send(app: &Router, request: Request<Body>) -> StatusCode {
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, _body) = collect(response).await;
    parts.status
}

#[tokio::test]
async fn trace_logs_never_show_keys() {
    let (capture, guard) = LogCapture::start(Level::TRACE);

    let layer = builder().insecure_query_param("api_key").build().unwrap();
    let handle = layer.key_set_handle().unwrap();
    let (app, _forwarded) = recording_app(layer);

    let get = |target: &str| Request::get(target.to_owned());
    let bearer = |key: &str| format!("Bearer {key}");
    let cases = [
        (
            "accepted header",
            get("/memories").header("x-api-key", CI_KEY),
            StatusCode::OK,
        ),
        (
            "accepted bearer",
            get("/memories").header("authorization", bearer(OPS_KEY)),
            StatusCode::OK,
        ),
        (
            "accepted query",
            get(&format!("/memories?api_key={CI_KEY}")),
            StatusCode::OK,
        ),
        (
            "short key",
            get("/memories").header("x-api-key", SHORT_KEY),
            StatusCode::OK,
        ),
        ("missing", get("/memories"), StatusCode::UNAUTHORIZED),
        (
            "invalid",
            get("/memories").header("x-api-key", PRESENTED),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "invalid query",
            get(&format!("/memories?api_key={PRESENTED}")),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "expired",
            get("/memories").header("x-api-key", EXPIRED_KEY),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "ambiguous",
            get("/memories")
                .header("x-api-key", PRESENTED)
                .header("x-api-key", PRESENTED_OTHER),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "sources disagree",
            get("/memories")
                .header("x-api-key", CI_KEY)
                .header("authorization", bearer(PRESENTED)),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "exempt with key",
            get("/docs").header("x-api-key", OPS_KEY),
            StatusCode::OK,
        ),
    ];
    for (label, request, status) in cases {
        let request = request.body(Body::empty()).unwrap();
        assert_eq!(send(&app, request).await, status, "{label}");
    }

    let mut rotated = KeySet::new();
    rotated.insert("rotated", ROTATED_KEY).unwrap();
    handle.replace(rotated);
    let request = get("/memories")
        .header("x-api-key", ROTATED_KEY)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, request).await, StatusCode::OK, "rotated");
    let request = get("/memories")
        .header("x-api-key", CI_KEY)
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(&app, request).await,
        StatusCode::UNAUTHORIZED,
        "revoked"
    );

    drop(guard);
    let log = capture.text();

    // The log must have recorded the events it is searched for, or an
    // empty capture would pass.
    assert!(log.contains("API key authentication enabled"), "{log}");
    assert!(log.contains("shorter than"), "{log}");
    assert!(log.contains("query parameter"), "{log}");
    assert!(log.contains("TRACE"), "{log}");
    assert!(log.contains("API key accepted"), "{log}");
    assert!(log.contains("reason=\"invalid\""), "{log}");
    assert!(log.contains("reason=\"ambiguous\""), "{log}");
    assert!(log.contains("has expired"), "{log}");
    assert!(log.contains("key set replaced"), "{log}");
    assert_no_secret("the log", &log);
}

#[tokio::test]
async fn forwarded_credential_is_sensitive() {
    let layer = builder().build().unwrap();
    let (app, forwarded) = recording_app(layer);

    let requests = [
        Request::get("/memories").header("x-api-key", CI_KEY),
        Request::get("/memories").header("authorization", format!("Bearer {OPS_KEY}")),
        Request::get("/docs").header("x-api-key", PRESENTED),
        Request::get("/docs")
            .header("x-api-key", PRESENTED)
            .header("x-api-key", PRESENTED_OTHER)
            .header("authorization", format!("Bearer {PRESENTED}")),
    ];
    for request in requests {
        let request = request.body(Body::empty()).unwrap();
        assert_eq!(send(&app, request).await, StatusCode::OK);
    }

    let forwarded = forwarded.lock().unwrap();
    assert_eq!(forwarded.len(), 4);
    for (index, headers) in forwarded.iter().enumerate() {
        let credentials = headers
            .get_all("x-api-key")
            .iter()
            .chain(headers.get_all("authorization"));
        let mut count = 0;
        for value in credentials {
            count += 1;
            assert!(value.is_sensitive(), "request {index}: {value:?}");
        }
        assert!(count >= 1, "request {index} lost its credential");
    }
}

#[tokio::test]
async fn strip_credential_removes_it() {
    let layer = builder()
        .header_name("X-Service-Token")
        .strip_credential(true)
        .build()
        .unwrap();
    let (app, forwarded) = recording_app(layer);

    let requests = [
        Request::get("/memories").header("x-service-token", CI_KEY),
        Request::get("/memories").header("authorization", format!("Bearer {OPS_KEY}")),
        Request::get("/docs")
            .header("x-service-token", PRESENTED)
            .header("x-service-token", PRESENTED_OTHER),
    ];
    for request in requests {
        let request = request
            .header("x-api-key", "not-the-configured-header")
            .header("x-request-id", "42")
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&app, request).await, StatusCode::OK);
    }

    let forwarded = forwarded.lock().unwrap();
    assert_eq!(forwarded.len(), 3);
    for (index, headers) in forwarded.iter().enumerate() {
        assert!(!headers.contains_key("x-service-token"), "request {index}");
        assert!(!headers.contains_key("authorization"), "request {index}");
        assert_eq!(
            headers["x-api-key"], "not-the-configured-header",
            "request {index}"
        );
        assert_eq!(headers["x-request-id"], "42", "request {index}");
    }
}
