//! A hyper 1 service behind an API key, without axum.
//!
//! ```text
//! cargo run --example hyper
//! curl -i -H 'X-API-Key: demo-key-0123456789abcdef' localhost:3001/
//! ```
//!
//! Environment:
//!
//! - `API_KEY`: the key clients send in `X-API-Key`. Unset, it is
//!   `demo-key-0123456789abcdef`, a well-known key for trying the example on
//!   loopback and nothing else.
//! - `PORT`: the port to listen on at 127.0.0.1, 3001 by default.
//! - `RUST_LOG`: the log filter, `info` by default.
//!
//! `GET /health` needs no key; every other path returns the name of the key
//! that authenticated the request.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_api_key::{ApiKeyLayer, KeyName};
use tracing::{debug, error, info, warn};
use tracing_subscriber::EnvFilter;

/// The key used when `API_KEY` is unset. It is published in this file, so
/// it is fit only for a server on loopback.
const DEMO_KEY: &str = "demo-key-0123456789abcdef";

const DEFAULT_PORT: u16 = 3001;

/// Pause after a failed `accept`, such as on a full file descriptor table,
/// so that the loop does not spin until connections close.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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

    // `require_key` turns a blank `API_KEY` into an error instead of a
    // server without authentication.
    let auth = match ApiKeyLayer::builder()
        .named_key("client", key)
        .exempt("/health")
        .require_key(true)
        .build()
    {
        Ok(auth) => auth,
        Err(err) => return fail(&format!("invalid API_KEY: {err}")),
    };
    let service = ServiceBuilder::new().layer(auth).service_fn(handle);

    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = match TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(err) => return fail(&format!("failed to listen on {address}: {err}")),
    };
    info!("listening on http://{address}");

    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                error!("failed to accept a connection: {err}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };

        // hyper calls services through its own `Service` trait, so
        // `TowerToHyperService` adapts the tower stack to it.
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let served = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(err) = served {
                debug!(%peer, "connection closed with an error: {err}");
            }
        });
    }
}

/// Returns `ok` for `/health`, and otherwise the name of the key that
/// authenticated the request. The layer inserts [`KeyName`] only into
/// requests whose key it checked, so the exempt `/health` has none.
async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() == "/health" {
        return Ok(Response::new(Full::from("ok\n")));
    }

    let body = match request.extensions().get::<KeyName>() {
        Some(key) => format!("authenticated with the key named {key}\n"),
        None => "no key was checked for this request\n".to_owned(),
    };
    Ok(Response::new(Full::from(body)))
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
