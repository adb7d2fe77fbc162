//! The layer beside tower-http's `CorsLayer` in an axum router, with the
//! requests a browser sends: a preflight `OPTIONS` without credentials,
//! then the cross-origin request itself.
//!
//! With CORS outside the key check (recommended), preflights never reach
//! the check and rejections carry the CORS headers. With CORS inside, the
//! layer must let genuine preflights through (`allow_cors_preflight`), and a
//! 401 carries no CORS headers.

use axum::Router;
use axum::body::Body;
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, CONTENT_TYPE, ORIGIN,
    WWW_AUTHENTICATE,
};
use axum::http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use axum::routing::get;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_api_key::{ApiKeyLayer, ApiKeyLayerBuilder};
use tower_http::cors::CorsLayer;

const KEY: &str = "cors-test-key-0123456789abcdef";
const FRONT_END: &str = "http://localhost:5173";

fn builder() -> ApiKeyLayerBuilder {
    ApiKeyLayer::builder().key(KEY)
}

fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(HeaderValue::from_static(FRONT_END))
        .allow_methods([Method::GET, Method::DELETE])
        .allow_headers([HeaderName::from_static("x-api-key")])
}

fn routes() -> Router {
    Router::new().route(
        "/items",
        get(|| async { "[]" }).delete(|| async { "deleted" }),
    )
}

/// Builds the recommended stack: CORS responds before the key check runs.
fn cors_outside(auth: ApiKeyLayer) -> Router {
    routes().layer(auth).layer(cors())
}

/// Builds the stack in which the key check runs before CORS.
fn cors_inside(auth: ApiKeyLayer) -> Router {
    routes().layer(cors()).layer(auth)
}

/// Builds the preflight that a browser sends, without a key, before a
/// cross-origin `DELETE` with an `X-API-Key` header.
fn preflight() -> Request<Body> {
    Request::options("/items")
        .header(ORIGIN, FRONT_END)
        .header(ACCESS_CONTROL_REQUEST_METHOD, "DELETE")
        .header(ACCESS_CONTROL_REQUEST_HEADERS, "x-api-key")
        .body(Body::empty())
        .unwrap()
}

fn cross_origin_get(key: Option<&str>) -> Request<Body> {
    let mut request = Request::get("/items").header(ORIGIN, FRONT_END);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    request.body(Body::empty()).unwrap()
}

async fn send(app: Router, request: Request<Body>) -> (Response<()>, String) {
    let response = app.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let body = String::from_utf8(bytes.to_vec()).unwrap();
    (Response::from_parts(parts, ()), body)
}

#[tokio::test]
async fn outside_preflight_needs_no_key() {
    let app = cors_outside(builder().build().unwrap());

    let (response, body) = send(app, preflight()).await;

    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers[ACCESS_CONTROL_ALLOW_ORIGIN], FRONT_END);
    assert_eq!(headers[ACCESS_CONTROL_ALLOW_METHODS], "GET,DELETE");
    assert_eq!(headers[ACCESS_CONTROL_ALLOW_HEADERS], "x-api-key");
    assert!(!headers.contains_key(WWW_AUTHENTICATE));
    assert_eq!(body, "");
}

#[tokio::test]
async fn outside_401_carries_allow_origin() {
    let app = cors_outside(builder().build().unwrap());

    let (response, body) = send(app, cross_origin_get(None)).await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let headers = response.headers();
    assert_eq!(headers[ACCESS_CONTROL_ALLOW_ORIGIN], FRONT_END);
    assert_eq!(headers[WWW_AUTHENTICATE], "ApiKey");
    assert_eq!(headers[CONTENT_TYPE], "application/problem+json");
    assert!(body.contains("Missing API key"), "{body}");
}

#[tokio::test]
async fn outside_get_with_key_succeeds() {
    let app = cors_outside(builder().build().unwrap());

    let (response, body) = send(app, cross_origin_get(Some(KEY))).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], FRONT_END);
    assert_eq!(body, "[]");
}

#[tokio::test]
async fn inside_preflight_passes_when_allowed() {
    let app = cors_inside(builder().allow_cors_preflight(true).build().unwrap());

    let (response, body) = send(app, preflight()).await;

    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers[ACCESS_CONTROL_ALLOW_ORIGIN], FRONT_END);
    assert_eq!(headers[ACCESS_CONTROL_ALLOW_METHODS], "GET,DELETE");
    assert_eq!(headers[ACCESS_CONTROL_ALLOW_HEADERS], "x-api-key");
    assert_eq!(body, "");
}

#[tokio::test]
async fn inside_preflight_is_401_by_default() {
    let app = cors_inside(builder().build().unwrap());

    let (response, _) = send(app, preflight()).await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(!response.headers().contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
}

#[tokio::test]
async fn inside_plain_options_needs_key() {
    let app = cors_inside(builder().allow_cors_preflight(true).build().unwrap());
    let plain = Request::options("/items").body(Body::empty()).unwrap();
    let origin_only = Request::options("/items")
        .header(ORIGIN, FRONT_END)
        .body(Body::empty())
        .unwrap();
    let method_only = Request::options("/items")
        .header(ACCESS_CONTROL_REQUEST_METHOD, "DELETE")
        .body(Body::empty())
        .unwrap();

    for request in [plain, origin_only, method_only] {
        let described = format!("{:?}", request.headers());
        let (response, body) = send(app.clone(), request).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "headers {described}"
        );
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            "ApiKey",
            "headers {described}"
        );
        assert!(body.contains("Missing API key"), "{body}");
    }
}

#[tokio::test]
async fn inside_401_lacks_allow_origin() {
    let app = cors_inside(builder().allow_cors_preflight(true).build().unwrap());

    let (response, _) = send(app.clone(), cross_origin_get(None)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(!response.headers().contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));

    let (response, body) = send(app, cross_origin_get(Some(KEY))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], FRONT_END);
    assert_eq!(body, "[]");
}
