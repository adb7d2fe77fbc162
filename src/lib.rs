//! API-key authentication for [tower](https://docs.rs/tower) services: axum routers, hyper 1
//! services, tonic servers.
//!
//! [`ApiKeyLayer`] checks that each request carries exactly one `X-API-Key`
//! header equal to a configured key. Requests without one get
//! `401 Unauthorized` with `WWW-Authenticate: ApiKey` and an
//! `application/problem+json` body, and never reach the inner service.
//! Exempt paths (a docs page, a health check) pass without a key. With no
//! key configured, every request passes and the layer logs a warning that
//! the service is UNSECURED.
//!
//! # Example
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//! use tower_api_key::ApiKeyLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let auth = ApiKeyLayer::builder()
//!     .key("5d41402abc4b2a76b9719d911017c592")
//!     .exempt("/health")
//!     .build()?;
//!
//! let app = Router::new()
//!     .route("/health", get(|| async { "ok" }))
//!     .route("/memories", get(|| async { "[]" }))
//!     .layer(auth);
//!
//! let request = Request::get("/health").body(Body::empty())?;
//! assert_eq!(app.clone().oneshot(request).await?.status(), StatusCode::OK);
//!
//! let request = Request::get("/memories").body(Body::empty())?;
//! let response = app.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()["www-authenticate"], "ApiKey");
//!
//! let request = Request::get("/memories")
//!     .header("x-api-key", "5d41402abc4b2a76b9719d911017c592")
//!     .body(Body::empty())?;
//! assert_eq!(app.oneshot(request).await?.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! ```
//!
//! # Behaviour
//!
//! | request | result |
//! |---|---|
//! | authentication disabled | forwarded |
//! | path exempt | forwarded, with or without a key |
//! | no credential header | `401`, detail names the header |
//! | one header, value not equal to any key (empty, prefix, other case, padded) | `401`, "Invalid API key." |
//! | the header more than once | `401`, ambiguous |
//! | exactly one header equal to a key | forwarded, with the key's [`KeyName`] in the extensions |
//!
//! Configuration problems are [`ConfigError`]s at construction: a key with
//! surrounding whitespace, control characters or non-visible-ASCII bytes, an
//! unreadable or empty key file, an exempt path that could not be matched
//! safely. Messages name the setting and never the key.
//!
//! # Security
//!
//! - Keys are compared in constant time with respect to the presented value,
//!   and every configured key is compared on every request; see [`KeySet`].
//! - Exemption is decided on `uri.path()` alone. Exact entries compare raw
//!   bytes. Prefix entries match at a segment boundary and never cover a
//!   path with dot or empty segments, backslashes, `;`, encoded `.`, `/`,
//!   `\` or `%`, malformed escapes, or escapes that are not UTF-8. No
//!   request header turns authentication off.
//! - `Debug` output redacts keys; logs carry key names, never keys. The
//!   credential header is marked sensitive before it is forwarded.
//! - The layer does not encrypt anything: serve it behind TLS, or keys
//!   travel in clear text.
//!
//! # Logging
//!
//! Through [`tracing`]: once at construction (enabled, disabled, short
//! keys), and a `debug!` for each rejection with method, path and reason.
//!
//! # Feature flags
//!
//! - `hashed-keys` (off by default): keys configured as `sha256:<64 hex
//!   digits>` are stored as that digest, so the plaintext never sits in the
//!   environment or a file. Adds RustCrypto's `sha2` as a dependency.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod credential;
mod env;
mod error;
mod exempt;
mod future;
mod key;
mod layer;
mod rejection;
mod service;

pub use builder::ApiKeyLayerBuilder;
pub use error::{ConfigError, KeyProblem};
pub use future::{ResponseBody, ResponseFuture};
pub use key::{KeyName, KeySet, KeySetHandle};
pub use layer::ApiKeyLayer;
pub use rejection::RejectionReason;
pub use service::ApiKeyAuth;
