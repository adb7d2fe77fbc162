//! Exempt paths fail closed: a table of request targets, methods and
//! headers against the layer around a real axum router.
//!
//! The layer is configured like the example server: `/`, `/docs` and
//! `/openapi.json` exact, plus the prefix `/static`. A case either reaches
//! the router (the status and body its handler or fallback produce) or gets
//! the layer's `401`. No case sends a key, so reaching the router means the
//! path was exempt.

mod support;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Method, Request, StatusCode, Uri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;
use tower_api_key::ApiKeyLayer;

use support::{KEY, collect};

/// What a case must produce.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The router was reached and responded with this status and body.
    Reached(u16, &'static str),
    /// The layer rejected the request with its `401` for a missing key.
    Rejected,
}

use Expect::{Reached, Rejected};

struct Case {
    method: &'static str,
    target: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: Expect,
}

const fn get_case(target: &'static str, expect: Expect) -> Case {
    Case {
        method: "GET",
        target,
        headers: &[],
        expect,
    }
}

const fn method_case(method: &'static str, target: &'static str, expect: Expect) -> Case {
    Case {
        method,
        target,
        headers: &[],
        expect,
    }
}

const fn header_case(headers: &'static [(&'static str, &'static str)]) -> Case {
    Case {
        method: "GET",
        target: "/memories",
        headers,
        expect: Rejected,
    }
}

/// Every case sends no key. Paths with a body other than "fallback" were
/// routed to a handler; "fallback" is the router's own 404.
const CASES: &[Case] = &[
    // Exact entries match themselves.
    get_case("/", Reached(200, "root")),
    get_case("/docs", Reached(200, "docs")),
    get_case("/openapi.json", Reached(200, "openapi")),
    get_case("/memories", Rejected),
    get_case("/memories/42", Rejected),
    get_case("/no-such-route", Rejected),
    // A prefix needs a segment boundary; exact entries are not prefixes.
    get_case("/static", Reached(200, "static")),
    get_case("/static/app.js", Reached(200, "static")),
    get_case("/static/css/site.css", Reached(200, "static")),
    get_case("/static/caf%C3%A9.css", Reached(200, "static")),
    get_case("/staticfoo", Rejected),
    get_case("/static-private/x", Rejected),
    get_case("/docs-private", Rejected),
    get_case("/docsx", Rejected),
    get_case("/docs/x", Rejected),
    get_case("/openapi.json.bak", Rejected),
    // `/` exempts only `/`.
    get_case("//", Rejected),
    get_case("/.", Rejected),
    get_case("/%2f", Rejected),
    // Trailing slashes and empty segments.
    get_case("/docs/", Rejected),
    get_case("/docs//", Rejected),
    get_case("//docs", Rejected),
    get_case("//memories", Rejected),
    get_case("///", Rejected),
    get_case("/static//app.js", Rejected),
    get_case("//static/app.js", Rejected),
    // Dot segments, raw and percent-encoded in any case.
    get_case("/static/../memories", Rejected),
    get_case("/static/./app.js", Rejected),
    get_case("/static/..", Rejected),
    get_case("/./memories", Rejected),
    get_case("/./docs", Rejected),
    get_case("/docs/.", Rejected),
    get_case("/docs/..", Rejected),
    get_case("/static/%2e%2E/memories", Rejected),
    get_case("/static/%2E%2e/memories", Rejected),
    get_case("/static/.%2e/memories", Rejected),
    get_case("/static/%2e/app.js", Rejected),
    get_case("/static/%252e%252e/memories", Rejected),
    // Escapes that some decoders read as a dot although they are not valid
    // percent-encoded UTF-8: overlong forms and IIS-style `%u`.
    get_case("/static/%c0%ae%c0%ae/memories", Rejected),
    get_case("/static/%C0%AE./memories", Rejected),
    get_case("/static/%e0%80%ae%e0%80%ae/memories", Rejected),
    get_case("/static/%u002e%u002e/memories", Rejected),
    get_case("/static/%uff0e%uff0e/memories", Rejected),
    get_case("/static/%/memories", Rejected),
    get_case("/static/%2/memories", Rejected),
    get_case("/static/%zz", Rejected),
    get_case("/static/%ae", Rejected),
    // Encoded `/` and `\`, raw `\`, and `;` parameters.
    get_case("/static%2fx", Rejected),
    get_case("/static%2Fmemories", Rejected),
    get_case("/static/..%2fmemories", Rejected),
    get_case("/static/%5cmemories", Rejected),
    get_case("/static/%5C..%5Cmemories", Rejected),
    get_case("/static\\..\\memories", Rejected),
    get_case("/static/..\\memories", Rejected),
    get_case("/docs%2f", Rejected),
    get_case("/docs;x=1", Rejected),
    get_case("/static/app.js;jsessionid=1", Rejected),
    get_case("/static;/../memories", Rejected),
    // Case, and encodings of plain characters: nothing is decoded.
    get_case("/DOCS", Rejected),
    get_case("/Docs", Rejected),
    get_case("/OPENAPI.JSON", Rejected),
    get_case("/Static/app.js", Rejected),
    get_case("/%64ocs", Rejected),
    get_case("/docs%00", Rejected),
    get_case("/d\u{e9}cs", Rejected),
    // The query and the fragment never count.
    get_case("/memories?next=/docs", Rejected),
    get_case("/memories?/docs", Rejected),
    get_case("/memories?path=/static/app.js", Rejected),
    get_case("/docs?v=1", Reached(200, "docs")),
    get_case("/?next=/memories", Reached(200, "root")),
    get_case("/static/app.js?v=../../memories", Reached(200, "static")),
    // `http::Uri` drops a fragment, so the layer and the router both see
    // the path before it.
    get_case("/memories#/docs", Rejected),
    get_case("/docs#top", Reached(200, "docs")),
    // Absolute-form targets are judged on their path.
    get_case("http://localhost/memories", Rejected),
    get_case("http://localhost/docs", Reached(200, "docs")),
    get_case("HTTP://LOCALHOST/docs", Reached(200, "docs")),
    get_case("https://localhost:8443/docs/", Rejected),
    get_case("http://localhost//docs", Rejected),
    get_case("http://localhost/static/../memories", Rejected),
    get_case("http://user@localhost/memories", Rejected),
    get_case("http://localhost?next=/memories", Reached(200, "root")),
    // An absolute-form target without a path has the path `/`.
    get_case("http://localhost", Reached(200, "root")),
    // HEAD, OPTIONS and unusual methods are checked like GET.
    method_case("HEAD", "/memories", Rejected),
    method_case("HEAD", "/docs", Reached(200, "")),
    method_case("OPTIONS", "/memories", Rejected),
    method_case("OPTIONS", "/docs", Reached(405, "")),
    method_case("OPTIONS", "*", Rejected),
    method_case("POST", "/memories", Rejected),
    method_case("PUT", "/memories/42", Rejected),
    method_case("DELETE", "/memories", Rejected),
    method_case("PATCH", "/memories/42", Rejected),
    method_case("TRACE", "/memories", Rejected),
    method_case("CONNECT", "localhost:443", Rejected),
    method_case("PROPFIND", "/memories", Rejected),
    method_case("get", "/memories", Rejected),
    method_case("X-BYPASS", "/memories", Rejected),
    method_case("POST", "/docs", Reached(405, "")),
    // A CORS preflight gets no pass without the opt-in.
    Case {
        method: "OPTIONS",
        target: "/memories",
        headers: &[
            ("origin", "http://localhost:3000"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "x-api-key"),
        ],
        expect: Rejected,
    },
    // No request header switches authentication off.
    header_case(&[("x-original-url", "/docs")]),
    header_case(&[("x-rewrite-url", "/docs")]),
    header_case(&[("x-forwarded-prefix", "/docs")]),
    header_case(&[("x-forwarded-prefix", "/static")]),
    header_case(&[("x-forwarded-path", "/docs")]),
    header_case(&[("x-forwarded-uri", "/docs")]),
    header_case(&[("x-envoy-original-path", "/docs")]),
    header_case(&[("x-middleware-subrequest", "middleware")]),
    header_case(&[(
        "x-middleware-subrequest",
        "src/middleware:src/middleware:src/middleware:src/middleware:src/middleware",
    )]),
    header_case(&[("x-http-method-override", "OPTIONS")]),
    header_case(&[("x-forwarded-for", "127.0.0.1")]),
    header_case(&[("x-real-ip", "127.0.0.1")]),
    header_case(&[("forwarded", "for=127.0.0.1;host=localhost;proto=https")]),
    header_case(&[("x-forwarded-host", "localhost")]),
    header_case(&[("host", "localhost")]),
    header_case(&[("authorization", KEY)]),
    header_case(&[("authorization", "Bearer hardening-key-0123456789abcdefgh")]),
    header_case(&[("cookie", "x-api-key=hardening-key-0123456789abcdefgh")]),
    header_case(&[("upgrade", "websocket"), ("connection", "upgrade")]),
];

/// Targets that `http::Uri` fails to parse. A server built on `http`
/// (hyper, and so axum) responds to them with its own `400` before any
/// middleware runs, so they never reach the layer.
const UNPARSEABLE: &[&str] = &[
    "",
    "/docs x",
    "/docs\t",
    "/docs\r\n",
    "/<script>",
    "/`",
    "/a\u{7f}",
    "http:/docs",
];

fn layer() -> ApiKeyLayer {
    ApiKeyLayer::builder()
        .key(KEY)
        .exempt("/")
        .exempt("/docs")
        .exempt("/openapi.json")
        .exempt_prefix("/static")
        .build()
        .expect("the test configuration is valid")
}

/// Builds a router with the example server's public routes, a static
/// prefix, a protected resource and a fallback, wrapped whole in the layer.
fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "root" }))
        .route("/docs", get(|| async { "docs" }))
        .route("/openapi.json", get(|| async { "openapi" }))
        .route("/static", get(|| async { "static" }))
        .route("/static/{*file}", get(|| async { "static" }))
        .route(
            "/memories",
            get(|| async { "memories" })
                .post(|| async { "memories" })
                .delete(|| async { "memories" }),
        )
        .route(
            "/memories/{id}",
            get(|| async { "memory" })
                .put(|| async { "memory" })
                .patch(|| async { "memory" }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "fallback") })
        .layer(layer())
}

fn request(case: &Case) -> Request<Body> {
    let method = Method::from_bytes(case.method.as_bytes()).expect("the test methods are valid");
    let mut builder = Request::builder().method(method).uri(case.target);
    for (name, value) in case.headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).expect("the test targets parse")
}

#[tokio::test]
async fn exempt_table_fails_closed() {
    assert!(CASES.len() >= 40, "the table covers every kind of path");

    for case in CASES {
        let label = format!("{} {:?} {:?}", case.method, case.target, case.headers);
        let response = app().oneshot(request(case)).await.unwrap();
        let (parts, body) = collect(response).await;

        match case.expect {
            Reached(status, expected_body) => {
                assert_eq!(parts.status.as_u16(), status, "{label}");
                assert!(!parts.headers.contains_key(WWW_AUTHENTICATE), "{label}");
                assert_eq!(body, expected_body, "{label}");
            }
            Rejected => {
                assert_eq!(parts.status, StatusCode::UNAUTHORIZED, "{label}");
                assert_eq!(parts.headers[WWW_AUTHENTICATE], "ApiKey", "{label}");
                assert_eq!(
                    parts.headers[CONTENT_TYPE], "application/problem+json",
                    "{label}"
                );
                if case.method == "HEAD" {
                    // axum drops the body of every response to HEAD.
                    assert_eq!(body, "", "{label}");
                } else {
                    assert!(body.contains("Missing API key"), "{label}: {body}");
                }
            }
        }
    }
}

#[tokio::test]
async fn rejected_paths_open_with_key() {
    // The same protected targets reach the router once the key is sent, so
    // each 401 above is the layer's doing and not the router's.
    for target in ["/memories", "//memories", "/static/../memories", "/DOCS"] {
        let request = Request::get(target)
            .header("x-api-key", KEY)
            .body(Body::empty())
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        let (parts, _) = collect(response).await;
        assert_ne!(parts.status, StatusCode::UNAUTHORIZED, "{target:?}");
    }
}

#[test]
fn uri_rejects_unparseable_targets() {
    for target in UNPARSEABLE {
        assert!(target.parse::<Uri>().is_err(), "{target:?}");
        let built = Request::get(*target).body(());
        assert!(built.is_err(), "{target:?}");
    }
}

/// Sends `raw` over a new connection and returns the whole response.
///
/// Every request carries `Connection: close`, so the server ends the
/// response by closing the connection. The read is bounded, so a hung
/// server fails the test instead of stalling it.
async fn exchange(address: std::net::SocketAddr, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(raw).await.unwrap();

    let mut response = Vec::new();
    let read = stream.read_to_end(&mut response);
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the server answers and closes within 10 s")
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn raw_targets_over_tcp_fail_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app()).await });

    // Targets that a Rust HTTP client would normalise before sending.
    let cases = [
        ("GET /static/../memories HTTP/1.1", "401"),
        ("GET /static/%2e%2e/memories HTTP/1.1", "401"),
        ("GET //memories HTTP/1.1", "401"),
        ("GET /./docs HTTP/1.1", "401"),
        ("GET http://localhost/memories HTTP/1.1", "401"),
        ("GET http://localhost/static/../memories HTTP/1.1", "401"),
        ("OPTIONS * HTTP/1.1", "401"),
        ("GET http://localhost/docs HTTP/1.1", "200"),
        ("GET /static/app.js HTTP/1.1", "200"),
        ("GET /docs HTTP/1.0", "200"),
    ];

    for (request_line, status) in cases {
        let raw = format!("{request_line}\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let response = exchange(address, raw.as_bytes()).await;
        let status_line = response.lines().next().unwrap_or_default();
        let code = status_line.split(' ').nth(1);
        assert_eq!(code, Some(status), "{request_line:?}: {status_line:?}");

        let challenge = response
            .to_ascii_lowercase()
            .contains("\r\nwww-authenticate: apikey\r\n");
        assert_eq!(challenge, status == "401", "{request_line:?}: {response}");
    }

    server.abort();
}
