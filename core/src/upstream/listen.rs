//! The task that reads what an upstream says outside calls: a session-era link's standalone GET
//! stream, or a 2026-07-28 link's `subscriptions/listen` stream; opened, reopened, parked and
//! woken as [`Link::listen`] says.

use super::*;

/// Ends a link's listening when its standalone stream's task ends (however it ends): calls no
/// longer wait for the stream.
struct ListenerGone(std::sync::Weak<Link>);

impl Drop for ListenerGone {
    fn drop(&mut self) {
        if let Some(link) = self.0.upgrade() {
            let mut l = link.listener();
            l.on = false;
            l.parked = None;
            l.waiters.clear();
        }
    }
}

/// The standalone GET stream of a streamable HTTP link, opened, reopened, parked and woken as
/// [`Link::listen`] says.
pub(super) async fn standalone_stream(
    link: std::sync::Weak<Link>,
    clock: Arc<dyn Clock>,
    sink: Sink,
    keep: Box<dyn KeepOpen>,
    mut stop: oneshot::Receiver<()>,
) {
    let _gone = ListenerGone(link.clone());
    let mut last_id: Option<String> = None;
    let mut retry_ms = None;
    let mut failures: u32 = 0;
    loop {
        // Hold the link only while starting the request, so the stream never keeps it alive.
        let opening = {
            let Some(l) = link.upgrade() else { return };
            let Io::Http(h) = &l.io else { return };
            if l.is_broken() {
                return;
            }
            let Some(req) = l.stream_request(last_id.as_deref()) else {
                return;
            };
            (h.http.clone(), req, h.max_bytes, l.linger_ms, l.renewal())
        };
        let (http, mut req, max, linger_ms, renew) = opening;
        // An upstream that authenticates the gateway as an OAuth client gets its token here too
        // (without one, its refusal ends the stream as any client error does).
        if let Some(l) = link.upgrade() {
            if let Io::Http(h) = &l.io {
                let _ = h.authorize(&mut req.headers, None).await;
            }
        }
        // Never resolves unless the link asks to reopen (a 2026-07-28 stream's watch changed).
        let mut renew = match renew {
            Some(rx) => futures::future::Either::Left(rx),
            None => futures::future::Either::Right(futures::future::pending()),
        };
        let mut renewed = false;
        let answered = match futures::future::select(http.send(req), &mut stop).await {
            Either::Left((r, _)) => r,
            Either::Right(_) => return,
        };
        // Answered, refused or failed: calls need not wait for it.
        if let Some(l) = link.upgrade() {
            l.settle();
        }
        let mut parked = None;
        match answered {
            Ok(resp) if resp.status.is_success() => {
                let mut parser = sse::Parser::with_limit(max);
                let mut body = resp.body;
                let mut got = false;
                // Checked every `linger_ms`: a quiet stream with nothing to keep it is parked.
                let mut quiet = true;
                let mut tick = clock.sleep(Duration::from_millis(linger_ms));
                loop {
                    let next = futures::future::select(body.next(), &mut tick);
                    let halt = futures::future::select(&mut stop, &mut renew);
                    let chunk = match futures::future::select(next, halt).await {
                        Either::Left((Either::Left((Some(Ok(c)), _)), _)) => c,
                        Either::Left((Either::Left(_), _)) => break,
                        Either::Left((Either::Right(_), _)) => {
                            if quiet {
                                let Some(l) = link.upgrade() else { return };
                                parked = l.try_park(&*keep);
                                if parked.is_some() {
                                    break;
                                }
                            }
                            quiet = true;
                            tick = clock.sleep(Duration::from_millis(linger_ms));
                            continue;
                        }
                        Either::Right((Either::Left(_), _)) => return,
                        Either::Right((Either::Right(_), _)) => {
                            renewed = true;
                            break;
                        }
                    };
                    let Ok(events) = parser.push(&chunk) else { break };
                    for ev in events {
                        got = true;
                        quiet = false;
                        if let Some(v) = ev.into_message().and_then(|d| serde_json::from_str::<Value>(&d).ok()) {
                            // A listen stream's acknowledgement is for the gateway alone.
                            if ServerMethod::of(&v) == Some(ServerMethod::Acknowledged) {
                                continue;
                            }
                            if matches!(sink.send(super::Said::Message(v)), Err(SinkError::Closed(_))) {
                                return;
                            }
                        }
                    }
                }
                if let Some(id) = parser.last_event_id() {
                    last_id = Some(id.to_string());
                }
                retry_ms = parser.retry_ms().or(retry_ms);
                failures = if got || parked.is_some() { 0 } else { failures + 1 };
            }
            Ok(resp) => {
                if resp.status == http::StatusCode::NOT_FOUND {
                    if let Some(l) = link.upgrade() {
                        l.mark_broken();
                    }
                    return;
                }
                // 405: no standalone stream offered. Another client error will not change by
                // asking again, except a conflict (the previous stream not yet released),
                // a timeout or a rate limit.
                let transient = [
                    http::StatusCode::CONFLICT,
                    http::StatusCode::REQUEST_TIMEOUT,
                    http::StatusCode::TOO_MANY_REQUESTS,
                ];
                if resp.status.is_client_error() && !transient.contains(&resp.status) {
                    return;
                }
                failures += 1;
            }
            Err(_) => failures += 1,
        }
        if sink.is_closed() {
            return;
        }
        if renewed {
            continue;
        }
        if let Some(wake) = parked {
            // Parked: the connection is closed (the body dropped); reopen when woken.
            if let Either::Right(_) = futures::future::select(wake, &mut stop).await {
                return;
            }
            continue;
        }
        // The upstream's retry delay; doubled per failure in a row, within the cap.
        let wait = super::follow::reopen_wait(retry_ms, failures);
        if let Either::Right(_) = futures::future::select(clock.sleep(Duration::from_millis(wait)), &mut stop).await {
            return;
        }
    }
}
