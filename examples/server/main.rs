//! An in-memory "memories" REST API behind an API key.
//!
//! ```text
//! ADMIN_API_KEY='a-long-random-secret' cargo run --example server
//! curl -i -H 'X-API-Key: a-long-random-secret' 'localhost:8000/memories?user_id=alice'
//! ```
//!
//! Environment:
//!
//! - `ADMIN_API_KEY`: a key clients send in `X-API-Key`, named `admin`.
//!   `ADMIN_API_KEY_FILE` names a file to read it from instead.
//! - `API_KEYS_FILE`: a file of named keys, one `name:key` per line, with
//!   blank lines and `#` comments allowed. It may not name a key `admin`
//!   while `ADMIN_API_KEY` is set.
//! - `BIND`: the socket address to listen on, `127.0.0.1:8000` by default.
//! - `RUST_LOG`: the log filter, `info` by default. With `info,server=debug`,
//!   each accepted request is logged with its key's name.
//!
//! When none of `ADMIN_API_KEY`, `ADMIN_API_KEY_FILE` and `API_KEYS_FILE`
//! sets a key, the server runs without authentication and logs a warning.
//!
//! On SIGHUP (Unix only), the server reads `API_KEYS_FILE` again and swaps in
//! its keys plus the admin key read at startup. If the file is invalid, the
//! server keeps its keys and logs why. A file cut short in the middle of a
//! write can still be valid, with fewer keys, so replace it atomically: write
//! a new file and rename it over the old one. `GET /whoami` returns the name
//! of the key a request was sent with.
//!
//! The API is listed at `/docs` once the server runs.

mod app;

use std::net::SocketAddr;
use std::process::ExitCode;

use app::keys::{ADMIN_KEY_VAR, KEYS_FILE_VAR, KeySources};
use tokio::net::TcpListener;
use tower_api_key::{ApiKeyLayer, KeySetHandle};
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

    let (sources, layer) = match build_auth() {
        Ok(configured) => configured,
        Err(message) => return fail(&message),
    };
    let auth = if layer.is_enabled() { "on" } else { "off" };
    if !layer.is_enabled() {
        info!(
            "to enable authentication, set {ADMIN_KEY_VAR}, {ADMIN_KEY_VAR}_FILE or {KEYS_FILE_VAR}"
        );
    }

    // Installed before the port opens, so that a SIGHUP sent once the server
    // accepts connections never meets the default action, which ends the
    // process.
    reload_on_hangup(sources, layer.key_set_handle());

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

/// Reads the key sources and builds the layer from the keys they contain now.
/// Returns the message to print when the configuration is invalid.
fn build_auth() -> Result<(KeySources, ApiKeyLayer), String> {
    let invalid = |err: &dyn std::fmt::Display| format!("invalid API key configuration: {err}");

    let sources = KeySources::from_env().map_err(|err| invalid(&err))?;
    let keys = sources.load().map_err(|err| invalid(&err))?;
    let layer = app::configure_auth(ApiKeyLayer::builder().key_set(keys))
        .build()
        .map_err(|err| invalid(&err))?;
    Ok((sources, layer))
}

/// Reloads the keys through `handle` on every SIGHUP, in a task of its own.
/// When the handler cannot be installed, the error is logged and the server
/// runs without reloads.
#[cfg(unix)]
fn reload_on_hangup(sources: KeySources, handle: Option<KeySetHandle>) {
    use tokio::signal::unix::{SignalKind, signal};

    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(stream) => stream,
        Err(err) => {
            error!("failed to listen for SIGHUP, so keys cannot be reloaded: {err}");
            return;
        }
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            info!("received SIGHUP");
            sources.reload(handle.as_ref());
        }
    });
}

/// Without SIGHUP there is no reload: the keys stay as loaded at startup.
#[cfg(not(unix))]
fn reload_on_hangup(_sources: KeySources, _handle: Option<KeySetHandle>) {}

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
