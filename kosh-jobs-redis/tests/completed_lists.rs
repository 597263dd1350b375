//! Completed jobs in lists by the hundred ids (layout 9): a completed job's entry in
//! `c:<bucket>` holds its finish time and its latest attempt (its `run` entry), `cb` notes
//! the buckets and `cn` counts the jobs. These tests check what is stored, that
//! reading, listing, searching, counting, retention, purge and delete agree with it across
//! buckets, and that completed jobs of layout 8 and 7 move into the lists at connect.

mod support;

use std::time::Duration;

use kosh_jobs_core::admin::{ActionResult, AdminAction, JobFilter, Order, SearchQuery};
use kosh_jobs_core::{Backend, Finish, JobId, JobRecord, JobState, ListQuery, NewJob, Outcome};
use kosh_jobs_redis::RedisBackend;
use support::KeysSetup as Setup;

const QUEUE: &str = "q";

trait Lists {
    fn buckets(&self) -> Vec<String>;
    fn entries(&self) -> Vec<(String, String)>;
}

impl Lists for Setup {
    /// The buckets noted in `cb`.
    fn buckets(&self) -> Vec<String> {
        self.cmd(&["ZRANGE", &self.key("cb"), "0", "-1"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Every list entry, bucket by bucket.
    fn entries(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for b in self.buckets() {
            let list = self.cmd(&["LRANGE", &self.key(&format!("c:{b}")), "0", "-1"]);
            for e in list.lines() {
                out.push((b.clone(), e.to_owned()));
            }
        }
        out
    }
}

/// Pushes `n` jobs named `j<i>` (i from `from`), then leases and completes them in batches of
/// `batch`, in id order, a second apart; job 3 of each batch with a result, which the client
/// sends after the plain completions. Returns their ids in the order they completed.
async fn complete(b: &RedisBackend, s: &Setup, from: usize, n: usize, batch: usize) -> Vec<JobId> {
    let now = s.clock.now();
    let jobs = (from..from + n)
        .map(|i| NewJob::new(format!("j{i}"), QUEUE, "{}", now))
        .collect();
    b.push(jobs).await.expect("push");
    let mut ids = Vec::new();
    let mut left = n;
    while left > 0 {
        let leased = support::reserve(b, QUEUE, batch.min(left)).await;
        assert!(!leased.is_empty(), "jobs to lease");
        left -= leased.len();
        let mut order: Vec<JobId> = leased.iter().map(|l| l.id()).collect();
        if order.len() > 3 {
            let with_result = order.remove(3);
            order.push(with_result);
        }
        ids.extend(order);
        s.manual.advance(Duration::from_secs(1));
        let finishes = leased
            .iter()
            .enumerate()
            .map(|(i, l)| Finish {
                lease: l.lease,
                outcome: Outcome::Completed {
                    result: (i == 3).then(|| serde_json::json!({ "n": i })),
                },
            })
            .collect();
        b.finish(finishes).await.expect("finish");
    }
    ids
}

async fn list_all(b: &RedisBackend, state: JobState, page: usize) -> Vec<JobRecord> {
    let mut out = Vec::new();
    let mut q = ListQuery::new(state).queue(QUEUE).limit(page);
    loop {
        let p = b.list(&q).await.expect("list");
        out.extend(p.jobs);
        match p.next {
            Some(next) => q = q.after(next),
            None => return out,
        }
    }
}

/// The ids of every completed job, listed `page` a page.
async fn completed_ids(b: &RedisBackend, page: usize) -> Vec<JobId> {
    list_all(b, JobState::Completed, page)
        .await
        .into_iter()
        .map(|j| j.id)
        .collect()
}

async fn search_newest_first(b: &RedisBackend, page: usize) -> Vec<JobId> {
    let mut out = Vec::new();
    let filter = JobFilter::new().state(JobState::Completed).queue(QUEUE);
    let mut q = SearchQuery::new(filter)
        .order(Order::NewestFirst)
        .limit(page);
    loop {
        let p = b.search(&q).await.expect("search");
        out.extend(p.jobs.into_iter().map(|j| j.id));
        match p.next {
            Some(next) => q = q.after(next),
            None => return out,
        }
    }
}

async fn completed_count(b: &RedisBackend) -> u64 {
    b.counts()
        .await
        .expect("counts")
        .into_iter()
        .find(|c| c.queue == QUEUE)
        .map_or(0, |c| c.completed)
}

/// 250 completed jobs: three buckets' lists hold them, and no `run`, `fin` or `s:completed`
/// entry is left; each reads back whole, and listing, search and counts see all of them in
/// id order.
#[tokio::test]
async fn completed_jobs_are_kept_in_lists_by_the_hundred_ids() {
    let s = Setup::new("done-lists");
    let b = s
        .backend(|o| o.keep_completed_max(None).keep_completed_for(None))
        .await;
    // Out of id order across batches: the second lot completes before the first.
    let first_ids = {
        let now = s.clock.now();
        let jobs = (0..40)
            .map(|i| NewJob::new(format!("early{i}"), QUEUE, "{}", now))
            .collect();
        b.push(jobs).await.expect("push")
    };
    let leased_first = support::reserve(&b, QUEUE, 40).await;
    let mut ids = complete(&b, &s, 0, 210, 64).await;
    s.manual.advance(Duration::from_secs(1));
    b.finish(
        leased_first
            .iter()
            .map(|l| Finish {
                lease: l.lease,
                outcome: Outcome::Completed { result: None },
            })
            .collect(),
    )
    .await
    .expect("finish");
    let mut all: Vec<JobId> = first_ids.iter().map(|e| e.id).collect();
    all.append(&mut ids);
    all.sort();

    let entries = s.entries();
    assert_eq!(entries.len(), 250);
    assert!(s.buckets().len() >= 3, "{:?}", s.buckets());
    assert_eq!(s.cmd(&["GET", &s.key("cn")]), "250");
    assert_eq!(s.cmd(&["EXISTS", &s.key("s:completed")]), ":0");
    assert_eq!(s.cmd(&["HLEN", &s.key("fin")]), ":0");
    // Completed jobs keep no `run` entry: the hash keeps its marker at most.
    let runs = s.cmd(&["HLEN", &s.key("run")]);
    assert!(runs == ":0" || runs == ":1", "run entries left: {runs}");
    for (bucket, e) in &entries {
        assert_eq!(bucket.len(), 14);
        // Last two digits, finish time, then the run entry: attempts, start, token, worker.
        let fields: Vec<&str> = e.split(',').collect();
        assert_eq!(fields.len(), 6, "{e}");
        assert_eq!(fields[0].len(), 2, "{e}");
        assert_eq!(fields[1].len(), 13, "a finish time: {e}");
        assert_eq!(fields[2], "1", "one attempt: {e}");
        assert_eq!(fields[3].len(), 13, "a start: {e}");
    }

    for id in &all {
        let r = b.get(*id).await.expect("get").expect("stored");
        assert_eq!(r.state, JobState::Completed, "{}", r.name);
        assert_eq!(r.attempts, 1, "{}", r.name);
        let (started, finished) = (r.started_at.expect("start"), r.finished_at.expect("end"));
        assert!(started < finished, "{}", r.name);
        let last = r.history.last().expect("the attempt");
        assert_eq!(
            (last.attempt, last.worker.as_str()),
            (1, "test"),
            "{}",
            r.name
        );
        assert_eq!(last.started_at, started, "{}", r.name);
    }
    let early = b.get(first_ids[0].id).await.expect("get").expect("stored");
    let late = b.get(all[45]).await.expect("get").expect("stored");
    assert!(
        early.finished_at > late.finished_at,
        "the early jobs completed last"
    );
    let with_result = b.get(ids_with_result(&b, &all).await).await.expect("get");
    assert!(with_result.is_some_and(|r| r.result.is_some()));

    for page in [1, 7, 100, 1000] {
        let listed: Vec<JobId> = completed_ids(&b, page).await;
        assert_eq!(listed, all, "listed {page} a page");
    }
    for page in [3, 101] {
        let mut newest_first = all.clone();
        newest_first.reverse();
        assert_eq!(
            search_newest_first(&b, page).await,
            newest_first,
            "searched {page} a page"
        );
    }
    assert_eq!(completed_count(&b).await, 250);
}

/// The id of a job whose record holds a result.
async fn ids_with_result(b: &RedisBackend, ids: &[JobId]) -> JobId {
    for id in ids {
        if let Some(r) = b.get(*id).await.expect("get") {
            if r.result.is_some() {
                return *id;
            }
        }
    }
    panic!("no job has a result");
}

/// Retention by count keeps exactly the newest jobs across buckets, deleting their specs and
/// emptied lists; retention by age then deletes all but the newest; `cn` follows.
#[tokio::test]
async fn retention_keeps_the_newest_across_buckets() {
    let s = Setup::new("done-keep");
    let b = s
        .backend(|o| {
            o.keep_completed_max(Some(120))
                .keep_completed_for(Some(Duration::from_secs(3600)))
        })
        .await;
    let done = complete(&b, &s, 0, 330, 50).await;
    assert_eq!(completed_count(&b).await, 120);
    assert_eq!(s.cmd(&["GET", &s.key("cn")]), "120");
    assert_eq!(s.entries().len(), 120);
    // The oldest go first: the lowest hundred ids first, those in the order they completed
    // (the job with a result last of its batch).
    let mut oldest_first: Vec<(u64, usize, JobId)> = done
        .iter()
        .enumerate()
        .map(|(k, id)| ((id.get() >> 16) / 100, k, *id))
        .collect();
    oldest_first.sort();
    let newest: Vec<JobId> = oldest_first[210..].iter().map(|x| x.2).collect();
    for (_, _, id) in &oldest_first {
        let kept = b.get(*id).await.expect("get").is_some();
        assert_eq!(kept, newest.contains(id), "job {id}");
    }
    let mut by_id = done.clone();
    by_id.sort();
    assert!(
        newest.iter().all(|id| *id >= by_id[190]),
        "the kept jobs are the newest but for those completed in another order"
    );
    // The specs of the deleted jobs are gone (the hash keeps a marker).
    let n: usize = s.cmd(&["HLEN", &s.key("spec")])[1..]
        .parse()
        .expect("a count");
    assert!(n == 120 || n == 121, "{n} specs");
    // No list is left for a bucket whose jobs all went.
    for b in s.buckets() {
        assert_eq!(
            s.cmd(&["EXISTS", &s.key(&format!("c:{b}"))]),
            ":1",
            "bucket {b}"
        );
    }

    s.manual.advance(Duration::from_secs(3601));
    let newest = complete(&b, &s, 1000, 1, 1).await;
    assert_eq!(completed_count(&b).await, 1);
    assert_eq!(s.cmd(&["GET", &s.key("cn")]), "1");
    assert!(b.get(newest[0]).await.expect("get").is_some());
    assert_eq!(list_all(&b, JobState::Completed, 10).await.len(), 1);
}

/// Purge rewrites each list without the jobs that completed before its time; an operator's
/// delete removes one entry; counts and listings follow.
#[tokio::test]
async fn purge_and_delete_remove_entries_from_the_lists() {
    let s = Setup::new("done-purge");
    let b = s
        .backend(|o| o.keep_completed_max(None).keep_completed_for(None))
        .await;
    let old = complete(&b, &s, 0, 150, 30).await;
    let cut = s.clock.now() + Duration::from_millis(500);
    let new = complete(&b, &s, 150, 80, 30).await;
    let purged = b.purge(&[JobState::Completed], cut).await.expect("purge");
    assert_eq!(purged, 150);
    assert_eq!(completed_count(&b).await, 80);
    for id in &old {
        assert_eq!(b.get(*id).await.expect("get"), None);
    }
    let listed: Vec<JobId> = completed_ids(&b, 9).await;
    let mut new = new;
    new.sort();
    assert_eq!(listed, new);

    let gone = b
        .apply(AdminAction::Delete, &[new[5], new[6]], &[])
        .await
        .expect("delete");
    assert_eq!(gone, [ActionResult::Applied, ActionResult::Applied]);
    assert_eq!(b.get(new[5]).await.expect("get"), None);
    assert_eq!(completed_count(&b).await, 78);
    assert_eq!(s.entries().len(), 78);
    assert_eq!(s.cmd(&["GET", &s.key("cn")]), "78");
    assert_eq!(list_all(&b, JobState::Completed, 50).await.len(), 78);
}

/// Completed jobs of layout 8 (`s:completed` entries `<member>:<finished_at>`, the attempt in
/// `run`) and of layout 7 (the member alone, the time in `fin`) move into the lists when a
/// process of layout 9 connects, and read back as they were.
#[tokio::test]
async fn completed_jobs_of_older_layouts_move_into_lists_at_connect() {
    let s = Setup::new("done-upgrade");
    let b = s
        .backend(|o| o.keep_completed_max(None).keep_completed_for(None))
        .await;
    let ids = complete(&b, &s, 0, 130, 40).await;
    let before: Vec<JobRecord> = list_all(&b, JobState::Completed, 1000).await;
    assert_eq!(before.len(), 130);
    drop(b);

    // Rewritten as layouts 8 and 7 stored them: every other job the layout-7 way.
    let entries = s.entries();
    for (i, (bucket, e)) in entries.iter().enumerate() {
        let (low, rest) = e.split_once(',').expect("an entry");
        let (fin, run) = rest.split_once(',').expect("an entry");
        let member = format!("{bucket}{low}");
        s.cmd(&["HSET", &s.key("run"), &member, run]);
        if i % 2 == 0 {
            s.cmd(&[
                "ZADD",
                &s.key("s:completed"),
                &member,
                &format!("{member}:{fin}"),
            ]);
        } else {
            s.cmd(&["ZADD", &s.key("s:completed"), &member, &member]);
            s.cmd(&["HSET", &s.key("fin"), &member, fin]);
        }
    }
    for bucket in s.buckets() {
        s.cmd(&["DEL", &s.key(&format!("c:{bucket}"))]);
    }
    s.cmd(&["DEL", &s.key("cb"), &s.key("cn")]);
    let layout = format!("{{{}}}:layout", s.prefix);
    s.cmd(&["SET", &layout, "8"]);

    let b = s
        .backend(|o| o.keep_completed_max(None).keep_completed_for(None))
        .await;
    assert_eq!(
        s.cmd(&["GET", &layout]),
        kosh_jobs_redis::LAYOUT.to_string()
    );
    assert_eq!(s.cmd(&["EXISTS", &s.key("s:completed")]), ":0");
    assert_eq!(s.cmd(&["HLEN", &s.key("fin")]), ":0");
    let runs = s.cmd(&["HLEN", &s.key("run")]);
    assert!(runs == ":0" || runs == ":1", "run entries left: {runs}");
    assert_eq!(s.entries().len(), 130);
    assert_eq!(s.cmd(&["GET", &s.key("cn")]), "130");
    let after = list_all(&b, JobState::Completed, 1000).await;
    assert_eq!(after, before);
    for id in &ids {
        let r = b.get(*id).await.expect("get").expect("stored");
        let was = before.iter().find(|j| j.id == *id).expect("listed before");
        assert_eq!(&r, was);
    }
    assert_eq!(completed_count(&b).await, 130);
    // And the jobs completed since go to the same lists.
    complete(&b, &s, 500, 5, 5).await;
    assert_eq!(completed_count(&b).await, 135);
    let purged = b
        .purge(
            &[JobState::Completed],
            s.clock.now() + Duration::from_secs(1),
        )
        .await
        .expect("purge");
    assert_eq!(purged, 135);
    assert!(s.buckets().is_empty(), "{:?}", s.buckets());
}
