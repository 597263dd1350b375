//! A schedule's record as the scripts store it, and the replies that carry records.

use kosh_jobs_core::Timestamp;
use redis::Value;

use crate::conn::ScriptArgs;
use crate::decode::{array, text};
use crate::error::RedisError;

/// A schedule's record as stored (`cron_read` in `lib.lua`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Stored<'a> {
    pub(super) revision: u64,
    pub(super) paused: bool,
    pub(super) next_fire: Option<Timestamp>,
    pub(super) last_fire: Option<Timestamp>,
    pub(super) runs: u64,
    /// The job ref of the last job, or empty.
    pub(super) last_job: &'a str,
    /// The definition's JSON.
    pub(super) def: &'a str,
}

/// Reads `revision,paused,next_fire,last_fire,runs,last job ref|definition`.
pub(super) fn parse_stored(raw: &str) -> Option<Stored<'_>> {
    let (head, def) = raw.split_once('|')?;
    let mut p = head.splitn(6, ',');
    let revision = p.next()?.parse().ok()?;
    let paused = match p.next()? {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    let next_fire = opt_time(p.next()?)?;
    let last_fire = opt_time(p.next()?)?;
    let runs = p.next()?.parse().ok()?;
    let last_job = p.next()?;
    Some(Stored {
        revision,
        paused,
        next_fire,
        last_fire,
        runs,
        last_job,
        def,
    })
}

fn opt_time(s: &str) -> Option<Option<Timestamp>> {
    if s.is_empty() {
        return Some(None);
    }
    s.parse().ok().map(|ms| Some(Timestamp::from_millis(ms)))
}

/// A time as a script argument: its milliseconds, or `''` for none.
pub(super) fn time_arg(args: &mut ScriptArgs, t: Option<Timestamp>) {
    match t {
        Some(t) => args.int(t.as_millis()),
        None => args.str(""),
    };
}

/// The field, value pairs of a hash reply (RESP2 flat array or RESP3 map); non-text entries
/// are left out.
pub(super) fn pairs(v: Value) -> Result<Vec<(String, String)>, RedisError> {
    let flat = match v {
        Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        v => array(v)?,
    };
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        if let (Some(k), Some(v)) = (text(k), text(v)) {
            out.push((k, v));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_records_parse() {
        let s = parse_stored("3,1,1700000060000,,0,|{\"id\":\"a|b\"}").expect("parses");
        assert_eq!(
            s,
            Stored {
                revision: 3,
                paused: true,
                next_fire: Some(Timestamp::from_millis(1_700_000_060_000)),
                last_fire: None,
                runs: 0,
                last_job: "",
                def: "{\"id\":\"a|b\"}",
            }
        );
        let s = parse_stored("1,0,,-5,7,{kosh:q}:j:0000000000000001|{}").expect("parses");
        assert_eq!(
            (s.next_fire, s.last_fire, s.runs, s.last_job),
            (
                None,
                Some(Timestamp::from_millis(-5)),
                7,
                "{kosh:q}:j:0000000000000001"
            )
        );
        assert_eq!(parse_stored("1,2,,,0,|{}"), None);
        assert_eq!(parse_stored("x,0,,,0,|{}"), None);
        assert_eq!(parse_stored("1,0,,,0"), None);
    }
}
