//! A job's immutable part, packed into one string by the client.
//!
//! Redis stores it in the queue's `spec` column and hands it back unread when the job is
//! reserved, so the scripts never split a payload. The layout is
//! `<unique len>,<name len>,<priority>,<max attempts>,<created_at>,<run_at>|` followed by the
//! unique key, the name and the payload (lengths in bytes). The scripts read the header with
//! one pattern (`spec_fields` in `lib.lua`); a spec starts with `0` exactly when it has no
//! unique key.
//!
//! Defaults are not stored (layout 5, to save memory on every job): an empty priority is 0,
//! an empty max attempts is [`DEFAULT_MAX_ATTEMPTS`], and `run_at` is written relative to
//! `created_at` with its sign (`-3`, `+60000`), empty when equal. Specs of layout 4 and
//! before, whose `run_at` is an absolute time (digits without a sign) and whose fields are
//! all written, read as they are.
//!
//! A job with a trace context (layout 7) has a seventh header field, the context's length,
//! and the context between the name and the payload:
//! `<unique len>,<name len>,<priority>,<max attempts>,<created_at>,<run_at>,<trace len>|`
//! then the unique key, the name, the trace context and the payload. A job without one has
//! no seventh field, so its spec is that of layout 6, byte for byte.

use kosh_jobs_core::Timestamp;

use crate::decode::bad;
use crate::error::RedisError;

/// The max attempts a spec leaves empty (the default of `NewJob`).
pub(crate) const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// The fields of a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec {
    pub(crate) unique_key: Option<String>,
    pub(crate) name: String,
    pub(crate) priority: i32,
    pub(crate) max_attempts: u32,
    pub(crate) created_at: Timestamp,
    pub(crate) run_at: Timestamp,
    pub(crate) trace: Option<String>,
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
    trace: Option<&str>,
    payload: &str,
) -> String {
    let u = unique_key.unwrap_or("");
    let t = trace.unwrap_or("");
    let mut s = String::with_capacity(56 + u.len() + name.len() + t.len() + payload.len());
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = write!(s, "{},{},", u.len(), name.len());
    if priority != 0 {
        let _ = write!(s, "{priority}");
    }
    s.push(',');
    if max_attempts != DEFAULT_MAX_ATTEMPTS {
        let _ = write!(s, "{max_attempts}");
    }
    let _ = write!(s, ",{},", created_at.as_millis());
    let delta = run_at.as_millis().saturating_sub(created_at.as_millis());
    if delta != 0 {
        let _ = write!(s, "{delta:+}");
    }
    if trace.is_some() {
        let _ = write!(s, ",{}", t.len());
    }
    s.push('|');
    s.push_str(u);
    s.push_str(name);
    s.push_str(t);
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
    let priority: i32 = match next()? {
        "" => 0,
        p => p.parse().map_err(|_| malformed())?,
    };
    let max_attempts: u32 = match next()? {
        "" => DEFAULT_MAX_ATTEMPTS,
        m => m.parse().map_err(|_| malformed())?,
    };
    let created: i64 = next()?.parse().map_err(|_| malformed())?;
    let run_at: i64 = match next()? {
        "" => created,
        // Layout 5: relative to created_at, with its sign.
        d if d.starts_with(['+', '-']) => {
            created.saturating_add(d.parse::<i64>().map_err(|_| malformed())?)
        }
        // Layout 4 and before: absolute.
        a => a.parse().map_err(|_| malformed())?,
    };
    // Layout 7: the trace context's length, when there is one.
    let tl: Option<usize> = match f.next() {
        None => None,
        Some(t) => Some(t.parse().map_err(|_| malformed())?),
    };
    if f.next().is_some() {
        return Err(malformed());
    }
    let u = body.get(..ul).ok_or_else(malformed)?;
    let name = body.get(ul..ul + nl).ok_or_else(malformed)?;
    let mut rest = ul + nl;
    let trace = match tl {
        None => None,
        Some(tl) => {
            let t = body.get(rest..rest + tl).ok_or_else(malformed)?;
            rest += tl;
            Some(t.to_owned())
        }
    };
    let payload = body.get(rest..).ok_or_else(malformed)?;
    Ok(Spec {
        unique_key: (ul > 0).then(|| u.to_owned()),
        name: name.to_owned(),
        priority,
        max_attempts,
        created_at: Timestamp::from_millis(created),
        run_at: Timestamp::from_millis(run_at),
        trace,
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
            None,
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
    fn defaults_are_left_out_and_run_at_is_relative() {
        let created = Timestamp::from_millis(1_764_800_000_000);
        let s = encode(None, "noop", 0, 3, created, created, None, "{}");
        assert_eq!(s, "0,4,,,1764800000000,|noop{}");
        let d = decode(&s).unwrap();
        assert_eq!((d.priority, d.max_attempts), (0, 3));
        assert_eq!((d.created_at, d.run_at), (created, created));
        let earlier = Timestamp::from_millis(1_764_799_999_998);
        let s = encode(None, "noop", 0, 3, created, earlier, None, "{}");
        assert_eq!(s, "0,4,,,1764800000000,-2|noop{}");
        assert_eq!(decode(&s).unwrap().run_at, earlier);
        let later = Timestamp::from_millis(1_764_800_060_000);
        let s = encode(None, "noop", 0, 3, created, later, None, "{}");
        assert_eq!(s, "0,4,,,1764800000000,+60000|noop{}");
        assert_eq!(decode(&s).unwrap().run_at, later);
    }

    /// Specs written by layout 4 (every field, `run_at` absolute) read as they did.
    #[test]
    fn layout_4_specs_still_read() {
        let d = decode("3,4,-2,3,1764800000000,1764800060000|keynoop{\"a\":1}").unwrap();
        assert_eq!(d.unique_key.as_deref(), Some("key"));
        assert_eq!(d.name, "noop");
        assert_eq!((d.priority, d.max_attempts), (-2, 3));
        assert_eq!(d.created_at, Timestamp::from_millis(1_764_800_000_000));
        assert_eq!(d.run_at, Timestamp::from_millis(1_764_800_060_000));
        assert_eq!(d.payload, "{\"a\":1}");
        let d = decode("0,1,0,1,5,5|n{}").unwrap();
        assert_eq!((d.priority, d.max_attempts), (0, 1));
        assert_eq!(d.run_at, Timestamp::from_millis(5));
    }

    /// Layout 7: a trace context adds a seventh field and sits between the name and the
    /// payload; a spec without one is byte for byte a layout-6 spec.
    #[test]
    fn trace_context_round_trips_and_costs_nothing_when_absent() {
        let created = Timestamp::from_millis(1_764_800_000_000);
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let s = encode(
            Some("k|,"),
            "noop",
            2,
            3,
            created,
            created,
            Some(tp),
            "{\"a\":\"|\"}",
        );
        assert_eq!(
            s,
            format!("3,4,2,,1764800000000,,55|k|,noop{tp}{{\"a\":\"|\"}}")
        );
        let d = decode(&s).unwrap();
        assert_eq!(d.trace.as_deref(), Some(tp));
        assert_eq!(d.unique_key.as_deref(), Some("k|,"));
        assert_eq!(
            (d.name.as_str(), d.payload.as_str()),
            ("noop", "{\"a\":\"|\"}")
        );
        assert_eq!(d.priority, 2);
        let later = Timestamp::from_millis(1_764_800_060_000);
        let s = encode(None, "noop", 0, 3, created, later, Some("t"), "{}");
        assert_eq!(s, "0,4,,,1764800000000,+60000,1|noopt{}");
        assert_eq!(decode(&s).unwrap().run_at, later);
        assert_eq!(decode(&s).unwrap().trace.as_deref(), Some("t"));
        let plain = encode(None, "noop", 0, 3, created, created, None, "{}");
        assert_eq!(plain, "0,4,,,1764800000000,|noop{}");
        assert_eq!(decode(&plain).unwrap().trace, None);
        for bad in [
            "0,4,,,1764800000000,,99|noop{}",
            "0,4,,,1764800000000,,x|noop{}",
            "0,4,,,1764800000000,,1,1|noop{}",
        ] {
            assert!(decode(bad).is_err(), "{bad:?} decoded");
        }
    }

    #[test]
    fn no_unique_key_starts_with_zero() {
        let t = Timestamp::from_millis(1);
        let s = encode(None, "n", 0, 1, t, t, None, "{}");
        assert!(s.starts_with("0,"));
        assert_eq!(decode(&s).unwrap().unique_key, None);
    }

    #[test]
    fn malformed_specs_are_errors_not_panics() {
        for s in [
            "",
            "no header",
            "1,1,0,1,1|",
            "0,1,0,1,1,1,1|n",
            "0,1,0,1,,1|n",
            "0,1,0,1,1,+x|n",
            "9,9,0,1,1,1|short",
            "a,1,0,1,1,1|xy",
            "1,1,0,1,1,1|\u{e9}x", // the unique key would end inside a character
        ] {
            assert!(decode(s).is_err(), "{s:?} decoded");
        }
    }
}
