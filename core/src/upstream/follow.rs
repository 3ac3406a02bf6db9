//! The one policy for server-sent streams that end early, for every streamable HTTP client the
//! gateway has (its links to upstreams and the bridge): a POST's stream that ends (or breaks)
//! before what it owes is resumed the SEP-1699 way, after the server's `retry:` delay, by a GET
//! with `Last-Event-ID`, at most [`MAX_RESUMES`] times in a row without an event; a standalone
//! stream that ends is opened again after the same delay, doubled per failure in a row, never
//! more than [`MAX_RETRY_MS`].

use std::time::Duration;

use futures::StreamExt;

use crate::platform::BoxFuture;
use crate::ports::{Clock, HttpError, InboundResponse};
use crate::proto::sse::Parser;

/// Resumptions of one POST's stream in a row that brought no event, before giving up.
pub(crate) const MAX_RESUMES: u32 = 5;
/// The wait before resuming or reopening a stream when the server sent no `retry:` (SEP-1699).
pub(crate) const DEFAULT_RETRY_MS: u64 = 500;
/// The longest wait before resuming or reopening a stream, whatever `retry:` asked for.
pub(crate) const MAX_RETRY_MS: u64 = 30_000;

/// The wait before resuming a stream whose server asked for `retry` ms (or said nothing).
pub(crate) fn resume_wait(retry: Option<u64>) -> u64 {
    retry.unwrap_or(DEFAULT_RETRY_MS).min(MAX_RETRY_MS)
}

/// The wait before opening a standalone stream again after `failures` failures in a row.
pub(crate) fn reopen_wait(retry: Option<u64>, failures: u32) -> u64 {
    resume_wait(retry)
        .saturating_mul(1u64 << failures.min(6))
        .min(MAX_RETRY_MS)
}

/// What the reader of a followed stream says after each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// More is owed: read on (and resume if the stream ends).
    More,
    /// Everything owed has come: stop.
    Done,
}

/// How a followed stream ended without everything it owed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Ended {
    /// Closed before the end, with no event id to resume from, or resumptions that failed or
    /// brought nothing [`MAX_RESUMES`] times in a row.
    #[error("the stream ended before the answer")]
    Closed,
    /// An event over the size limit, or not SSE.
    #[error("{0}")]
    Invalid(String),
}

/// Who reads a followed stream.
pub(crate) trait Follower {
    /// One message (an event's data); [`Flow::Done`] when nothing more is owed, or an error
    /// that ends the stream.
    fn message(&mut self, data: String) -> Result<Flow, Ended>;
    /// The stream ended early and is resumed after `wait_ms` (a caller may be told to poll).
    fn paused(&mut self, _wait_ms: u64) {}
}

/// Follows a POST's SSE stream `first` until `reader` has what it is owed: each message in
/// order; when the stream ends early after giving an event id, waits the server's `retry:`
/// and asks `resume` (with the last event id) for the rest. A resumption that fails or is
/// refused ends it: the request may have run, so it is never sent again here.
pub(crate) async fn follow<'a, R, F>(
    first: InboundResponse,
    max_bytes: usize,
    clock: &dyn Clock,
    resume: R,
    reader: &mut F,
) -> Result<(), Ended>
where
    R: Fn(String) -> BoxFuture<'a, Result<InboundResponse, HttpError>>,
    F: Follower,
{
    let mut parser = Parser::with_limit(max_bytes);
    let mut body = first.body;
    let mut idle = 0;
    loop {
        let mut got_event = false;
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            for ev in parser.push(&chunk).map_err(Ended::Invalid)? {
                got_event = true;
                let Some(data) = ev.into_message() else {
                    continue;
                };
                if reader.message(data)? == Flow::Done {
                    return Ok(());
                }
            }
        }
        let Some(last) = parser.last_event_id().map(str::to_string) else {
            return Err(Ended::Closed);
        };
        idle = if got_event { 1 } else { idle + 1 };
        if idle > MAX_RESUMES {
            return Err(Ended::Closed);
        }
        let wait = resume_wait(parser.retry_ms());
        reader.paused(wait);
        clock.sleep(Duration::from_millis(wait)).await;
        parser.resume();
        match resume(last).await {
            Ok(r) if r.status.is_success() => body = r.body,
            _ => return Err(Ended::Closed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ManualClock;
    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};
    use std::sync::Mutex;

    fn sse(text: &str) -> InboundResponse {
        let text = Bytes::from(text.to_string());
        InboundResponse {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Box::pin(futures::stream::once(async move { Ok(text) })),
        }
    }

    #[derive(Default)]
    struct Until {
        want: &'static str,
        got: Vec<String>,
        pauses: Vec<u64>,
    }

    impl Follower for Until {
        fn message(&mut self, data: String) -> Result<Flow, Ended> {
            let done = data == self.want;
            self.got.push(data);
            Ok(if done { Flow::Done } else { Flow::More })
        }
        fn paused(&mut self, wait_ms: u64) {
            self.pauses.push(wait_ms);
        }
    }

    /// A stream that ends early is resumed from its last event id after the server's `retry:`
    /// (capped), and the rest is read in order; one without an id is not resumed.
    #[test]
    fn an_early_end_is_resumed_after_retry_from_the_last_event_id() {
        let clock = ManualClock::at(0);
        let asked = Mutex::new(vec![]);
        let resume = |last: String| -> BoxFuture<'static, Result<InboundResponse, HttpError>> {
            asked.lock().unwrap().push(last.clone());
            let rest = match last.as_str() {
                "e1" => "id: e2\nretry: 90000\ndata: b\n\n",
                _ => "id: e3\ndata: c\n\n",
            };
            let r = sse(rest);
            Box::pin(async move { Ok(r) })
        };
        let mut r = Until {
            want: "c",
            ..Default::default()
        };
        let first = sse("id: e1\nretry: 40\ndata: a\n\n");
        let out = futures::executor::block_on(follow(first, 1 << 16, &clock, &resume, &mut r));
        assert_eq!(out, Ok(()));
        assert_eq!(r.got, ["a", "b", "c"]);
        assert_eq!(*asked.lock().unwrap(), ["e1", "e2"]);
        assert_eq!(r.pauses, [40, MAX_RETRY_MS], "the server's retry, capped");
        assert_eq!(clock.now_ms(), 40 + MAX_RETRY_MS);

        let mut r = Until {
            want: "never",
            ..Default::default()
        };
        let out = futures::executor::block_on(follow(sse("data: a\n\n"), 1 << 16, &clock, &resume, &mut r));
        assert_eq!(out, Err(Ended::Closed));
    }

    /// Resumptions that bring nothing end the stream after MAX_RESUMES in a row; one refused
    /// ends it at once.
    #[test]
    fn resumptions_that_bring_nothing_or_are_refused_end_it() {
        let clock = ManualClock::at(0);
        let count = Mutex::new(0u32);
        let empty = |_: String| -> BoxFuture<'static, Result<InboundResponse, HttpError>> {
            *count.lock().unwrap() += 1;
            let r = sse("");
            Box::pin(async move { Ok(r) })
        };
        let mut r = Until {
            want: "never",
            ..Default::default()
        };
        let out = futures::executor::block_on(follow(sse("id: 1\ndata: a\n\n"), 1 << 16, &clock, &empty, &mut r));
        assert_eq!(out, Err(Ended::Closed));
        assert_eq!(*count.lock().unwrap(), MAX_RESUMES);
        assert_eq!(r.pauses, vec![DEFAULT_RETRY_MS; MAX_RESUMES as usize]);

        let refused = |_: String| -> BoxFuture<'static, Result<InboundResponse, HttpError>> {
            let mut r = sse("");
            r.status = StatusCode::NOT_FOUND;
            Box::pin(async move { Ok(r) })
        };
        let mut r = Until {
            want: "never",
            ..Default::default()
        };
        let out = futures::executor::block_on(follow(sse("id: 1\ndata: a\n\n"), 1 << 16, &clock, &refused, &mut r));
        assert_eq!((out, r.pauses.len()), (Err(Ended::Closed), 1));
    }

    #[test]
    fn reopening_backs_off_per_failure_within_the_cap() {
        assert_eq!(reopen_wait(None, 0), DEFAULT_RETRY_MS);
        assert_eq!(reopen_wait(Some(1000), 2), 4000);
        assert_eq!(reopen_wait(Some(1000), 40), MAX_RETRY_MS);
        assert_eq!(reopen_wait(Some(u64::MAX), 0), MAX_RETRY_MS);
    }
}
