//! A tonic gRPC server behind an API key, serving the standard health
//! service (`grpc.health.v1.Health`).
//!
//! ```text
//! cargo run --example grpc
//! printf '\0\0\0\0\0' | curl -sv --http2-prior-knowledge -o /dev/null \
//!     -H 'content-type: application/grpc' -H 'x-api-key: demo-key-0123456789abcdef' \
//!     --data-binary @- http://127.0.0.1:50051/grpc.health.v1.Health/Check 2>&1 | grep grpc-
//! ```
//!
//! The `printf` writes an empty `HealthCheckRequest` in gRPC's
//! length-prefixed framing, so curl can stand in for a gRPC client. With the
//! key the call ends with `grpc-status: 0` (OK). Without it, or with a wrong
//! key, the response carries `grpc-status: 16` (UNAUTHENTICATED) and a
//! `grpc-message`, which tonic clients report as `Code::Unauthenticated`.
//! Clients send the key in the metadata `x-api-key`, or as
//! `authorization: Bearer <key>`.
//!
//! Environment:
//!
//! - `API_KEY`: the key. Unset, it is `demo-key-0123456789abcdef`, a
//!   well-known key for trying the example on loopback and nothing else.
//! - `PORT`: the port to listen on at 127.0.0.1, 50051 by default.
//! - `RUST_LOG`: the log filter, `info` by default.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use tonic::transport::Server;
use tower_api_key::ApiKeyLayer;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

/// The key used when `API_KEY` is unset. It is published in this file, so
/// it is fit only for a server on loopback.
const DEMO_KEY: &str = "demo-key-0123456789abcdef";

const DEFAULT_PORT: u16 = 50051;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let port = match port() {
        Ok(port) => port,
        Err(message) => return fail(&message),
    };
    let key = std::env::var("API_KEY").unwrap_or_else(|_| {
        warn!("API_KEY is unset, so the published demo key is in use. Set API_KEY to a key of your own.");
        DEMO_KEY.to_owned()
    });

    // gRPC metadata travels as HTTP/2 headers, so the metadata `x-api-key`
    // is the layer's default `X-API-Key` header. To let load-balancer probes
    // through without a key, exempt the method's path:
    // `.exempt("/grpc.health.v1.Health/Check")`.
    let auth = match ApiKeyLayer::builder()
        .named_key("client", key)
        .bearer(true)
        .require_key(true)
        .build()
    {
        Ok(auth) => auth,
        Err(err) => return fail(&format!("invalid API_KEY: {err}")),
    };

    // The reporter sets the status of each service. The whole server, under
    // the service name "", is SERVING from the start.
    let (_reporter, health) = tonic_health::server::health_reporter();

    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    info!("listening on http://{address} (gRPC over HTTP/2 without TLS)");
    let served = Server::builder()
        .layer(auth)
        .add_service(health)
        .serve_with_shutdown(address, shutdown_signal())
        .await;
    if let Err(err) = served {
        return fail(&format!("server on {address} failed: {err}"));
    }

    info!("server stopped");
    ExitCode::SUCCESS
}

/// Completes on Ctrl-C. When the handler cannot be installed, the error is
/// logged and the server runs until it is killed.
async fn shutdown_signal() {
    match tokio::signal::ctrl_c().await {
        Ok(()) => info!("received Ctrl-C, shutting down"),
        Err(err) => {
            error!("failed to listen for Ctrl-C: {err}");
            std::future::pending::<()>().await;
        }
    }
}

/// Reads `PORT`, or returns the default port when it is unset.
fn port() -> Result<u16, String> {
    match std::env::var("PORT") {
        Err(_) => Ok(DEFAULT_PORT),
        Ok(text) => text.parse().map_err(|err| {
            format!("invalid PORT value {text:?}: {err}. Set it to a port such as {DEFAULT_PORT}.")
        }),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}
