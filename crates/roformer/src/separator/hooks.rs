//! What a caller watches and steers while a separation runs: progress, notices, cancellation.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How far a separation is, reported after every model call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Which model of an ensemble is running (0 for a single model).
    pub model: usize,
    /// Models in the ensemble (1 for a single model).
    pub models: usize,
    /// Chunks this model has separated (all three passes with test-time augmentation).
    pub chunks_done: usize,
    /// Chunks this model separates in all.
    pub chunks_total: usize,
}

/// Something a user may want to know about their input, which does not stop the separation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// The input is resampled to the model's rate.
    Resampling {
        /// The input's rate in Hz.
        from: u32,
        /// The model's rate in Hz.
        to: u32,
    },
    /// The input's channels are adapted to the model's (a mono file duplicated, a surround
    /// file downmixed); the text says how.
    Channels(String),
    /// The input holds NaN or infinite samples (a broken file or a bug upstream). They are
    /// passed to the model as they are, as MSST does; the stems are not valid around them.
    NonFinite {
        /// How many samples (over all channels) are not finite.
        samples: usize,
    },
}

/// Samples of `channels` that are NaN or infinite.
pub(crate) fn count_non_finite<C: AsRef<[f32]>>(channels: &[C]) -> usize {
    channels
        .iter()
        .map(|c| c.as_ref().iter().filter(|x| !x.is_finite()).count())
        .sum()
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Resampling { from, to } => write!(f, "resampling {from} Hz -> {to} Hz"),
            Notice::Channels(text) => f.write_str(text),
            Notice::NonFinite { samples } => write!(
                f,
                "the input holds {samples} NaN or infinite sample(s); the stems are not valid around them"
            ),
        }
    }
}

/// Stops a separation from another thread: clones share one flag. A cancelled separation
/// returns [`Error::Cancelled`](crate::Error::Cancelled) before its next model call and writes
/// no output file.
///
/// ```
/// let token = roformer::CancelToken::new();
/// let watcher = token.clone();
/// token.cancel();
/// assert!(watcher.is_cancelled());
/// ```
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every separation watching this token (or a clone) to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

type ProgressFn<'a> = Box<dyn FnMut(Progress) + 'a>;
type NoticeFn<'a> = Box<dyn FnMut(&Notice) + 'a>;

/// The callbacks and the cancellation token of one separation; all optional.
///
/// ```
/// use roformer::{CancelToken, Hooks};
/// let mut chunks = 0;
/// let hooks = Hooks::new()
///     .progress(|p| chunks = p.chunks_done)
///     .notice(|n| eprintln!("{n}"))
///     .cancel(CancelToken::new());
/// # drop(hooks);
/// ```
#[derive(Default)]
pub struct Hooks<'a> {
    progress: Option<ProgressFn<'a>>,
    notice: Option<NoticeFn<'a>>,
    cancel: Option<CancelToken>,
}

impl fmt::Debug for Hooks<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("progress", &self.progress.is_some())
            .field("notice", &self.notice.is_some())
            .field("cancel", &self.cancel)
            .finish()
    }
}

impl<'a> Hooks<'a> {
    /// No callbacks, no cancellation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Called after every model call.
    pub fn progress(mut self, f: impl FnMut(Progress) + 'a) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Called for every [`Notice`] about the input.
    pub fn notice(mut self, f: impl FnMut(&Notice) + 'a) -> Self {
        self.notice = Some(Box::new(f));
        self
    }

    /// Watches `token`: the separation stops soon after it is cancelled.
    pub fn cancel(mut self, token: CancelToken) -> Self {
        self.cancel = Some(token);
        self
    }

    pub(crate) fn report(&mut self, p: Progress) {
        if let Some(f) = &mut self.progress {
            f(p)
        }
    }

    pub(crate) fn tell(&mut self, n: Notice) {
        if let Some(f) = &mut self.notice {
            f(&n)
        }
    }

    pub(crate) fn token(&self) -> Option<&CancelToken> {
        self.cancel.as_ref()
    }
}
