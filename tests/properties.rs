//! Property: the inner service is reached exactly when authentication is
//! disabled, or the path is exempt, or exactly one key header equals a
//! configured key.
//!
//! The exemption model below is written from the documented rules, not by
//! calling the crate, so that a change to the matcher that breaks a rule
//! fails here.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use proptest::prelude::*;
use tower::{ServiceExt, service_fn};
use tower_api_key::{ApiKeyAuth, ApiKeyLayer, KeyName};

const KEY_A: &str = "property-key-a-0123456789abcdef";
const KEY_B: &str = "property-key-b-0123456789abcdef";

const EXACT: [&str; 3] = ["/", "/docs", "/openapi.json"];
const PREFIX: &str = "/static";

/// The layer configurations the property runs against.
#[derive(Debug, Clone, Copy)]
enum Config {
    Disabled,
    OneKey,
    TwoKeys,
}

impl Config {
    fn keys(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Disabled => &[],
            Self::OneKey => &[("a", KEY_A)],
            Self::TwoKeys => &[("a", KEY_A), ("b", KEY_B)],
        }
    }

    fn layer(self) -> ApiKeyLayer {
        if let Self::Disabled = self {
            return ApiKeyLayer::disabled();
        }
        let mut builder = ApiKeyLayer::builder();
        for (name, key) in self.keys() {
            builder = builder.named_key(*name, *key);
        }
        for path in EXACT {
            builder = builder.exempt(path);
        }
        builder
            .exempt_prefix(PREFIX)
            .build()
            .expect("the test configuration is valid")
    }
}

/// Returns `true` when `path` is exempt under the documented rules.
///
/// An exact entry must equal the raw path. Under the prefix, the path must
/// be the prefix or continue with `/` after it, and contain none of the
/// pieces that a server behind the layer could resolve to another path.
fn model_is_exempt(path: &str) -> bool {
    if EXACT.contains(&path) {
        return true;
    }

    let under_prefix = path == PREFIX || path.starts_with(&format!("{PREFIX}/"));
    under_prefix && !has_resolvable_piece(path)
}

/// Dot segments, empty segments (a single trailing `/` aside), `\`, `;`,
/// percent-encoded `.`, `/`, `\` or `%` in any case, and escapes that are
/// malformed or do not decode to UTF-8.
fn has_resolvable_piece(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    let encoded = ["%2e", "%2f", "%5c", "%25"];
    if path.contains('\\') || path.contains(';') || encoded.iter().any(|e| lower.contains(e)) {
        return true;
    }
    if percent_decode(path).is_none_or(|decoded| String::from_utf8(decoded).is_err()) {
        return true;
    }

    let body = path.strip_prefix('/').unwrap_or(path);
    let body = body.strip_suffix('/').unwrap_or(body);
    body.split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
}

/// Decodes every `%` escape, or returns `None` when one is not `%` and two
/// hex digits.
fn percent_decode(path: &str) -> Option<Vec<u8>> {
    let mut decoded = Vec::new();
    let mut rest = path.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte != b'%' {
            decoded.push(byte);
            rest = tail;
            continue;
        }
        let hex = tail.get(..2)?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let hex = std::str::from_utf8(hex).ok()?;
        decoded.push(u8::from_str_radix(hex, 16).ok()?);
        rest = &tail[2..];
    }
    Some(decoded)
}

/// Pieces that paths are built from: route names, their near misses, and
/// everything a normaliser would treat specially.
const PIECES: &[&str] = &[
    "docs",
    "DOCS",
    "docs-private",
    "openapi.json",
    "static",
    "Static",
    "staticfoo",
    "memories",
    "app.js",
    ".",
    "..",
    "...",
    "%2e",
    "%2E",
    "%2e%2e",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "%25",
    "%252e",
    "%64ocs",
    "%c0%ae",
    "%C3%A9",
    "%u002e",
    "%",
    "%zz",
    "%c3",
    "\\",
    ";",
    ";x=1",
    "a",
];

fn path_strategy() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        3 => Just("/".to_owned()),
        4 => proptest::sample::select(PIECES).prop_map(str::to_owned),
    ];
    let start = prop_oneof![
        Just(String::new()),
        Just("/docs".to_owned()),
        Just("/static".to_owned()),
        Just("/static/".to_owned()),
        Just("/openapi.json".to_owned()),
        Just("/".to_owned()),
    ];
    (start, proptest::collection::vec(token, 0..5)).prop_map(|(start, tokens)| {
        let path = format!("{start}{}", tokens.concat());
        if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        }
    })
}

fn target_strategy() -> impl Strategy<Value = (String, String)> {
    let query = prop_oneof![
        Just(""),
        Just("?next=/docs"),
        Just("?x-api-key=property-key-a-0123456789abcdef"),
        Just("?"),
    ];
    let absolute = any::<bool>();
    (path_strategy(), query, absolute).prop_map(|(path, query, absolute)| {
        let origin = if absolute { "http://localhost" } else { "" };
        (format!("{origin}{path}{query}"), path)
    })
}

const METHODS: &[&str] = &[
    "GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH", "TRACE", "PROPFIND", "get",
    "X-CUSTOM",
];

fn method_strategy() -> impl Strategy<Value = Method> {
    proptest::sample::select(METHODS)
        .prop_map(|method| Method::from_bytes(method.as_bytes()).unwrap())
}

const HEADER_NAMES: &[&str] = &[
    "x-api-key",
    "X-API-Key",
    "X-Api-Key",
    "authorization",
    "x-original-url",
    "x-forwarded-prefix",
    "x-middleware-subrequest",
];

const HEADER_VALUES: &[&str] = &[
    KEY_A,
    KEY_B,
    "",
    "wrong",
    "/docs",
    "property-key-a-0123456789abcde",
    "PROPERTY-KEY-A-0123456789ABCDEF",
    "property-key-a-0123456789abcdef ",
    "property-key-a-0123456789abcdef, property-key-b-0123456789abcdef",
];

fn headers_strategy() -> impl Strategy<Value = Vec<(&'static str, &'static str)>> {
    let header = (
        proptest::sample::select(HEADER_NAMES),
        proptest::sample::select(HEADER_VALUES),
    );
    proptest::collection::vec(header, 0..4)
}

fn config_strategy() -> impl Strategy<Value = Config> {
    prop_oneof![
        1 => Just(Config::Disabled),
        3 => Just(Config::OneKey),
        3 => Just(Config::TwoKeys),
    ]
}

/// Returns the configured key name the request authenticates as, when
/// exactly one key header is present and equals a configured key.
fn model_key_name(config: Config, headers: &[(&str, &str)]) -> Option<&'static str> {
    let mut values = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("x-api-key"))
        .map(|(_, value)| *value);
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    config
        .keys()
        .iter()
        .find(|(_, key)| *key == value)
        .map(|(name, _)| *name)
}

/// What the inner service saw: how often it was called, and the key name
/// in the extensions of the last call.
#[derive(Debug, Default)]
struct Seen {
    calls: usize,
    key_name: Option<String>,
}

/// Polls a future that must complete without waiting: the inner service
/// and the rejection are both ready at once.
fn complete<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the layer returned a pending future for a ready inner service"),
    }
}

fn run(
    config: Config,
    method: Method,
    target: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Seen) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = Arc::clone(&seen);
    let inner = service_fn(move |request: Request<Full<Bytes>>| {
        let mut seen = record.lock().unwrap();
        seen.calls += 1;
        seen.key_name = request
            .extensions()
            .get::<KeyName>()
            .map(|name| name.to_string());
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"inner")))) }
    });

    let mut builder = Request::builder().method(method).uri(target);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::default())
        .expect("generated requests are valid");

    let service = ApiKeyAuth::new(inner, &config.layer());
    let response = complete(service.oneshot(request)).expect("the inner service never fails");
    let seen = Arc::try_unwrap(seen).unwrap().into_inner().unwrap();
    (response.status(), seen)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn inner_reached_exactly_when_allowed(
        config in config_strategy(),
        method in method_strategy(),
        (target, path) in target_strategy(),
        headers in headers_strategy(),
    ) {
        let disabled = matches!(config, Config::Disabled);
        let exempt = model_is_exempt(&path);
        let key_name = model_key_name(config, &headers);
        let allowed = disabled || exempt || key_name.is_some();

        let (status, seen) = run(config, method, &target, &headers);

        if allowed {
            prop_assert_eq!(status, StatusCode::OK);
            prop_assert_eq!(seen.calls, 1);
        } else {
            prop_assert_eq!(status, StatusCode::UNAUTHORIZED);
            prop_assert_eq!(seen.calls, 0);
        }

        // When the key decided the request, the inner service receives its
        // name.
        if !disabled && !exempt {
            prop_assert_eq!(seen.key_name.as_deref(), key_name);
        }
    }
}

#[test]
fn model_matches_documented_examples() {
    // The model must itself follow the rules it encodes, so a wrong model
    // cannot pass the property by agreeing with a wrong matcher.
    for path in [
        "/",
        "/docs",
        "/openapi.json",
        "/static",
        "/static/",
        "/static/a/b.js",
        "/static/caf%C3%A9.css",
    ] {
        assert!(model_is_exempt(path), "{path}");
    }
    for path in [
        "//",
        "/docs/",
        "/DOCS",
        "/docs-private",
        "/staticfoo",
        "/static//a",
        "/static/../memories",
        "/static/%2E%2e/x",
        "/static%2fx",
        "/static/%5cx",
        "/static/a;b",
        "/static\\x",
        "/static/%252e",
        "/static/%c0%ae",
        "/static/%u002e",
    ] {
        assert!(!model_is_exempt(path), "{path}");
    }
}
