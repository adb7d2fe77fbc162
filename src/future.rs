//! [`ResponseFuture`] and [`ResponseBody`]: the inner service's response, or
//! a ready rejection, without boxing.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// Response future of [`ApiKeyAuth`](crate::ApiKeyAuth).
    ///
    /// # Panics
    ///
    /// Polling a rejection again after it returned `Ready` panics, as most
    /// futures do.
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Forwarded {
            #[pin]
            future: F,
        },
        Rejected {
            // Taken on the first poll; polling again after that is a
            // contract violation by the caller.
            response: Option<Response<Bytes>>,
            _body: std::marker::PhantomData<fn() -> B>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn forwarded(future: F) -> Self {
        Self {
            kind: Kind::Forwarded { future },
        }
    }

    pub(crate) fn rejected(response: Response<Bytes>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(response),
                _body: std::marker::PhantomData,
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Forwarded { future } => future
                .poll(cx)
                .map(|result| result.map(|response| response.map(ResponseBody::inner))),
            KindProj::Rejected { response, .. } => {
                let response = response
                    .take()
                    .expect("ResponseFuture polled after it completed");
                Poll::Ready(Ok(response.map(ResponseBody::rejection)))
            }
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Forwarded { .. } => "Forwarded",
            Kind::Rejected { .. } => "Rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

pin_project! {
    /// Response body of [`ApiKeyAuth`](crate::ApiKeyAuth): the inner
    /// service's body, or the body of a rejection.
    ///
    /// Any inner body whose data type can be made from [`Bytes`] works,
    /// which covers axum's `Body`, `Full<Bytes>` and streaming bodies.
    pub struct ResponseBody<B> {
        #[pin]
        kind: BodyKind<B>,
    }
}

pin_project! {
    #[project = BodyKindProj]
    enum BodyKind<B> {
        Inner {
            #[pin]
            body: B,
        },
        Rejection {
            data: Option<Bytes>,
        },
    }
}

impl<B> ResponseBody<B> {
    fn inner(body: B) -> Self {
        Self {
            kind: BodyKind::Inner { body },
        }
    }

    fn rejection(data: Bytes) -> Self {
        Self {
            kind: BodyKind::Rejection { data: Some(data) },
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            BodyKindProj::Inner { body } => body.poll_frame(cx),
            BodyKindProj::Rejection { data } => {
                let frame = data.take().map(|data| Ok(Frame::data(data.into())));
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Inner { body } => body.is_end_stream(),
            BodyKind::Rejection { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Inner { body } => body.size_hint(),
            BodyKind::Rejection { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |data| data.len() as u64))
            }
        }
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            BodyKind::Inner { .. } => "Inner",
            BodyKind::Rejection { .. } => "Rejection",
        };
        f.debug_struct("ResponseBody")
            .field("state", &state)
            .finish()
    }
}
