//! The builder that validates a configuration and logs it once.

use std::fmt;
use std::sync::Arc;

use http::HeaderName;

use crate::env;
use crate::error::ConfigError;
use crate::exempt::ExemptPaths;
use crate::key::{self, KeyName, KeySet, RECOMMENDED_MIN_LEN};
use crate::layer::{ApiKeyLayer, Settings};
use crate::rejection::DefaultRejection;

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
    key_set: Option<KeySet>,
    header: Option<String>,
    exempt: Vec<Exempt>,
    strip_credential: bool,
    require_key: bool,
}

#[derive(Clone)]
enum KeySource {
    Literal { name: String, secret: String },
    Env { name: String, var: String },
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
        self.key_set = Some(keys);
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
    /// `/staticfoo`. A path under the prefix that contains dot or empty
    /// segments, a backslash, a `;`, or a percent-encoded `.`, `/`, `\` or
    /// `%` is not exempt, because a server behind the layer could resolve it
    /// to a path outside the prefix.
    pub fn exempt_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.exempt.push(Exempt::Prefix(prefix.into()));
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
    /// Logs once, through `tracing`: an `info!` with the header, the number
    /// of keys and the exempt paths; or, with no key, a `warn!` that the
    /// service is UNSECURED; and a `warn!` for each key shorter than 16
    /// characters.
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

        let mut exempt = ExemptPaths::default();
        for entry in &self.exempt {
            match entry {
                Exempt::Exact(path) => exempt.add_exact(path)?,
                Exempt::Prefix(prefix) => exempt.add_prefix(prefix)?,
            }
        }

        let (keys, checked) = self.collect_keys()?;

        let settings = if keys.is_empty() {
            if self.require_key {
                return Err(ConfigError::KeyRequired { settings: checked });
            }
            log_disabled(&checked);
            Settings::disabled()
        } else {
            log_enabled(header_display, &keys, &exempt);
            Settings {
                keys: Some(keys),
                rejection: DefaultRejection::new(header_display),
                header,
                exempt,
                strip_credential: self.strip_credential,
            }
        };

        Ok(ApiKeyLayer::from_settings(Arc::new(settings)))
    }

    /// Resolves every key source. Returns the keys found and the settings
    /// that were looked at, for the message when none holds a key.
    fn collect_keys(&self) -> Result<(KeySet, Vec<String>), ConfigError> {
        let mut keys = self.key_set.clone().unwrap_or_default();
        let mut checked = Vec::new();

        for source in &self.keys {
            let (name, secret, setting) = match source {
                KeySource::Literal { name, secret } => {
                    (name, secret.clone(), format!("key `{name}`"))
                }
                KeySource::Env { name, var } => {
                    checked.push(format!("{var} or {var}_FILE"));
                    match env::read_key(var)? {
                        Some(found) => (name, found.secret, found.setting),
                        None => continue,
                    }
                }
            };

            // A blank literal key is "no key", like a blank variable.
            if secret.trim().is_empty() {
                continue;
            }

            let name = KeyName::new(name.clone())?;
            key::check_secret(&setting, &secret)?;
            keys.push(name, secret)?;
        }
        Ok((keys, checked))
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

fn log_enabled(header: &str, keys: &KeySet, exempt: &ExemptPaths) {
    let exempt = exempt.describe();
    tracing::info!(
        header,
        keys = keys.len(),
        exempt = ?exempt,
        "API key authentication enabled: header {header}, {} key(s), exempt paths {exempt:?}",
        keys.len(),
    );

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
        }
    }
}

impl fmt::Debug for ApiKeyLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyLayerBuilder")
            .field("keys", &self.keys)
            .field("key_set", &self.key_set)
            .field("header", &self.header)
            .field("exempt", &self.exempt)
            .field("strip_credential", &self.strip_credential)
            .field("require_key", &self.require_key)
            .finish()
    }
}
