//! Why a request was rejected, and the default `401` response.

use std::fmt;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

/// Why a request was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionReason {
    /// The request carries no credential.
    Missing,
    /// The credential does not equal any configured key.
    Invalid,
    /// The credential header appears more than once, so no single value can
    /// be trusted to be the one every hop saw.
    Ambiguous,
}

impl RejectionReason {
    /// Returns the reason as a lowercase word for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::Ambiguous => "ambiguous",
        }
    }
}

impl fmt::Display for RejectionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Builds a custom rejection response from the reason and the rejected
/// request's head.
pub(crate) type RejectFn =
    dyn Fn(RejectionReason, &Parts) -> Response<Bytes> + Send + Sync + 'static;

/// How rejections are answered: the built-in responses, or the user's.
#[derive(Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "built once per layer and shared behind an Arc, so its size costs nothing per request"
)]
pub(crate) enum Rejecter {
    Default(DefaultRejection),
    Custom(Arc<RejectFn>),
}

impl Rejecter {
    pub(crate) fn respond(&self, reason: RejectionReason, request: &Parts) -> Response<Bytes> {
        match self {
            Self::Default(default) => default.response(reason, &request.headers),
            Self::Custom(reject) => reject(reason, request),
        }
    }
}

impl fmt::Debug for Rejecter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default(default) => f.debug_tuple("Default").field(default).finish(),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// The built-in rejections, rendered once at construction so that a
/// rejection costs no formatting.
#[derive(Debug, Clone)]
pub(crate) struct DefaultRejection {
    challenge: HeaderValue,
    missing: Detail,
    invalid: Detail,
    ambiguous: Detail,
}

/// One reason's problem document, and its `grpc-message`.
#[derive(Debug, Clone)]
struct Detail {
    problem: Bytes,
    grpc_message: HeaderValue,
}

const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");
const GRPC: HeaderValue = HeaderValue::from_static("application/grpc");
/// The gRPC status code UNAUTHENTICATED.
const GRPC_UNAUTHENTICATED: HeaderValue = HeaderValue::from_static("16");

impl DefaultRejection {
    /// `sources` describes where the key may be sent, such as "the
    /// X-API-Key header"; the `missing` and `ambiguous` details name it.
    /// The caller validates `realm` so that it needs no escaping.
    pub(crate) fn new(sources: &str, realm: Option<&str>) -> Self {
        let challenge = match realm {
            Some(realm) => HeaderValue::from_str(&format!("ApiKey realm=\"{realm}\""))
                .unwrap_or(HeaderValue::from_static("ApiKey")),
            None => HeaderValue::from_static("ApiKey"),
        };

        Self {
            challenge,
            missing: Detail::new(&format!("Missing API key: send it in {sources}.")),
            invalid: Detail::new("Invalid API key."),
            ambiguous: Detail::new(&format!(
                "Ambiguous API key: send exactly one key, in {sources}."
            )),
        }
    }

    /// Builds the rejection: a `401` problem document, or for a gRPC
    /// request a `200` whose `grpc-status` is UNAUTHENTICATED, which gRPC
    /// clients report as such instead of as a transport error.
    pub(crate) fn response(&self, reason: RejectionReason, headers: &HeaderMap) -> Response<Bytes> {
        let detail = match reason {
            RejectionReason::Missing => &self.missing,
            RejectionReason::Invalid => &self.invalid,
            RejectionReason::Ambiguous => &self.ambiguous,
        };

        if is_grpc(headers) {
            let mut response = Response::new(Bytes::new());
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, GRPC);
            headers.insert("grpc-status", GRPC_UNAUTHENTICATED);
            headers.insert("grpc-message", detail.grpc_message.clone());
            return response;
        }

        let mut response = Response::new(detail.problem.clone());
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        let headers = response.headers_mut();
        headers.insert(WWW_AUTHENTICATE, self.challenge.clone());
        headers.insert(CONTENT_TYPE, PROBLEM_JSON);
        response
    }
}

impl Detail {
    /// `detail` must need no JSON escaping: it is built from fixed text and
    /// validated header and parameter names.
    fn new(detail: &str) -> Self {
        let problem = Bytes::from(format!(
            r#"{{"type":"about:blank","title":"Unauthorized","status":401,"detail":"{detail}"}}"#
        ));
        // `grpc-message` is percent-encoded; of the visible ASCII that the
        // detail contains, only `%` needs it.
        let grpc_message = HeaderValue::from_str(&detail.replace('%', "%25"))
            .unwrap_or(HeaderValue::from_static("unauthenticated"));
        Self {
            problem,
            grpc_message,
        }
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(response: &Response<Bytes>) -> &str {
        std::str::from_utf8(response.body()).unwrap()
    }

    #[test]
    fn missing_detail_names_the_sources() {
        let rejection = DefaultRejection::new("the X-API-Key header", None);
        let response = rejection.response(RejectionReason::Missing, &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "ApiKey");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        assert!(
            body(&response).contains(r#""status":401"#),
            "{}",
            body(&response)
        );
        assert!(
            body(&response).contains("the X-API-Key header"),
            "{}",
            body(&response)
        );
    }

    #[test]
    fn each_reason_has_its_own_detail() {
        let rejection = DefaultRejection::new("the X-API-Key header", None);
        let invalid = rejection.response(RejectionReason::Invalid, &HeaderMap::new());
        let ambiguous = rejection.response(RejectionReason::Ambiguous, &HeaderMap::new());
        assert!(body(&invalid).contains("Invalid API key."));
        assert!(body(&ambiguous).contains("exactly one"));
    }

    #[test]
    fn realm_is_in_the_challenge() {
        let rejection = DefaultRejection::new("the X-API-Key header", Some("memories"));
        let response = rejection.response(RejectionReason::Invalid, &HeaderMap::new());
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            r#"ApiKey realm="memories""#
        );
    }

    #[test]
    fn grpc_request_gets_unauthenticated_status() {
        let rejection = DefaultRejection::new("the X-API-Key header", None);
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        let response = rejection.response(RejectionReason::Missing, &headers);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc");
        assert_eq!(response.headers()["grpc-status"], "16");
        assert_eq!(
            response.headers()["grpc-message"],
            "Missing API key: send it in the X-API-Key header."
        );
        assert!(response.body().is_empty());
    }
}
