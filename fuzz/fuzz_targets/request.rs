//! Turns arbitrary bytes into a request and checks, for each input, that
//! the layer does not panic and calls the inner service exactly when it
//! must.
//!
//! Input layout: the first byte picks the configuration (authentication
//! disabled, one key, or two keys). The rest is split at `\n` into the
//! method, the request target, and then one `name:value` header per line.
//! Inputs that `http` rejects (an invalid method, target, header name or
//! value) are not requests a server could pass to the layer, so they are
//! skipped.

#![no_main]

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower::{ServiceExt, service_fn};
use tower_api_key::{ApiKeyAuth, ApiKeyLayer, KeyName};

const KEYS: [(&str, &str); 2] = [("a", "key-a-0123456789"), ("b", "key-b-0123456789")];
const EXACT: [&str; 3] = ["/", "/docs", "/openapi.json"];
const PREFIX: &str = "/static";

/// Returns `true` when `path` is exempt under the documented rules,
/// written here independently of the crate's matcher.
///
/// An exact entry must equal the raw path. Under the prefix, the path must
/// be the prefix or continue with `/` after it. It must also contain no dot
/// or empty segment (a single trailing `/` aside), no `\` or `;`, and no
/// percent-encoded `.`, `/`, `\` or `%` in either case. Every escape must
/// be well-formed, and the decoded bytes valid UTF-8.
fn model_is_exempt(path: &str) -> bool {
    if EXACT.contains(&path) {
        return true;
    }

    let under_prefix = path == PREFIX
        || path
            .strip_prefix(PREFIX)
            .is_some_and(|rest| rest.starts_with('/'));
    if !under_prefix {
        return false;
    }

    let lower = path.to_ascii_lowercase();
    let encoded = ["%2e", "%2f", "%5c", "%25"];
    if path.contains(['\\', ';']) || encoded.iter().any(|escape| lower.contains(escape)) {
        return false;
    }
    if percent_decode(path).is_none_or(|decoded| String::from_utf8(decoded).is_err()) {
        return false;
    }

    let segments = &path[1..];
    let segments = segments.strip_suffix('/').unwrap_or(segments);
    !segments
        .split('/')
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

/// Parses the input into the number of configured keys and a request.
fn parse(data: &[u8]) -> Option<(usize, Request<()>)> {
    let (&selector, rest) = data.split_first()?;
    let key_count = usize::from(selector % 3);

    let mut lines = rest.split(|&byte| byte == b'\n');
    let method = Method::from_bytes(lines.next()?).ok()?;
    let target = std::str::from_utf8(lines.next()?).ok()?;
    let mut request = Request::builder()
        .method(method)
        .uri(target)
        .body(())
        .ok()?;

    for line in lines {
        let colon = line.iter().position(|&byte| byte == b':')?;
        let name = HeaderName::from_bytes(&line[..colon]).ok()?;
        let value = HeaderValue::from_bytes(&line[colon + 1..]).ok()?;
        request.headers_mut().try_append(name, value).ok()?;
    }
    Some((key_count, request))
}

fn layer(key_count: usize) -> ApiKeyLayer {
    if key_count == 0 {
        return ApiKeyLayer::disabled();
    }

    let mut builder = ApiKeyLayer::builder();
    for (name, key) in &KEYS[..key_count] {
        builder = builder.named_key(*name, *key);
    }
    for path in EXACT {
        builder = builder.exempt(path);
    }
    builder
        .exempt_prefix(PREFIX)
        .build()
        .expect("the fuzz configuration is valid")
}

/// Returns the name of the key the request authenticates as: exactly one
/// `X-API-Key` header, equal to a configured key.
fn model_key_name(key_count: usize, request: &Request<()>) -> Option<&'static str> {
    let mut values = request.headers().get_all("x-api-key").iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    KEYS[..key_count]
        .iter()
        .find(|(_, key)| key.as_bytes() == value.as_bytes())
        .map(|(name, _)| *name)
}

/// Polls a future that must complete at once: the inner service and the
/// rejection are both ready without waiting.
fn complete<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the layer returned a pending future for a ready inner service"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((key_count, request)) = parse(data) else {
        return;
    };

    let disabled = key_count == 0;
    let exempt = model_is_exempt(request.uri().path());
    let key_name = model_key_name(key_count, &request);
    let allowed = disabled || exempt || key_name.is_some();
    let grpc = request
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"));

    // Each call records the key name the inner service received.
    let calls: Arc<Mutex<Vec<Option<KeyName>>>> = Arc::default();
    let record = Arc::clone(&calls);
    let inner = service_fn(move |request: Request<()>| {
        let name = request.extensions().get::<KeyName>().cloned();
        record.lock().unwrap().push(name);
        async { Ok::<_, Infallible>(Response::new(Bytes::from_static(b"inner"))) }
    });

    let service = ApiKeyAuth::new(inner, &layer(key_count));
    let response = complete(service.oneshot(request)).expect("the inner service never fails");
    let calls = calls.lock().unwrap();

    if allowed {
        assert_eq!(
            calls.len(),
            1,
            "an allowed request must reach the inner service"
        );
        assert_eq!(response.status(), StatusCode::OK);
        if !disabled && !exempt {
            let received = calls[0].as_ref().map(KeyName::as_str);
            assert_eq!(
                received, key_name,
                "the inner service must receive the key name"
            );
        }
    } else {
        assert!(
            calls.is_empty(),
            "a rejected request must not reach the inner service"
        );
        if grpc {
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["grpc-status"], "16");
        } else {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(response.headers()[WWW_AUTHENTICATE], "ApiKey");
        }
    }
});
