//! The opt-in credential sources and the rejection settings, each through an
//! axum router whose handler reads the [`KeyName`] the layer inserts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{Request, Response, StatusCode};
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_api_key::{ApiKeyLayer, ApiKeyLayerBuilder, KeyName, RejectionReason};

const KEY: &str = "integration-key-0123456789abcdef";

/// Request headers as `(name, value)` pairs.
type Headers<'a> = &'a [(&'a str, &'a str)];

fn builder() -> ApiKeyLayerBuilder {
    ApiKeyLayer::builder().named_key("client", KEY)
}

/// Builds a router whose `/whoami` returns the name of the key that
/// authenticated the request, and counts its calls in `calls`.
fn app(auth: ApiKeyLayer, calls: &Arc<AtomicUsize>) -> Router {
    let calls = Arc::clone(calls);
    let whoami = move |Extension(key): Extension<KeyName>| async move {
        calls.fetch_add(1, Ordering::SeqCst);
        key.to_string()
    };
    Router::new().route("/whoami", get(whoami)).layer(auth)
}

/// Sends a `GET /whoami` with `headers` and returns the response head and
/// body text.
async fn get_whoami(app: &Router, headers: Headers<'_>) -> (Response<()>, String) {
    get_path(app, "/whoami", headers).await
}

/// Sends a `GET` for `path` with `headers` and returns the response head and
/// body text.
async fn get_path(app: &Router, path: &str, headers: Headers<'_>) -> (Response<()>, String) {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();

    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let body = String::from_utf8(bytes.to_vec()).unwrap();
    (Response::from_parts(parts, ()), body)
}

#[tokio::test]
async fn bearer_token_is_accepted() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(builder().bearer(true).build().unwrap(), &calls);

    for scheme in ["Bearer", "bearer", "BEARER"] {
        let value = format!("{scheme} {KEY}");
        let (response, body) = get_whoami(&app, &[("authorization", &value)]).await;
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
        assert_eq!(body, "client", "{scheme}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn bearer_token_is_rejected() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(builder().bearer(true).build().unwrap(), &calls);
    let other_case = format!("Bearer {}", KEY.to_uppercase());
    let prefix = format!("Bearer {}", &KEY[..KEY.len() - 1]);
    let cases = [
        ("Bearer wrong-key-0123456789abcdef", "Invalid API key."),
        (other_case.as_str(), "Invalid API key."),
        (prefix.as_str(), "Invalid API key."),
        ("Bearer ", "Invalid API key."),
        ("Basic Y2xpZW50OnNlY3JldA==", "Missing API key"),
        (KEY, "Missing API key"),
    ];

    for (value, detail) in cases {
        let (response, body) = get_whoami(&app, &[("authorization", value)]).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{value}");
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "ApiKey", "{value}");
        assert!(body.contains(detail), "{value}: {body}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn bearer_is_ignored_unless_enabled() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(builder().build().unwrap(), &calls);

    let bearer = format!("Bearer {KEY}");
    let (response, body) = get_whoami(&app, &[("authorization", &bearer)]).await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        body.contains("Missing API key: send it in the X-API-Key header."),
        "{body}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn header_and_bearer_disagreeing_is_401() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(builder().bearer(true).build().unwrap(), &calls);
    let bearer = format!("Bearer {KEY}");

    let disagreeing = [
        [("x-api-key", KEY), ("authorization", "Bearer other-key")],
        [
            ("x-api-key", "other-key"),
            ("authorization", bearer.as_str()),
        ],
    ];
    for headers in disagreeing {
        let (response, body) = get_whoami(&app, &headers).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "ApiKey");
        assert!(body.contains("Ambiguous API key"), "{body}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let agreeing = [("x-api-key", KEY), ("authorization", bearer.as_str())];
    let (response, body) = get_whoami(&app, &agreeing).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body, "client");
}

#[tokio::test]
async fn insecure_query_param_is_accepted() {
    let calls = Arc::new(AtomicUsize::new(0));
    let auth = builder().insecure_query_param("api_key").build().unwrap();
    let app = app(auth, &calls);

    let request = Request::get(format!("/whoami?api_key={KEY}"))
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let request = Request::get("/whoami?api_key=wrong-key-0123456789abcdef")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn custom_rejection_receives_reason() {
    let reject = |reason: RejectionReason, request: &http::request::Parts| {
        let status = match reason {
            RejectionReason::Missing => StatusCode::UNAUTHORIZED,
            RejectionReason::Invalid => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        let body = format!("{reason} {} {}", request.method, request.uri.path());
        Response::builder()
            .status(status)
            .header(CONTENT_TYPE, "text/plain")
            .body(Bytes::from(body))
            .unwrap()
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(builder().rejection(reject).build().unwrap(), &calls);
    let cases: [(Headers<'_>, StatusCode, &str); 3] = [
        (&[], StatusCode::UNAUTHORIZED, "missing GET /whoami"),
        (
            &[("x-api-key", "wrong-key-0123456789abcdef")],
            StatusCode::FORBIDDEN,
            "invalid GET /whoami",
        ),
        (
            &[("x-api-key", KEY), ("x-api-key", KEY)],
            StatusCode::BAD_REQUEST,
            "ambiguous GET /whoami",
        ),
    ];

    for (headers, status, expected_body) in cases {
        let (response, body) = get_whoami(&app, headers).await;
        assert_eq!(response.status(), status, "{headers:?}");
        assert_eq!(response.headers()[CONTENT_TYPE], "text/plain");
        assert!(!response.headers().contains_key(WWW_AUTHENTICATE));
        assert_eq!(body, expected_body);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn realm_is_in_the_challenge() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(builder().realm("memories API").build().unwrap(), &calls);

    for headers in [vec![], vec![("x-api-key", "wrong-key-0123456789abcdef")]] {
        let (response, body) = get_whoami(&app, &headers).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            r#"ApiKey realm="memories API""#
        );
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        assert!(body.contains(r#""status":401"#), "{body}");
    }

    let (response, body) = get_whoami(&app, &[("x-api-key", KEY)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!response.headers().contains_key(WWW_AUTHENTICATE));
    assert_eq!(body, "client");
}

#[tokio::test]
async fn exempt_path_has_no_key_name() {
    let optional = |key: Option<Extension<KeyName>>| async move {
        key.map_or("anonymous".to_owned(), |Extension(key)| key.to_string())
    };
    let auth = builder().exempt("/public").build().unwrap();
    let public = Router::new().route("/public", get(optional)).layer(auth);

    // The layer checks no key on an exempt path, so it inserts no name even
    // when the request carries a valid key.
    for headers in [vec![], vec![("x-api-key", KEY)]] {
        let (response, body) = get_path(&public, "/public", &headers).await;
        assert_eq!(response.status(), StatusCode::OK, "{headers:?}");
        assert_eq!(body, "anonymous", "{headers:?}");
    }

    // A handler that requires the name fails there with axum's 500.
    let calls = Arc::new(AtomicUsize::new(0));
    let strict = app(builder().exempt("/whoami").build().unwrap(), &calls);
    let (response, _) = get_whoami(&strict, &[("x-api-key", KEY)]).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}
