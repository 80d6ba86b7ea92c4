//! Bodies on the data path. Request bodies stream upstream through a [`ReplayBody`], which keeps
//! a copy of what it passed on, up to a bound, so that a retry (or a mirror) can send the same
//! body again; a bigger body streams uncopied and is not retried. Responses stream back as a
//! [`Body`] that holds whatever must live until the exchange ends (circuit-breaker slots, the
//! active-request count, the pooled connection), and that a route timeout can cut short
//! ([`with_deadline`]); the route timeout starts when the request body has ended
//! ([`ReplayBody::end`]).

use std::{
    any::Any,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::{sync::Notify, time::Instant};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed body of either direction.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A request body this large or smaller is kept for retries (Envoy buffers up to its
/// per-request buffer limit for the same reason).
pub const REPLAY_LIMIT: usize = 64 * 1024;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

pub fn boxed<B>(body: B) -> Body
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// `body`, holding `guards` until it is dropped (fully sent, or abandoned).
pub fn guarded(body: Body, guards: Vec<Box<dyn Any + Send>>) -> Body {
    Guarded { inner: body, _guards: guards }.boxed_unsync()
}

struct Guarded {
    inner: Body,
    _guards: Vec<Box<dyn Any + Send>>,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What every copy of a request body shares.
struct Shared {
    /// The part of the original body not read yet (`None` while a copy is reading it).
    rest: Option<Body>,
    /// What has been read, while it fits the limit.
    chunks: Vec<Bytes>,
    len: usize,
    /// It did not fit: no copy can be made any more.
    overflow: bool,
    /// The original body ended (its trailers, if any, are kept), at `ended_at`.
    ended: bool,
    ended_at: Option<Instant>,
    trailers: Option<HeaderMap>,
    limit: usize,
}

/// A request body that can be sent again: each copy replays what was read before, then reads on
/// from the original. Copies are meant to be read one after the other (one try at a time).
pub struct ReplayBody {
    shared: Arc<Mutex<Shared>>,
    /// Woken when the original body ends.
    ended: Arc<Notify>,
    /// Chunks of `shared.chunks` this copy has produced.
    replayed: usize,
    /// The original, while this copy reads it.
    rest: Option<Body>,
    trailers_sent: bool,
    end_stream: bool,
    hint: SizeHint,
}

impl ReplayBody {
    /// Wraps `body`, keeping up to `limit` bytes of it for copies.
    pub fn new(body: Body, limit: usize) -> Self {
        let end_stream = body.is_end_stream();
        let hint = body.size_hint();
        let shared = Shared {
            rest: Some(body),
            chunks: Vec::new(),
            len: 0,
            overflow: false,
            ended: end_stream,
            ended_at: end_stream.then(Instant::now),
            trailers: None,
            limit,
        };
        Self {
            shared: Arc::new(Mutex::new(shared)),
            ended: Arc::new(Notify::new()),
            replayed: 0,
            rest: None,
            trailers_sent: false,
            end_stream,
            hint,
        }
    }

    /// When the original body ends: what the route timeout waits for before it starts.
    pub fn end(&self) -> RequestEnd {
        RequestEnd { shared: self.shared.clone(), notify: self.ended.clone() }
    }

    /// Another copy from the start, or `None` when the body outgrew the limit.
    pub fn replay(&self) -> Option<Self> {
        let shared = self.shared.lock().expect("replay body lock");
        (!shared.overflow).then(|| Self {
            shared: self.shared.clone(),
            ended: self.ended.clone(),
            replayed: 0,
            rest: None,
            trailers_sent: false,
            end_stream: self.end_stream,
            hint: self.hint,
        })
    }

    /// Whether a copy can still be made.
    pub fn replayable(&self) -> bool {
        !self.shared.lock().expect("replay body lock").overflow
    }

    /// The whole body, when it has been read completely and kept (for mirrors).
    pub fn complete(&self) -> Option<(Bytes, Option<HeaderMap>)> {
        let shared = self.shared.lock().expect("replay body lock");
        if !shared.ended || shared.overflow {
            return None;
        }
        let mut all = bytes::BytesMut::with_capacity(shared.len);
        shared.chunks.iter().for_each(|c| all.extend_from_slice(c));
        Some((all.freeze(), shared.trailers.clone()))
    }
}

impl Drop for ReplayBody {
    fn drop(&mut self) {
        if let Some(rest) = self.rest.take()
            && let Ok(mut shared) = self.shared.lock()
        {
            shared.rest = Some(rest);
        }
    }
}

impl HttpBody for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        {
            let mut shared = this.shared.lock().expect("replay body lock");
            if !shared.overflow && this.replayed < shared.chunks.len() {
                let chunk = shared.chunks[this.replayed].clone();
                this.replayed += 1;
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if shared.ended {
                if !this.trailers_sent
                    && let Some(trailers) = shared.trailers.clone()
                {
                    this.trailers_sent = true;
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                return Poll::Ready(None);
            }
            if this.rest.is_none() {
                this.rest = shared.rest.take();
            }
        }
        let Some(rest) = this.rest.as_mut() else {
            return Poll::Ready(Some(Err("the request body is being read by another copy".into())));
        };
        let polled = Pin::new(rest).poll_frame(cx);
        let mut shared = this.shared.lock().expect("replay body lock");
        let was_ended = shared.ended;
        let result = match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                shared.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if !shared.overflow && shared.len + data.len() <= shared.limit {
                        shared.len += data.len();
                        shared.chunks.push(data.clone());
                        this.replayed += 1;
                    } else {
                        shared.overflow = true;
                        shared.chunks = Vec::new();
                    }
                    // A body of known length is over with its last byte: its reader may never
                    // poll for the end.
                    if this.rest.as_ref().is_some_and(HttpBody::is_end_stream) {
                        shared.ended = true;
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    shared.trailers = Some(trailers.clone());
                    shared.ended = true;
                    this.trailers_sent = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
        };
        if shared.ended && !was_ended {
            shared.ended_at = Some(Instant::now());
            drop(shared);
            this.ended.notify_waiters();
        }
        result
    }

    fn is_end_stream(&self) -> bool {
        self.end_stream
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

/// The end of a request body, shared by its copies (see [`ReplayBody::end`]).
#[derive(Clone)]
pub struct RequestEnd {
    shared: Arc<Mutex<Shared>>,
    notify: Arc<Notify>,
}

impl RequestEnd {
    /// When the body ended, if it has.
    pub fn at(&self) -> Option<Instant> {
        self.shared.lock().expect("replay body lock").ended_at
    }

    /// Waits for the body to end; when it did.
    pub async fn wait(&self) -> Instant {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(at) = self.at() {
                return at;
            }
            notified.await;
        }
    }
}

/// `body`, cut short with an error if `expiry` completes before it ends; `expired` says whether
/// it did (the access record's `UT`). The error makes hyper reset the client's stream (HTTP/2) or
/// close its connection (HTTP/1.1), as Envoy resets a response its route timeout interrupts.
pub fn with_deadline(body: Body, expiry: Pin<Box<dyn Future<Output = ()> + Send>>, expired: Arc<AtomicBool>) -> Body {
    Deadline { inner: body, expiry, expired }.boxed_unsync()
}

struct Deadline {
    inner: Body,
    expiry: Pin<Box<dyn Future<Output = ()> + Send>>,
    expired: Arc<AtomicBool>,
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.expiry.as_mut().poll(cx).is_ready() {
            self.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err("upstream request timeout (the route timeout expired mid-response)".into())));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A body of chunks, one per poll.
    struct Chunks(VecDeque<&'static str>);

    impl HttpBody for Chunks {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes())))))
        }
    }

    fn chunks(list: &[&'static str]) -> Body {
        boxed(Chunks(list.iter().copied().collect()))
    }

    async fn read(body: ReplayBody) -> String {
        String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_copy_replays_what_was_read_then_reads_on() {
        let first = ReplayBody::new(chunks(&["ab", "cd", "ef"]), 100);
        let mut pinned = Box::pin(first);
        // The first try reads one chunk and gives up.
        let frame = std::future::poll_fn(|cx| pinned.as_mut().poll_frame(cx)).await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "ab");
        let second = pinned.replay().expect("within the limit");
        drop(pinned);
        let third = second.replay().unwrap();
        assert_eq!(read(second).await, "abcdef");
        assert_eq!(read(third).await, "abcdef", "a copy after the end replays it all");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_streams_but_cannot_be_copied() {
        let body = ReplayBody::new(chunks(&["1234", "5678"]), 6);
        let probe = body.replay().unwrap();
        assert_eq!(read(body).await, "12345678");
        assert!(!probe.replayable());
        assert!(probe.replay().is_none());
        assert!(probe.complete().is_none());
    }

    #[tokio::test]
    async fn the_end_of_the_original_is_known_to_every_copy() {
        let body = ReplayBody::new(chunks(&["a", "b"]), 10);
        let end = body.replay().unwrap().end();
        assert!(end.at().is_none(), "not read yet");
        let waiter = tokio::spawn({
            let end = end.clone();
            async move { end.wait().await }
        });
        assert_eq!(read(body).await, "ab");
        let at = waiter.await.unwrap();
        assert_eq!(end.at(), Some(at));
        assert!(ReplayBody::new(empty(), 10).end().at().is_some(), "an empty body has ended on arrival");
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_cuts_a_body_short_and_says_so() {
        let expired = Arc::new(AtomicBool::new(false));
        let never_ending =
            boxed(http_body_util::StreamBody::new(futures::stream::pending::<Result<Frame<Bytes>, BoxError>>()));
        let expiry = Box::pin(tokio::time::sleep(std::time::Duration::from_secs(5)));
        let cut = with_deadline(never_ending, expiry, expired.clone());
        assert!(cut.collect().await.is_err());
        assert!(expired.load(Ordering::Relaxed));
        let on_time = with_deadline(full("done"), Box::pin(std::future::pending()), Arc::new(AtomicBool::new(false)));
        assert_eq!(on_time.collect().await.unwrap().to_bytes(), "done");
    }

    #[tokio::test]
    async fn the_complete_body_is_there_for_mirrors() {
        let body = ReplayBody::new(chunks(&["x", "y"]), 10);
        let probe = body.replay().unwrap();
        assert!(probe.complete().is_none(), "not read yet");
        assert_eq!(read(body).await, "xy");
        assert_eq!(probe.complete().unwrap().0, "xy");
        let empty = ReplayBody::new(empty(), 10);
        assert!(empty.is_end_stream());
        assert_eq!(empty.complete().unwrap().0, "");
    }
}
