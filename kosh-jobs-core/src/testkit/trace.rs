//! Cases about a job's trace context ([`crate::NewJob::trace`], see [`crate::trace`]): kept
//! with the job on every path that hands it to a worker, and validated.

use crate::admin::{JobFilter, SearchQuery};
use crate::error::BackendError;
use crate::limits::QueueLimits;
use crate::record::{JobId, LeasedJob, NewJob};

use super::support::{env, retry, secs, Env};
use super::BackendFactory;

/// A `traceparent` whose ids end in `n`.
fn traceparent(n: u8) -> String {
    format!("00-4bf92f3577b34da6a3ce929d0e0e47{n:02x}-00f067aa0ba902{n:02x}-01")
}

fn traced(t: &Env, name: &str, queue: &str, trace: Option<String>) -> NewJob {
    let mut j = t.job(name, queue);
    j.trace = trace;
    j
}

/// The leased job with id `id` among `leased`.
fn leased<'a>(leased: &'a [LeasedJob], id: JobId, what: &str) -> &'a LeasedJob {
    leased
        .iter()
        .find(|j| j.id() == id)
        .unwrap_or_else(|| panic!("{what}: job {id} was not leased"))
}

/// A job's trace context comes back unchanged from `get` and from every kind of reserve: a
/// plain job, a grouped one, one on a queue with limits, a delayed one once due, and again on
/// the attempt after a retry and after a lease expired. A job without one has none, and the
/// longest allowed context (512 bytes) is kept whole.
pub async fn trace_context_is_kept_with_the_job<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    t.b.set_queue_limits("traced-limited", QueueLimits::NONE.with_concurrency(10))
        .await
        .unwrap_or_else(|e| panic!("set_queue_limits: backend error: {e:?}"));
    let longest = "00-ab".repeat(crate::backend::MAX_TRACE_LEN / 5)
        + &"x".repeat(crate::backend::MAX_TRACE_LEN % 5);
    assert_eq!(longest.len(), crate::backend::MAX_TRACE_LEN);
    let mut grouped = traced(&t, "grouped", "traced", Some(traceparent(3)));
    grouped.group = Some("user-7".into());
    let mut delayed = traced(&t, "delayed", "traced", Some(traceparent(5)));
    delayed.run_at = t.now() + secs(10);
    let mut keyed = traced(&t, "keyed", "traced", Some(longest.clone()));
    keyed.unique_key = Some("traced-key".into());
    let mut plain = traced(&t, "plain", "traced", Some(traceparent(1)));
    plain.payload = r#"{"needle":"in-a-traced-payload"}"#.into();
    let jobs = vec![
        plain,
        traced(&t, "untraced", "traced", None),
        grouped,
        traced(&t, "limited", "traced-limited", Some(traceparent(4))),
        delayed,
        keyed,
    ];
    let want: Vec<Option<String>> = jobs.iter().map(|j| j.trace.clone()).collect();
    let ids = t.push(jobs).await;
    for (id, want) in ids.iter().zip(&want) {
        assert_eq!(
            &t.get(*id).await.trace,
            want,
            "get of job {id}: the trace context pushed"
        );
    }

    // A text search reads the payload, not the trace context stored beside it.
    let search = |text: &str| {
        let q = SearchQuery::new(JobFilter::new().queue("traced").search(text));
        let b = t.b.clone();
        async move {
            b.search(&q)
                .await
                .unwrap_or_else(|e| panic!("search: backend error: {e:?}"))
                .jobs
                .into_iter()
                .map(|j| (j.id, j.trace))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        search("in-a-traced-payload").await,
        vec![(ids[0], want[0].clone())],
        "a search finds the traced job by its payload"
    );
    assert_eq!(
        search("4bf92f3577b34da6").await,
        vec![],
        "a search does not match the trace context"
    );

    let now_ready = t.reserve(&["traced", "traced-limited"], 10).await;
    assert_eq!(
        now_ready.len(),
        5,
        "every job but the delayed one is leased"
    );
    for (i, id) in ids.iter().enumerate() {
        if i == 4 {
            continue;
        }
        let what = format!("reserve of job {id}");
        assert_eq!(
            leased(&now_ready, *id, &what).trace,
            want[i],
            "{what}: the trace context pushed"
        );
    }

    // The unique key of a job with a trace context is freed when it completes.
    let keyed = leased(&now_ready, ids[5], "keyed");
    t.finish_ok(
        keyed.lease,
        super::support::done(),
        "complete the keyed job",
    )
    .await;
    let mut again = traced(&t, "keyed", "traced-again", None);
    again.unique_key = Some("traced-key".into());
    t.push_one(again).await;

    // A retry: the next attempt carries the same context.
    let plain = leased(&now_ready, ids[0], "plain");
    t.finish_ok(plain.lease, retry("again", t.now()), "retry the plain job")
        .await;
    let again = t
        .reserve_one("traced", "the plain job's second attempt")
        .await;
    assert_eq!((again.id(), again.attempt), (ids[0], 2));
    assert_eq!(
        again.trace, want[0],
        "second attempt: the same trace context"
    );

    // The delayed job once due, then its lease lost: both leases carry it.
    t.advance(secs(10));
    let due = t.reserve_one("traced", "the delayed job, due").await;
    assert_eq!(due.id(), ids[4]);
    assert_eq!(
        due.trace, want[4],
        "a delayed job once due: its trace context"
    );
    t.advance(super::support::LEASE + secs(1));
    t.recover().await;
    let mut after = t.reserve(&["traced", "traced-limited"], 10).await;
    after.retain(|j| j.id() == ids[4]);
    assert_eq!(
        after.len(),
        1,
        "the delayed job is leased again after its lease expired"
    );
    assert_eq!(
        after[0].trace, want[4],
        "after a lost lease: the same trace context"
    );
}

/// A trace context that is empty, longer than 512 bytes or not printable ASCII makes the
/// whole batch `InvalidInput`, storing nothing.
pub async fn invalid_trace_context_refuses_the_batch<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let too_long = "a".repeat(crate::backend::MAX_TRACE_LEN + 1);
    for (what, bad) in [
        ("empty", String::new()),
        ("too long", too_long),
        ("a newline", format!("{}\n", traceparent(1))),
        ("not ASCII", "00-ü".to_owned()),
    ] {
        let jobs = vec![
            traced(&t, "fine", "traced-bad", Some(traceparent(2))),
            traced(&t, "bad", "traced-bad", Some(bad)),
        ];
        match t.b.push(jobs).await {
            Err(BackendError::InvalidInput(_)) => {}
            other => panic!("trace context {what}: expected InvalidInput, got {other:?}"),
        }
    }
    t.reserve_none(&["traced-bad"], "no job of a refused batch was stored")
        .await;
}
