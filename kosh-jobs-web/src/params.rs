//! What the API reads from query strings and JSON bodies: a job filter, a cursor, a page
//! size, times; each mistake a clear `400`.

use kosh_jobs_core::admin::{JobFilter, Order, TimeRange};
use kosh_jobs_core::{JobId, JobState, Timestamp};
use serde::Deserialize;

use crate::error::ApiError;

/// The largest page the list answers.
pub(crate) const MAX_PAGE: usize = 200;

/// A job filter as the API takes it: every field text, empty meaning unset, so a query
/// string and a JSON body read the same.
///
/// `states` is a comma-separated list; times are milliseconds since the epoch or RFC 3339.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct FilterParams {
    pub(crate) states: Option<String>,
    pub(crate) queue: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) search: Option<String>,
    pub(crate) created_from: Option<String>,
    pub(crate) created_until: Option<String>,
    pub(crate) finished_from: Option<String>,
    pub(crate) finished_until: Option<String>,
}

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.trim().is_empty())
}

impl FilterParams {
    /// The filter, checked as backends check it.
    pub(crate) fn to_filter(&self) -> Result<JobFilter, ApiError> {
        let mut f = JobFilter::new();
        if let Some(states) = set(&self.states) {
            for s in states.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                f = f.state(parse_state(s)?);
            }
        }
        if let Some(q) = set(&self.queue) {
            f = f.queue(q.trim());
        }
        if let Some(n) = set(&self.name) {
            f = f.name(n.trim());
        }
        // The search text is taken as written: spaces may be part of it.
        if let Some(s) = self.search.as_deref().filter(|s| !s.is_empty()) {
            f = f.search(s);
        }
        f.created = range("created", set(&self.created_from), set(&self.created_until))?;
        f.finished = range(
            "finished",
            set(&self.finished_from),
            set(&self.finished_until),
        )?;
        f.validate()
            .map_err(|e| ApiError::from(kosh_jobs_core::Error::from(e)))?;
        Ok(f)
    }
}

/// A job state by its name, or a `400` listing the names.
pub(crate) fn parse_state(s: &str) -> Result<JobState, ApiError> {
    s.parse::<JobState>().map_err(|_| {
        let names: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
        ApiError::bad_request(format!(
            "unknown job state `{s}`; use one of {}",
            names.join(", ")
        ))
    })
}

fn range(what: &str, from: Option<&str>, until: Option<&str>) -> Result<TimeRange, ApiError> {
    let r = TimeRange {
        from: from
            .map(|t| parse_time(&format!("{what}_from"), t))
            .transpose()?,
        until: until
            .map(|t| parse_time(&format!("{what}_until"), t))
            .transpose()?,
    };
    if let (Some(f), Some(u)) = (r.from, r.until) {
        if u < f {
            return Err(ApiError::bad_request(format!(
                "{what}_until is before {what}_from: the range is empty"
            )));
        }
    }
    Ok(r)
}

/// Milliseconds since the epoch, or an RFC 3339 time.
pub(crate) fn parse_time(field: &str, s: &str) -> Result<Timestamp, ApiError> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(Timestamp::from_millis(ms));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| Timestamp::from_millis(t.timestamp_millis()))
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{field} `{}` is not a time: give milliseconds since the epoch or an RFC 3339 \
                 time such as 2025-06-01T02:10:00Z",
                shorten(s)
            ))
        })
}

/// A job id from the path or a cursor.
pub(crate) fn parse_id(what: &str, s: &str) -> Result<JobId, ApiError> {
    s.trim().parse::<JobId>().map_err(|_| {
        ApiError::bad_request(format!(
            "{what} `{}` is not a job id (a whole number)",
            shorten(s)
        ))
    })
}

/// At most 40 characters of what the client sent, for an error message.
pub(crate) fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// `GET api/jobs`: a filter, an order, a cursor and a page size.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListParams {
    #[serde(flatten)]
    pub(crate) filter: FilterParams,
    /// `newest` (the default) or `oldest`.
    pub(crate) order: Option<String>,
    /// The `next` of the previous page.
    pub(crate) after: Option<String>,
    /// 1 ..= [`MAX_PAGE`], 50 by default.
    pub(crate) limit: Option<String>,
}

impl ListParams {
    pub(crate) fn order(&self) -> Result<Order, ApiError> {
        match set(&self.order).map(str::trim) {
            None | Some("newest") => Ok(Order::NewestFirst),
            Some("oldest") => Ok(Order::OldestFirst),
            Some(o) => Err(ApiError::bad_request(format!(
                "order `{}` is neither `newest` nor `oldest`",
                shorten(o)
            ))),
        }
    }

    pub(crate) fn after(&self) -> Result<Option<JobId>, ApiError> {
        set(&self.after).map(|a| parse_id("cursor", a)).transpose()
    }

    pub(crate) fn limit(&self) -> Result<usize, ApiError> {
        match set(&self.limit) {
            None => Ok(50),
            Some(l) => match l.trim().parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
                _ => Err(ApiError::bad_request(format!(
                    "limit `{}` must be a number from 1 to {MAX_PAGE}",
                    shorten(l)
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn params(states: &str) -> FilterParams {
        FilterParams {
            states: Some(states.into()),
            ..FilterParams::default()
        }
    }

    #[test]
    fn states_and_times() {
        let f = params("failed, cancelled,").to_filter().unwrap();
        assert_eq!(f.states, vec![JobState::Failed, JobState::Cancelled]);
        let e = params("done").to_filter().unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            parse_time("x", "2025-06-01T02:10:00Z").unwrap(),
            Timestamp::from_millis(1_748_743_800_000)
        );
        assert_eq!(parse_time("x", "42").unwrap(), Timestamp::from_millis(42));
        assert!(parse_time("x", "yesterday").is_err());
        let backwards = FilterParams {
            created_from: Some("20".into()),
            created_until: Some("10".into()),
            ..FilterParams::default()
        };
        assert!(backwards.to_filter().is_err());
        let empty = FilterParams {
            queue: Some(String::new()),
            search: Some(String::new()),
            ..FilterParams::default()
        };
        assert_eq!(empty.to_filter().unwrap(), JobFilter::new());
        let bad_queue = FilterParams {
            queue: Some("no spaces".into()),
            ..FilterParams::default()
        };
        assert!(bad_queue.to_filter().is_err());
    }
}
