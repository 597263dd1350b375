//! Lifecycle events in one process: the memory backend carries them always; SQLite and Redis
//! only when asked (`events=true`), and otherwise refuse a subscription with a message that
//! says how to turn them on. (Across processes: `testsupport/tests/events_across_processes.rs`.)

use std::time::Duration;

use kosh_jobs::events::{Event, EventFilter, JobEventKind};
use kosh_jobs::memory::MemoryBackend;
use kosh_jobs::{Client, Error};
use kosh_jobs_testsupport::events::{collect_and_check, run_scenario};
use kosh_jobs_testsupport::jobs::{Script, Scripted};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_shows_each_lifecycle_in_order() {
    let backend = MemoryBackend::new();
    let client = Client::new(backend.clone());
    let mut sub = client
        .subscribe(EventFilter::Queue("scripted".into()))
        .await
        .unwrap();
    let expected = run_scenario(&client, kosh_jobs::AnyBackend::new(backend)).await;
    collect_and_check(&mut sub, &expected, Duration::from_secs(30)).await;
}

#[tokio::test]
async fn a_job_filter_sees_only_its_job() {
    let backend = MemoryBackend::new();
    let client = Client::new(backend.clone());
    let other = client
        .enqueue(Scripted {
            script: Script::Fail,
        })
        .await
        .unwrap();
    let mut sub = client
        .subscribe(EventFilter::Job(other.id()))
        .await
        .unwrap();
    let mut all = client.subscribe(EventFilter::All).await.unwrap();
    client.cancel(other.id()).await.unwrap();
    match sub.next().await {
        Some(Event::Job(e)) => {
            assert_eq!((e.id, e.kind), (other.id(), JobEventKind::Cancelled));
            assert_eq!((e.queue.as_str(), e.job.as_str()), ("scripted", "scripted"));
        }
        e => panic!("{e:?}"),
    }
    // A job enqueued later is not this subscription's; the all-jobs one sees both.
    let later = client
        .enqueue(Scripted {
            script: Script::ProgressThenComplete,
        })
        .await
        .unwrap();
    let kinds: Vec<_> = [all.next().await, all.next().await]
        .into_iter()
        .map(|e| match e {
            Some(Event::Job(e)) => (e.id, e.kind),
            e => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (other.id(), JobEventKind::Cancelled),
            (later.id(), JobEventKind::Enqueued)
        ]
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(50), sub.next())
            .await
            .is_err(),
        "the job filter let another job's event through"
    );
}

#[tokio::test]
async fn backends_without_events_refuse_to_subscribe_and_say_how() {
    let off = Client::new(kosh_jobs::connect("sqlite::memory:").await.unwrap());
    match off.subscribe(EventFilter::All).await {
        Err(Error::InvalidInput(msg)) => assert!(msg.contains("events=true"), "{msg}"),
        other => panic!("{other:?}"),
    }
    let on = Client::new(
        kosh_jobs::connect("sqlite::memory:?events=true")
            .await
            .unwrap(),
    );
    on.subscribe(EventFilter::All).await.unwrap();
}

/// `wait` looks at the job when an event says it ended: on a manual clock that never moves,
/// polling alone would wait for ever.
#[tokio::test]
async fn wait_wakes_on_the_jobs_final_event() {
    let (clock, _time) = kosh_jobs::Clock::manual();
    let backend = MemoryBackend::with_clock(clock);
    let client = Client::new(backend);
    let job = client
        .enqueue(Scripted {
            script: Script::Fail,
        })
        .await
        .unwrap();
    let waiting = {
        let job = job.clone();
        tokio::spawn(async move { job.wait().await })
    };
    // One thread: the wait runs when this task yields, and parks once it has looked at the
    // job (ready) and waits; nothing here moves the clock.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished());
    // An event of another job, and a non-final one, do not end the wait.
    let other = client
        .enqueue(Scripted {
            script: Script::Fail,
        })
        .await
        .unwrap();
    client.cancel(other.id()).await.unwrap();
    client.cancel(job.id()).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the wait ends on the cancelled event, with time standing still")
        .unwrap();
    match ended {
        Err(Error::JobCancelled(id)) => assert_eq!(id, job.id()),
        other => panic!("{other:?}"),
    }
}

/// Many waits on SQLite with events share one reader of the events table, and each ends
/// when its job does, here ended by another backend handle on the same file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_waits_on_sqlite_end_with_their_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?events=true", dir.path().join("w.db").display());
    let client = Client::new(kosh_jobs::connect(&url).await.unwrap());
    let other = Client::new(kosh_jobs::connect(&url).await.unwrap());
    let mut handles = Vec::new();
    for _ in 0..40 {
        handles.push(
            client
                .enqueue(Scripted {
                    script: Script::Fail,
                })
                .await
                .unwrap(),
        );
    }
    let waits: Vec<_> = handles
        .iter()
        .cloned()
        .map(|h| tokio::spawn(async move { h.wait_timeout(Duration::from_secs(60)).await }))
        .collect();
    for h in &handles {
        other.cancel(h.id()).await.unwrap();
    }
    for (h, w) in handles.iter().zip(waits) {
        match w.await.unwrap() {
            Err(Error::JobCancelled(id)) => assert_eq!(id, h.id()),
            other => panic!("{other:?}"),
        }
    }
}
