//! Helpers shared by the hardening tests: response collection and a
//! tracing capture.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::cell::RefCell;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, Once};

use http::Response;
use http::response::Parts;
use http_body::Body;
use http_body_util::BodyExt;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

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
/// Events are written without ANSI colours, timestamps or targets, one per
/// line starting with the level, with their fields, so a test can search
/// the text for a key or a reason.
#[derive(Clone, Default)]
pub struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
}

thread_local! {
    /// The capture of this thread and its level, while a guard lives.
    static CURRENT: RefCell<Option<(LogCapture, Level)>> = const { RefCell::new(None) };
}

/// Ends a capture when dropped.
#[must_use = "the capture ends when the guard is dropped"]
pub struct CaptureGuard(());

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CURRENT.with(|current| *current.borrow_mut() = None);
    }
}

impl LogCapture {
    /// Starts capturing every event at `level` and above on this thread,
    /// until the returned guard is dropped.
    ///
    /// One global subscriber, installed on first use, writes each event to
    /// the capture of the thread that emitted it. A subscriber per thread
    /// (`set_default`) is not enough: tracing caches callsite interest and
    /// the maximum level process-wide, and with tests running in parallel
    /// an event sometimes never reached the capturing thread's subscriber.
    /// Async tests must run on a current-thread runtime for the events of
    /// their tasks to reach it.
    pub fn start(level: Level) -> (Self, CaptureGuard) {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(Level::TRACE)
                .with_ansi(false)
                .without_time()
                .with_target(false)
                .with_writer(ThreadWriter)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("only this module installs a global subscriber");
        });

        let capture = Self::default();
        CURRENT.with(|current| *current.borrow_mut() = Some((capture.clone(), level)));
        (capture, CaptureGuard(()))
    }

    /// Returns everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock()).into_owned()
    }

    /// Returns the captured lines, without leading spaces.
    pub fn lines(&self) -> Vec<String> {
        self.text()
            .lines()
            .map(|line| line.trim_start().to_owned())
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A test that panicked while writing has already failed, and its
        // partial output is still worth reading.
        self.buffer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Hands each event to the emitting thread's capture, if its level is
/// captured there, and drops it otherwise.
struct ThreadWriter;

impl<'a> MakeWriter<'a> for ThreadWriter {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter(None)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        let capture = CURRENT.with(|current| {
            current
                .borrow()
                .as_ref()
                .filter(|(_, level)| meta.level() <= level)
                .map(|(capture, _)| capture.clone())
        });
        EventWriter(capture)
    }
}

/// Writes one event to a capture, or nowhere.
struct EventWriter(Option<LogCapture>);

impl io::Write for EventWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if let Some(capture) = &self.0 {
            capture.lock().extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
