//! Rejection reasons, and the default `401` response.

use std::fmt;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

/// The reason a request was rejected.
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

/// The rejection builder: the built-in responses, or the user's for
/// requests other than gRPC.
#[derive(Clone)]
pub(crate) struct Rejecter {
    default: DefaultRejection,
    custom: Option<Arc<RejectFn>>,
}

impl Rejecter {
    pub(crate) fn new(default: DefaultRejection, custom: Option<Arc<RejectFn>>) -> Self {
        Self { default, custom }
    }

    /// Builds the rejection. gRPC requests always get the gRPC form, since
    /// a gRPC client reads any other response as a protocol error rather
    /// than as UNAUTHENTICATED.
    pub(crate) fn respond(&self, reason: RejectionReason, request: &Parts) -> Response<Bytes> {
        if is_grpc(&request.headers) {
            return self.default.grpc_response(reason);
        }

        match &self.custom {
            Some(reject) => reject(reason, request),
            None => self.default.http_response(reason),
        }
    }
}

impl fmt::Debug for Rejecter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejecter")
            .field("default", &self.default)
            .field("custom", &self.custom.as_ref().map(|_| ".."))
            .finish()
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

    fn detail(&self, reason: RejectionReason) -> &Detail {
        match reason {
            RejectionReason::Missing => &self.missing,
            RejectionReason::Invalid => &self.invalid,
            RejectionReason::Ambiguous => &self.ambiguous,
        }
    }

    /// Builds the `401` problem document with its challenge.
    fn http_response(&self, reason: RejectionReason) -> Response<Bytes> {
        let mut response = Response::new(self.detail(reason).problem.clone());
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        let headers = response.headers_mut();
        headers.insert(WWW_AUTHENTICATE, self.challenge.clone());
        headers.insert(CONTENT_TYPE, PROBLEM_JSON);
        response
    }

    /// Builds a trailers-only gRPC response: HTTP `200` whose `grpc-status`
    /// is UNAUTHENTICATED, which gRPC clients report as such instead of as
    /// a transport error.
    fn grpc_response(&self, reason: RejectionReason) -> Response<Bytes> {
        let mut response = Response::new(Bytes::new());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, GRPC);
        headers.insert("grpc-status", GRPC_UNAUTHENTICATED);
        headers.insert("grpc-message", self.detail(reason).grpc_message.clone());
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

    fn head(content_type: Option<&'static str>) -> Parts {
        let mut request = http::Request::get("/m");
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        request.body(()).unwrap().into_parts().0
    }

    fn default_rejecter(realm: Option<&str>) -> Rejecter {
        Rejecter::new(DefaultRejection::new("the X-API-Key header", realm), None)
    }

    #[test]
    fn missing_detail_names_the_sources() {
        let response = default_rejecter(None).respond(RejectionReason::Missing, &head(None));
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
        let rejecter = default_rejecter(None);
        let invalid = rejecter.respond(RejectionReason::Invalid, &head(None));
        let ambiguous = rejecter.respond(RejectionReason::Ambiguous, &head(None));
        assert!(body(&invalid).contains("Invalid API key."));
        assert!(body(&ambiguous).contains("exactly one"));
    }

    #[test]
    fn realm_is_in_the_challenge() {
        let rejecter = default_rejecter(Some("memories"));
        let response = rejecter.respond(RejectionReason::Invalid, &head(None));
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            r#"ApiKey realm="memories""#
        );
    }

    #[test]
    fn grpc_request_gets_unauthenticated_status() {
        let response = default_rejecter(None).respond(
            RejectionReason::Missing,
            &head(Some("application/grpc+proto")),
        );
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc");
        assert_eq!(response.headers()["grpc-status"], "16");
        assert_eq!(
            response.headers()["grpc-message"],
            "Missing API key: send it in the X-API-Key header."
        );
        assert!(response.body().is_empty());
    }

    #[test]
    fn custom_rejection_leaves_grpc_form() {
        let custom: Arc<RejectFn> = Arc::new(|reason, _request: &Parts| {
            let mut response = Response::new(Bytes::from(reason.as_str()));
            *response.status_mut() = StatusCode::FORBIDDEN;
            response
        });
        let rejecter = Rejecter::new(
            DefaultRejection::new("the X-API-Key header", None),
            Some(custom),
        );

        let http = rejecter.respond(RejectionReason::Invalid, &head(Some("application/json")));
        assert_eq!(http.status(), StatusCode::FORBIDDEN);
        assert_eq!(body(&http), "invalid");

        let grpc = rejecter.respond(RejectionReason::Invalid, &head(Some("application/grpc")));
        assert_eq!(grpc.status(), StatusCode::OK);
        assert_eq!(grpc.headers()["grpc-status"], "16");
    }
}
