//! The example server over real TCP on 127.0.0.1, with a hyper client.

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{Method, Request, Response, StatusCode};
use bytes::Bytes;
use common::{KEY, protected_app};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The example app served on an ephemeral loopback port until [`stop`].
///
/// [`stop`]: TestServer::stop
struct TestServer {
    address: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl TestServer {
    async fn start(app: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let address = listener.local_addr().unwrap();
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = signal.await;
                })
                .await
        });
        let client = Client::builder(TokioExecutor::new()).build_http();

        Self {
            address,
            shutdown,
            task,
            client,
        }
    }

    /// Sends one request; `headers` are added as given, so a test can send
    /// values an in-process request would not carry unchanged.
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Response<Incoming> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.address));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let body = match body {
            Some(body) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(body.to_string()))
            }
            None => Full::new(Bytes::new()),
        };

        self.client
            .request(builder.body(body).unwrap())
            .await
            .expect("the server answers")
    }

    /// Stops accepting connections and waits for the server task to end.
    async fn stop(self) {
        drop(self.client);
        let _ = self.shutdown.send(());
        self.task
            .await
            .expect("the server task does not panic")
            .expect("the server shuts down cleanly");
    }
}

async fn json_of(response: Response<Incoming>) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).expect("the body is JSON")
}

#[tokio::test]
async fn request_without_key_rejected() {
    let server = TestServer::start(protected_app()).await;

    let response = server
        .send(Method::GET, "/memories?user_id=alice", &[], None)
        .await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()[WWW_AUTHENTICATE], "ApiKey");
    assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
    let body = json_of(response).await;
    assert_eq!(body["status"], 401);
    assert_eq!(
        body["detail"],
        "Missing API key: send it in the X-API-Key header."
    );
    server.stop().await;
}

#[tokio::test]
async fn request_with_wrong_key_rejected() {
    let server = TestServer::start(protected_app()).await;

    let response = server
        .send(
            Method::GET,
            "/memories?user_id=alice",
            &[("X-API-Key", "wrong-key-0123456789abcdef")],
            None,
        )
        .await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()[WWW_AUTHENTICATE], "ApiKey");
    let body = json_of(response).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("Invalid API key"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn request_with_key_served() {
    let server = TestServer::start(protected_app()).await;
    let key = [("X-API-Key", KEY)];

    let create = json!({
        "messages": [{ "role": "user", "content": "likes green tea" }],
        "user_id": "alice",
    });
    let response = server
        .send(Method::POST, "/memories", &key, Some(create))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await["results"][0]["event"], "ADD");

    let response = server
        .send(Method::GET, "/memories?user_id=alice", &key, None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    let body = json_of(response).await;
    assert_eq!(body["results"][0]["memory"], "likes green tea");
    server.stop().await;
}

#[tokio::test]
async fn docs_served_without_key() {
    let server = TestServer::start(protected_app()).await;

    let response = server.send(Method::GET, "/docs", &[], None).await;
    assert_eq!(response.status(), StatusCode::OK);

    let response = server.send(Method::GET, "/", &[], None).await;
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(response.headers()["location"], "/docs");
    server.stop().await;
}

/// In HTTP/1.1 the whitespace around a field value is not part of it (RFC 7230:
/// `header-field = field-name ":" OWS field-value OWS`), and hyper's parser
/// drops it. So a padded key sent over the wire reaches the layer unpadded
/// and matches, while an in-process request keeps the padding and is
/// rejected, as `near_miss_keys_rejected` in `server_auth.rs` checks.
#[tokio::test]
async fn padded_key_arrives_trimmed() {
    let server = TestServer::start(protected_app()).await;
    let padded = format!("  {KEY}  ");

    let response = server
        .send(
            Method::GET,
            "/memories?user_id=alice",
            &[("X-API-Key", padded.as_str())],
            None,
        )
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn repeated_header_rejected() {
    let server = TestServer::start(protected_app()).await;

    let response = server
        .send(
            Method::GET,
            "/memories?user_id=alice",
            &[("X-API-Key", KEY), ("X-API-Key", KEY)],
            None,
        )
        .await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body = json_of(response).await;
    assert!(
        body["detail"].as_str().unwrap().starts_with("Ambiguous"),
        "{body}"
    );
    server.stop().await;
}
