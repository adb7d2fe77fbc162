//! Why a request was rejected, and the default `401` response.

use std::fmt;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

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

/// The default rejection bodies, rendered once at construction so that a
/// rejection costs no formatting.
#[derive(Debug, Clone)]
pub(crate) struct DefaultRejection {
    missing: Bytes,
    invalid: Bytes,
    ambiguous: Bytes,
}

const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");
const API_KEY_CHALLENGE: HeaderValue = HeaderValue::from_static("ApiKey");

impl DefaultRejection {
    /// `header` is the credential header's name as configured, which the
    /// `missing` and `ambiguous` details name. Header names are tokens, so
    /// it needs no JSON escaping.
    pub(crate) fn new(header: &str) -> Self {
        Self {
            missing: problem(&format!("Missing API key: send it in the {header} header.")),
            invalid: problem("Invalid API key."),
            ambiguous: problem(&format!(
                "Ambiguous API key: send exactly one {header} header."
            )),
        }
    }

    /// Builds the `401` response. The body is a cheap clone of a shared
    /// buffer.
    pub(crate) fn response(&self, reason: RejectionReason) -> Response<Bytes> {
        let body = match reason {
            RejectionReason::Missing => &self.missing,
            RejectionReason::Invalid => &self.invalid,
            RejectionReason::Ambiguous => &self.ambiguous,
        };

        let mut response = Response::new(body.clone());
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        let headers = response.headers_mut();
        headers.insert(WWW_AUTHENTICATE, API_KEY_CHALLENGE);
        headers.insert(CONTENT_TYPE, PROBLEM_JSON);
        response
    }
}

/// Renders an RFC 9457 problem document for a `401`.
fn problem(detail: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"type":"about:blank","title":"Unauthorized","status":401,"detail":"{detail}"}}"#
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_detail_names_header() {
        let rejection = DefaultRejection::new("X-API-Key");
        let response = rejection.response(RejectionReason::Missing);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "ApiKey");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        let body = std::str::from_utf8(response.body()).unwrap();
        assert!(body.contains(r#""status":401"#), "{body}");
        assert!(body.contains("X-API-Key header"), "{body}");
    }

    #[test]
    fn each_reason_has_its_own_detail() {
        let rejection = DefaultRejection::new("X-API-Key");
        let invalid = rejection.response(RejectionReason::Invalid);
        let ambiguous = rejection.response(RejectionReason::Ambiguous);
        assert!(
            std::str::from_utf8(invalid.body())
                .unwrap()
                .contains("Invalid API key.")
        );
        assert!(
            std::str::from_utf8(ambiguous.body())
                .unwrap()
                .contains("exactly one")
        );
    }
}
