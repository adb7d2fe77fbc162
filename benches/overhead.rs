//! Cost of one request through the layer, against the bare inner service,
//! tower-http's deprecated bearer check, and a hand-written check.
//!
//! Every case sends a request that was built outside the measured part
//! (`iter_batched`) to the same trivial inner service, whose future is ready
//! on the first poll. The measured part is `poll_ready`, `call` and one poll
//! of the response future, so the difference to `bare` is the layer's own
//! cost. The inner service drops the request inside the measured part, and
//! criterion drops the response outside it. `bare_with_key_name` adds to
//! `bare` only the `KeyName` insert that the layer makes on every accepted
//! request and tower-http's check does not.
//!
//! ```text
//! cargo bench --bench overhead
//! ```

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{
    BatchSize, BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main,
};
use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use pin_project_lite::pin_project;
use subtle::ConstantTimeEq;
use tower::util::MapRequestLayer;
use tower::{Layer, Service, service_fn};
use tower_api_key::{ApiKeyLayer, KeyName};

/// A 32-character key, the length of `openssl rand -hex 16`.
const KEY: &str = "5d41402abc4b2a76b9719d911017c592";
/// As long as [`KEY`], differing in the last character.
const WRONG_KEY: &str = "5d41402abc4b2a76b9719d911017c593";

type Body = Full<Bytes>;

/// Builds the inner service of every case, which returns `200` with an empty
/// body.
fn inner() -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
    service_fn(|_request: Request<Body>| ready(Ok::<_, Infallible>(Response::new(Body::default()))))
}

fn request(path: &str, header: Option<(HeaderName, &str)>) -> Request<Body> {
    let mut builder = Request::get(path);
    if let Some((name, value)) = header {
        builder = builder.header(name, value);
    }
    builder.body(Body::default()).expect("the request is valid")
}

fn api_key(value: &str) -> Option<(HeaderName, &str)> {
    Some((HeaderName::from_static("x-api-key"), value))
}

/// Sends `request` through `service` and returns the response. The future
/// must be ready on the first poll, which holds for every service here
/// because the inner one is.
fn send<S, B>(service: &mut S, request: Request<Body>) -> Response<B>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match service.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("the service is not ready"),
    }
    let future = pin!(service.call(request));
    match future.poll(&mut cx) {
        Poll::Ready(Ok(response)) => response,
        _ => panic!("the response future is not ready on the first poll"),
    }
}

/// Measures one case, named `name` or `name/{keys}`, after checking that it
/// responds with `expected`.
fn bench_case<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    (name, keys): (&str, Option<usize>),
    mut service: S,
    make_request: impl Fn() -> Request<Body>,
    expected: StatusCode,
) where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let status = send(&mut service, make_request()).status();
    assert_eq!(status, expected, "{name} {keys:?}");

    let id = match keys {
        Some(keys) => BenchmarkId::new(name, keys),
        None => BenchmarkId::from_parameter(name),
    };
    group.bench_function(id, |b| {
        b.iter_batched(
            &make_request,
            |request| send(&mut service, request),
            BatchSize::SmallInput,
        )
    });
}

fn layer_with_keys(count: usize) -> ApiKeyLayer {
    let mut builder = ApiKeyLayer::builder().exempt("/docs");
    for i in 0..count {
        builder = builder.named_key(format!("key-{i}"), numbered_key(i, count));
    }
    builder.build().expect("the configuration is valid")
}

/// Returns the `i`-th of `count` keys. The last one is [`KEY`], so the request that
/// carries it matches the last key compared.
fn numbered_key(i: usize, count: usize) -> String {
    if i + 1 == count {
        KEY.to_owned()
    } else {
        format!("{i:04}{}", &KEY[4..])
    }
}

fn overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("overhead");
    let layer = layer_with_keys(1);
    let valid = || request("/memories", api_key(KEY));

    bench_case(&mut group, ("bare", None), inner(), valid, StatusCode::OK);

    // What the layer must spend on an accepted request whatever its check
    // costs: inserting the matched key's name into the extensions.
    let name = KeyName::new("default").expect("the name is valid");
    let with_key_name = MapRequestLayer::new(move |mut request: Request<Body>| {
        request.extensions_mut().insert(name.clone());
        request
    });
    bench_case(
        &mut group,
        ("bare_with_key_name", None),
        with_key_name.layer(inner()),
        valid,
        StatusCode::OK,
    );
    bench_case(
        &mut group,
        ("disabled", None),
        ApiKeyLayer::disabled().layer(inner()),
        valid,
        StatusCode::OK,
    );
    bench_case(
        &mut group,
        ("exempt", None),
        layer.layer(inner()),
        // With the header like the other cases, so that the requests differ
        // only in the path.
        || request("/docs", api_key(KEY)),
        StatusCode::OK,
    );
    bench_case(
        &mut group,
        ("valid_key", None),
        layer.layer(inner()),
        valid,
        StatusCode::OK,
    );
    bench_case(
        &mut group,
        ("missing_key", None),
        layer.layer(inner()),
        || request("/memories", None),
        StatusCode::UNAUTHORIZED,
    );
    bench_case(
        &mut group,
        ("invalid_key", None),
        layer.layer(inner()),
        || request("/memories", api_key(WRONG_KEY)),
        StatusCode::UNAUTHORIZED,
    );

    let bearer = format!("Bearer {KEY}");
    #[allow(deprecated)] // Deprecated upstream; measured as the reference it was.
    let tower_http = tower_http::validate_request::ValidateRequestHeaderLayer::bearer(KEY);
    bench_case(
        &mut group,
        ("tower_http_bearer", None),
        tower_http.layer(inner()),
        || request("/memories", Some((AUTHORIZATION, bearer.as_str()))),
        StatusCode::OK,
    );
    bench_case(
        &mut group,
        ("handwritten", None),
        Handwritten::new(inner(), KEY),
        valid,
        StatusCode::OK,
    );

    for count in [1, 8, 64] {
        bench_case(
            &mut group,
            ("valid_key_with_keys", Some(count)),
            layer_with_keys(count).layer(inner()),
            valid,
            StatusCode::OK,
        );
    }
    group.finish();
}

/// The check a service grows by hand: one key, read from `X-API-Key`,
/// compared with `subtle`, and a bare `401` otherwise. It has no exempt
/// paths, no key names and no problem body, and its future is not boxed, so
/// it is the cheapest check a user would write.
#[derive(Clone)]
struct Handwritten<S> {
    inner: S,
    key: Bytes,
}

impl<S> Handwritten<S> {
    fn new(inner: S, key: &str) -> Self {
        Self {
            inner,
            key: Bytes::copy_from_slice(key.as_bytes()),
        }
    }
}

impl<S> Service<Request<Body>> for Handwritten<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = HandwrittenFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let presented = request
            .headers()
            .get("x-api-key")
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        if bool::from(presented.ct_eq(&self.key)) {
            return HandwrittenFuture::Forwarded {
                future: self.inner.call(request),
            };
        }

        let mut response = Response::new(Body::default());
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        HandwrittenFuture::Rejected {
            ready: ready(Ok(response)),
        }
    }
}

pin_project! {
    #[project = HandwrittenProj]
    enum HandwrittenFuture<F, E> {
        Forwarded { #[pin] future: F },
        Rejected { #[pin] ready: Ready<Result<Response<Body>, E>> },
    }
}

impl<F, E> Future for HandwrittenFuture<F, E>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            HandwrittenProj::Forwarded { future } => future.poll(cx),
            HandwrittenProj::Rejected { ready } => ready.poll(cx),
        }
    }
}

criterion_group!(benches, overhead);
criterion_main!(benches);
