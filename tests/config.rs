//! Configuration errors: keys no client could send, `*_FILE` key files,
//! and blank keys that disable authentication.
//!
//! Every error must name the setting and the problem, and never the key.
//! Every test uses its own environment variable names, and changes or
//! reads the environment only while holding [`ENV_LOCK`], because changing
//! it while another thread reads it is undefined behaviour on some
//! platforms.

mod support;

use std::convert::Infallible;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{ServiceExt, service_fn};
use tower_api_key::{ApiKeyAuth, ApiKeyLayer, ConfigError, KeyProblem};
use tracing::Level;

use support::{KEY, LogCapture};

static ENV_LOCK: Mutex<()> = Mutex::new(());

/// Sets (`Some`) or removes (`None`) each variable, runs `build`, and
/// removes the variables again.
fn with_env<T>(settings: &[(&str, Option<&OsStr>)], build: impl FnOnce() -> T) -> T {
    let _guard = ENV_LOCK.lock().unwrap_or_else(PoisonError::into_inner);

    for (name, value) in settings {
        // SAFETY: ENV_LOCK is held, the other tests in this binary touch the
        // environment only while holding it, and none of them calls C code
        // that reads it.
        unsafe {
            match value {
                Some(value) => std::env::set_var(name, value),
                None => std::env::remove_var(name),
            }
        }
    }

    let result = build();

    for (name, _) in settings {
        // SAFETY: as above.
        unsafe { std::env::remove_var(name) };
    }
    result
}

/// Builds a layer from `var`, set to `value`, with `{var}_FILE` unset.
fn from_var(var: &str, value: &str) -> Result<ApiKeyLayer, ConfigError> {
    let file_var = format!("{var}_FILE");
    let settings = [(var, Some(OsStr::new(value))), (file_var.as_str(), None)];
    with_env(&settings, || ApiKeyLayer::from_env(var))
}

/// Builds a layer from `{var}_FILE`, pointing at `path`, with `var` unset.
fn from_file(var: &str, path: &OsStr) -> Result<ApiKeyLayer, ConfigError> {
    let file_var = format!("{var}_FILE");
    let settings = [(var, None), (file_var.as_str(), Some(path))];
    with_env(&settings, || ApiKeyLayer::from_env(var))
}

/// Writes `contents` to a file of its own and returns its path.
fn key_file(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tower-api-key-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// Returns the status of a `GET /memories` with `presented` as its key,
/// through `layer` around a service that always responds `200`.
async fn status_with(layer: &ApiKeyLayer, presented: Option<&str>) -> StatusCode {
    let inner = service_fn(|_request: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"inner"))))
    });
    let mut request = Request::get("/memories");
    if let Some(key) = presented {
        request = request.header("x-api-key", key);
    }
    let request = request.body(Full::default()).unwrap();
    let response = ApiKeyAuth::new(inner, layer)
        .oneshot(request)
        .await
        .unwrap();
    response.status()
}

/// Asserts that `error` is an invalid key from `setting` with `problem`,
/// and that neither its message nor its `Debug` contains `core`, the
/// distinctive part of the key.
fn assert_invalid_key(error: &ConfigError, setting: &str, problem: KeyProblem, core: &str) {
    let message = error.to_string();
    let debug = format!("{error:?}");

    match error {
        ConfigError::InvalidKey {
            setting: actual_setting,
            problem: actual_problem,
            ..
        } => {
            assert_eq!(actual_setting, setting, "{message}");
            assert_eq!(*actual_problem, problem, "{message}");
        }
        other => panic!("expected an invalid key from {setting}, got {other:?}"),
    }
    assert!(message.starts_with(&format!("{setting}: ")), "{message}");
    assert!(message.contains(&problem.to_string()), "{message}");
    assert!(
        !message.contains(core),
        "the message shows the key: {message}"
    );
    assert!(
        !debug.contains(core),
        "the Debug output shows the key: {debug}"
    );
}

/// Keys that no client could send unchanged, each with a distinctive core
/// that must never appear in an error.
const UNSENDABLE: &[(&str, &str, KeyProblem)] = &[
    (
        " lead-space-7d1e3b",
        "lead-space-7d1e3b",
        KeyProblem::SurroundingWhitespace,
    ),
    (
        "trail-space-9a4c2f ",
        "trail-space-9a4c2f",
        KeyProblem::SurroundingWhitespace,
    ),
    (
        "\tlead-tab-5e8b1d",
        "lead-tab-5e8b1d",
        KeyProblem::SurroundingWhitespace,
    ),
    (
        "trail-lf-3c7a9e\n",
        "trail-lf-3c7a9e",
        KeyProblem::SurroundingWhitespace,
    ),
    (
        "trail-crlf-6f2d4b\r\n",
        "trail-crlf-6f2d4b",
        KeyProblem::SurroundingWhitespace,
    ),
    (
        "\u{a0}lead-nbsp-1b9e7c",
        "lead-nbsp-1b9e7c",
        KeyProblem::SurroundingWhitespace,
    ),
    (
        "trail-ideographic-space-2e6a\u{3000}",
        "trail-ideographic-space-2e6a",
        KeyProblem::SurroundingWhitespace,
    ),
    (
        "inner\u{7}bell-4d8f2a",
        "bell-4d8f2a",
        KeyProblem::ControlCharacter,
    ),
    (
        "inner\ttab-8a3e6c",
        "tab-8a3e6c",
        KeyProblem::ControlCharacter,
    ),
    (
        "inner\0nul-5c9d1e",
        "nul-5c9d1e",
        KeyProblem::ControlCharacter,
    ),
    (
        "inner\u{1b}[31mesc-7b2f4a",
        "esc-7b2f4a",
        KeyProblem::ControlCharacter,
    ),
    (
        "inner\u{7f}del-2f6b8d",
        "del-2f6b8d",
        KeyProblem::ControlCharacter,
    ),
    (
        "inner\rcr-9e1c5a",
        "cr-9e1c5a",
        KeyProblem::ControlCharacter,
    ),
    (
        "inner space-3a7e9b",
        "space-3a7e9b",
        KeyProblem::NotVisibleAscii,
    ),
    (
        "caf\u{e9}-latin-6d4a2c",
        "-latin-6d4a2c",
        KeyProblem::NotVisibleAscii,
    ),
    (
        "zero\u{200b}width-1f8c3e",
        "width-1f8c3e",
        KeyProblem::NotVisibleAscii,
    ),
    (
        "\u{200b}lead-zero-width-4b6e",
        "lead-zero-width-4b6e",
        KeyProblem::NotVisibleAscii,
    ),
    (
        "fullwidth-\u{ff21}-8c2a5d",
        "-8c2a5d",
        KeyProblem::NotVisibleAscii,
    ),
];

#[test]
fn unsendable_literal_key_is_an_error() {
    for (key, core, problem) in UNSENDABLE {
        let error = ApiKeyLayer::new(*key).unwrap_err();
        assert_invalid_key(&error, "key `default`", *problem, core);

        let error = ApiKeyLayer::builder()
            .named_key("ci", *key)
            .build()
            .unwrap_err();
        assert_invalid_key(&error, "key `ci`", *problem, core);
    }
}

#[test]
fn unsendable_env_key_names_the_variable() {
    for (index, (key, core, problem)) in UNSENDABLE.iter().enumerate() {
        // An environment variable cannot contain a NUL byte.
        if key.contains('\0') {
            continue;
        }
        let var = format!("TAK_CONFIG_UNSENDABLE_{index}");
        let error = from_var(&var, key).unwrap_err();
        assert_invalid_key(&error, &var, *problem, core);
    }
}

#[test]
fn too_long_key_is_an_error() {
    let key = "k".repeat(64 * 1024);
    let error = ApiKeyLayer::new(key.as_str()).unwrap_err();
    assert_invalid_key(&error, "key `default`", KeyProblem::TooLong, &key[..4097]);
}

#[cfg(unix)]
#[test]
fn env_value_not_unicode_is_an_error() {
    use std::os::unix::ffi::OsStrExt;

    let var = "TAK_CONFIG_NOT_UNICODE";
    let value = OsStr::from_bytes(b"bad-bytes-\xff\xfe-6e1a");
    let settings = [(var, Some(value)), ("TAK_CONFIG_NOT_UNICODE_FILE", None)];
    let error = with_env(&settings, || ApiKeyLayer::from_env(var)).unwrap_err();

    let message = error.to_string();
    assert!(
        matches!(&error, ConfigError::EnvNotUnicode { var: actual } if actual == var),
        "{error:?}"
    );
    assert!(message.starts_with("TAK_CONFIG_NOT_UNICODE: "), "{message}");
    assert!(!message.contains("bad-bytes"), "{message}");
    assert!(!format!("{error:?}").contains("bad-bytes"), "{error:?}");
}

#[tokio::test]
async fn blank_env_value_disables_with_warning() {
    let cases = [
        ("TAK_CONFIG_BLANK_EMPTY", Some("")),
        ("TAK_CONFIG_BLANK_SPACES", Some("   ")),
        ("TAK_CONFIG_BLANK_TAB_LF", Some("\t\n")),
        ("TAK_CONFIG_BLANK_CRLF", Some("\r\n")),
        ("TAK_CONFIG_BLANK_UNSET", None),
    ];

    for (var, value) in cases {
        let file_var = format!("{var}_FILE");
        let settings = [(var, value.map(OsStr::new)), (file_var.as_str(), None)];
        let (capture, guard) = LogCapture::start(Level::INFO);
        let layer = with_env(&settings, || ApiKeyLayer::from_env(var)).unwrap();
        drop(guard);
        let log = capture.text();

        assert!(!layer.is_enabled(), "{var}");
        assert!(log.contains("WARN"), "{var}: {log}");
        assert!(log.contains("UNSECURED"), "{var}: {log}");
        assert!(log.contains(var), "{var}: {log}");
        assert_eq!(status_with(&layer, None).await, StatusCode::OK, "{var}");
    }
}

#[tokio::test]
async fn blank_literal_key_disables_with_warning() {
    for key in ["", " ", "\t", "\n", "\u{a0}\u{3000}"] {
        let (capture, guard) = LogCapture::start(Level::INFO);
        let layer = ApiKeyLayer::new(key).unwrap();
        drop(guard);
        let log = capture.text();

        assert!(!layer.is_enabled(), "{key:?}");
        assert!(log.contains("WARN"), "{key:?}: {log}");
        assert!(log.contains("UNSECURED"), "{key:?}: {log}");
        assert_eq!(status_with(&layer, None).await, StatusCode::OK, "{key:?}");
    }
}

#[test]
fn blank_key_with_require_key_is_an_error() {
    let var = "TAK_CONFIG_REQUIRED";
    let settings = [
        (var, Some(OsStr::new("  "))),
        ("TAK_CONFIG_REQUIRED_FILE", None),
    ];
    let error = with_env(&settings, || {
        ApiKeyLayer::builder()
            .key_from_env(var)
            .require_key(true)
            .build()
    })
    .unwrap_err();

    let message = error.to_string();
    assert!(
        matches!(error, ConfigError::KeyRequired { .. }),
        "{error:?}"
    );
    assert!(
        message.contains("TAK_CONFIG_REQUIRED or TAK_CONFIG_REQUIRED_FILE"),
        "{message}"
    );
}

#[tokio::test]
async fn key_file_loses_one_line_break() {
    let cases: [(&str, Vec<u8>); 3] = [
        ("LF", format!("{KEY}\n").into_bytes()),
        ("CRLF", format!("{KEY}\r\n").into_bytes()),
        ("NONE", KEY.as_bytes().to_vec()),
    ];

    for (label, contents) in cases {
        let var = format!("TAK_CONFIG_FILE_{label}");
        let path = key_file(&format!("break-{label}"), &contents);
        let layer = from_file(&var, path.as_os_str()).unwrap();

        assert!(layer.is_enabled(), "{label}");
        assert_eq!(
            status_with(&layer, Some(KEY)).await,
            StatusCode::OK,
            "{label}"
        );
        assert_eq!(
            status_with(&layer, None).await,
            StatusCode::UNAUTHORIZED,
            "{label}"
        );
    }
}

#[test]
fn key_file_keeps_other_whitespace() {
    // Only one trailing LF or CRLF is removed. Anything else stays part of
    // the key and makes it unsendable.
    let cases: [(&str, &[u8], &str, KeyProblem); 6] = [
        (
            "TWO_LF",
            b"two-lf-8e3b1c\n\n",
            "8e3b1c",
            KeyProblem::SurroundingWhitespace,
        ),
        (
            "TWO_CRLF",
            b"two-crlf-4a9d2e\r\n\r\n",
            "4a9d2e",
            KeyProblem::SurroundingWhitespace,
        ),
        (
            "LONE_CR",
            b"lone-cr-7c1f5a\r",
            "7c1f5a",
            KeyProblem::SurroundingWhitespace,
        ),
        (
            "LEADING_SPACE",
            b" leading-6b2e8d\n",
            "6b2e8d",
            KeyProblem::SurroundingWhitespace,
        ),
        (
            "TWO_LINES",
            b"first-3d7a1b\nsecond-9f4c2e\n",
            "3d7a1b",
            KeyProblem::ControlCharacter,
        ),
        (
            "BYTE_ORDER_MARK",
            b"\xef\xbb\xbfbom-2c8e4a\n",
            "2c8e4a",
            KeyProblem::NotVisibleAscii,
        ),
    ];

    for (label, contents, core, problem) in cases {
        let var = format!("TAK_CONFIG_FILE_{label}");
        let path = key_file(&format!("whitespace-{label}"), contents);
        let error = from_file(&var, path.as_os_str()).unwrap_err();
        assert_invalid_key(&error, &format!("{var}_FILE"), problem, core);
        assert!(!error.to_string().contains("9f4c2e"), "{error}");
    }
}

#[test]
fn whitespace_only_key_file_is_an_error() {
    // A named file is expected to contain a key, so blank content is a
    // mistake to report, not a request to disable authentication.
    let var = "TAK_CONFIG_FILE_BLANK";
    let path = key_file("blank", b"   \n");
    let error = from_file(var, path.as_os_str()).unwrap_err();

    assert!(
        matches!(
            &error,
            ConfigError::InvalidKey { setting, problem: KeyProblem::SurroundingWhitespace, .. }
                if setting == "TAK_CONFIG_FILE_BLANK_FILE"
        ),
        "{error:?}"
    );
}

#[test]
fn empty_key_file_names_the_path() {
    let cases: [(&str, &[u8]); 3] = [("EMPTY", b""), ("LF", b"\n"), ("CRLF", b"\r\n")];

    for (label, contents) in cases {
        let var = format!("TAK_CONFIG_FILE_EMPTY_{label}");
        let path = key_file(&format!("empty-{label}"), contents);
        let error = from_file(&var, path.as_os_str()).unwrap_err();

        let message = error.to_string();
        let setting = format!("{var}_FILE");
        assert!(
            matches!(&error, ConfigError::KeyFileEmpty { setting: s, path: p } if *s == setting && *p == path),
            "{error:?}"
        );
        assert!(message.starts_with(&format!("{setting}: ")), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("is empty"), "{message}");
    }
}

#[test]
fn missing_key_file_names_the_path() {
    let var = "TAK_CONFIG_FILE_MISSING";
    let path = std::env::temp_dir().join("tower-api-key-config-no-such-dir/key");
    let error = from_file(var, path.as_os_str()).unwrap_err();

    let message = error.to_string();
    assert!(
        matches!(&error, ConfigError::KeyFileRead { path: p, .. } if *p == path),
        "{error:?}"
    );
    assert!(
        message.starts_with("TAK_CONFIG_FILE_MISSING_FILE: "),
        "{message}"
    );
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(std::error::Error::source(&error).is_some());
}

#[test]
fn unreadable_key_file_names_the_path() {
    // A directory cannot be read as a file, even by root. A file with mode
    // 000 would not do, because the tests may run as root.
    let directory = std::env::temp_dir();
    let not_utf8 = key_file("not-utf8", b"latin1-key-\xe9-5d2a8f\n");
    let cases = [
        ("TAK_CONFIG_FILE_DIRECTORY", directory),
        ("TAK_CONFIG_FILE_NOT_UTF8", not_utf8),
    ];

    for (var, path) in cases {
        let error = from_file(var, path.as_os_str()).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(&error, ConfigError::KeyFileRead { path: p, .. } if *p == path),
            "{error:?}"
        );
        assert!(message.starts_with(&format!("{var}_FILE: ")), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(!message.contains("5d2a8f"), "{message}");
        assert!(!format!("{error:?}").contains("5d2a8f"), "{error:?}");
    }
}

#[cfg(unix)]
#[test]
fn endless_key_file_is_an_error() {
    // Reading stops after the longest possible key, so a file that never
    // ends fails at once.
    let var = "TAK_CONFIG_FILE_ENDLESS";
    let error = from_file(var, OsStr::new("/dev/zero")).unwrap_err();

    let message = error.to_string();
    assert!(
        matches!(&error, ConfigError::KeyFileRead { .. }),
        "{error:?}"
    );
    assert!(
        message.starts_with("TAK_CONFIG_FILE_ENDLESS_FILE: "),
        "{message}"
    );
    assert!(message.contains("/dev/zero"), "{message}");
    assert!(message.contains("longer than"), "{message}");
}

#[test]
fn empty_file_var_counts_as_unset() {
    let var = "TAK_CONFIG_FILE_VAR_EMPTY";
    let settings = [
        (var, Some(OsStr::new(KEY))),
        ("TAK_CONFIG_FILE_VAR_EMPTY_FILE", Some(OsStr::new(""))),
    ];
    let layer = with_env(&settings, || ApiKeyLayer::from_env(var)).unwrap();
    assert!(layer.is_enabled());
}

#[test]
fn var_and_file_together_conflict() {
    let var = "TAK_CONFIG_CONFLICT";
    let path = key_file("conflict", format!("{KEY}\n").as_bytes());
    let path: OsString = path.into_os_string();
    let settings = [
        (var, Some(OsStr::new("other-key-0123456789abcdef"))),
        ("TAK_CONFIG_CONFLICT_FILE", Some(path.as_os_str())),
    ];
    let error = with_env(&settings, || ApiKeyLayer::from_env(var)).unwrap_err();

    let message = error.to_string();
    assert!(
        matches!(error, ConfigError::EnvConflict { .. }),
        "{error:?}"
    );
    assert!(
        message.contains("TAK_CONFIG_CONFLICT and TAK_CONFIG_CONFLICT_FILE"),
        "{message}"
    );
    assert!(!message.contains("other-key"), "{message}");
    assert!(!message.contains(KEY), "{message}");
}

#[test]
fn other_settings_are_validated() {
    let cases = [
        (
            ApiKeyLayer::builder()
                .key(KEY)
                .header_name("X API Key")
                .build(),
            "X API Key",
        ),
        (
            ApiKeyLayer::builder()
                .key(KEY)
                .exempt("/docs/../admin")
                .build(),
            "/docs/../admin",
        ),
        (
            ApiKeyLayer::builder().key(KEY).exempt_prefix("/").build(),
            "\"/\"",
        ),
        (
            ApiKeyLayer::builder().key(KEY).realm("say \"hi\"").build(),
            "say",
        ),
        (
            ApiKeyLayer::builder()
                .key(KEY)
                .insecure_query_param("api key")
                .build(),
            "api key",
        ),
        (
            ApiKeyLayer::builder().named_key("has space", KEY).build(),
            "has space",
        ),
    ];

    for (result, named) in cases {
        let error = result.unwrap_err();
        let message = error.to_string();
        assert!(message.contains(named), "{message}");
        assert!(!message.contains(KEY), "{message}");
    }
}
