//! Helpers shared by the integration tests of the example server.

// Each test binary compiles this module and the example app, and each uses a
// different part of them.
#![allow(dead_code)]

#[path = "../../examples/server/app.rs"]
pub mod app;

use axum::Router;
use axum::body::Body;
use axum::http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_api_key::ApiKeyLayer;

/// The admin key of the protected test apps. At least 16 characters, so no
/// short-key warning is logged.
pub const KEY: &str = "test-admin-key-0123456789abcdef";

/// Owner of the memories that [`seed`] creates.
pub const USER: &str = "alice";

/// Builds the layer the way the example's `main` does, with `key` as the
/// only key.
pub fn auth_layer(key: &str) -> ApiKeyLayer {
    app::configure_auth(ApiKeyLayer::builder().named_key("admin", key))
        .build()
        .expect("the test key is a valid key")
}

/// Builds the example app behind a layer that requires [`KEY`].
pub fn protected_app() -> Router {
    app::app(auth_layer(KEY))
}

/// Builds the example app with authentication disabled.
pub fn open_app() -> Router {
    app::app(ApiKeyLayer::disabled())
}

/// One HTTP request to the example app, reusable with different keys.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: Method,
    pub uri: String,
    pub body: Option<Value>,
}

impl Call {
    pub fn new(method: Method, uri: impl Into<String>) -> Self {
        Self {
            method,
            uri: uri.into(),
            body: None,
        }
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// Builds the request, with an `X-API-Key` header when `key` is given.
    pub fn request(&self, key: Option<&str>) -> Request<Body> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(self.uri.as_str());
        if let Some(key) = key {
            builder = builder.header("X-API-Key", key);
        }

        match &self.body {
            Some(body) => builder
                .header(CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        }
        .expect("the test request is valid")
    }

    /// Names the call in assertion messages, e.g. `GET /memories?user_id=alice`.
    pub fn label(&self) -> String {
        format!("{} {}", self.method, self.uri)
    }
}

/// Sends `request` to a clone of `app`.
pub async fn send(app: &Router, request: Request<Body>) -> Response<Body> {
    let Ok(response) = app.clone().oneshot(request).await;
    response
}

/// Sends `call` with `key` to a clone of `app`.
pub async fn call(app: &Router, call: &Call, key: Option<&str>) -> Response<Body> {
    send(app, call.request(key)).await
}

pub async fn body_bytes(response: Response<Body>) -> Vec<u8> {
    response
        .into_body()
        .collect()
        .await
        .expect("the response body can be read")
        .to_bytes()
        .to_vec()
}

pub async fn body_text(response: Response<Body>) -> String {
    String::from_utf8(body_bytes(response).await).expect("the response body is UTF-8")
}

pub async fn body_json(response: Response<Body>) -> Value {
    let bytes = body_bytes(response).await;
    serde_json::from_slice(&bytes).unwrap_or_else(|err| {
        panic!(
            "the response body is not JSON ({err}): {}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

/// Creates one memory, "likes green tea", for [`USER`] and returns its id.
pub async fn seed(app: &Router, key: Option<&str>) -> String {
    let create = Call::new(Method::POST, "/memories").json(json!({
        "messages": [{ "role": "user", "content": "likes green tea" }],
        "user_id": USER,
    }));
    let response = call(app, &create, key).await;
    assert_eq!(response.status(), StatusCode::OK, "seeding a memory");

    let body = body_json(response).await;
    body["results"][0]["id"]
        .as_str()
        .expect("the create response has an id")
        .to_owned()
}

/// Number of protected endpoints, the length of [`protected_endpoints`].
pub const ENDPOINT_COUNT: usize = 11;

/// Returns a valid request for each of the eleven protected endpoints, all
/// of which return 200 when the memory `id` exists.
pub fn protected_endpoints(id: &str) -> Vec<Call> {
    vec![
        Call::new(Method::POST, "/memories").json(json!({
            "messages": [{ "role": "user", "content": "likes black coffee" }],
            "user_id": USER,
        })),
        Call::new(Method::GET, format!("/memories?user_id={USER}")),
        Call::new(Method::GET, format!("/memories/{id}")),
        Call::new(Method::PUT, format!("/memories/{id}")).json(json!({ "text": "likes oolong" })),
        Call::new(Method::GET, format!("/memories/{id}/history")),
        Call::new(Method::DELETE, format!("/memories/{id}")),
        Call::new(Method::DELETE, format!("/memories?user_id={USER}")),
        Call::new(Method::POST, "/search").json(json!({ "query": "tea", "user_id": USER })),
        Call::new(Method::POST, "/reset"),
        Call::new(Method::POST, "/configure").json(json!({ "vector_store": "memory" })),
        Call::new(Method::GET, "/whoami"),
    ]
}

/// Asserts a 401 from the API-key layer: the challenge header, the problem
/// document type, and a problem body whose `detail` starts with
/// `detail_start`.
pub async fn assert_unauthorized(response: Response<Body>, detail_start: &str, label: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{label}");

    let challenges: Vec<_> = response
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .collect();
    assert_eq!(challenges, ["ApiKey"], "{label}: WWW-Authenticate");
    assert_eq!(
        response.headers()[CONTENT_TYPE],
        "application/problem+json",
        "{label}: content type"
    );

    let body = body_json(response).await;
    assert_eq!(body["type"], "about:blank", "{label}: {body}");
    assert_eq!(body["title"], "Unauthorized", "{label}: {body}");
    assert_eq!(body["status"], 401, "{label}: {body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with(detail_start),
        "{label}: detail {detail:?} should start with {detail_start:?}"
    );
}
