//! Cases of the admin contract ([`crate::admin`]): search, actions, attempt history,
//! throughput, live workers and queue latency.

use crate::admin::{
    ActionResult, AdminAction, AttemptOutcome, JobFilter, Order, SearchPage, SearchQuery,
    ThroughputPoint, ThroughputQuery, TimeRange, WorkerInfo, MAX_ACTION_IDS, MAX_HISTORY,
    WORKER_TTL,
};
use crate::error::BackendError;
use crate::record::{
    FailureKind, Finish, FinishResult, JobId, JobRecord, JobState, NewJob, Outcome, ReserveRequest,
};

use super::support::{done, env, req, secs, Env, LEASE};
use super::BackendFactory;

async fn search(t: &Env, q: &SearchQuery) -> SearchPage {
    let page =
        t.b.search(q)
            .await
            .unwrap_or_else(|e| panic!("search {q:?}: backend error: {e:?}"));
    assert!(
        page.jobs.len() <= q.effective_limit(),
        "search: {} jobs for limit {}",
        page.jobs.len(),
        q.effective_limit()
    );
    assert!(
        page.examined as usize <= q.effective_budget(),
        "search: examined {} jobs for a budget of {}",
        page.examined,
        q.effective_budget()
    );
    page
}

/// Every page of a search, in order: the ids, the pages it took, and the first page's
/// total.
async fn search_all(t: &Env, q: SearchQuery) -> (Vec<JobId>, usize, SearchPage) {
    let mut q = q;
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut first = None;
    loop {
        let page = search(t, &q).await;
        pages += 1;
        assert!(pages < 10_000, "search: the cursor never ends");
        ids.extend(page.jobs.iter().map(|j| j.id));
        let next = page.next;
        if first.is_none() {
            first = Some(page);
        }
        match next {
            Some(n) => {
                assert!(
                    q.is_past_cursor(n) || q.after.is_none(),
                    "search: the cursor must move on ({n} after {:?})",
                    q.after
                );
                q.after = Some(n);
                q.with_total = false;
            }
            None => break,
        }
    }
    let first = first.unwrap_or_else(|| unreachable!("one page at least"));
    (ids, pages, first)
}

async fn apply(
    t: &Env,
    action: AdminAction,
    ids: &[JobId],
    only: &[JobState],
) -> Vec<ActionResult> {
    let out =
        t.b.apply(action, ids, only)
            .await
            .unwrap_or_else(|e| panic!("apply {action}: backend error: {e:?}"));
    assert_eq!(out.len(), ids.len(), "apply {action}: one result per id");
    out
}

async fn read(
    t: &Env,
    queue: Option<&str>,
    since: crate::clock::Timestamp,
) -> Vec<ThroughputPoint> {
    let q = ThroughputQuery {
        queue: queue.map(str::to_owned),
        since,
    };
    t.b.throughput(&q)
        .await
        .unwrap_or_else(|e| panic!("throughput: backend error: {e:?}"))
}

fn reserve_as(worker: &str, queue: &str) -> ReserveRequest {
    ReserveRequest {
        worker: worker.to_owned(),
        ..req(&[queue], 1)
    }
}

fn with_payload(t: &Env, name: &str, queue: &str, payload: &str) -> NewJob {
    NewJob::new(name, queue, payload, t.now())
}

/// A mix of jobs in every state, two queues, two names, texts in payloads, errors and
/// unique keys. Returns every id.
async fn populate(t: &Env) -> Vec<JobId> {
    let mut ids = Vec::new();
    for i in 0..40u32 {
        let queue = if i % 3 == 0 { "imports" } else { "mail" };
        let name = if i % 2 == 0 {
            "import_csv"
        } else {
            "send_email"
        };
        let payload = format!(r#"{{"n":{i},"file":"statement-{i}.CSV"}}"#);
        let mut j = with_payload(t, name, queue, &payload);
        if i % 7 == 0 {
            j.unique_key = Some(format!("Upload-{i}"));
        }
        if i % 10 == 9 {
            j.run_at = t.now() + secs(3600);
        }
        ids.push(t.push_one(j).await);
        if i % 5 == 4 {
            t.advance(secs(1));
        }
    }
    // Run some of each queue: complete, fail with a searchable error, retry, cancel.
    for (k, queue) in ["imports", "mail", "mail", "imports", "mail", "mail"]
        .into_iter()
        .enumerate()
    {
        let l = t.reserve_one(queue, "populate").await;
        let outcome = match k % 3 {
            0 => done(),
            1 => Outcome::failed(format!("Database is LOCKED (try {k})")),
            _ => Outcome::retry("timeout talking to the bank", t.now() + secs(600)),
        };
        t.finish_ok(l.lease, outcome, "populate").await;
        t.advance(secs(1));
    }
    let cancel_me = ids[4];
    let _ = t.b.cancel(cancel_me).await;
    let _ = t.reserve(&["mail"], 2).await; // two running
    ids
}

/// Every job, read one by one: the reference the searches are checked against.
async fn all_records(t: &Env, ids: &[JobId]) -> Vec<JobRecord> {
    let mut out = Vec::new();
    for &id in ids {
        if let Some(r) =
            t.b.get(id)
                .await
                .unwrap_or_else(|e| panic!("get: backend error: {e:?}"))
        {
            out.push(r);
        }
    }
    out
}

fn filters(t: &Env) -> Vec<(&'static str, JobFilter)> {
    let early = TimeRange {
        from: None,
        until: Some(t.now() - secs(5)),
    };
    let recent = TimeRange {
        from: Some(t.now() - secs(4)),
        until: None,
    };
    vec![
        ("everything", JobFilter::new()),
        ("failed", JobFilter::new().state(JobState::Failed)),
        (
            "ready or scheduled in mail",
            JobFilter::new()
                .state(JobState::Ready)
                .state(JobState::Scheduled)
                .queue("mail"),
        ),
        ("running", JobFilter::new().state(JobState::Running)),
        (
            "final in imports",
            JobFilter::new()
                .state(JobState::Completed)
                .state(JobState::Failed)
                .state(JobState::Cancelled)
                .queue("imports"),
        ),
        ("by name", JobFilter::new().name("import_csv")),
        (
            "payload text, any case",
            JobFilter::new().search("STATEMENT-1"),
        ),
        ("error text", JobFilter::new().search("database is locked")),
        ("unique key text", JobFilter::new().search("upload-2")),
        ("no match", JobFilter::new().search("no such text anywhere")),
        (
            "failed with text in a queue",
            JobFilter::new()
                .state(JobState::Failed)
                .queue("mail")
                .search("LOCKED"),
        ),
        ("created early", JobFilter::new().created(early)),
        ("finished recently", JobFilter::new().finished(recent)),
        ("unknown queue", JobFilter::new().queue("nobody-uses-this")),
    ]
}

/// A search returns exactly the jobs its filter matches (checked against
/// [`JobFilter::matches`] on every job), in id order both ways, each once, over pages of
/// any size; its total is exact when its budget covers every job.
pub async fn search_matches_filter<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let ids = populate(&t).await;
    let records = all_records(&t, &ids).await;
    for (what, filter) in filters(&t) {
        let mut expected: Vec<JobId> = records
            .iter()
            .filter(|r| filter.matches(r))
            .map(|r| r.id)
            .collect();
        expected.sort_unstable();
        for order in [Order::OldestFirst, Order::NewestFirst] {
            for limit in [1, 7, 1000] {
                let q = SearchQuery::new(filter.clone()).order(order).limit(limit);
                let (got, _, first) = search_all(&t, q).await;
                let mut want = expected.clone();
                if order == Order::NewestFirst {
                    want.reverse();
                }
                assert_eq!(
                    got, want,
                    "search `{what}` ({order:?}, limit {limit}): the matching jobs, in order, once each"
                );
                let total = first.total.unwrap_or_else(|| {
                    panic!("search `{what}`: a total was asked for on the first page")
                });
                assert_eq!(
                    (total.count, total.exact),
                    (expected.len() as u64, true),
                    "search `{what}`: the total of a small store is exact"
                );
            }
        }
    }
    // The records a search returns are the jobs in full.
    let q = SearchQuery::new(JobFilter::new().search("locked")).limit(1);
    let page = search(&t, &q).await;
    let job = page
        .jobs
        .first()
        .unwrap_or_else(|| panic!("search: a failed job matches `locked`"));
    assert_eq!(
        *job,
        t.get(job.id).await,
        "search: a returned job equals `get` of it"
    );
}

/// A newest-first cursor stays put while jobs are added: the pages after it hold the older
/// jobs, none twice and none skipped, and the new jobs do not appear.
pub async fn search_cursor_stable_while_adding<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    t.push((0..25).map(|_| t.job("n", "q")).collect()).await;
    for filter in [
        JobFilter::new().state(JobState::Ready).queue("q"),
        JobFilter::new().search("{}"),
    ] {
        let start = SearchQuery::new(filter.clone())
            .order(Order::NewestFirst)
            .limit(1000);
        let (want, _, _) = search_all(&t, start.clone()).await;
        assert!(want.len() >= 25, "cursor: the jobs are found");
        let mut q = start.limit(10);
        let mut seen = Vec::new();
        loop {
            let page = search(&t, &q).await;
            seen.extend(page.jobs.iter().map(|j| j.id));
            // Jobs arrive between pages, in this queue and another.
            t.push(vec![t.job("n", "q"), t.job("n", "other")]).await;
            match page.next {
                Some(n) => q.after = Some(n),
                None => break,
            }
        }
        assert_eq!(
            seen, want,
            "search {filter:?}: newest-first pages keep their place while jobs are added"
        );
    }
}

/// A search examines at most its budget per call and says so; a rare text is found by
/// continuing; the total of a scan cut short by the budget is not exact.
pub async fn search_work_is_bounded<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut jobs: Vec<NewJob> = (0..350).map(|_| t.job("n", "q")).collect();
    jobs[300].payload = r#"{"note":"Needle in a haystack"}"#.into();
    let ids = t.push(jobs).await;
    let q = SearchQuery::new(JobFilter::new().search("NEEDLE")).budget(100);
    let (found, pages, first) = search_all(&t, q).await;
    assert_eq!(
        found,
        vec![ids[300]],
        "bounded search: the rare job is found"
    );
    assert!(
        pages >= 3,
        "bounded search: 350 jobs at 100 per call take several calls, not {pages}"
    );
    let total = first
        .total
        .unwrap_or_else(|| panic!("bounded search: a total"));
    assert!(
        !total.exact && total.count <= 1,
        "bounded search: a count cut short by the budget is not exact: {total:?}"
    );
    // An indexed filter counts from the backend's counters, exactly, whatever the budget.
    let q = SearchQuery::new(JobFilter::new().state(JobState::Ready).queue("q"))
        .budget(100)
        .limit(5);
    let page = search(&t, &q).await;
    assert_eq!(
        page.total.map(|t| (t.count, t.exact)),
        Some((350, true)),
        "bounded search: an indexed total is exact"
    );
    assert_eq!(page.jobs.len(), 5, "bounded search: a full first page");
}

/// The ids-only search ([`crate::Backend::search_ids`]) gives, page by page, the ids,
/// cursor, examined count and total of the search with the same query, for every filter,
/// both orders, pages of any size and a small budget; a bad filter is `InvalidInput` there
/// too.
pub async fn search_ids_agree_with_search<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    populate(&t).await;
    for (what, filter) in filters(&t) {
        for order in [Order::OldestFirst, Order::NewestFirst] {
            for (limit, budget) in [(1, 100_000), (7, 100), (1000, 100_000)] {
                let mut q = SearchQuery::new(filter.clone())
                    .order(order)
                    .limit(limit)
                    .budget(budget);
                let mut pages = 0;
                loop {
                    let full = search(&t, &q).await;
                    let ids =
                        t.b.search_ids(&q)
                            .await
                            .unwrap_or_else(|e| panic!("search_ids {q:?}: backend error: {e:?}"));
                    let want: Vec<JobId> = full.jobs.iter().map(|j| j.id).collect();
                    assert_eq!(
                        (&ids.ids, ids.next, ids.examined, ids.total),
                        (&want, full.next, full.examined, full.total),
                        "search_ids `{what}` ({order:?}, limit {limit}, budget {budget}, \
                         page {pages}): the page of `search`, as ids"
                    );
                    pages += 1;
                    assert!(pages < 10_000, "search_ids: the cursor never ends");
                    match ids.next {
                        Some(n) => {
                            q.after = Some(n);
                            q.with_total = false;
                        }
                        None => break,
                    }
                }
            }
        }
    }
    let bad = SearchQuery::new(JobFilter::new().queue("no spaces allowed"));
    match t.b.search_ids(&bad).await {
        Err(BackendError::InvalidInput(_)) => {}
        other => panic!("search_ids with a bad queue name: expected InvalidInput, got {other:?}"),
    }
}

/// Bad filters are `InvalidInput`: a bad queue name, an empty or too long search text, a
/// range ending before it starts.
pub async fn search_rejects_bad_filters<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    t.push_one(t.job("n", "q")).await;
    let backwards = TimeRange {
        from: Some(t.now()),
        until: Some(t.now() - secs(1)),
    };
    for (what, filter) in [
        ("queue name", JobFilter::new().queue("no spaces allowed")),
        ("empty search", JobFilter::new().search("")),
        ("long search", JobFilter::new().search("x".repeat(300))),
        ("backwards range", JobFilter::new().created(backwards)),
    ] {
        match t.b.search(&SearchQuery::new(filter)).await {
            Err(BackendError::InvalidInput(_)) => {}
            other => panic!("search with a bad {what}: expected InvalidInput, got {other:?}"),
        }
    }
}

/// Each action applies in its states only (others are `Skipped` with the state, unknown
/// ids `NotFound`), `only` narrows the states, and more than [`MAX_ACTION_IDS`] ids is
/// `InvalidInput`.
pub async fn actions_apply_in_their_states<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut later = t.job("n", "q");
    later.run_at = t.now() + secs(3600);
    let scheduled = t.push_one(later).await;
    let ready = t.push_one(t.job("n", "q")).await;
    let failed = t.push_one(t.job("n", "q")).await;
    let l = t.reserve_one("q", "actions").await;
    assert_eq!(l.id(), ready, "actions: the ready job is leased first");
    let running = ready;
    let l2 = t.reserve_one("q", "actions").await;
    assert_eq!(l2.id(), failed);
    t.finish_ok(l2.lease, Outcome::failed("boom"), "actions")
        .await;
    let completed = t.push_one(t.job("n", "q")).await;
    let l3 = t.reserve_one("q", "actions").await;
    t.finish_ok(l3.lease, done(), "actions").await;
    let unknown = JobId::new(u64::MAX - 7);
    let all = [scheduled, running, failed, completed, unknown];

    // Promote: scheduled only.
    let out = apply(&t, AdminAction::Promote, &all, &[]).await;
    assert_eq!(
        out,
        vec![
            ActionResult::Applied,
            ActionResult::Skipped(JobState::Running),
            ActionResult::Skipped(JobState::Failed),
            ActionResult::Skipped(JobState::Completed),
            ActionResult::NotFound,
        ],
        "promote"
    );
    let rec = t.get(scheduled).await;
    assert_eq!(
        (rec.state, rec.run_at),
        (JobState::Ready, t.now()),
        "promote: ready now"
    );
    let l4 = t.reserve_one("q", "promoted job").await;
    assert_eq!(
        l4.id(),
        scheduled,
        "promote: the promoted job can be leased"
    );
    t.finish_ok(l4.lease, done(), "promoted job").await;

    // Retry, limited to failed: the cancelled-later job would be skipped.
    let out = apply(
        &t,
        AdminAction::Retry,
        &[failed, completed, running],
        &[JobState::Failed],
    )
    .await;
    assert_eq!(
        out,
        vec![
            ActionResult::Applied,
            ActionResult::Skipped(JobState::Completed),
            ActionResult::Skipped(JobState::Running),
        ],
        "retry"
    );
    assert_eq!(
        t.get(failed).await.state,
        JobState::Ready,
        "retry: back to ready"
    );

    // Cancel: live jobs only; `only` narrows to ready.
    let out = apply(
        &t,
        AdminAction::Cancel,
        &[failed, running, completed],
        &[JobState::Ready],
    )
    .await;
    assert_eq!(
        out,
        vec![
            ActionResult::Applied,
            ActionResult::Skipped(JobState::Running),
            ActionResult::Skipped(JobState::Completed),
        ],
        "cancel with only = [ready]"
    );
    let out = apply(&t, AdminAction::Cancel, &[running], &[]).await;
    assert_eq!(out, vec![ActionResult::Applied], "cancel a running job");
    assert_eq!(
        t.finish_one(l.lease, done()).await,
        crate::record::FinishResult::LeaseLost,
        "cancel: the running job's lease is void"
    );

    // Delete: final jobs only, and they are gone for good.
    let out = apply(
        &t,
        AdminAction::Delete,
        &[completed, running, failed, unknown],
        &[],
    )
    .await;
    assert_eq!(
        out,
        vec![ActionResult::Applied; 3]
            .into_iter()
            .chain([ActionResult::NotFound])
            .collect::<Vec<_>>(),
        "delete"
    );
    for id in [completed, running, failed] {
        assert_eq!(
            t.b.get(id).await.unwrap_or_else(|e| panic!("get: {e:?}")),
            None,
            "delete: job {id} is gone"
        );
    }
    let c = t.counts_of("q").await;
    assert_eq!(
        (c.completed, c.failed, c.cancelled),
        (1, 0, 0),
        "delete: the counts drop with the jobs"
    );
    let found = search(&t, &SearchQuery::new(JobFilter::new().queue("q"))).await;
    assert_eq!(
        found.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![scheduled],
        "delete: deleted jobs are not found"
    );

    let too_many: Vec<JobId> = (1..=MAX_ACTION_IDS as u64 + 1).map(JobId::new).collect();
    match t.b.apply(AdminAction::Delete, &too_many, &[]).await {
        Err(BackendError::InvalidInput(_)) => {}
        other => panic!("apply with too many ids: expected InvalidInput, got {other:?}"),
    }
}

/// A retry by action that would duplicate a live job's unique key is refused with the
/// holder's id.
pub async fn action_retry_unique_conflict<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut j = t.job("n", "q");
    j.unique_key = Some("only-one".into());
    let first = t.push_one(j.clone()).await;
    let l = t.reserve_one("q", "unique").await;
    t.finish_ok(l.lease, Outcome::failed("x"), "unique").await;
    let second = t.push_one(j).await;
    let out = apply(&t, AdminAction::Retry, &[first], &[]).await;
    assert_eq!(
        out,
        vec![ActionResult::UniqueConflict(second)],
        "retry by action: unique conflict"
    );
    assert_eq!(
        t.get(first).await.state,
        JobState::Failed,
        "unique conflict: unchanged"
    );
}

/// A bulk retry of failed and cancelled jobs, some with unique keys, with an id given twice,
/// a job in another state and an unknown id: each gets its own answer, as if retried one at
/// a time, and every retried job is leased exactly once afterwards.
pub async fn action_retry_in_bulk<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut failed = Vec::new();
    for i in 0..4 {
        let mut j = t.job("n", "q");
        if i % 2 == 1 {
            j.unique_key = Some(format!("bulk-{i}"));
        }
        failed.push(t.push_one(j).await);
    }
    let cancelled = t.push_one(t.job("n", "q")).await;
    for _ in 0..4 {
        let l = t.reserve_one("q", "bulk retry").await;
        t.finish_ok(l.lease, Outcome::failed("database is locked"), "bulk retry")
            .await;
    }
    let out = apply(&t, AdminAction::Cancel, &[cancelled], &[]).await;
    assert_eq!(out, vec![ActionResult::Applied], "bulk retry: cancel");
    let ready = t.push_one(t.job("n", "q")).await;
    let unknown = JobId::new(u64::MAX - 11);
    let ids = [
        failed[0], failed[1], failed[0], cancelled, ready, unknown, failed[2], failed[3],
    ];
    let out = apply(&t, AdminAction::Retry, &ids, &[]).await;
    assert_eq!(
        out,
        vec![
            ActionResult::Applied,
            ActionResult::Applied,
            ActionResult::Skipped(JobState::Ready),
            ActionResult::Applied,
            ActionResult::Skipped(JobState::Ready),
            ActionResult::NotFound,
            ActionResult::Applied,
            ActionResult::Applied,
        ],
        "bulk retry: one answer per id"
    );
    let c = t.counts_of("q").await;
    assert_eq!(
        (c.ready, c.failed, c.cancelled),
        (6, 0, 0),
        "bulk retry: counts after"
    );
    let mut leased = Vec::new();
    for _ in 0..6 {
        let l = t.reserve_one("q", "bulk retry: lease after").await;
        assert_eq!(l.attempt, 1, "bulk retry: attempts start again");
        leased.push(l.id());
    }
    leased.sort_unstable();
    let mut want: Vec<JobId> = failed.iter().copied().chain([cancelled, ready]).collect();
    want.sort_unstable();
    assert_eq!(leased, want, "bulk retry: each job leased once");
    // The retried jobs hold their unique keys again: a new job with one is not a second
    // live job.
    let mut dup = t.job("n", "q");
    dup.unique_key = Some("bulk-1".into());
    let again =
        t.b.push(vec![dup])
            .await
            .unwrap_or_else(|e| panic!("push: {e:?}"));
    assert_eq!(
        again.first().map(|p| (p.id, p.existing)),
        Some((failed[1], true)),
        "bulk retry: the unique key is held by the retried job"
    );
}

/// A full call of [`MAX_ACTION_IDS`] ids, which a backend may carry out in several steps (a
/// short transaction or script each): every id gets the answer it would get if the ids were
/// acted on one at a time in order, also when an id comes again in a later step (then it is
/// `Skipped`, already retried), and every retried job is ready exactly once.
pub async fn action_on_a_full_call_answers_each_id_in_order<F: BackendFactory + ?Sized>(
    factory: &F,
) {
    const FAILED: usize = 150;
    let t = env(factory).await;
    let failed = t.push((0..FAILED).map(|_| t.job("n", "q")).collect()).await;
    let mut left = FAILED;
    while left > 0 {
        let leased = t.reserve(&["q"], left.min(50)).await;
        assert!(!leased.is_empty(), "full call: every failing job is leased");
        left -= leased.len();
        let fin = leased
            .iter()
            .map(|l| Finish {
                lease: l.lease,
                outcome: Outcome::failed("database is locked"),
            })
            .collect();
        let out = t.finish(fin).await;
        assert!(
            out.iter().all(|r| *r == FinishResult::Applied),
            "full call: failures applied"
        );
    }
    let ready = t.push_one(t.job("n", "q")).await;
    // Ids in an order that puts each failed job twice, far apart (its first sight and its
    // second in different steps of any step size from 2 to 500), with ready and unknown ids
    // between them.
    let mut ids = Vec::with_capacity(MAX_ACTION_IDS);
    let mut want = Vec::with_capacity(MAX_ACTION_IDS);
    let mut seen = std::collections::HashSet::new();
    for k in 0..MAX_ACTION_IDS {
        let (id, answer) = match k % 7 {
            5 => (ready, ActionResult::Skipped(JobState::Ready)),
            6 => (JobId::new(u64::MAX - k as u64), ActionResult::NotFound),
            _ => {
                let i = (k * 7 / 5 + k / 300) % FAILED;
                let id = failed[i];
                if seen.insert(id) {
                    (id, ActionResult::Applied)
                } else {
                    (id, ActionResult::Skipped(JobState::Ready))
                }
            }
        };
        ids.push(id);
        want.push(answer);
    }
    assert_eq!(
        seen.len(),
        FAILED,
        "full call: the ids name every failed job"
    );
    let out = apply(&t, AdminAction::Retry, &ids, &[JobState::Failed]).await;
    let wrong: Vec<(usize, ActionResult, ActionResult)> = out
        .iter()
        .zip(&want)
        .enumerate()
        .filter(|(_, (got, want))| got != want)
        .map(|(k, (got, want))| (k, *got, *want))
        .collect();
    assert!(
        wrong.is_empty(),
        "full call: (position, answer, expected) of the wrong answers: {wrong:?}"
    );
    let c = t.counts_of("q").await;
    assert_eq!(
        (c.ready, c.failed),
        (FAILED as u64 + 1, 0),
        "full call: counts after"
    );
    let mut leased: Vec<JobId> = Vec::new();
    loop {
        let got = t.reserve(&["q"], 100).await;
        if got.is_empty() {
            break;
        }
        leased.extend(got.iter().map(|l| l.id()));
    }
    leased.sort_unstable();
    let mut all: Vec<JobId> = failed.iter().copied().chain([ready]).collect();
    all.sort_unstable();
    assert_eq!(leased, all, "full call: each job leased once after");
}

/// Each attempt is recorded with its worker, start, end, outcome and error; a running
/// attempt has no end; history keeps the latest [`MAX_HISTORY`] attempts.
pub async fn attempt_history_records_each_attempt<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut j = t.job("n", "q");
    j.max_attempts = 10;
    let id = t.push_one(j).await;
    let mut expected: Vec<(String, AttemptOutcome, Option<String>)> = Vec::new();

    let step = |worker: &str| reserve_as(worker, "q");
    // 1: an error, retried.
    let start1 = t.now();
    let l = t.reserve_req(&step("w-1")).await.remove(0);
    let running = t.get(id).await;
    let last = running
        .history
        .last()
        .unwrap_or_else(|| panic!("history: a running attempt is listed"));
    assert_eq!(
        (
            last.attempt,
            last.worker.as_str(),
            last.started_at,
            last.ended_at,
            last.outcome
        ),
        (1, "w-1", start1, None, None),
        "history: the running attempt"
    );
    t.advance(secs(2));
    t.finish_ok(l.lease, Outcome::retry("bank said no", t.now()), "history")
        .await;
    expected.push((
        "w-1".into(),
        AttemptOutcome::RetryScheduled,
        Some("bank said no".into()),
    ));
    // 2: timed out, retried.
    let l = t.reserve_req(&step("w-2")).await.remove(0);
    t.finish_ok(
        l.lease,
        Outcome::Retry {
            error: "timed out after 1s".into(),
            retry_at: t.now(),
            kind: FailureKind::TimedOut,
        },
        "history",
    )
    .await;
    expected.push((
        "w-2".into(),
        AttemptOutcome::TimedOut,
        Some("timed out after 1s".into()),
    ));
    // 3: released at shutdown.
    let l = t.reserve_req(&step("w-3")).await.remove(0);
    t.b.release(&[l.lease])
        .await
        .unwrap_or_else(|e| panic!("release: {e:?}"));
    expected.push(("w-3".into(), AttemptOutcome::Released, None));
    // 4: lease expired.
    let _ = t.reserve_req(&step("w-4")).await.remove(0);
    t.advance(LEASE + secs(1));
    assert_eq!(t.recover().await, 1, "history: the lease is recovered");
    expected.push(("w-4".into(), AttemptOutcome::LeaseExpired, None));
    // 5: panicked, failed for good.
    let l = t.reserve_req(&step("w-5")).await.remove(0);
    t.finish_ok(
        l.lease,
        Outcome::Failed {
            error: "handler panicked: oops".into(),
            kind: FailureKind::Panicked,
        },
        "history",
    )
    .await;
    expected.push((
        "w-5".into(),
        AttemptOutcome::Panicked,
        Some("handler panicked: oops".into()),
    ));
    // 6: retried by hand, then cancelled while running.
    let _ = t.b.retry(id).await;
    let _ = t.reserve_req(&step("w-6")).await.remove(0);
    let _ = t.b.cancel(id).await;
    expected.push(("w-6".into(), AttemptOutcome::Cancelled, None));

    let rec = t.get(id).await;
    let got: Vec<(String, AttemptOutcome, Option<String>)> = rec
        .history
        .iter()
        .map(|a| {
            (
                a.worker.clone(),
                a.outcome
                    .unwrap_or_else(|| panic!("history: attempt {} has ended", a.attempt)),
                a.error.clone(),
            )
        })
        .collect();
    // A lease expiry's error is the backend's to word; compare the rest exactly.
    let strip = |v: Vec<(String, AttemptOutcome, Option<String>)>| {
        v.into_iter()
            .map(|(w, o, e)| {
                (
                    w,
                    o,
                    if o == AttemptOutcome::LeaseExpired {
                        None
                    } else {
                        e
                    },
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        strip(got),
        strip(expected),
        "history: every attempt, in order"
    );
    let first = &rec.history[0];
    assert_eq!(
        (first.attempt, first.started_at, first.ended_at),
        (1, start1, Some(start1 + secs(2))),
        "history: start and end times"
    );
    assert!(
        rec.history
            .iter()
            .all(|a| a.ended_at.is_some_and(|e| e >= a.started_at)),
        "history: every attempt ends after it starts"
    );

    // Completed, and bounded.
    let id2 = t.push_one(t.job("n", "q2")).await;
    for _ in 0..MAX_HISTORY + 3 {
        let l = t.reserve_one("q2", "bounded history").await;
        t.b.release(&[l.lease])
            .await
            .unwrap_or_else(|e| panic!("release: {e:?}"));
    }
    let l = t.reserve_one("q2", "bounded history").await;
    t.finish_ok(l.lease, done(), "bounded history").await;
    let rec = t.get(id2).await;
    assert_eq!(rec.history.len(), MAX_HISTORY, "history: bounded");
    assert_eq!(
        rec.history.last().and_then(|a| a.outcome),
        Some(AttemptOutcome::Completed),
        "history: the latest attempts are kept"
    );
}

/// Completed and failed jobs are counted per queue per minute when they finish; retried
/// attempts are not; purging jobs leaves the counts; `since` and the queue filter apply.
pub async fn throughput_counts_finished_jobs<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    // Start on a minute boundary so the minutes are known.
    let now = t.now().as_millis();
    t.advance(std::time::Duration::from_millis(
        (60_000 - now.rem_euclid(60_000)) as u64,
    ));
    let m0 = t.now();
    let mut j = t.job("n", "a");
    j.max_attempts = 1;
    t.push(vec![
        t.job("n", "a"),
        t.job("n", "a"),
        t.job("n", "a"),
        j.clone(),
    ])
    .await;
    t.push(vec![t.job("n", "b")]).await;
    for _ in 0..2 {
        let l = t.reserve_one("a", "throughput").await;
        t.finish_ok(l.lease, done(), "throughput").await;
    }
    let l = t.reserve_one("a", "throughput").await;
    t.finish_ok(
        l.lease,
        Outcome::retry("again", t.now() + secs(3600)),
        "throughput",
    )
    .await;
    let l = t.reserve_one("a", "throughput").await;
    t.finish_ok(l.lease, Outcome::failed("no"), "throughput")
        .await;
    t.advance(secs(61));
    let m1 = crate::admin::minute_of(t.now());
    let l = t.reserve_one("b", "throughput").await;
    t.finish_ok(l.lease, done(), "throughput").await;
    // A lease that expires on the last attempt fails the job: counted too.
    t.push_one(j).await;
    let _ = t.reserve_one("a", "throughput").await;
    t.advance(LEASE + secs(1));
    assert_eq!(t.recover().await, 1);
    let m2 = crate::admin::minute_of(t.now());

    let point = |queue: &str, minute, completed, failed| ThroughputPoint {
        queue: queue.into(),
        minute,
        completed,
        failed,
    };
    assert_eq!(m1, m2, "throughput: the last two finishes share a minute");
    let want = vec![
        point("a", m0, 2, 1),
        point("a", m1, 0, 1),
        point("b", m1, 1, 0),
    ];
    assert_eq!(
        read(&t, None, m0).await,
        want,
        "throughput: per queue, per minute"
    );
    assert_eq!(
        read(&t, Some("b"), m0).await,
        vec![point("b", m1, 1, 0)],
        "throughput: one queue"
    );
    assert_eq!(
        read(&t, None, m1).await,
        vec![point("a", m2, 0, 1), point("b", m1, 1, 0)],
        "throughput: since a later minute"
    );
    let purged =
        t.b.purge(&[JobState::Completed, JobState::Failed], t.now() + secs(1))
            .await
            .unwrap_or_else(|e| panic!("purge: {e:?}"));
    assert_eq!(purged, 5, "throughput: the finished jobs are purged");
    assert_eq!(
        read(&t, None, m0).await,
        want,
        "throughput: purging does not change it"
    );
}

/// Minutes older than the retention (7 days) are dropped as new ones are written.
pub async fn throughput_drops_old_minutes<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let start = t.now();
    t.push_one(t.job("n", "q")).await;
    let l = t.reserve_one("q", "retention").await;
    t.finish_ok(l.lease, done(), "retention").await;
    t.advance(crate::admin::THROUGHPUT_RETENTION + secs(120));
    t.push_one(t.job("n", "q")).await;
    let l = t.reserve_one("q", "retention").await;
    t.finish_ok(l.lease, done(), "retention").await;
    let q = ThroughputQuery {
        queue: None,
        since: start - secs(60),
    };
    let got =
        t.b.throughput(&q)
            .await
            .unwrap_or_else(|e| panic!("throughput: {e:?}"));
    assert_eq!(
        got.iter()
            .map(|p| (p.minute, p.completed))
            .collect::<Vec<_>>(),
        vec![(crate::admin::minute_of(t.now()), 1)],
        "throughput: the minute older than the retention is gone"
    );
}

fn worker(id: &str, t: &Env) -> WorkerInfo {
    WorkerInfo {
        id: id.into(),
        host: "host-1".into(),
        pid: 4242,
        version: "0.1.0".into(),
        queues: vec!["q".into(), "other".into()],
        concurrency: 8,
        started_at: t.now(),
    }
}

/// Registered workers are listed with the jobs they hold until they deregister or their
/// registration expires; a refresh keeps them.
pub async fn workers_are_listed_until_they_expire<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let list = || async {
        t.b.workers()
            .await
            .unwrap_or_else(|e| panic!("workers: backend error: {e:?}"))
    };
    assert!(list().await.is_empty(), "workers: none at first");
    let (w1, w2) = (worker("worker-a", &t), worker("worker-b", &t));
    for w in [&w1, &w2] {
        t.b.register_worker(w, WORKER_TTL)
            .await
            .unwrap_or_else(|e| panic!("register_worker: {e:?}"));
    }
    let ids = t
        .push(vec![t.job("n", "q"), t.job("n", "q"), t.job("n", "q")])
        .await;
    let a1 = t.reserve_req(&reserve_as("worker-a", "q")).await.remove(0);
    let _b = t.reserve_req(&reserve_as("worker-b", "q")).await.remove(0);
    let a2 = t.reserve_req(&reserve_as("worker-a", "q")).await.remove(0);
    t.finish_ok(a2.lease, done(), "workers").await;
    let got = list().await;
    assert_eq!(
        got.iter()
            .map(|w| (w.info.clone(), w.last_seen, w.jobs.clone()))
            .collect::<Vec<_>>(),
        vec![
            (w1.clone(), t.now(), vec![a1.id()]),
            (w2.clone(), t.now(), vec![ids[1]]),
        ],
        "workers: both, by id, with the jobs they run"
    );
    t.b.deregister_worker("worker-b")
        .await
        .unwrap_or_else(|e| panic!("deregister_worker: {e:?}"));
    t.b.deregister_worker("never-registered")
        .await
        .unwrap_or_else(|e| panic!("deregister_worker of an unknown id: {e:?}"));
    assert_eq!(
        list()
            .await
            .iter()
            .map(|w| w.info.id.as_str())
            .collect::<Vec<_>>(),
        vec!["worker-a"],
        "workers: a deregistered worker is gone"
    );
    t.advance(WORKER_TTL - secs(10));
    t.b.register_worker(&w1, WORKER_TTL)
        .await
        .unwrap_or_else(|e| panic!("register_worker: {e:?}"));
    let refreshed = t.now();
    t.advance(secs(20));
    let got = list().await;
    assert_eq!(
        got.iter()
            .map(|w| (w.info.id.as_str(), w.last_seen))
            .collect::<Vec<_>>(),
        vec![("worker-a", refreshed)],
        "workers: a refresh keeps a worker past its first expiry"
    );
    t.advance(WORKER_TTL);
    assert!(
        list().await.is_empty(),
        "workers: an expired registration is gone"
    );
}

/// Counts carry the due time of the longest-waiting ready job, across priorities, and none
/// when nothing is ready.
pub async fn counts_report_oldest_ready<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    assert_eq!(t.counts_of("q").await.oldest_ready_at, None);
    let t0 = t.now();
    let mut low = t.job("n", "q");
    low.priority = -5;
    t.push_one(low).await;
    t.advance(secs(10));
    let mut high = t.job("n", "q");
    high.priority = 5;
    t.push(vec![high, t.job("n", "q")]).await;
    let mut later = t.job("n", "q");
    later.run_at = t.now() + secs(60);
    t.push_one(later).await;
    assert_eq!(
        t.counts_of("q").await.oldest_ready_at,
        Some(t0),
        "latency: the oldest ready job, whatever its priority"
    );
    let leased = t.reserve(&["q"], 10).await;
    assert_eq!(leased.len(), 3);
    assert_eq!(
        t.counts_of("q").await.oldest_ready_at,
        None,
        "latency: none when nothing is ready (running and scheduled jobs do not count)"
    );
    t.advance(secs(60));
    assert_eq!(
        t.counts_of("q").await.oldest_ready_at,
        Some(t0 + secs(70)),
        "latency: a scheduled job that came due is ready since its run_at"
    );
}
