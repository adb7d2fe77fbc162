//! The layer in front of a tonic server, called by a tonic client over TCP on
//! 127.0.0.1: rejected calls must reach the client as the gRPC status
//! UNAUTHENTICATED, not as a transport error.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_client::HealthClient;
use tower_api_key::{ApiKeyLayer, ApiKeyLayerBuilder};

const KEY: &str = "grpc-test-key-0123456789abcdef";

/// Upper bound on each call, so that a server that never responds fails the
/// test instead of hanging it.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the health service behind `layer` on a free port of 127.0.0.1,
/// as `examples/grpc.rs` does, and returns a client connected to it. The
/// server task ends with the test's runtime.
async fn serve(layer: ApiKeyLayer) -> HealthClient<Channel> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("memories", ServingStatus::NotServing)
        .await;
    let server = Server::builder()
        .layer(layer)
        .add_service(health)
        .serve_with_incoming(TcpIncoming::from(listener));
    tokio::spawn(server);

    let channel = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .timeout(CALL_TIMEOUT)
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
}

fn builder() -> ApiKeyLayerBuilder {
    ApiKeyLayer::builder().named_key("client", KEY)
}

/// Builds a `Check` request for `service` with the given metadata entries.
fn check(service: &str, metadata: &[(&'static str, &str)]) -> tonic::Request<HealthCheckRequest> {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    for (name, value) in metadata {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn missing_key_is_unauthenticated() {
    let mut client = serve(builder().build().unwrap()).await;

    let status = client.check(check("", &[])).await.unwrap_err();

    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(
        status.message(),
        "Missing API key: send it in the X-API-Key header."
    );
}

#[tokio::test]
async fn wrong_key_is_unauthenticated() {
    let mut client = serve(builder().build().unwrap()).await;

    let request = check("", &[("x-api-key", "wrong-key-0123456789abcdef")]);
    let status = client.check(request).await.unwrap_err();

    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "Invalid API key.");
}

#[tokio::test]
async fn valid_key_gets_serving() {
    let mut client = serve(builder().build().unwrap()).await;

    let response = client
        .check(check("", &[("x-api-key", KEY)]))
        .await
        .unwrap();

    assert_eq!(response.get_ref().status(), WireStatus::Serving);
}

#[tokio::test]
async fn valid_key_reaches_service_status() {
    let mut client = serve(builder().build().unwrap()).await;

    let response = client
        .check(check("memories", &[("x-api-key", KEY)]))
        .await
        .unwrap();
    assert_eq!(response.get_ref().status(), WireStatus::NotServing);

    let status = client
        .check(check("unknown", &[("x-api-key", KEY)]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

#[tokio::test]
async fn bearer_metadata_is_accepted() {
    let mut client = serve(builder().bearer(true).build().unwrap()).await;

    let bearer = format!("Bearer {KEY}");
    let response = client
        .check(check("", &[("authorization", &bearer)]))
        .await
        .unwrap();
    assert_eq!(response.get_ref().status(), WireStatus::Serving);

    let request = check("", &[("authorization", &bearer), ("x-api-key", "other")]);
    let status = client.check(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().starts_with("Ambiguous"), "{status:?}");
}

#[tokio::test]
async fn exempt_method_needs_no_key() {
    let layer = builder()
        .exempt("/grpc.health.v1.Health/Check")
        .build()
        .unwrap();
    let mut client = serve(layer).await;

    let response = client.check(check("", &[])).await.unwrap();
    assert_eq!(response.get_ref().status(), WireStatus::Serving);

    let status = client.watch(check("", &[])).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test]
async fn custom_rejection_keeps_grpc_status() {
    let layer = builder()
        .rejection(|_reason, _request| {
            let mut response = http::Response::new(bytes::Bytes::from("no entry"));
            *response.status_mut() = http::StatusCode::FORBIDDEN;
            response
        })
        .build()
        .unwrap();
    let mut client = serve(layer).await;

    let status = client.check(check("", &[])).await.unwrap_err();

    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}
