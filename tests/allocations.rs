//! Heap allocations the layer adds to one request, counted with a global
//! allocator.
//!
//! An accepted request may cost what inserting the matched [`KeyName`] into
//! the request's extensions costs, and nothing more. A rejected one may cost
//! at most three allocations in all. Each case sends a request once to warm up
//! (`tracing` registers a call site on its first use), then counts the
//! allocations of a second, identical request: `poll_ready`, `call`, and
//! polling the response future to completion. The requests are built before
//! counting starts. Counting is per thread, so tests running in parallel do
//! not disturb each other.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::{Future, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, Service, service_fn};
use tower_api_key::{ApiKeyLayer, KeyName};

const KEY: &str = "5d41402abc4b2a76b9719d911017c592";
const WRONG_KEY: &str = "5d41402abc4b2a76b9719d911017c593";

/// Allocations a rejected request may cost. The default `401` takes two
/// when measured with http 1: the index and entry tables of its header map.
const MAX_REJECTION_ALLOCATIONS: usize = 3;

// ==== counting allocator ====

/// [`System`], counting the allocations that the current thread makes while
/// its counter is on. Frees are not counted.
struct CountingAllocator;

thread_local! {
    // `const` thread-locals with no destructor never allocate, so the
    // allocator can use them.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn record_allocation() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
    }
}

// SAFETY: every method forwards to `System` unchanged; the counting touches
// only `const` thread-locals, which neither allocate nor re-enter.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record_allocation();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record_allocation();
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record_allocation();
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `f` and returns what it returns with the number of allocations the
/// current thread made meanwhile.
fn count_allocations<T>(f: impl FnOnce() -> T) -> (T, usize) {
    ALLOCATIONS.with(|count| count.set(0));
    COUNTING.with(|counting| counting.set(true));
    let output = f();
    COUNTING.with(|counting| counting.set(false));
    (output, ALLOCATIONS.with(Cell::get))
}

// ==== requests ====

type Body = Full<Bytes>;

/// Builds the inner service, which returns `200` with an empty body and
/// allocates nothing itself.
fn inner() -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
    service_fn(|_request: Request<Body>| ready(Ok::<_, Infallible>(Response::new(Body::default()))))
}

fn request(path: &str, keys: &[&str]) -> Request<Body> {
    let mut builder = Request::get(path);
    for key in keys {
        builder = builder.header("x-api-key", *key);
    }
    builder.body(Body::default()).unwrap()
}

/// Sends `request` through `service`, polling with a no-op waker, and
/// returns the response status. Every future here is ready on its first
/// poll, so no executor is needed.
fn send<S, B>(service: &mut S, request: Request<Body>) -> StatusCode
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let future = pin!(service.call(request));
    match future.poll(&mut cx) {
        Poll::Ready(Ok(response)) => response.status(),
        _ => panic!("the response future is not ready on the first poll"),
    }
}

/// Sends `make_request()` twice through `service` and returns the status
/// and allocation count of the second time.
fn counted<S, B>(mut service: S, make_request: impl Fn() -> Request<Body>) -> (StatusCode, usize)
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    send(&mut service, make_request());
    let request = make_request();
    count_allocations(|| send(&mut service, request))
}

/// Adds up to `count` headers other than the credential one, stopping when
/// the map is full, so `usize::MAX` fills it to its capacity.
fn with_headers(mut request: Request<Body>, count: usize) -> Request<Body> {
    let headers = request.headers_mut();
    let mut i = 0;
    while i < count && (headers.is_empty() || headers.len() < headers.capacity()) {
        let name = http::HeaderName::try_from(format!("x-extra-{i}")).unwrap();
        headers.insert(name, http::HeaderValue::from_static("1"));
        i += 1;
    }
    request
}

fn enabled_layer(keys: usize) -> ApiKeyLayer {
    let mut builder = ApiKeyLayer::builder().exempt("/docs");
    for i in 0..keys {
        let key = if i + 1 == keys {
            KEY.to_owned()
        } else {
            format!("{i:04}{}", &KEY[4..])
        };
        builder = builder.named_key(format!("key-{i}"), key);
    }
    builder.build().unwrap()
}

/// Allocations of inserting a key name into the extensions of a request
/// that has none yet: what the layer is allowed to add on acceptance.
fn extension_insert_allocations() -> usize {
    let name = KeyName::new("key-0").unwrap();
    let mut request = request("/memories", &[KEY]);
    let (_, count) = count_allocations(|| request.extensions_mut().insert(name.clone()));
    count
}

// ==== tests ====

#[test]
fn counting_allocator_counts() {
    let (_, count) = count_allocations(|| Box::new(1u64));
    assert_eq!(count, 1);

    let (_, count) = count_allocations(|| 1u64);
    assert_eq!(count, 0);
}

#[test]
fn inner_service_allocates_nothing() {
    let (status, count) = counted(inner(), || request("/memories", &[KEY]));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(count, 0);
}

#[test]
fn accepted_request_adds_only_key_name() {
    let allowed = extension_insert_allocations();
    assert!(allowed > 0, "inserting an extension allocates");

    for keys in [1, 8, 64] {
        let valid = || request("/memories", &[KEY]);
        let (_, bare) = counted(inner(), valid);
        let (status, layered) = counted(enabled_layer(keys).layer(inner()), valid);

        assert_eq!(status, StatusCode::OK, "{keys} key(s)");
        assert_eq!(layered, bare + allowed, "{keys} key(s)");
    }
}

#[test]
fn exempt_request_adds_nothing() {
    let exempt = || with_headers(request("/docs", &[]), 2);
    let (_, bare) = counted(inner(), exempt);
    let (status, layered) = counted(enabled_layer(1).layer(inner()), exempt);

    assert_eq!(status, StatusCode::OK);
    assert_eq!(layered, bare);
}

/// Marking the header sensitive must not grow the map: an empty map, or one
/// filled to its capacity, gets no allocation from the layer.
#[test]
fn full_header_map_adds_nothing() {
    let cases: [(&str, &str, &[&str], usize); 3] = [
        ("exempt, no headers", "/docs", &[], 0),
        ("exempt, full map", "/docs", &[], usize::MAX),
        ("accepted, full map", "/memories", &[KEY], usize::MAX),
    ];
    for (case, path, keys, extra) in cases {
        let make_request = || with_headers(request(path, keys), extra);
        let allowed = if keys.is_empty() {
            0
        } else {
            extension_insert_allocations()
        };
        let (_, bare) = counted(inner(), make_request);
        let (status, layered) = counted(enabled_layer(1).layer(inner()), make_request);

        assert_eq!(status, StatusCode::OK, "{case}");
        assert_eq!(layered, bare + allowed, "{case}");
    }
}

#[test]
fn disabled_layer_adds_nothing() {
    let valid = || request("/memories", &[KEY]);
    let (_, bare) = counted(inner(), valid);
    let (status, layered) = counted(ApiKeyLayer::disabled().layer(inner()), valid);

    assert_eq!(status, StatusCode::OK);
    assert_eq!(layered, bare);
}

#[test]
fn rejected_request_allocates_at_most_three() {
    let cases: [(&str, &[&str]); 4] = [
        ("missing", &[]),
        ("invalid", &[WRONG_KEY]),
        ("empty", &[""]),
        ("ambiguous", &[KEY, KEY]),
    ];
    for (case, keys) in cases {
        let rejected = || request("/memories", keys);
        let (_, bare) = counted(inner(), rejected);
        let (status, layered) = counted(enabled_layer(8).layer(inner()), rejected);

        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}");
        assert!(
            layered <= MAX_REJECTION_ALLOCATIONS,
            "{case}: {layered} allocations (the bare service: {bare})"
        );
    }
}
