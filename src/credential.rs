//! Where a request's credential is read from.
//!
//! The key header is always a source. `Authorization: Bearer` and a query
//! parameter are opt-in. A request may present the key in several sources
//! only when they all carry the same value. A repeated source, or two
//! sources that disagree, is ambiguous, because a proxy in front may have
//! read a different value than this layer would.

use std::borrow::Cow;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, Uri};

use crate::rejection::RejectionReason;

/// The configured credential sources.
#[derive(Debug, Clone)]
pub(crate) struct Sources {
    pub(crate) header: HeaderName,
    pub(crate) bearer: bool,
    pub(crate) query: Option<Box<str>>,
}

impl Sources {
    /// Returns the one credential the request presents.
    pub(crate) fn extract<'r>(
        &self,
        headers: &'r HeaderMap,
        uri: &'r Uri,
    ) -> Result<Cow<'r, [u8]>, RejectionReason> {
        let mut found = Found::default();

        let mut values = headers.get_all(&self.header).iter();
        if let Some(value) = values.next() {
            if values.next().is_some() {
                return Err(RejectionReason::Ambiguous);
            }
            found.add(Cow::Borrowed(value.as_bytes()))?;
        }

        if self.bearer {
            let mut tokens = headers
                .get_all(AUTHORIZATION)
                .iter()
                .filter_map(|value| bearer_token(value.as_bytes()));
            if let Some(token) = tokens.next() {
                if tokens.next().is_some() {
                    return Err(RejectionReason::Ambiguous);
                }
                found.add(Cow::Borrowed(token))?;
            }
        }

        if let (Some(param), Some(query)) = (self.query.as_deref(), uri.query()) {
            let mut values = query.split('&').filter_map(|pair| query_value(pair, param));
            if let Some(value) = values.next() {
                if values.next().is_some() {
                    return Err(RejectionReason::Ambiguous);
                }
                found.add(value)?;
            }
        }

        found.value.ok_or(RejectionReason::Missing)
    }
}

/// The credential found so far, across sources.
#[derive(Default)]
struct Found<'r> {
    value: Option<Cow<'r, [u8]>>,
}

impl<'r> Found<'r> {
    /// Records a credential from one more source. Two sources agree only on
    /// equal bytes; the values are both the client's own, so a plain
    /// comparison reveals nothing about the keys.
    fn add(&mut self, value: Cow<'r, [u8]>) -> Result<(), RejectionReason> {
        match &self.value {
            Some(existing) if *existing != value => Err(RejectionReason::Ambiguous),
            Some(_) => Ok(()),
            None => {
                self.value = Some(value);
                Ok(())
            }
        }
    }
}

/// Returns the token of an `Authorization: Bearer <token>` value. The
/// scheme is case-insensitive (RFC 9110, section 11.1); the token is taken
/// as sent, after the spaces that separate it from the scheme.
pub(crate) fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer";

    let scheme = value.get(..SCHEME.len())?;
    let rest = &value[SCHEME.len()..];
    if !scheme.eq_ignore_ascii_case(SCHEME) || rest.first() != Some(&b' ') {
        return None;
    }

    let start = rest
        .iter()
        .position(|&byte| byte != b' ')
        .unwrap_or(rest.len());
    Some(&rest[start..])
}

/// Returns the percent-decoded value of a `param=value` pair, or `None`
/// for another parameter. A value with an invalid escape is returned
/// undecoded, so it fails the comparison rather than vanishing.
fn query_value<'q>(pair: &'q str, param: &str) -> Option<Cow<'q, [u8]>> {
    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
    (name == param).then(|| percent_decode(value.as_bytes()))
}

fn percent_decode(value: &[u8]) -> Cow<'_, [u8]> {
    if !value.contains(&b'%') {
        return Cow::Borrowed(value);
    }

    let mut decoded = Vec::with_capacity(value.len());
    let mut rest = value;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let escape = tail
                .get(..2)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok());
            match escape {
                Some(decoded_byte) => {
                    decoded.push(decoded_byte);
                    rest = &tail[2..];
                    continue;
                }
                None => return Cow::Borrowed(value),
            }
        }
        decoded.push(byte);
        rest = tail;
    }
    Cow::Owned(decoded)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn sources(bearer: bool, query: Option<&str>) -> Sources {
        Sources {
            header: HeaderName::from_static("x-api-key"),
            bearer,
            query: query.map(Into::into),
        }
    }

    fn extract(
        sources: &Sources,
        headers: &[(&str, &str)],
        uri: &str,
    ) -> Result<Vec<u8>, RejectionReason> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let uri: Uri = uri.parse().unwrap();
        sources.extract(&map, &uri).map(|value| value.into_owned())
    }

    #[test]
    fn header_source_is_the_default() {
        let sources = sources(false, None);
        assert_eq!(
            extract(&sources, &[("x-api-key", "k1")], "/").unwrap(),
            b"k1"
        );
        assert_eq!(extract(&sources, &[], "/"), Err(RejectionReason::Missing));
        assert_eq!(
            extract(&sources, &[("authorization", "Bearer k1")], "/"),
            Err(RejectionReason::Missing)
        );
        assert_eq!(
            extract(&sources, &[], "/?api_key=k1"),
            Err(RejectionReason::Missing)
        );
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let sources = sources(true, None);
        for value in ["Bearer k1", "bearer k1", "BEARER  k1"] {
            assert_eq!(
                extract(&sources, &[("authorization", value)], "/").unwrap(),
                b"k1",
                "{value}"
            );
        }
        for value in ["Basic azE=", "Bearerk1", "Token k1"] {
            assert_eq!(
                extract(&sources, &[("authorization", value)], "/"),
                Err(RejectionReason::Missing),
                "{value}"
            );
        }
        assert_eq!(
            extract(&sources, &[("authorization", "Bearer ")], "/").unwrap(),
            b""
        );
    }

    #[test]
    fn agreeing_sources_are_accepted() {
        let sources = sources(true, Some("api_key"));
        let headers = [("x-api-key", "k1"), ("authorization", "Bearer k1")];
        assert_eq!(extract(&sources, &headers, "/?api_key=k1").unwrap(), b"k1");
    }

    #[test]
    fn disagreeing_or_repeated_sources_are_ambiguous() {
        let sources = sources(true, Some("api_key"));
        let cases: [(&[(&str, &str)], &str); 4] = [
            (&[("x-api-key", "k1"), ("authorization", "Bearer k2")], "/"),
            (
                &[
                    ("authorization", "Bearer k1"),
                    ("authorization", "Bearer k1"),
                ],
                "/",
            ),
            (&[("x-api-key", "k1")], "/?api_key=k2"),
            (&[], "/?api_key=k1&api_key=k1"),
        ];
        for (headers, uri) in cases {
            assert_eq!(
                extract(&sources, headers, uri),
                Err(RejectionReason::Ambiguous),
                "{headers:?} {uri}"
            );
        }
    }

    #[test]
    fn query_value_is_percent_decoded() {
        let sources = sources(false, Some("api_key"));
        assert_eq!(
            extract(&sources, &[], "/m?x=1&api_key=a%2Bb%3D").unwrap(),
            b"a+b="
        );
        assert_eq!(
            extract(&sources, &[], "/m?api_key=bad%zz").unwrap(),
            b"bad%zz"
        );
        assert_eq!(extract(&sources, &[], "/m?api_key").unwrap(), b"");
        assert_eq!(
            extract(&sources, &[], "/m?other_api_key=k1"),
            Err(RejectionReason::Missing)
        );
    }
}
