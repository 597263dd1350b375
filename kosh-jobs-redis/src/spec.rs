//! A job's immutable part, packed into one string by the client.
//!
//! Redis stores it in the queue's `spec` column and hands it back unread when the job is
//! reserved, so the scripts never split a payload. The layout is
//! `<unique len>,<name len>,<priority>,<max attempts>,<created_at>,<run_at>|` followed by the
//! unique key, the name and the payload (lengths in bytes). The scripts read the header with
//! one pattern (`spec_fields` in `lib.lua`); a spec starts with `0` exactly when it has no
//! unique key.

use kosh_jobs_core::Timestamp;

use crate::decode::bad;
use crate::error::RedisError;

/// The fields of a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec {
    pub(crate) unique_key: Option<String>,
    pub(crate) name: String,
    pub(crate) priority: i32,
    pub(crate) max_attempts: u32,
    pub(crate) created_at: Timestamp,
    pub(crate) run_at: Timestamp,
    pub(crate) payload: String,
}

/// Packs a spec.
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode(
    unique_key: Option<&str>,
    name: &str,
    priority: i32,
    max_attempts: u32,
    created_at: Timestamp,
    run_at: Timestamp,
    payload: &str,
) -> String {
    let u = unique_key.unwrap_or("");
    let mut s = String::with_capacity(48 + u.len() + name.len() + payload.len());
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "{},{},{},{},{},{}|",
        u.len(),
        name.len(),
        priority,
        max_attempts,
        created_at.as_millis(),
        run_at.as_millis()
    );
    s.push_str(u);
    s.push_str(name);
    s.push_str(payload);
    s
}

/// Unpacks a spec made by [`encode`].
pub(crate) fn decode(spec: &str) -> Result<Spec, RedisError> {
    let malformed = || bad(format!("malformed job spec `{}`", preview(spec)));
    let (header, body) = spec.split_once('|').ok_or_else(malformed)?;
    let mut f = header.split(',');
    let mut next = || f.next().ok_or_else(malformed);
    let ul: usize = next()?.parse().map_err(|_| malformed())?;
    let nl: usize = next()?.parse().map_err(|_| malformed())?;
    let priority: i32 = next()?.parse().map_err(|_| malformed())?;
    let max_attempts: u32 = next()?.parse().map_err(|_| malformed())?;
    let created: i64 = next()?.parse().map_err(|_| malformed())?;
    let run_at: i64 = next()?.parse().map_err(|_| malformed())?;
    let u = body.get(..ul).ok_or_else(malformed)?;
    let name = body.get(ul..ul + nl).ok_or_else(malformed)?;
    let payload = body.get(ul + nl..).ok_or_else(malformed)?;
    Ok(Spec {
        unique_key: (ul > 0).then(|| u.to_owned()),
        name: name.to_owned(),
        priority,
        max_attempts,
        created_at: Timestamp::from_millis(created),
        run_at: Timestamp::from_millis(run_at),
        payload: payload.to_owned(),
    })
}

/// The start of a spec, for error messages (payloads can be large).
fn preview(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_names_keys_and_payloads_with_separators() {
        let s = encode(
            Some("user|7,ünïcode"),
            "mail,send|x",
            -3,
            5,
            Timestamp::from_millis(1_700_000_000_000),
            Timestamp::from_millis(1_700_000_000_500),
            r#"{"a":"|,|"}"#,
        );
        let d = decode(&s).unwrap();
        assert_eq!(d.unique_key.as_deref(), Some("user|7,ünïcode"));
        assert_eq!(d.name, "mail,send|x");
        assert_eq!(d.priority, -3);
        assert_eq!(d.max_attempts, 5);
        assert_eq!(d.created_at, Timestamp::from_millis(1_700_000_000_000));
        assert_eq!(d.run_at, Timestamp::from_millis(1_700_000_000_500));
        assert_eq!(d.payload, r#"{"a":"|,|"}"#);
        assert!(
            !s.starts_with('0'),
            "a spec with a unique key must not start with 0"
        );
    }

    #[test]
    fn no_unique_key_starts_with_zero() {
        let t = Timestamp::from_millis(1);
        let s = encode(None, "n", 0, 1, t, t, "{}");
        assert!(s.starts_with("0,"));
        assert_eq!(decode(&s).unwrap().unique_key, None);
    }

    #[test]
    fn malformed_specs_are_errors_not_panics() {
        for s in [
            "",
            "no header",
            "1,1,0,1,1|",
            "9,9,0,1,1,1|short",
            "a,1,0,1,1,1|xy",
            "1,1,0,1,1,1|\u{e9}x", // the unique key would end inside a character
        ] {
            assert!(decode(s).is_err(), "{s:?} decoded");
        }
    }
}
