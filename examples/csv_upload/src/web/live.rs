//! `GET /api/events`: the imports' job events as server-sent events, so the page redraws when
//! something happened instead of asking every second.
//!
//! Each event of the import queue goes out as an SSE `job` event with JSON data
//! `{"job_id", "kind", "attempt", "progress"}` (`kind` as in
//! [`kosh_jobs::events::JobEventKind`]); `missed` says events may have been lost (the job
//! store's connection dropped), so the page reloads everything. A comment line every 15 s
//! keeps proxies from closing an idle stream; the stream ends when the server shuts down. If the job store carries no events, the answer
//! is a 503 and the page polls instead.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use kosh_jobs::events::{Event, EventFilter, Subscription};
use kosh_jobs::Job;
use serde_json::json;

use super::error::ApiError;
use super::Web;
use crate::import::ImportCsv;

/// The SSE stream of the import queue's events.
pub async fn events(State(web): State<Web>) -> Result<Response, ApiError> {
    let sub = web
        .jobs
        .subscribe(EventFilter::Queue(ImportCsv::QUEUE.to_owned()))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("live updates are off: {e}"),
            )
        })?;
    let stream = stream_of(sub).take_until(web.closing.cancelled_owned());
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn stream_of(sub: Subscription) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    stream::unfold(sub, |mut sub| async move {
        let out = match sub.next().await? {
            Event::Job(e) => SseEvent::default().event("job").data(
                json!({
                    "job_id": e.id.to_string(),
                    "kind": e.kind,
                    "attempt": e.attempt,
                    "progress": e.progress,
                })
                .to_string(),
            ),
            Event::Missed { .. } => SseEvent::default().event("missed").data("{}"),
        };
        Some((Ok(out), sub))
    })
}
