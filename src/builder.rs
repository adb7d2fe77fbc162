//! The builder that validates a configuration and logs it once.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderName, Response};

use crate::credential::Sources;
use crate::error::ConfigError;
use crate::exempt::ExemptPaths;
use crate::key::{KeyName, KeySet, KeySetHandle, RECOMMENDED_MIN_LEN};
use crate::layer::{ApiKeyLayer, Settings};
use crate::rejection::{DefaultRejection, RejectFn, Rejecter, RejectionReason};

/// The header that carries the key unless configured otherwise.
pub(crate) const DEFAULT_HEADER: &str = "X-API-Key";

/// The name given to a key configured without one.
pub(crate) const DEFAULT_KEY_NAME: &str = "default";

/// Builds an [`ApiKeyLayer`].
///
/// Setters never fail. [`build`](Self::build) validates everything at once,
/// returns the first problem as a [`ConfigError`], and logs the resulting
/// configuration.
///
/// ```
/// use tower_api_key::ApiKeyLayer;
///
/// let layer = ApiKeyLayer::builder()
///     .named_key("ci", "ci-0123456789abcdef")
///     .named_key("ops", "ops-0123456789abcdef")
///     .exempt("/health")
///     .exempt_prefix("/static")
///     .build()
///     .unwrap();
/// assert!(layer.is_enabled());
///
/// let error = ApiKeyLayer::builder()
///     .key("ci-0123456789abcdef")
///     .exempt("health")
///     .build()
///     .unwrap_err();
/// assert!(error.to_string().contains("must start with \"/\""));
/// ```
#[must_use]
#[derive(Clone, Default)]
pub struct ApiKeyLayerBuilder {
    keys: Vec<KeySource>,
    header: Option<String>,
    bearer: bool,
    query_param: Option<String>,
    exempt: Vec<Exempt>,
    allow_cors_preflight: bool,
    strip_credential: bool,
    require_key: bool,
    realm: Option<String>,
    rejection: Option<Arc<RejectFn>>,
}

#[derive(Clone)]
enum KeySource {
    Literal { name: String, secret: String },
    Env { name: String, var: String },
    File(PathBuf),
    Set(KeySet),
}

#[derive(Debug, Clone)]
enum Exempt {
    Exact(String),
    Prefix(String),
}

impl ApiKeyLayerBuilder {
    /// Creates a builder with no key, the `X-API-Key` header and no exempt
    /// paths.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key named `default`.
    ///
    /// An empty or whitespace-only key counts as no key, as an unset
    /// environment variable does.
    pub fn key(self, secret: impl Into<String>) -> Self {
        self.named_key(DEFAULT_KEY_NAME, secret)
    }

    /// Adds a key under a name. The name, never the key, appears in logs and
    /// in the [`KeyName`] of the requests it authenticates.
    pub fn named_key(mut self, name: impl Into<String>, secret: impl Into<String>) -> Self {
        self.keys.push(KeySource::Literal {
            name: name.into(),
            secret: secret.into(),
        });
        self
    }

    /// Adds the key found in the environment variable `var`, or in the file
    /// named by `{var}_FILE`, under the name `default`.
    ///
    /// Both are read by [`build`](Self::build). Unset, empty or
    /// whitespace-only counts as no key. A file loses one trailing line
    /// break; an empty file, an unreadable file, or both variables set is
    /// an error.
    pub fn key_from_env(self, var: impl Into<String>) -> Self {
        self.named_key_from_env(DEFAULT_KEY_NAME, var)
    }

    /// Adds the key found in `var` or `{var}_FILE` under a name; see
    /// [`key_from_env`](Self::key_from_env).
    pub fn named_key_from_env(mut self, name: impl Into<String>, var: impl Into<String>) -> Self {
        self.keys.push(KeySource::Env {
            name: name.into(),
            var: var.into(),
        });
        self
    }

    /// Adds every key of a prepared [`KeySet`].
    pub fn key_set(mut self, keys: KeySet) -> Self {
        self.keys.push(KeySource::Set(keys));
        self
    }

    /// Adds every key of a key file; see [`KeySet::from_file`] for the
    /// format. The file is read by [`build`](Self::build).
    pub fn key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.keys.push(KeySource::File(path.into()));
        self
    }

    /// Sets the header that carries the key. Defaults to `X-API-Key`.
    ///
    /// The name is matched case-insensitively, as HTTP requires, and is
    /// written as given in rejection messages.
    pub fn header_name(mut self, name: impl Into<String>) -> Self {
        self.header = Some(name.into());
        self
    }

    /// Also accepts the key as `Authorization: Bearer <key>`. Off by
    /// default.
    ///
    /// The scheme is matched case-insensitively and the token exactly. A
    /// request that sends the key header and a bearer token with different
    /// values is rejected as ambiguous; other `Authorization` schemes are
    /// ignored.
    pub fn bearer(mut self, accept: bool) -> Self {
        self.bearer = accept;
        self
    }

    /// Also accepts the key in the query parameter `name`, such as
    /// `?api_key=...`. Off by default, and insecure: URLs, with their query,
    /// end up in access logs, browser history and `Referer` headers, so the
    /// key leaks. [`build`](Self::build) logs a warning when this is set.
    ///
    /// The value is percent-decoded before it is compared. The parameter
    /// name may contain ASCII letters, digits, `-`, `_`, `.` and `~`.
    pub fn insecure_query_param(mut self, name: impl Into<String>) -> Self {
        self.query_param = Some(name.into());
        self
    }

    /// Exempts one path, compared byte for byte with the request's path.
    ///
    /// `/docs` exempts `/docs` alone: not `/docs/`, `/DOCS`, `/docs;x` or
    /// `/docs/x`. The query string never matters.
    pub fn exempt(mut self, path: impl Into<String>) -> Self {
        self.exempt.push(Exempt::Exact(path.into()));
        self
    }

    /// Exempts a path and everything below it, at a segment boundary.
    ///
    /// `/static` exempts `/static` and `/static/app.js`, never
    /// `/staticfoo`. A server behind the layer could resolve some paths
    /// under the prefix to a path outside it, so those are not exempt. They
    /// are paths with dot or empty segments, a backslash, a `;`, a
    /// percent-encoded `.`, `/`, `\` or `%`, a malformed escape, or escapes
    /// that do not decode to UTF-8.
    pub fn exempt_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.exempt.push(Exempt::Prefix(prefix.into()));
        self
    }

    /// Lets CORS preflight requests through without a key. Off by default.
    ///
    /// A preflight is an `OPTIONS` request with both an `Origin` and an
    /// `Access-Control-Request-Method` header; browsers never send
    /// credentials on it. Set this only when a CORS layer sits inside this
    /// one and must respond to preflights. With the CORS layer outside, as
    /// recommended, it responds to them before they reach this layer. Any other
    /// `OPTIONS` request is checked like a `GET`.
    pub fn allow_cors_preflight(mut self, allow: bool) -> Self {
        self.allow_cors_preflight = allow;
        self
    }

    /// Sets the realm of the default rejection's challenge:
    /// `WWW-Authenticate: ApiKey realm="<realm>"`.
    ///
    /// The realm may contain visible ASCII and spaces, but no `"` or `\`.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Replaces the default rejection with a response of your own.
    ///
    /// The function receives why the request was rejected and the rejected
    /// request's head. The inner service is still never called. gRPC
    /// requests (`content-type: application/grpc...`) keep the built-in
    /// gRPC rejection, because gRPC clients read any other response as a
    /// protocol error.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http::{Response, StatusCode};
    /// use tower_api_key::{ApiKeyLayer, RejectionReason};
    ///
    /// let layer = ApiKeyLayer::builder()
    ///     .key("0123456789abcdef0123")
    ///     .rejection(|reason: RejectionReason, _request: &http::request::Parts| {
    ///         let mut response = Response::new(Bytes::from(format!("no entry: {reason}")));
    ///         *response.status_mut() = StatusCode::FORBIDDEN;
    ///         response
    ///     })
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn rejection<F>(mut self, reject: F) -> Self
    where
        F: Fn(RejectionReason, &Parts) -> Response<Bytes> + Send + Sync + 'static,
    {
        self.rejection = Some(Arc::new(reject));
        self
    }

    /// Removes the credential header before the request reaches the inner
    /// service, so that handlers, logs and upstream proxies behind it never
    /// see the key. Off by default; the header is always marked
    /// [sensitive](http::HeaderValue::set_sensitive).
    pub fn strip_credential(mut self, strip: bool) -> Self {
        self.strip_credential = strip;
        self
    }

    /// Makes [`build`](Self::build) fail when no key is configured, instead
    /// of building a layer that lets every request through.
    pub fn require_key(mut self, require: bool) -> Self {
        self.require_key = require;
        self
    }

    /// Validates the configuration, logs it, and builds the layer.
    ///
    /// Logs once, through `tracing`. With keys, an `info!` names the
    /// credential sources, the number and names of the keys and the exempt
    /// paths, and a `warn!` names each key shorter than 16 characters.
    /// Without a key, a `warn!` states that the service is UNSECURED.
    ///
    /// # Errors
    ///
    /// Returns a [`ConfigError`] naming the setting at fault. It never
    /// contains a key.
    pub fn build(self) -> Result<ApiKeyLayer, ConfigError> {
        let header_display = self.header.as_deref().unwrap_or(DEFAULT_HEADER);
        let header = HeaderName::from_bytes(header_display.as_bytes()).map_err(|_| {
            ConfigError::InvalidHeaderName {
                name: header_display.to_owned(),
            }
        })?;

        if let Some(param) = &self.query_param {
            check_query_param(param)?;
        }
        if let Some(realm) = &self.realm {
            check_realm(realm)?;
        }

        let mut exempt = ExemptPaths::default();
        for entry in &self.exempt {
            match entry {
                Exempt::Exact(path) => exempt.add_exact(path)?,
                Exempt::Prefix(prefix) => exempt.add_prefix(prefix)?,
            }
        }

        let (keys, checked) = self.collect_keys()?;

        if keys.is_empty() {
            if self.require_key {
                return Err(ConfigError::KeyRequired { settings: checked });
            }
            log_disabled(&checked);
            return Ok(ApiKeyLayer::from_settings(Arc::new(Settings::disabled())));
        }

        let sources = Sources {
            header,
            bearer: self.bearer,
            query: self.query_param.as_deref().map(Into::into),
        };
        let description = describe_sources(header_display, &sources);
        log_enabled(&description, &keys, &exempt);
        if let Some(param) = &sources.query {
            tracing::warn!(
                param = &**param,
                "API keys are also accepted in the query parameter `{param}`; \
                 URLs end up in access logs and browser history, so keys sent this way leak"
            );
        }

        let rejecter = Rejecter::new(
            DefaultRejection::new(&description, self.realm.as_deref()),
            self.rejection,
        );
        let settings = Settings {
            keys: Some(KeySetHandle::new(keys)),
            sources,
            exempt,
            allow_cors_preflight: self.allow_cors_preflight,
            strip_credential: self.strip_credential,
            rejecter,
        };
        Ok(ApiKeyLayer::from_settings(Arc::new(settings)))
    }

    /// Resolves every key source. Returns the keys found and the settings
    /// that were looked at, for the message when none contains a key.
    fn collect_keys(&self) -> Result<(KeySet, Vec<String>), ConfigError> {
        let mut keys = KeySet::new();
        let mut checked = Vec::new();

        for source in &self.keys {
            match source {
                KeySource::Literal { name, secret } => {
                    // A blank literal key is "no key", like a blank variable.
                    if secret.trim().is_empty() {
                        continue;
                    }
                    let name = KeyName::new(name.clone())?;
                    let setting = format!("key `{name}`");
                    keys.insert_checked(name, &setting, secret, None)?;
                }
                KeySource::Env { name, var } => {
                    checked.push(format!("{var} or {var}_FILE"));
                    keys.insert_from_env(name.clone(), var)?;
                }
                KeySource::File(path) => {
                    keys.merge(KeySet::from_file(path)?)?;
                }
                KeySource::Set(set) => {
                    keys.merge(set.clone())?;
                }
            }
        }
        Ok((keys, checked))
    }
}

/// Names where the key may be sent, for rejection details and logs.
fn describe_sources(header: &str, sources: &Sources) -> String {
    let mut description = format!("the {header} header");
    if sources.bearer {
        description.push_str(" or as an Authorization: Bearer token");
    }
    if let Some(param) = &sources.query {
        description.push_str(&format!(" or in the {param} query parameter"));
    }
    description
}

/// Parameter names are restricted to URL-unreserved characters, so they
/// match without decoding and need no escaping in messages.
fn check_query_param(param: &str) -> Result<(), ConfigError> {
    let valid = !param.is_empty()
        && param
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte));
    if valid {
        Ok(())
    } else {
        Err(ConfigError::InvalidQueryParam {
            name: param.to_owned(),
        })
    }
}

/// Rejects a realm with quotes, backslashes or control characters, because
/// it becomes a quoted string in a header.
fn check_realm(realm: &str) -> Result<(), ConfigError> {
    let valid = realm.bytes().all(|byte| {
        (byte == b' ' || crate::key::is_visible_ascii(byte)) && byte != b'"' && byte != b'\\'
    });
    if valid {
        Ok(())
    } else {
        Err(ConfigError::InvalidRealm {
            realm: realm.to_owned(),
        })
    }
}

fn log_disabled(checked: &[String]) {
    if checked.is_empty() {
        tracing::warn!(
            "API key authentication is disabled: no API key is configured, \
             so every request reaches the service UNSECURED"
        );
    } else {
        let settings = checked.join(", ");
        tracing::warn!(
            settings = %settings,
            "API key authentication is disabled: no API key is configured in {settings}, \
             so every request reaches the service UNSECURED; set one to enable authentication"
        );
    }
}

fn log_enabled(sources: &str, keys: &KeySet, exempt: &ExemptPaths) {
    let exempt = exempt.describe();
    let names: Vec<&str> = keys.names().map(KeyName::as_str).collect();
    tracing::info!(
        sources,
        keys = names.len(),
        names = ?names,
        exempt = ?exempt,
        "API key authentication enabled: key in {sources}, {} key(s), exempt paths {exempt:?}",
        names.len(),
    );

    warn_short_keys(keys);
}

/// Warns once for each plaintext key shorter than 16 characters.
pub(crate) fn warn_short_keys(keys: &KeySet) {
    for name in keys.short_keys() {
        tracing::warn!(
            key = %name,
            "the API key `{name}` is shorter than {RECOMMENDED_MIN_LEN} characters; \
             use a random key of at least 32 characters"
        );
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Literal { name, .. } => f
                .debug_struct("Literal")
                .field("name", name)
                .field("secret", &"[redacted]")
                .finish(),
            Self::Env { name, var } => f
                .debug_struct("Env")
                .field("name", name)
                .field("var", var)
                .finish(),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Set(set) => f.debug_tuple("Set").field(set).finish(),
        }
    }
}

impl fmt::Debug for ApiKeyLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyLayerBuilder")
            .field("keys", &self.keys)
            .field("header", &self.header)
            .field("bearer", &self.bearer)
            .field("query_param", &self.query_param)
            .field("exempt", &self.exempt)
            .field("allow_cors_preflight", &self.allow_cors_preflight)
            .field("strip_credential", &self.strip_credential)
            .field("require_key", &self.require_key)
            .field("realm", &self.realm)
            .field("rejection", &self.rejection.as_ref().map(|_| ".."))
            .finish()
    }
}
