//! Where the layer goes in an axum app, and what each placement protects.
//!
//! - `Router::layer` as the last call, or the layer wrapped around the
//!   finished router: every route, merged and nested ones, and the fallback
//!   need a key, so an unknown path gets `401`, not `404`.
//! - `Router::layer` covers only the routes added before it.
//! - `Router::route_layer`: unknown paths get `404` and the fallback is
//!   reached without a key; matched paths still need one.
//! - A layer inside `nest` receives the path with the prefix removed, so
//!   its exempt entries are written without the prefix.

mod support;

#[allow(dead_code)]
#[path = "../examples/server/app.rs"]
mod app;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http::header::WWW_AUTHENTICATE;
use http::{Method, Request, StatusCode};
use serde_json::Value;
use tower::{Layer, ServiceExt};
use tower_api_key::ApiKeyLayer;

use support::{KEY, collect};

fn auth() -> ApiKeyLayer {
    ApiKeyLayer::builder()
        .key(KEY)
        .exempt("/docs")
        .build()
        .expect("the test configuration is valid")
}

/// Routes, a merged router, a nested router and a fallback, without
/// authentication.
fn full_router() -> Router {
    let merged = Router::new().route("/search", post(|| async { "search" }));
    let nested = Router::new()
        .route("/items", get(|| async { "items" }))
        .route("/docs", get(|| async { "nested docs" }));

    Router::new()
        .route("/docs", get(|| async { "docs" }))
        .route("/memories", get(|| async { "memories" }))
        .merge(merged)
        .nest("/api", nested)
        .fallback(|| async { (StatusCode::NOT_FOUND, "fallback") })
}

/// Sends a request and returns its status, whether it carried the
/// `ApiKey` challenge, and the body.
async fn send<S, B>(
    service: S,
    method: Method,
    target: &str,
    key: Option<&str>,
) -> (StatusCode, bool, String)
where
    S: tower::Service<Request<Body>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let mut request = Request::builder().method(method).uri(target);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let request = request.body(Body::empty()).unwrap();
    let response = service.oneshot(request).await.unwrap();
    let (parts, body) = collect(response).await;
    let challenged = parts
        .headers
        .get(WWW_AUTHENTICATE)
        .is_some_and(|value| value == "ApiKey");
    (parts.status, challenged, body)
}

/// Targets of [`full_router`] and the status each returns with the key.
const FULL_ROUTER_TARGETS: [(&str, &str, StatusCode); 7] = [
    ("GET", "/memories", StatusCode::OK),
    ("POST", "/search", StatusCode::OK),
    ("GET", "/api/items", StatusCode::OK),
    ("GET", "/api/docs", StatusCode::OK),
    ("GET", "/no-such-route", StatusCode::NOT_FOUND),
    ("GET", "/api/no-such-route", StatusCode::NOT_FOUND),
    ("DELETE", "/memories", StatusCode::METHOD_NOT_ALLOWED),
];

#[tokio::test]
async fn layer_last_covers_every_route() {
    let app = full_router().layer(auth());

    for (method, target, with_key) in FULL_ROUTER_TARGETS {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, challenged, _) = send(app.clone(), method.clone(), target, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {target}");
        assert!(challenged, "{method} {target}");

        let (status, _, _) = send(app.clone(), method.clone(), target, Some(KEY)).await;
        assert_eq!(status, with_key, "{method} {target} with the key");
    }

    let (status, _, body) = send(app, Method::GET, "/docs", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "docs");
}

#[tokio::test]
async fn wrapped_router_covers_every_route() {
    // Wrapping the finished router as a service covers routes added in any
    // order, because the layer runs before routing.
    let app = auth().layer(full_router().route("/late", get(|| async { "late" })));

    let mut targets = FULL_ROUTER_TARGETS.to_vec();
    targets.push(("GET", "/late", StatusCode::OK));
    for (method, target, with_key) in targets {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, challenged, _) = send(app.clone(), method.clone(), target, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {target}");
        assert!(challenged, "{method} {target}");

        let (status, _, _) = send(app.clone(), method.clone(), target, Some(KEY)).await;
        assert_eq!(status, with_key, "{method} {target} with the key");
    }
}

#[tokio::test]
async fn routes_after_layer_are_open() {
    let app = full_router()
        .layer(auth())
        .route("/late", get(|| async { "late" }));

    let (status, challenged, body) = send(app.clone(), Method::GET, "/late", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!challenged);
    assert_eq!(body, "late");

    let (status, _, _) = send(app, Method::GET, "/memories", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn route_layer_leaves_fallback_open() {
    let app = Router::new()
        .route("/docs", get(|| async { "docs" }))
        .route("/memories", get(|| async { "memories" }))
        .route_layer(auth())
        .fallback(|| async { (StatusCode::NOT_FOUND, "fallback") });

    let (status, challenged, _) = send(app.clone(), Method::GET, "/memories", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenged);

    // Unmatched paths skip the layer, so a client without a key can tell
    // which paths exist.
    let (status, challenged, body) = send(app.clone(), Method::GET, "/no-such-route", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!challenged);
    assert_eq!(body, "fallback");

    // A matched path with a method it does not serve still goes through
    // the layer (axum 0.8).
    let (status, challenged, _) = send(app, Method::DELETE, "/memories", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenged);
}

#[tokio::test]
async fn nested_layer_sees_stripped_path() {
    let stripped = ApiKeyLayer::builder()
        .key(KEY)
        .exempt("/docs")
        .build()
        .unwrap();
    let prefixed = ApiKeyLayer::builder()
        .key(KEY)
        .exempt("/api/docs")
        .build()
        .unwrap();
    let nested = |layer: ApiKeyLayer| {
        Router::new()
            .route("/docs", get(|| async { "nested docs" }))
            .route("/items", get(|| async { "items" }))
            .layer(layer)
    };

    // The entry written without the prefix exempts /api/docs.
    let app = Router::new().nest("/api", nested(stripped));
    let (status, _, body) = send(app.clone(), Method::GET, "/api/docs", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "nested docs");
    let (status, _, _) = send(app, Method::GET, "/api/items", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The entry written with the prefix never matches inside the nest.
    let app = Router::new().nest("/api", nested(prefixed));
    let (status, challenged, _) = send(app, Method::GET, "/api/docs", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenged);
}

#[tokio::test]
async fn outer_layer_sees_full_path() {
    // An outer layer receives the path before `nest` strips the prefix, so
    // its entries include the prefix.
    let layer = ApiKeyLayer::builder()
        .key(KEY)
        .exempt("/api/docs")
        .build()
        .unwrap();
    let app = full_router().layer(layer);

    let (status, _, body) = send(app.clone(), Method::GET, "/api/docs", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "nested docs");
    let (status, _, _) = send(app, Method::GET, "/docs", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Every route of the example server, as in its documentation.
const EXAMPLE_ROUTES: [(&str, &str); 13] = [
    ("POST", "/memories"),
    ("GET", "/memories?user_id=alice"),
    ("DELETE", "/memories?user_id=alice"),
    ("GET", "/memories/00000000-0000-4000-8000-000000000000"),
    ("PUT", "/memories/00000000-0000-4000-8000-000000000000"),
    ("DELETE", "/memories/00000000-0000-4000-8000-000000000000"),
    (
        "GET",
        "/memories/00000000-0000-4000-8000-000000000000/history",
    ),
    ("POST", "/search"),
    ("POST", "/reset"),
    ("POST", "/configure"),
    ("GET", "/whoami"),
    ("GET", "/no-such-route"),
    ("PATCH", "/memories"),
];

fn example_app() -> Router {
    let layer = app::configure_auth(ApiKeyLayer::builder().named_key("admin", KEY))
        .build()
        .expect("the test key is valid");
    app::app(layer)
}

#[tokio::test]
async fn example_routes_need_key() {
    let app = example_app();

    for (method, target) in EXAMPLE_ROUTES {
        for method in [method, "HEAD", "OPTIONS"] {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let (status, challenged, _) = send(app.clone(), method.clone(), target, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {target}");
            assert!(challenged, "{method} {target}");
        }
    }

    let (status, _, _) = send(app.clone(), Method::GET, "/", None).await;
    assert_eq!(status, StatusCode::TEMPORARY_REDIRECT);
    for target in ["/docs", "/openapi.json"] {
        let (status, challenged, _) = send(app.clone(), Method::GET, target, None).await;
        assert_eq!(status, StatusCode::OK, "{target}");
        assert!(!challenged, "{target}");
    }
}

#[tokio::test]
async fn documented_operations_need_key() {
    // Walks the example's own OpenAPI document, so a route added to the
    // document is checked without a change here.
    let app = example_app();
    let (status, _, body) = send(app.clone(), Method::GET, "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let document: Value = serde_json::from_str(&body).unwrap();
    let paths = document["paths"]
        .as_object()
        .expect("the document lists paths");

    let mut protected = 0;
    for (path, item) in paths {
        let target = path.replace("{id}", "00000000-0000-4000-8000-000000000000");
        let operations = item.as_object().expect("a path item is an object");
        for (method, operation) in operations {
            let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
                continue;
            };
            let public = operation
                .get("security")
                .is_some_and(|security| security.as_array().is_some_and(|list| list.is_empty()));
            let (status, challenged, _) = send(app.clone(), method.clone(), &target, None).await;

            if app::PUBLIC_PATHS.contains(&path.as_str()) {
                assert!(
                    public,
                    "{method} {path} is served without a key but documented as secured"
                );
                assert_ne!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            } else {
                protected += 1;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
                assert!(challenged, "{method} {path}");
                let (status, _, _) = send(app.clone(), method.clone(), &target, Some(KEY)).await;
                assert_ne!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} with the key"
                );
            }
        }
    }
    assert!(
        protected >= 10,
        "the document lists {protected} protected operations"
    );
}
