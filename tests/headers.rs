//! Hostile credential headers: each gets a `401` with the right reason,
//! never a `500` or a panic, and the debug log names the reason without
//! the value.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::{ServiceExt, service_fn};
use tower_api_key::{ApiKeyAuth, ApiKeyLayer};
use tracing::Level;

use support::{KEY, LogCapture, collect};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Missing,
    Invalid,
    Ambiguous,
}

impl Reason {
    fn word(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::Ambiguous => "ambiguous",
        }
    }

    /// Returns the start of the rejection's `detail`, which goes on to name
    /// the configured sources.
    fn detail(self) -> &'static str {
        match self {
            Self::Missing => "Missing API key: send it in the X-API-Key header",
            Self::Invalid => "Invalid API key.",
            Self::Ambiguous => "Ambiguous API key: send exactly one key, in the X-API-Key header",
        }
    }
}

fn layer() -> ApiKeyLayer {
    ApiKeyLayer::builder()
        .key(KEY)
        .build()
        .expect("the test key is valid")
}

fn bearer_layer() -> ApiKeyLayer {
    ApiKeyLayer::builder()
        .key(KEY)
        .bearer(true)
        .build()
        .expect("the test key is valid")
}

/// Sends `request` through the layer around a service that counts its
/// calls, and returns the response with the count.
async fn send(
    layer: &ApiKeyLayer,
    request: Request<Full<Bytes>>,
) -> (http::response::Parts, String, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let inner = service_fn(move |_request: Request<Full<Bytes>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"inner")))) }
    });

    let response = ApiKeyAuth::new(inner, layer)
        .oneshot(request)
        .await
        .expect("the inner service never fails");
    let (parts, body) = collect(response).await;
    (parts, body, calls.load(Ordering::SeqCst))
}

fn with_values(name: &str, values: &[HeaderValue]) -> Request<Full<Bytes>> {
    let mut request = Request::get("/memories").body(Full::default()).unwrap();
    let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
    for value in values {
        request.headers_mut().append(name.clone(), value.clone());
    }
    request
}

fn text(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).expect("the test values are valid header values")
}

fn bytes(value: &[u8]) -> HeaderValue {
    HeaderValue::from_bytes(value).expect("the test values are valid header values")
}

/// Asserts the `401` for `reason`, that the inner service was not called,
/// and that the log line names the reason and not the value.
async fn assert_rejected(
    label: &str,
    request: Request<Full<Bytes>>,
    reason: Reason,
    secrets: &[&[u8]],
) {
    assert_rejected_by(&layer(), label, request, reason, secrets).await;
}

async fn assert_rejected_by(
    layer: &ApiKeyLayer,
    label: &str,
    request: Request<Full<Bytes>>,
    reason: Reason,
    secrets: &[&[u8]],
) {
    let (capture, guard) = LogCapture::start(Level::TRACE);
    let (parts, body, calls) = send(layer, request).await;
    drop(guard);
    let log = capture.text();

    assert_eq!(parts.status, StatusCode::UNAUTHORIZED, "{label}");
    assert_eq!(parts.headers[WWW_AUTHENTICATE], "ApiKey", "{label}");
    assert_eq!(
        parts.headers[CONTENT_TYPE], "application/problem+json",
        "{label}"
    );
    let detail = format!(r#""detail":"{}"#, reason.detail());
    assert!(body.contains(&detail), "{label}: {body}");
    assert_eq!(calls, 0, "{label}");

    assert!(log.contains("DEBUG"), "{label}: {log}");
    let field = format!("reason=\"{}\"", reason.word());
    assert!(log.contains(&field), "{label}: {log}");
    assert!(log.contains("method=GET"), "{label}: {log}");
    assert!(log.contains("path=\"/memories\""), "{label}: {log}");
    for secret in secrets {
        let secret = String::from_utf8_lossy(secret);
        assert!(
            !log.contains(&*secret),
            "{label} leaked into the log: {log}"
        );
    }
}

#[tokio::test]
async fn repeated_header_is_ambiguous() {
    let key = text(KEY);
    let wrong = text("wrong-value-0123456789");
    let empty = text("");
    let cases = [
        ("key then wrong", vec![key.clone(), wrong.clone()]),
        ("wrong then key", vec![wrong.clone(), key.clone()]),
        ("key twice", vec![key.clone(), key.clone()]),
        ("key then empty", vec![key.clone(), empty.clone()]),
        ("empty then key", vec![empty.clone(), key.clone()]),
        ("empty twice", vec![empty.clone(), empty.clone()]),
        (
            "key three times",
            vec![key.clone(), key.clone(), key.clone()],
        ),
    ];

    for (label, values) in cases {
        let request = with_values("x-api-key", &values);
        let secrets: [&[u8]; 2] = [KEY.as_bytes(), b"wrong-value-0123456789"];
        assert_rejected(label, request, Reason::Ambiguous, &secrets).await;
    }
}

#[tokio::test]
async fn header_name_case_does_not_split_headers() {
    // Header names are case-insensitive, so these are two values of one
    // header, not one value each of two headers.
    let mut request = Request::get("/memories").body(Full::default()).unwrap();
    let headers = request.headers_mut();
    headers.append(HeaderName::from_static("x-api-key"), text(KEY));
    headers.append(HeaderName::from_bytes(b"X-API-KEY").unwrap(), text(KEY));

    assert_rejected("mixed case", request, Reason::Ambiguous, &[KEY.as_bytes()]).await;
}

#[tokio::test]
async fn comma_joined_values_are_invalid() {
    let cases = [
        format!("{KEY}, wrong"),
        format!("wrong, {KEY}"),
        format!("{KEY},{KEY}"),
        format!("{KEY}, "),
        format!(",{KEY}"),
        format!("{KEY};{KEY}"),
    ];

    for value in &cases {
        let request = with_values("x-api-key", &[text(value)]);
        assert_rejected(value, request, Reason::Invalid, &[KEY.as_bytes()]).await;
    }
}

#[tokio::test]
async fn empty_value_is_invalid() {
    let request = with_values("x-api-key", &[text("")]);
    assert_rejected("empty", request, Reason::Invalid, &[]).await;
}

#[tokio::test]
async fn tabs_and_spaces_are_invalid() {
    let cases = [
        format!("\t{KEY}"),
        format!("{KEY}\t"),
        format!("{}\t{}", &KEY[..8], &KEY[8..]),
        format!(" {KEY}"),
        format!("{KEY} "),
        "\t".to_owned(),
        " ".to_owned(),
    ];

    for value in &cases {
        let request = with_values("x-api-key", &[text(value)]);
        assert_rejected(
            &format!("{value:?}"),
            request,
            Reason::Invalid,
            &[KEY.as_bytes()],
        )
        .await;
    }
}

#[tokio::test]
async fn obs_text_bytes_are_invalid() {
    let every_high_byte: Vec<u8> = (0x80..=0xFF).collect();
    let mut key_then_high = KEY.as_bytes().to_vec();
    key_then_high.push(0xFF);
    let mut high_in_key = KEY.as_bytes().to_vec();
    high_in_key[4] = 0x80;

    let cases: [(&str, Vec<u8>); 6] = [
        ("0x80", vec![0x80]),
        ("0xFF", vec![0xFF]),
        ("every byte 0x80 to 0xFF", every_high_byte),
        ("key then 0xFF", key_then_high),
        ("0x80 inside the key", high_in_key),
        (
            "valid UTF-8 e-acute",
            "cl\u{e9}-0123456789abcdef".as_bytes().to_vec(),
        ),
    ];

    for (label, value) in cases {
        let request = with_values("x-api-key", &[bytes(&value)]);
        assert_rejected(label, request, Reason::Invalid, &[KEY.as_bytes()]).await;
    }
}

#[tokio::test]
async fn long_values_are_invalid() {
    let cases = [
        ("8 KiB of a", "a".repeat(8 * 1024)),
        ("key repeated to 8 KiB", KEY.repeat(8 * 1024 / KEY.len())),
        ("key then 8 KiB", format!("{KEY}{}", "b".repeat(8 * 1024))),
        ("64 KiB of c", "c".repeat(64 * 1024)),
    ];

    for (label, value) in &cases {
        let request = with_values("x-api-key", &[text(value)]);
        let secrets: [&[u8]; 2] = [KEY.as_bytes(), &value.as_bytes()[..64]];
        assert_rejected(label, request, Reason::Invalid, &secrets).await;
    }
}

#[tokio::test]
async fn key_in_other_places_is_missing() {
    let bearer = format!("Bearer {KEY}");
    let cookie = format!("x-api-key={KEY}");
    let headers = [
        ("authorization", bearer.as_str()),
        ("authorization", KEY),
        ("api-key", KEY),
        ("x-api-token", KEY),
        ("x-api-key-2", KEY),
        ("x_api_key", KEY),
        ("cookie", cookie.as_str()),
        ("proxy-authorization", bearer.as_str()),
    ];
    for (name, value) in headers {
        let request = with_values(name, &[text(value)]);
        assert_rejected(name, request, Reason::Missing, &[KEY.as_bytes()]).await;
    }

    let queries = [
        format!("/memories?x-api-key={KEY}"),
        format!("/memories?X-API-Key={KEY}"),
        format!("/memories?api_key={KEY}"),
    ];
    for target in &queries {
        let request = Request::get(target.as_str()).body(Full::default()).unwrap();
        let (parts, body, calls) = send(&layer(), request).await;
        assert_eq!(parts.status, StatusCode::UNAUTHORIZED, "{target}");
        assert_eq!(parts.headers[WWW_AUTHENTICATE], "ApiKey", "{target}");
        assert!(body.contains(Reason::Missing.detail()), "{target}: {body}");
        assert_eq!(calls, 0, "{target}");
    }
}

#[tokio::test]
async fn missing_header_is_logged_as_missing() {
    let request = Request::get("/memories").body(Full::default()).unwrap();
    assert_rejected("no header", request, Reason::Missing, &[]).await;
}

#[tokio::test]
async fn single_exact_key_is_accepted() {
    // The control case: the same request with the one right value passes,
    // so each rejection above is about the value.
    let request = with_values("X-Api-Key", &[text(KEY)]);
    let (parts, body, calls) = send(&layer(), request).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(body, "inner");
    assert_eq!(calls, 1);
}

/// Header lines of one request, in order.
type HeaderLines = Vec<(&'static str, HeaderValue)>;

#[tokio::test]
async fn hostile_bearer_values_are_rejected() {
    let bearer = format!("Bearer {KEY}");
    let cases: [(&str, HeaderLines, Reason); 9] = [
        (
            "scheme alone",
            vec![("authorization", text("Bearer"))],
            Reason::Missing,
        ),
        (
            "tab after scheme",
            vec![("authorization", text(&format!("Bearer\t{KEY}")))],
            Reason::Missing,
        ),
        (
            "other scheme",
            vec![("authorization", text(&format!("Basic {KEY}")))],
            Reason::Missing,
        ),
        (
            "empty token",
            vec![("authorization", text("Bearer "))],
            Reason::Invalid,
        ),
        (
            "trailing space",
            vec![("authorization", text(&format!("{bearer} ")))],
            Reason::Invalid,
        ),
        (
            "comma-joined",
            vec![("authorization", text(&format!("{bearer}, {bearer}")))],
            Reason::Invalid,
        ),
        (
            "obs-text",
            vec![("authorization", bytes(b"Bearer \xff\xfe"))],
            Reason::Invalid,
        ),
        (
            "bearer twice",
            vec![
                ("authorization", text(&bearer)),
                ("authorization", text(&bearer)),
            ],
            Reason::Ambiguous,
        ),
        (
            "header and bearer disagree",
            vec![
                ("x-api-key", text(KEY)),
                ("authorization", text("Bearer wrong-0123456789")),
            ],
            Reason::Ambiguous,
        ),
    ];

    for (label, headers, reason) in cases {
        let mut request = Request::get("/memories").body(Full::default()).unwrap();
        for (name, value) in headers {
            request.headers_mut().append(name, value);
        }
        let secrets: [&[u8]; 2] = [KEY.as_bytes(), b"wrong-0123456789"];
        assert_rejected_by(&bearer_layer(), label, request, reason, &secrets).await;
    }
}

#[test]
fn header_value_rejects_control_bytes() {
    // `http` rejects these bytes in a header value, and hyper responds to
    // a request carrying them with its own `400`, so they never reach the
    // layer.
    for value in [&b"\0"[..], b"a\r\nb", b"a\nb", b"\x7f", b"\x01"] {
        assert!(HeaderValue::from_bytes(value).is_err(), "{value:?}");
    }
}

/// Sends `raw` to `address` and returns the status code of the response.
/// Every request carries `Connection: close`, and the read is bounded.
async fn status_over_tcp(address: std::net::SocketAddr, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(raw).await.unwrap();

    let mut response = Vec::new();
    let read = stream.read_to_end(&mut response);
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the server answers and closes within 10 s")
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    let status_line = response.lines().next().unwrap_or_default();
    status_line.split(' ').nth(1).unwrap_or_default().to_owned()
}

#[tokio::test]
async fn hostile_headers_over_tcp_get_401() {
    let app = axum::Router::new()
        .route("/memories", axum::routing::get(|| async { "memories" }))
        .layer(layer());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let long = "k".repeat(16 * 1024);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("no header", Vec::new(), "401"),
        ("empty", b"X-API-Key: \r\n".to_vec(), "401"),
        (
            "repeated",
            format!("X-API-Key: {KEY}\r\nx-api-key: wrong\r\n").into_bytes(),
            "401",
        ),
        (
            "repeated reversed",
            format!("x-api-key: wrong\r\nX-API-Key: {KEY}\r\n").into_bytes(),
            "401",
        ),
        (
            "comma-joined",
            format!("X-API-Key: {KEY}, {KEY}\r\n").into_bytes(),
            "401",
        ),
        (
            "obs-text",
            [b"X-API-Key: ".as_slice(), &[0x80, 0xFE, 0xFF], b"\r\n"].concat(),
            "401",
        ),
        (
            "16 KiB",
            format!("X-API-Key: {long}\r\n").into_bytes(),
            "401",
        ),
        (
            "tab inside",
            format!("X-API-Key: {}\t{}\r\n", &KEY[..8], &KEY[8..]).into_bytes(),
            "401",
        ),
        // HTTP/1.1 strips optional whitespace around a field value, so the
        // layer receives the key itself.
        (
            "tab around",
            format!("X-API-Key:\t{KEY}\t\r\n").into_bytes(),
            "200",
        ),
        // hyper rejects a folded field line before the layer runs.
        (
            "obs-fold",
            format!("X-API-Key: {}\r\n {}\r\n", &KEY[..8], &KEY[8..]).into_bytes(),
            "400",
        ),
        (
            "exact key",
            format!("X-API-Key: {KEY}\r\n").into_bytes(),
            "200",
        ),
    ];

    for (label, header_lines, status) in cases {
        let raw = [
            b"GET /memories HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n".as_slice(),
            &header_lines,
            b"\r\n",
        ]
        .concat();
        assert_eq!(status_over_tcp(address, &raw).await, status, "{label}");
    }

    server.abort();
}
