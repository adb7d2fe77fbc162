//! Backpressure: `poll_ready` is the inner service's, and the inner service
//! is called only after it reported ready.

mod support;

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::limit::ConcurrencyLimitLayer;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_api_key::{ApiKeyAuth, ApiKeyLayer};

use support::KEY;

fn layer() -> ApiKeyLayer {
    ApiKeyLayer::builder()
        .key(KEY)
        .exempt("/docs")
        .build()
        .expect("the test key is valid")
}

fn request(path: &str, key: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = Request::get(path);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    request.body(Full::default()).unwrap()
}

/// Polls `service` for readiness once, without waiting.
fn poll_ready_once<S, R>(service: &mut S) -> Poll<Result<(), S::Error>>
where
    S: Service<R>,
{
    service.poll_ready(&mut Context::from_waker(Waker::noop()))
}

/// A service that is ready only once its gate is open, and counts calls
/// made without a `Ready` from `poll_ready` since the previous call.
///
/// A clone starts not ready, as tower requires: readiness belongs to the
/// instance that was polled.
struct Gated {
    open: Arc<AtomicBool>,
    ready: bool,
    calls: Arc<AtomicUsize>,
    unready_calls: Arc<AtomicUsize>,
}

impl Gated {
    fn new() -> Self {
        Self {
            open: Arc::new(AtomicBool::new(false)),
            ready: false,
            calls: Arc::new(AtomicUsize::new(0)),
            unready_calls: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Clone for Gated {
    fn clone(&self) -> Self {
        Self {
            open: Arc::clone(&self.open),
            ready: false,
            calls: Arc::clone(&self.calls),
            unready_calls: Arc::clone(&self.unready_calls),
        }
    }
}

impl Service<Request<Full<Bytes>>> for Gated {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The tests poll again by hand after opening the gate, so no waker
        // is kept.
        if self.open.load(Ordering::SeqCst) {
            self.ready = true;
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, _request: Request<Full<Bytes>>) -> Self::Future {
        if !self.ready {
            self.unready_calls.fetch_add(1, Ordering::SeqCst);
        }
        self.ready = false;
        self.calls.fetch_add(1, Ordering::SeqCst);
        ready(Ok(Response::new(Full::new(Bytes::from_static(b"inner")))))
    }
}

#[tokio::test]
async fn not_ready_inner_holds_back_requests() {
    let inner = Gated::new();
    let open = Arc::clone(&inner.open);
    let calls = Arc::clone(&inner.calls);
    let mut service = ApiKeyAuth::new(inner, &layer());

    // Readiness does not depend on the request, so a request without a key
    // waits like any other.
    assert!(poll_ready_once(&mut service).is_pending());
    assert!(poll_ready_once(&mut service).is_pending());
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    open.store(true, Ordering::SeqCst);
    assert!(poll_ready_once(&mut service).is_ready());
    let response = service.call(request("/memories", Some(KEY))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn inner_called_only_when_ready() {
    let inner = Gated::new();
    inner.open.store(true, Ordering::SeqCst);
    let calls = Arc::clone(&inner.calls);
    let unready_calls = Arc::clone(&inner.unready_calls);
    let mut service = ApiKeyAuth::new(inner, &layer());

    let requests = [
        (request("/memories", Some(KEY)), StatusCode::OK),
        (request("/memories", None), StatusCode::UNAUTHORIZED),
        (request("/docs", None), StatusCode::OK),
        (
            request("/memories", Some("wrong")),
            StatusCode::UNAUTHORIZED,
        ),
        (request("/memories", Some(KEY)), StatusCode::OK),
    ];
    for (index, (request, status)) in requests.into_iter().enumerate() {
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(response.status(), status, "request {index}");
    }

    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(unready_calls.load(Ordering::SeqCst), 0);

    // Cloning the middleware clones the inner service, which starts not
    // ready. Oneshot polls it before calling.
    let response = service
        .clone()
        .oneshot(request("/memories", Some(KEY)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(unready_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn concurrency_limit_applies_through_layer() {
    let inner = service_fn(|_request: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"inner"))))
    });
    let mut first = ServiceBuilder::new()
        .layer(layer())
        .layer(ConcurrencyLimitLayer::new(1))
        .service(inner);
    let mut second = first.clone();

    // The first request takes the only slot and keeps it while its
    // response future lives.
    first.ready().await.unwrap();
    let pending = first.call(request("/memories", Some(KEY)));
    assert!(poll_ready_once(&mut second).is_pending());

    drop(pending);
    assert!(poll_ready_once(&mut second).is_ready());
    let response = second.call(request("/memories", Some(KEY))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn rejection_keeps_reservation_until_drop() {
    // A rejected request never reaches the inner service, so the slot that
    // `poll_ready` reserved stays with this middleware instance until it is
    // called again or dropped, as with any tower service that responds
    // by itself. Servers that use a fresh clone per request (hyper-util,
    // axum::serve) drop it right after the call.
    let inner = service_fn(|_request: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"inner"))))
    });
    let mut first = ServiceBuilder::new()
        .layer(layer())
        .layer(ConcurrencyLimitLayer::new(1))
        .service(inner);
    let mut second = first.clone();

    first.ready().await.unwrap();
    let response = first.call(request("/memories", None)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(poll_ready_once(&mut second).is_pending());

    drop(first);
    assert!(poll_ready_once(&mut second).is_ready());
}
