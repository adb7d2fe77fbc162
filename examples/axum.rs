//! An axum router behind an API key, with CORS for a browser front end.
//!
//! ```text
//! cargo run --example axum
//! curl -i -H 'X-API-Key: demo-key-0123456789abcdef' localhost:3000/whoami
//! ```
//!
//! Environment:
//!
//! - `API_KEY`: the key clients send in `X-API-Key` or as
//!   `Authorization: Bearer`. Unset, it is `demo-key-0123456789abcdef`, a
//!   well-known key for trying the example on loopback and nothing else.
//! - `PORT`: the port to listen on at 127.0.0.1, 3000 by default.
//! - `RUST_LOG`: the log filter, `info` by default.
//!
//! Routes: `GET /health` needs no key, and `GET /whoami` returns the name of
//! the key that authenticated the request. Browser pages served from
//! `http://localhost:5173` may call both.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::routing::get;
use axum::{Extension, Router};
use tokio::net::TcpListener;
use tower_api_key::{ApiKeyLayer, KeyName};
use tower_http::cors::CorsLayer;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

/// The key used when `API_KEY` is unset. It is published in this file, so
/// it is fit only for a server on loopback.
const DEMO_KEY: &str = "demo-key-0123456789abcdef";

const DEFAULT_PORT: u16 = 3000;

/// The origin of the browser front end that may call this API.
const FRONT_END_ORIGIN: &str = "http://localhost:5173";

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
        .bearer(true)
        .exempt("/health")
        .require_key(true)
        .build()
    {
        Ok(auth) => auth,
        Err(err) => return fail(&format!("invalid API_KEY: {err}")),
    };

    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = match TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(err) => return fail(&format!("failed to listen on {address}: {err}")),
    };
    info!("listening on http://{address}");

    if let Err(err) = axum::serve(listener, app(auth)).await {
        return fail(&format!("server failed: {err}"));
    }
    ExitCode::SUCCESS
}

/// Builds the routes, with `auth` around them and CORS around both.
fn app(auth: ApiKeyLayer) -> Router {
    // The layer added last runs first. CORS goes outside the key check for
    // two reasons. Browsers send the preflight `OPTIONS` without the key, so
    // the CORS layer must respond to it before the check (tower-http 0.7's
    // `CorsLayer` responds to every `OPTIONS` itself). And a 401 must carry
    // `Access-Control-Allow-Origin`, or the page's script cannot read it and
    // gets only a network error.
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/whoami", get(whoami))
        .layer(auth)
        .layer(cors())
}

/// Allows the front end to send the key, in either header, with `GET`.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(HeaderValue::from_static(FRONT_END_ORIGIN))
        .allow_methods([Method::GET])
        .allow_headers([HeaderName::from_static("x-api-key"), header::AUTHORIZATION])
}

/// Returns the name of the key that authenticated the request. The layer
/// inserts [`KeyName`] into every request that it lets through with a key.
/// The extractor would fail with a 500 on an exempt path or with
/// authentication disabled, and this route is neither.
async fn whoami(Extension(key): Extension<KeyName>) -> String {
    format!("authenticated with the key named {key}\n")
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
