//! The schedules routes: the list, each action, and every refusal.

use axum::http::{header, StatusCode};
use kosh_jobs::schedule::{Every, Missed, Overlap, ScheduleDef};
use kosh_jobs::{AnyBackend, Backend, Client, JobId, JobState};
use kosh_jobs_web::Action;
use serde_json::{json, Value};

use super::{app, get, options, post, post_with, HOSTILE};

/// An id with the characters a path must carry percent-encoded: `:`, `/`, a space, `?`, `#`,
/// `%` and a non-ASCII letter.
pub const ODD_ID: &str = "nightly:eu/report ü?x=1#top 100%";

/// Percent-encodes every byte but the unreserved ones, as `encodeURIComponent` does.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn def(id: &str, every: Every, payload: &Value) -> ScheduleDef {
    ScheduleDef {
        id: id.into(),
        every,
        job: "send_report".into(),
        queue: "reports".into(),
        payload: payload.to_string(),
        priority: 0,
        max_attempts: 3,
        start_at: None,
        end_at: None,
        max_runs: None,
        missed: Missed::default(),
        overlap: Overlap::default(),
        group: None,
    }
}

/// [`ODD_ID`] (cron in Berlin, every missed tick up to 3, no overlap) and `poll` (every 30 s).
async fn two_schedules(b: &AnyBackend) {
    let client = Client::new(b.clone());
    let mut nightly = def(
        ODD_ID,
        Every::Cron {
            expr: "0 3 * * *".into(),
            tz: "Europe/Berlin".into(),
        },
        &json!({"user": 42}),
    );
    nightly.missed = Missed::All { max: 3 };
    nightly.overlap = Overlap::Skip;
    client.upsert_schedule_def(nightly).await.unwrap();
    let poll = def("poll", Every::Interval { ms: 30_000 }, &json!(null));
    client.upsert_schedule_def(poll).await.unwrap();
}

fn listed<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["schedules"]
        .as_array()
        .expect("schedules")
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no schedule {id:?} in {list}"))
}

/// Every schedule action on [`ODD_ID`], each of which would succeed.
fn every_schedule_action() -> Vec<String> {
    ["pause", "resume", "trigger", "delete"]
        .iter()
        .map(|op| format!("api/schedules/{}/{op}", enc(ODD_ID)))
        .collect()
}

/// [`two_schedules`] as they were made: both there, not paused, no job enqueued.
async fn schedules_unchanged(b: &AnyBackend) {
    let list = b.schedules().await.unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|s| !s.paused && s.runs == 0));
    let counts = b.counts().await.unwrap();
    assert!(
        counts.iter().all(|c| c.queue != "reports" || c.live() == 0),
        "{counts:?}"
    );
}

pub async fn schedules_list_and_actions(b: AnyBackend) {
    let app = app(&b, options());
    let empty = get(&app, "api/schedules").await.expect(StatusCode::OK);
    assert_eq!(empty["schedules"], json!([]));
    assert!(empty["now"].is_i64());

    two_schedules(&b).await;
    let now = b.clock().now().as_millis();
    let list = get(&app, "api/schedules").await.expect(StatusCode::OK);
    let ids: Vec<&str> = list["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{list}");
    let n = listed(&list, ODD_ID);
    assert_eq!(
        n["every"],
        json!({"cron": {"expr": "0 3 * * *", "tz": "Europe/Berlin"}})
    );
    assert_eq!(
        (&n["job"], &n["queue"], &n["payload"]),
        (
            &json!("send_report"),
            &json!("reports"),
            &json!({"user": 42})
        )
    );
    assert_eq!(n["missed"], json!({"policy": "all", "max": 3}));
    assert_eq!(n["overlap"], "skip");
    assert_eq!(
        (&n["paused"], &n["runs"], &n["last_fire"], &n["last_job"]),
        (&json!(false), &json!(0), &Value::Null, &Value::Null)
    );
    let next = n["next_fire"].as_i64().expect("next_fire in ms");
    assert!(
        next > now && next <= now + 25 * 3_600_000,
        "{next} vs {now}"
    );
    let p = listed(&list, "poll");
    assert_eq!(p["every"], json!({"interval": {"ms": 30_000}}));
    assert_eq!(p["missed"], json!({"policy": "latest", "grace_ms": null}));
    assert_eq!(p["overlap"], "allow");

    let path = |op: &str| format!("api/schedules/{}/{op}", enc(ODD_ID));
    let r = post(&app, &path("pause"), Value::Null)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        r,
        json!({"schedule": ODD_ID, "action": "pause_schedule", "paused": true})
    );
    let list = get(&app, "api/schedules").await.expect(StatusCode::OK);
    assert_eq!(listed(&list, ODD_ID)["paused"], true);
    assert_eq!(listed(&list, "poll")["paused"], false);

    let r = post(&app, &path("resume"), Value::Null)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (&r["paused"], &r["schedule"]),
        (&json!(false), &json!(ODD_ID))
    );
    assert!(r["next_fire"].as_i64().is_some_and(|t| t > now), "{r}");
    assert!(!b.schedule(ODD_ID).await.unwrap().unwrap().paused);

    let r = post(&app, &path("trigger"), Value::Null)
        .await
        .expect(StatusCode::OK);
    let job = JobId::new(r["job"].as_u64().expect("job id"));
    let job = b.get(job).await.unwrap().expect("the triggered job");
    assert_eq!(
        (job.name.as_str(), job.queue.as_str(), job.state),
        ("send_report", "reports", JobState::Ready)
    );
    assert_eq!(
        serde_json::from_str::<Value>(&job.payload).unwrap(),
        json!({"user": 42})
    );
    // A trigger does not move the cursor.
    let after = b.schedule(ODD_ID).await.unwrap().unwrap();
    assert_eq!(after.next_fire.map(|t| t.as_millis()), Some(next));

    let r = post(&app, &path("delete"), Value::Null)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r["removed"], true);
    assert!(b.schedule(ODD_ID).await.unwrap().is_none());
    let list = get(&app, "api/schedules").await.expect(StatusCode::OK);
    assert_eq!(list["schedules"].as_array().unwrap().len(), 1);
    // The job it enqueued stays.
    assert!(b.get(job.id).await.unwrap().is_some());

    // Gone now: every action is a 404 with a JSON error.
    for op in ["pause", "resume", "trigger", "delete"] {
        let e = post(&app, &path(op), Value::Null)
            .await
            .error(StatusCode::NOT_FOUND);
        assert!(e.contains("not found"), "{op}: {e}");
    }
    let e = post(&app, "api/schedules/poll/explode", Value::Null)
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(e.contains("pause, resume, trigger or delete"), "{e}");
    // Not a schedule id at all (a control character): 400.
    let e = post(&app, "api/schedules/a%0Ab/pause", Value::Null)
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(e.contains("control character"), "{e}");
    assert!(!b.schedule("poll").await.unwrap().unwrap().paused);
}

pub async fn schedule_actions_refused(b: AnyBackend) {
    two_schedules(&b).await;

    // Read-only.
    let ro = app(&b, options().read_only(true));
    get(&ro, "api/schedules").await.expect(StatusCode::OK);
    for path in every_schedule_action() {
        let e = post(&ro, &path, Value::Null)
            .await
            .error(StatusCode::FORBIDDEN);
        assert!(e.contains("read-only"), "{path}: {e}");
    }
    schedules_unchanged(&b).await;

    // A hook that allows the queue's pause and the jobs' delete, and of the schedule
    // actions only trigger: pause, resume and delete of a schedule are refused.
    let hooked = app(
        &b,
        options().authorize(|_, action| {
            matches!(
                action,
                Action::Pause | Action::Delete | Action::TriggerSchedule
            )
        }),
    );
    let m = get(&hooked, "api/meta").await.expect(StatusCode::OK);
    assert_eq!(m["allowed"], json!(["delete", "pause", "trigger_schedule"]));
    for (op, name) in [
        ("pause", "pause_schedule"),
        ("resume", "resume_schedule"),
        ("delete", "remove_schedule"),
    ] {
        let path = format!("api/schedules/{}/{op}", enc(ODD_ID));
        let e = post(&hooked, &path, Value::Null)
            .await
            .error(StatusCode::FORBIDDEN);
        assert_eq!(e, format!("you are not allowed to {name} here"));
    }
    schedules_unchanged(&b).await;
    // An unknown id is refused before it is looked up: the hook says no first.
    post(&hooked, "api/schedules/nope/pause", Value::Null)
        .await
        .error(StatusCode::FORBIDDEN);
    post(&hooked, "api/schedules/nope/trigger", Value::Null)
        .await
        .error(StatusCode::NOT_FOUND);

    // Cross-site.
    let open = app(&b, options());
    for path in every_schedule_action() {
        for headers in [
            &[("sec-fetch-site", "cross-site")][..],
            &[("sec-fetch-site", "same-site")][..],
            &[("origin", "http://evil.example")][..],
            &[("origin", "null")][..],
        ] {
            let e = post_with(&open, &path, Value::Null, headers)
                .await
                .error(StatusCode::FORBIDDEN);
            assert!(e.contains("cross-site request refused"), "{path}: {e}");
        }
    }
    schedules_unchanged(&b).await;
    // The page itself may.
    post(&open, &every_schedule_action()[0], Value::Null)
        .await
        .expect(StatusCode::OK);
    assert!(b.schedule(ODD_ID).await.unwrap().unwrap().paused);
}

pub async fn hostile_schedule_is_plain_json(b: AnyBackend) {
    let client = Client::new(b.clone());
    let payload = json!({"note": HOSTILE});
    client
        .upsert_schedule_def(def(HOSTILE, Every::Interval { ms: 60_000 }, &payload))
        .await
        .unwrap();
    let app = app(&b, options());
    let r = get(&app, "api/schedules").await;
    let list = r.expect(StatusCode::OK);
    assert_eq!(
        r.headers[header::CONTENT_TYPE],
        "application/json",
        "never served as markup"
    );
    assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let s = listed(&list, HOSTILE);
    assert_eq!(s["payload"], payload);
    // The hostile id works in a path, percent-encoded.
    post(
        &app,
        &format!("api/schedules/{}/pause", enc(HOSTILE)),
        Value::Null,
    )
    .await
    .expect(StatusCode::OK);
    assert!(b.schedule(HOSTILE).await.unwrap().unwrap().paused);
}
