//! [`ApiKeyAuth`], the service that checks each request.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{ACCESS_CONTROL_REQUEST_METHOD, AUTHORIZATION, ORIGIN};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use tower_service::Service;

use crate::credential::bearer_token;
use crate::future::ResponseFuture;
use crate::layer::{ApiKeyLayer, Settings};
use crate::rejection::RejectionReason;

/// Middleware that rejects requests without a valid API key.
///
/// Created by [`ApiKeyLayer`]. For each request it decides, in this order:
///
/// 1. authentication disabled: forward;
/// 2. the path is exempt: forward;
/// 3. exactly one credential header whose value equals a configured key:
///    insert the key's [`KeyName`](crate::KeyName) into the request extensions and forward;
/// 4. otherwise: respond `401 Unauthorized` with `WWW-Authenticate: ApiKey`
///    and never call the inner service.
///
/// Forwarded requests have their credential header marked sensitive, or
/// removed when [`strip_credential`](crate::ApiKeyLayerBuilder::strip_credential)
/// is set.
#[derive(Clone)]
pub struct ApiKeyAuth<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> ApiKeyAuth<S> {
    /// Wraps `inner` with the settings of `layer`.
    pub fn new(inner: S, layer: &ApiKeyLayer) -> Self {
        tower_layer::Layer::layer(layer, inner)
    }

    pub(crate) fn from_settings(inner: S, settings: Arc<Settings>) -> Self {
        Self { inner, settings }
    }

    /// Returns a reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Returns a mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ApiKeyAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<crate::future::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let settings = &*self.settings;
        let Some(keys) = &settings.keys else {
            return ResponseFuture::forwarded(self.inner.call(request));
        };

        if settings.exempt.is_exempt(request.uri().path())
            || (settings.allow_cors_preflight && is_cors_preflight(&request))
        {
            protect_credential(request.headers_mut(), settings);
            return ResponseFuture::forwarded(self.inner.call(request));
        }

        let verdict = settings
            .sources
            .extract(request.headers(), request.uri())
            .and_then(|presented| keys.verify(&presented).ok_or(RejectionReason::Invalid));

        match verdict {
            Ok(name) => {
                tracing::trace!(key = %name, "API key accepted");
                protect_credential(request.headers_mut(), settings);
                request.extensions_mut().insert(name);
                ResponseFuture::forwarded(self.inner.call(request))
            }
            Err(reason) => {
                tracing::debug!(
                    method = %request.method(),
                    path = request.uri().path(),
                    reason = reason.as_str(),
                    "request rejected: API key {reason}",
                );
                let (parts, _body) = request.into_parts();
                ResponseFuture::rejected(settings.rejecter.respond(reason, &parts))
            }
        }
    }
}

/// Returns `true` for a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`, which browsers send without
/// credentials.
fn is_cors_preflight<B>(request: &Request<B>) -> bool {
    request.method() == Method::OPTIONS
        && request.headers().contains_key(ORIGIN)
        && request
            .headers()
            .contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// Marks every credential header sensitive so that HTTP/2 encoders and
/// well-behaved loggers skip it, or removes them all when configured.
/// `Authorization` is marked too when bearer tokens are accepted, and only
/// its bearer tokens are removed, so other schemes still reach the inner
/// service.
fn protect_credential(headers: &mut HeaderMap, settings: &Settings) {
    let sources = &settings.sources;
    if settings.strip_credential {
        headers.remove(&sources.header);
        if sources.bearer {
            remove_bearer_tokens(headers);
        }
        return;
    }

    mark_sensitive(headers, &sources.header);
    if sources.bearer {
        mark_sensitive(headers, &AUTHORIZATION);
    }
}

fn remove_bearer_tokens(headers: &mut HeaderMap) {
    let has_other_schemes = headers
        .get_all(AUTHORIZATION)
        .iter()
        .any(|value| bearer_token(value.as_bytes()).is_none());
    if !has_other_schemes {
        headers.remove(AUTHORIZATION);
        return;
    }

    let others: Vec<HeaderValue> = headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter(|value| bearer_token(value.as_bytes()).is_none())
        .cloned()
        .collect();
    headers.remove(AUTHORIZATION);
    for value in others {
        headers.append(AUTHORIZATION, value);
    }
}

fn mark_sensitive(headers: &mut HeaderMap, name: &HeaderName) {
    // Not through `entry`: it reserves room for one more header first, and
    // so allocates for a map that is empty or full even when the header is
    // absent. `get_mut` and `iter_mut` never allocate.
    match headers.get_all(name).iter().count() {
        0 => {}
        1 => {
            if let Some(value) = headers.get_mut(name) {
                value.set_sensitive(true);
            }
        }
        _ => {
            for (header, value) in headers.iter_mut() {
                if header == name {
                    value.set_sensitive(true);
                }
            }
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for ApiKeyAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyAuth")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
    use http::{HeaderValue, StatusCode};
    use http_body_util::{BodyExt, Full};
    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::KeyName;

    const KEY: &str = "test-key-0123456789abcdef";

    /// Sends `request` through the layer around a service that counts its
    /// calls and echoes the matched key name and the forwarded header.
    async fn send(layer: &ApiKeyLayer, request: Request<Full<Bytes>>) -> (Response<String>, usize) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let inner = service_fn(move |request: Request<Full<Bytes>>| {
            counter.fetch_add(1, Ordering::SeqCst);
            let name = request
                .extensions()
                .get::<KeyName>()
                .map(KeyName::to_string);
            let header = request
                .headers()
                .get("x-api-key")
                .map(|value| format!("sensitive={}", value.is_sensitive()));
            let body = format!("name={name:?} header={header:?}");
            async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
        });

        let response = ApiKeyAuth::new(inner, layer)
            .oneshot(request)
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let body = String::from_utf8(bytes.to_vec()).unwrap();
        (
            Response::from_parts(parts, body),
            calls.load(Ordering::SeqCst),
        )
    }

    fn get(path: &str) -> http::request::Builder {
        Request::get(path)
    }

    fn empty(builder: http::request::Builder) -> Request<Full<Bytes>> {
        builder.body(Full::default()).unwrap()
    }

    fn layer() -> ApiKeyLayer {
        ApiKeyLayer::builder()
            .key(KEY)
            .exempt("/docs")
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn valid_key_reaches_inner_with_name() {
        let (response, calls) =
            send(&layer(), empty(get("/memories").header("x-api-key", KEY))).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(calls, 1);
        assert_eq!(
            response.body(),
            r#"name=Some("default") header=Some("sensitive=true")"#
        );
    }

    #[tokio::test]
    async fn missing_key_is_rejected_without_calling_inner() {
        let (response, calls) = send(&layer(), empty(get("/memories"))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(calls, 0);
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "ApiKey");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        assert!(
            response.body().contains("X-API-Key header"),
            "{}",
            response.body()
        );
    }

    #[tokio::test]
    async fn wrong_keys_are_invalid() {
        let upper = KEY.to_uppercase();
        let padded = format!(" {KEY} ");
        let longer = format!("{KEY}0");
        let wrong = ["", "wrong", &KEY[..KEY.len() - 1], &longer, &upper, &padded];
        for value in wrong {
            let request = empty(get("/memories").header("x-api-key", value));
            let (response, calls) = send(&layer(), request).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{value:?}");
            assert_eq!(calls, 0, "{value:?}");
            assert!(response.body().contains("Invalid API key."), "{value:?}");
        }
    }

    #[tokio::test]
    async fn repeated_header_is_ambiguous() {
        for (first, second) in [(KEY, "wrong"), ("wrong", KEY), (KEY, KEY)] {
            let request = empty(
                get("/memories")
                    .header("x-api-key", first)
                    .header("x-api-key", second),
            );
            let (response, calls) = send(&layer(), request).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(calls, 0);
            assert!(
                response.body().contains("exactly one"),
                "{}",
                response.body()
            );
        }
    }

    #[tokio::test]
    async fn obs_text_value_is_invalid() {
        let value = HeaderValue::from_bytes(b"key-\xff\x80-value").unwrap();
        let (response, calls) =
            send(&layer(), empty(get("/memories").header("x-api-key", value))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(calls, 0);
    }

    #[tokio::test]
    async fn exempt_path_passes_without_key() {
        let (response, calls) = send(&layer(), empty(get("/docs?x=1"))).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(calls, 1);
        assert_eq!(response.body(), "name=None header=None");
    }

    #[tokio::test]
    async fn exempt_path_passes_with_wrong_key() {
        let (response, calls) =
            send(&layer(), empty(get("/docs").header("x-api-key", "wrong"))).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(calls, 1);
        assert_eq!(
            response.body(),
            r#"name=None header=Some("sensitive=true")"#
        );
    }

    #[tokio::test]
    async fn disabled_layer_forwards_everything() {
        let layer = ApiKeyLayer::disabled();
        let (response, calls) =
            send(&layer, empty(get("/memories").header("x-api-key", "any"))).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(calls, 1);
        assert!(!layer.is_enabled());
    }

    #[tokio::test]
    async fn strip_credential_removes_header() {
        let layer = ApiKeyLayer::builder()
            .key(KEY)
            .strip_credential(true)
            .build()
            .unwrap();
        let (response, calls) =
            send(&layer, empty(get("/memories").header("x-api-key", KEY))).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(calls, 1);
        assert_eq!(response.body(), r#"name=Some("default") header=None"#);
    }

    #[tokio::test]
    async fn custom_header_name_is_used() {
        let layer = ApiKeyLayer::builder()
            .key(KEY)
            .header_name("X-Service-Token")
            .build()
            .unwrap();
        let (response, _) = send(&layer, empty(get("/m").header("x-api-key", KEY))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(
            response.body().contains("X-Service-Token header"),
            "{}",
            response.body()
        );

        let (response, calls) = send(&layer, empty(get("/m").header("x-service-token", KEY))).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn rejection_body_is_problem_json() {
        let (response, _) = send(&layer(), empty(get("/memories"))).await;
        let json: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(json["status"], 401);
        assert_eq!(json["title"], "Unauthorized");
        assert_eq!(
            json["detail"],
            "Missing API key: send it in the X-API-Key header."
        );
    }

    #[tokio::test]
    async fn bearer_token_is_accepted_when_enabled() {
        let bearer_layer = ApiKeyLayer::builder()
            .key(KEY)
            .bearer(true)
            .build()
            .unwrap();
        let bearer = format!("Bearer {KEY}");
        let (response, calls) = send(
            &bearer_layer,
            empty(get("/m").header("authorization", &bearer)),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(calls, 1);

        let (response, calls) =
            send(&layer(), empty(get("/m").header("authorization", &bearer))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(calls, 0);
    }

    #[tokio::test]
    async fn header_and_bearer_disagreeing_is_ambiguous() {
        let layer = ApiKeyLayer::builder()
            .key(KEY)
            .bearer(true)
            .build()
            .unwrap();
        let request = get("/m")
            .header("x-api-key", KEY)
            .header("authorization", "Bearer other");
        let (response, calls) = send(&layer, empty(request)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(calls, 0);
        assert!(response.body().contains("Ambiguous"), "{}", response.body());
    }

    #[tokio::test]
    async fn query_param_is_accepted_only_when_enabled() {
        let uri = format!("/m?api_key={KEY}");
        let (response, _) = send(&layer(), empty(get(&uri))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

        let query_layer = ApiKeyLayer::builder()
            .key(KEY)
            .insecure_query_param("api_key")
            .build()
            .unwrap();
        let (response, calls) = send(&query_layer, empty(get(&uri))).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn preflight_passes_only_when_allowed() {
        let preflight = || {
            Request::options("/m")
                .header("origin", "http://localhost:3000")
                .header("access-control-request-method", "POST")
        };
        let (response, _) = send(&layer(), empty(preflight())).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

        let layer = ApiKeyLayer::builder()
            .key(KEY)
            .allow_cors_preflight(true)
            .build()
            .unwrap();
        let (response, calls) = send(&layer, empty(preflight())).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(calls, 1);

        let plain_options = Request::options("/m").header("origin", "http://localhost:3000");
        let (response, calls) = send(&layer, empty(plain_options)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(calls, 0);
    }

    #[tokio::test]
    async fn custom_rejection_receives_reason() {
        let layer = ApiKeyLayer::builder()
            .key(KEY)
            .rejection(|reason, request| {
                let body = format!("{reason} {}", request.uri.path());
                let mut response = Response::new(Bytes::from(body));
                *response.status_mut() = StatusCode::FORBIDDEN;
                response
            })
            .build()
            .unwrap();

        let (response, calls) = send(&layer, empty(get("/m").header("x-api-key", "wrong"))).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(calls, 0);
        assert_eq!(response.body(), "invalid /m");

        let (response, _) = send(&layer, empty(get("/m"))).await;
        assert_eq!(response.body(), "missing /m");
    }

    #[tokio::test]
    async fn replaced_key_set_takes_effect() {
        let layer = layer();
        let mut rotated = crate::KeySet::new();
        rotated.insert("rotated", "rotated-key-0123456789").unwrap();
        layer.key_set_handle().unwrap().replace(rotated);

        let (response, calls) = send(&layer, empty(get("/m").header("x-api-key", KEY))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(calls, 0);

        let request = get("/m").header("x-api-key", "rotated-key-0123456789");
        let (response, calls) = send(&layer, empty(request)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(calls, 1);
        assert!(response.body().contains("rotated"), "{}", response.body());
    }

    #[test]
    fn require_key_fails_without_key() {
        let error = ApiKeyLayer::builder()
            .key_from_env("TOWER_API_KEY_TEST_UNSET_REQUIRED")
            .require_key(true)
            .build()
            .unwrap_err();
        assert!(matches!(error, crate::ConfigError::KeyRequired { .. }));
        assert!(
            error
                .to_string()
                .contains("TOWER_API_KEY_TEST_UNSET_REQUIRED"),
            "{error}"
        );
    }

    #[test]
    fn invalid_realm_and_query_param_are_errors() {
        let realm = ApiKeyLayer::builder()
            .key(KEY)
            .realm("a\"b")
            .build()
            .unwrap_err();
        assert!(
            matches!(realm, crate::ConfigError::InvalidRealm { .. }),
            "{realm:?}"
        );
        let param = ApiKeyLayer::builder()
            .key(KEY)
            .insecure_query_param("a&b")
            .build()
            .unwrap_err();
        assert!(
            matches!(param, crate::ConfigError::InvalidQueryParam { .. }),
            "{param:?}"
        );
    }

    #[tokio::test]
    async fn strip_credential_keeps_other_authorization_schemes() {
        let layer = ApiKeyLayer::builder()
            .key(KEY)
            .bearer(true)
            .strip_credential(true)
            .build()
            .unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let inner = service_fn(move |request: Request<Full<Bytes>>| {
            counter.fetch_add(1, Ordering::SeqCst);
            let values: Vec<String> = request
                .headers()
                .get_all(AUTHORIZATION)
                .iter()
                .map(|value| value.to_str().unwrap().to_owned())
                .collect();
            async move { Ok::<_, Infallible>(Response::new(values.join("|"))) }
        });

        let request = get("/m")
            .header(AUTHORIZATION, "Basic dXNlcjpwYXNz")
            .header(AUTHORIZATION, format!("Bearer {KEY}"));
        let response = ApiKeyAuth::new(inner, &layer)
            .oneshot(empty(request))
            .await
            .unwrap();

        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "Basic dXNlcjpwYXNz");
    }

    #[test]
    fn debug_output_redacts_key() {
        let service = ApiKeyAuth::new((), &layer());
        let output = format!("{service:?} {:?}", layer());
        assert!(output.contains("ApiKeyAuth"), "{output}");
        assert!(output.contains("[redacted]"), "{output}");
        assert!(!output.contains(KEY), "{output}");
    }
}
