//! An in-memory "memories" REST API behind an API key.
//!
//! ```text
//! ADMIN_API_KEY='a-long-random-secret' cargo run --example server
//! curl -i -H 'X-API-Key: a-long-random-secret' 'localhost:8000/memories?user_id=alice'
//! ```
//!
//! Environment:
//!
//! - `ADMIN_API_KEY`: the key clients send in `X-API-Key`. `ADMIN_API_KEY_FILE`
//!   names a file to read it from instead. When neither is set, or the value is
//!   empty, the server runs without authentication and logs a warning.
//! - `BIND`: the socket address to listen on, `127.0.0.1:8000` by default.
//! - `RUST_LOG`: the log filter, `info` by default.
//!
//! The API is listed at `/docs` once the server runs.

mod app;

use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::net::TcpListener;
use tower_api_key::ApiKeyLayer;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

const DEFAULT_BIND: &str = "127.0.0.1:8000";

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();

    let address = match bind_address() {
        Ok(address) => address,
        Err(message) => return fail(&message),
    };

    let builder = ApiKeyLayer::builder().named_key_from_env("admin", "ADMIN_API_KEY");
    let layer = match app::configure_auth(builder).build() {
        Ok(layer) => layer,
        Err(err) => return fail(&format!("invalid API key configuration: {err}")),
    };
    let auth = if layer.is_enabled() { "on" } else { "off" };

    let listener = match TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(err) => return fail(&format!("failed to listen on {address}: {err}")),
    };
    let local_address = listener.local_addr().unwrap_or(address);
    info!(auth, "listening on http://{local_address}");

    let served = axum::serve(listener, app::app(layer))
        .with_graceful_shutdown(shutdown_signal())
        .await;
    if let Err(err) = served {
        return fail(&format!("server failed: {err}"));
    }

    info!("server stopped");
    ExitCode::SUCCESS
}

/// Sends logs to stdout, filtered by `RUST_LOG` or at `info` when it is unset.
fn init_logging() {
    let (filter, invalid) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, None),
        Err(err) if std::env::var_os(EnvFilter::DEFAULT_ENV).is_some() => {
            (EnvFilter::new("info"), Some(err))
        }
        Err(_) => (EnvFilter::new("info"), None),
    };
    tracing_subscriber::fmt().with_env_filter(filter).init();

    if let Some(err) = invalid {
        warn!("invalid RUST_LOG ignored, logging at info: {err}");
    }
}

/// Reads `BIND`, or returns the default address when it is unset.
fn bind_address() -> Result<SocketAddr, String> {
    let Some(value) = std::env::var_os("BIND") else {
        return Ok(DEFAULT_BIND.parse().expect("the default address is valid"));
    };

    let text = value.to_string_lossy();
    text.parse().map_err(|err| {
        format!(
            "invalid BIND value {text:?}: {err}. Set it to an IP address and port \
             such as {DEFAULT_BIND} or [::1]:8000."
        )
    })
}

/// Prints `message` to stderr and returns the failure exit code. Fatal errors
/// skip the log filter, so they show even with `RUST_LOG=off`.
fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// Completes on Ctrl-C or, on Unix, SIGTERM. When a handler cannot be
/// installed, the error is logged and the server waits on the other signal.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            error!("failed to listen for Ctrl-C: {err}");
            std::future::pending::<()>().await;
        }
    };

    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(err) => {
                error!("failed to listen for SIGTERM: {err}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => info!("received Ctrl-C, shutting down"),
        () = terminate => info!("received SIGTERM, shutting down"),
    }
}
