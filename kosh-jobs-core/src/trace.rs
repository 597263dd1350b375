//! Traces from enqueue to run: a job's attempts join the trace of the code that enqueued it.
//!
//! With the `opentelemetry` feature (and only with it), [`Client::enqueue`](crate::Client::enqueue) and
//! [`enqueue_batch`](crate::Client::enqueue_batch) run in a span `enqueue` (OpenTelemetry
//! name `enqueue <job name>`, kind producer) and store that span's context with each job, as a
//! W3C `traceparent` ([`NewJob::trace`](crate::NewJob::trace)); every backend keeps it with the
//! job. The worker's span for an attempt (`job`, OpenTelemetry name `<job name> attempt <n>`,
//! kind consumer) takes it as its parent, in whatever process runs the job, so one trace shows
//! the request, the enqueue, and each attempt after its wait in the queue:
//!
//! ```text
//! POST /api/imports
//! └─ enqueue import_csv
//!    ├─ import_csv attempt 1   (failed: retry scheduled)
//!    └─ import_csv attempt 2
//! ```
//!
//! The spans are `tracing` spans; they reach OpenTelemetry through the application's
//! [`tracing_opentelemetry`] layer, as its other spans do. Without that layer (or with the
//! `enqueue` span filtered out) nothing is stored and nothing changes: a job enqueued under
//! another exported span, say the request's, stores that span's context instead. A job
//! enqueued by other means ([`Client::push_raw`](crate::Client::push_raw), a schedule) carries
//! whatever trace its [`NewJob`](crate::NewJob) has, none for a schedule's.
//!
//! Setting it up in the application, with any exporter:
//!
//! ```
//! # #[cfg(feature = "opentelemetry")] {
//! use opentelemetry::trace::TracerProvider as _;
//! use tracing_subscriber::prelude::*;
//!
//! let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
//!     // .with_batch_exporter(an OTLP exporter, say)
//!     .build();
//! let subscriber = tracing_subscriber::registry()
//!     .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("csv-app")));
//! let _guard = tracing::subscriber::set_default(subscriber);
//! // ... enqueue jobs, run workers: their spans are exported through `provider`.
//! # }
//! ```
//!
//! A trace context the worker cannot parse (one pushed by hand) is ignored: the attempt
//! starts a trace of its own.

use tracing::Span;

use crate::record::LeasedJob;

/// The span around an enqueue of jobs named `name`: its context is what the jobs store; an
/// enqueue of one job records its id (`job.id`) once stored. Without the `opentelemetry`
/// feature there is none, so an enqueue costs what it did before traces.
#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn enqueue_span(_name: &str) -> Span {
    Span::none()
}

/// The span around an enqueue of jobs named `name`: its context is what the jobs store; an
/// enqueue of one job records its id (`job.id`) once stored.
#[cfg(feature = "opentelemetry")]
pub(crate) fn enqueue_span(name: &str) -> Span {
    let span = tracing::info_span!(
        "enqueue",
        job.name = %name,
        job.id = tracing::field::Empty,
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
    );
    if !span.is_disabled() {
        span.record("otel.name", format!("enqueue {name}"));
        span.record("otel.kind", "producer");
    }
    span
}

/// The span of one attempt of `job`: a child of the span that enqueued it when the job
/// carries that span's context.
pub(crate) fn attempt_span(job: &LeasedJob) -> Span {
    let span = tracing::info_span!(
        "job",
        job.id = %job.lease.id,
        job.name = %job.name,
        job.queue = %job.queue,
        job.attempt = job.attempt,
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
    );
    #[cfg(feature = "opentelemetry")]
    otel::adopt(&span, job);
    span
}

/// The trace context of the current span, as a `traceparent`; `None` without one (or
/// without the `opentelemetry` feature).
pub(crate) fn current() -> Option<String> {
    #[cfg(feature = "opentelemetry")]
    {
        otel::traceparent(&Span::current())
    }
    #[cfg(not(feature = "opentelemetry"))]
    {
        None
    }
}

#[cfg(feature = "opentelemetry")]
mod otel {
    use std::collections::HashMap;

    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use crate::record::LeasedJob;

    const TRACEPARENT: &str = "traceparent";

    /// `span`'s context as a `traceparent`, if it belongs to an OpenTelemetry trace.
    pub(super) fn traceparent(span: &Span) -> Option<String> {
        if span.is_disabled() {
            return None;
        }
        let cx = span.context();
        if !cx.span().span_context().is_valid() {
            return None;
        }
        let mut carrier: HashMap<String, String> = HashMap::with_capacity(1);
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
        carrier.remove(TRACEPARENT)
    }

    /// Names `span` (the attempt of `job`) for OpenTelemetry and, when the job carries a
    /// trace context that parses, makes it the span's parent.
    pub(super) fn adopt(span: &Span, job: &LeasedJob) {
        if span.is_disabled() {
            return;
        }
        span.record("otel.name", format!("{} attempt {}", job.name, job.attempt));
        span.record("otel.kind", "consumer");
        let Some(trace) = &job.trace else { return };
        let carrier = HashMap::from([(TRACEPARENT.to_owned(), trace.clone())]);
        let parent = TraceContextPropagator::new().extract(&carrier);
        if !parent.span().span_context().is_valid() {
            tracing::debug!(job = %job.lease.id, trace = %trace, "ignoring a trace context that does not parse");
            return;
        }
        if let Err(e) = span.set_parent(parent) {
            tracing::debug!(job = %job.lease.id, error = %e, "cannot join the job's trace");
        }
    }
}
