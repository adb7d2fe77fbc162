//! [`ApiKeyLayer`] and the settings it shares with every service it builds.

use std::fmt;
use std::sync::Arc;

use http::HeaderName;
use tower_layer::Layer;

use crate::builder::{ApiKeyLayerBuilder, DEFAULT_HEADER};
use crate::credential::Sources;
use crate::error::ConfigError;
use crate::exempt::ExemptPaths;
use crate::key::KeySetHandle;
use crate::rejection::{DefaultRejection, Rejecter};
use crate::service::ApiKeyAuth;

/// A [`Layer`] that requires an API key on every request to a non-exempt
/// path.
///
/// Build one with [`new`](Self::new) for a single key,
/// [`from_env`](Self::from_env) for a key from the environment, or
/// [`builder`](Self::builder) for named keys, exempt paths and another
/// header. Cloning is cheap: the settings are shared.
///
/// ```
/// use axum::{Router, body::Body, routing::get};
/// use http::{Request, StatusCode};
/// use tower::ServiceExt;
/// use tower_api_key::ApiKeyLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let app = Router::new()
///     .route("/memories", get(|| async { "[]" }))
///     .layer(ApiKeyLayer::new("0123456789abcdef0123").unwrap());
///
/// let request = Request::get("/memories").body(Body::empty()).unwrap();
/// let response = app.clone().oneshot(request).await.unwrap();
/// assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(response.headers()["www-authenticate"], "ApiKey");
///
/// let request = Request::get("/memories")
///     .header("x-api-key", "0123456789abcdef0123")
///     .body(Body::empty())
///     .unwrap();
/// let response = app.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), StatusCode::OK);
/// # }
/// ```
#[derive(Clone)]
pub struct ApiKeyLayer {
    settings: Arc<Settings>,
}

/// Everything a service needs per request, fixed at construction.
pub(crate) struct Settings {
    /// `None` when authentication is disabled.
    pub(crate) keys: Option<KeySetHandle>,
    pub(crate) sources: Sources,
    pub(crate) exempt: ExemptPaths,
    pub(crate) allow_cors_preflight: bool,
    pub(crate) strip_credential: bool,
    pub(crate) rejecter: Rejecter,
}

impl Settings {
    pub(crate) fn disabled() -> Self {
        Self {
            keys: None,
            sources: Sources {
                header: HeaderName::from_static("x-api-key"),
                bearer: false,
                query: None,
            },
            exempt: ExemptPaths::default(),
            allow_cors_preflight: false,
            strip_credential: false,
            rejecter: Rejecter::new(
                DefaultRejection::new(&format!("the {DEFAULT_HEADER} header"), None),
                None,
            ),
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `KeySet`'s own `Debug` prints names and redacts the keys.
        f.debug_struct("Settings")
            .field("keys", &self.keys)
            .field("sources", &self.sources)
            .field("exempt", &self.exempt.describe())
            .field("allow_cors_preflight", &self.allow_cors_preflight)
            .field("strip_credential", &self.strip_credential)
            .field("rejecter", &self.rejecter)
            .finish()
    }
}

impl ApiKeyLayer {
    /// Creates a builder; see [`ApiKeyLayerBuilder`].
    pub fn builder() -> ApiKeyLayerBuilder {
        ApiKeyLayerBuilder::new()
    }

    /// Creates a layer that accepts one key in the `X-API-Key` header.
    ///
    /// An empty or whitespace-only key disables authentication, with a
    /// warning, as an unset environment variable does.
    ///
    /// # Errors
    ///
    /// Returns [`ConfigError::InvalidKey`] when no client could send the key
    /// unchanged: it has leading or trailing whitespace, control characters,
    /// spaces, or characters outside visible ASCII.
    pub fn new(key: impl Into<String>) -> Result<Self, ConfigError> {
        Self::builder().key(key).build()
    }

    /// Creates a layer from the environment variable `var`, or from the
    /// file named by `{var}_FILE`.
    ///
    /// Unset, empty or whitespace-only means authentication is disabled,
    /// with a warning. See
    /// [`ApiKeyLayerBuilder::key_from_env`] for the file rules.
    ///
    /// # Errors
    ///
    /// Returns a [`ConfigError`] when the key is unusable, the file cannot
    /// be read or is empty, or both variables are set.
    pub fn from_env(var: &str) -> Result<Self, ConfigError> {
        Self::builder().key_from_env(var).build()
    }

    /// Creates a layer that lets every request through.
    ///
    /// Logs a `warn!` that the service is UNSECURED, so that a deployment
    /// that forgot its key is visible in its logs.
    pub fn disabled() -> Self {
        tracing::warn!(
            "API key authentication is disabled by ApiKeyLayer::disabled(), \
             so every request reaches the service UNSECURED"
        );
        Self::from_settings(Arc::new(Settings::disabled()))
    }

    pub(crate) fn from_settings(settings: Arc<Settings>) -> Self {
        Self { settings }
    }

    /// Returns `true` when authentication is enabled: at least one key was
    /// configured.
    pub fn is_enabled(&self) -> bool {
        self.settings.keys.is_some()
    }

    /// Returns the handle through which the keys of this layer, and of every
    /// service it built, can be replaced while they run. `None` when
    /// authentication is disabled, which cannot be changed at run time.
    pub fn key_set_handle(&self) -> Option<KeySetHandle> {
        self.settings.keys.clone()
    }
}

impl<S> Layer<S> for ApiKeyLayer {
    type Service = ApiKeyAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiKeyAuth::from_settings(inner, Arc::clone(&self.settings))
    }
}

impl fmt::Debug for ApiKeyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyLayer")
            .field("settings", &self.settings)
            .finish()
    }
}
