//! Helpers shared by the hardening tests: response collection and a
//! tracing capture.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use http::Response;
use http::response::Parts;
use http_body::Body;
use http_body_util::BodyExt;
use tracing::Level;
use tracing::subscriber::DefaultGuard;

/// The configured key of the protected test layers: 32 characters, so no
/// short-key warning is logged.
pub const KEY: &str = "hardening-key-0123456789abcdefgh";

/// Reads a whole response body into a string, replacing invalid UTF-8.
pub async fn collect<B>(response: Response<B>) -> (Parts, String)
where
    B: Body,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .expect("the test bodies never fail")
        .to_bytes();
    (parts, String::from_utf8_lossy(&bytes).into_owned())
}

/// Tracing output of the current thread, captured as plain text.
///
/// Events are written without ANSI colours, with their fields, so a test
/// can search the text for a key or a reason.
#[derive(Clone, Default)]
pub struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl LogCapture {
    /// Starts capturing every event at `level` and above on this thread,
    /// until the returned guard is dropped.
    ///
    /// The guard is thread-local, so tests on other threads keep their own
    /// subscribers. Async tests must run on a current-thread runtime for
    /// the events of their tasks to reach it.
    pub fn start(level: Level) -> (Self, DefaultGuard) {
        let capture = Self::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        (capture, guard)
    }

    /// Returns everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock()).into_owned()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A test that panicked while writing has already failed, and its
        // partial output is still worth reading.
        self.buffer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl io::Write for LogCapture {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.lock().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
