//! The sources of the server's API keys, and their reload.
//!
//! The key set is the named keys of the file in `API_KEYS_FILE`, plus the
//! key in `ADMIN_API_KEY` (or in the file named by `ADMIN_API_KEY_FILE`)
//! under the name `admin`. [`KeySources::reload`] reads the key file again
//! and keeps the admin key read at startup, so a changed `ADMIN_API_KEY`
//! takes effect only after a restart.

use std::fmt;
use std::path::PathBuf;

use tower_api_key::{ConfigError, KeyName, KeySet, KeySetHandle};
use tracing::{error, info};

/// Variable that contains the admin key. `ADMIN_API_KEY_FILE` names a file to
/// read it from instead.
pub const ADMIN_KEY_VAR: &str = "ADMIN_API_KEY";

/// Variable that names the file of named keys, one `name:key` per line.
pub const KEYS_FILE_VAR: &str = "API_KEYS_FILE";

/// Name of the key read from [`ADMIN_KEY_VAR`]. The key file may not use it
/// while that key is set.
pub const ADMIN_KEY_NAME: &str = "admin";

/// The admin key, read once, and the path of the key file, read on every
/// [`load`](Self::load).
#[derive(Debug)]
pub struct KeySources {
    /// The admin key, or an empty set when neither variable sets one.
    admin: KeySet,
    keys_file: Option<PathBuf>,
}

/// A key configuration the server cannot use. No message contains a key.
#[derive(Debug)]
pub enum KeysError {
    /// `ADMIN_API_KEY` or `ADMIN_API_KEY_FILE` is set to an unusable key.
    Admin(ConfigError),
    /// The key file cannot be read, contains no key, or has an invalid line.
    KeysFile(ConfigError),
    /// The key file has a key named `admin` while the admin key is set.
    AdminInKeysFile { path: PathBuf },
}

impl KeySources {
    /// Reads the admin key from `ADMIN_API_KEY` or `ADMIN_API_KEY_FILE`, and
    /// the key file's path from `API_KEYS_FILE`. An empty `API_KEYS_FILE`
    /// counts as unset.
    ///
    /// The key file itself is read by [`load`](Self::load).
    pub fn from_env() -> Result<Self, KeysError> {
        let mut admin = KeySet::new();
        admin
            .insert_from_env(ADMIN_KEY_NAME, ADMIN_KEY_VAR)
            .map_err(KeysError::Admin)?;

        let keys_file = std::env::var_os(KEYS_FILE_VAR)
            .filter(|path| !path.is_empty())
            .map(PathBuf::from);
        Ok(Self { admin, keys_file })
    }

    /// Reads the key file, when one is set, and adds the admin key.
    ///
    /// Returns an empty set when neither is configured, which disables
    /// authentication.
    pub fn load(&self) -> Result<KeySet, KeysError> {
        let Some(path) = &self.keys_file else {
            return Ok(self.admin.clone());
        };

        let mut keys = KeySet::from_file(path).map_err(KeysError::KeysFile)?;

        // The admin set contains at most the one name `admin`, so a duplicate
        // name can only be that one.
        keys.merge(self.admin.clone())
            .map_err(|_| KeysError::AdminInKeysFile { path: path.clone() })?;
        Ok(keys)
    }

    /// Reads the key file again and replaces the keys behind `handle`, as
    /// the server does on SIGHUP.
    ///
    /// Logs the outcome. On success, [`KeySetHandle::replace`] logs the
    /// number and names of the new keys. When the file is invalid, the
    /// handle keeps its keys and the error is logged. When authentication is
    /// disabled (`handle` is `None`) or `API_KEYS_FILE` is unset, there is
    /// nothing to read and nothing changes.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub fn reload(&self, handle: Option<&KeySetHandle>) {
        let Some(handle) = handle else {
            info!(
                "authentication is disabled, so there are no keys to reload; set {ADMIN_KEY_VAR}, \
                 {ADMIN_KEY_VAR}_FILE or {KEYS_FILE_VAR} and restart to enable it"
            );
            return;
        };
        let Some(path) = &self.keys_file else {
            info!(
                "{KEYS_FILE_VAR} is not set, so there are no keys to reload; \
                 {ADMIN_KEY_VAR} is read only at startup"
            );
            return;
        };

        info!(path = %path.display(), "reloading API keys from {KEYS_FILE_VAR}");
        match self.load() {
            Ok(keys) => handle.replace(keys),
            Err(err) => {
                let kept_names: Vec<String> =
                    handle.load().names().map(KeyName::to_string).collect();
                error!(
                    keys = kept_names.len(),
                    names = ?kept_names,
                    "failed to reload API keys, keeping the previous {} key(s): {err}",
                    kept_names.len(),
                );
            }
        }
    }
}

impl fmt::Display for KeysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Admin(err) => write!(f, "{err}"),
            Self::KeysFile(err) => write!(f, "{KEYS_FILE_VAR}: {err}"),
            Self::AdminInKeysFile { path } => write!(
                f,
                "{KEYS_FILE_VAR}: the key file {} has a key named `{ADMIN_KEY_NAME}`, the name of \
                 the key in {ADMIN_KEY_VAR} or {ADMIN_KEY_VAR}_FILE; rename the key in the file, \
                 or unset {ADMIN_KEY_VAR} and {ADMIN_KEY_VAR}_FILE",
                path.display()
            ),
        }
    }
}
