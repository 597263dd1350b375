//! The Lua scripts: one per state change, each prefixed with the parts of the shared
//! `lib.lua` it uses.

use std::sync::LazyLock;

/// A script with its SHA1, computed once.
pub(crate) struct LuaScript {
    name: &'static str,
    code: String,
    sha: String,
}

impl LuaScript {
    fn new(name: &'static str, body: &str) -> Self {
        let code = compact(&assemble(include_str!("scripts/lib.lua"), body), name);
        let sha = redis::Script::new(&code).get_hash().to_owned();
        LuaScript { name, code, sha }
    }
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }
    pub(crate) fn code(&self) -> &str {
        &self.code
    }
    pub(crate) fn sha(&self) -> &str {
        &self.sha
    }
}

macro_rules! scripts {
    ($($ident:ident => $file:literal),* $(,)?) => {
        $(
            pub(crate) static $ident: LazyLock<LuaScript> = LazyLock::new(|| {
                LuaScript::new($file, include_str!(concat!("scripts/", $file, ".lua")))
            });
        )*
        /// Every script, for tests.
        #[cfg(test)]
        pub(crate) fn all() -> Vec<&'static LuaScript> {
            vec![$(&*$ident),*]
        }
    };
}

scripts! {
    PUSH => "push",
    RESERVE => "reserve",
    FINISH => "finish",
    HEARTBEAT => "heartbeat",
    PROGRESS => "progress",
    RELEASE => "release",
    RECOVER => "recover",
    CANCEL => "cancel",
    RETRY => "retry",
    PURGE => "purge",
    COUNTS => "counts",
    LIST => "list",
    GET => "get",
    PAUSE => "pause",
    REGISTER => "register",
    DUE => "due",
    LIMITS => "limits",
    FLOWS => "flows",
    GROUPS => "groups",
    HOLD => "hold",
    SEARCH => "search",
    APPLY => "apply",
    THROUGHPUT => "throughput",
    RUNNING => "running",
    WORKER => "worker",
    CRON_UPSERT => "cron_upsert",
    CRON_EDIT => "cron_edit",
    CRON_DUE => "cron_due",
    CRON_FIRE => "cron_fire",
    MIGRATE => "migrate",
}

/// One top-level definition of `lib.lua` (`local NAME = …` or `local function NAME`), with
/// the comment lines above it.
struct Def<'a> {
    name: &'a str,
    lines: Vec<&'a str>,
}

/// The Lua identifiers of some code, comments left out.
fn identifiers<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out = Vec::new();
    for line in lines {
        let code = line.find("--").map_or(line, |i| &line[..i]);
        let mut start = None;
        for (i, c) in code.char_indices().chain([(code.len(), ' ')]) {
            let word = c.is_ascii_alphanumeric() || c == '_';
            match (start, word) {
                (None, true) => start = Some(i),
                (Some(s), false) => {
                    out.push(&code[s..i]);
                    start = None;
                }
                _ => {}
            }
        }
    }
    out
}

/// A line of a script body after which come the paths that need more of `lib.lua` than the
/// usual path before it, which returns when it applies: the definitions only those paths use
/// are placed after the line, so a call that returns before it never creates them.
const COLD: &str = "-- ==== cold: what only the other paths need ====";

/// `lib.lua`'s definitions that `body` uses, directly or through one another, in their order
/// in `lib.lua`, then `body`. Lua runs a script's whole text at every call, creating each
/// local function anew: the full `lib.lua` cost more than most scripts' own work (some
/// 65,000 instructions a call), so a script carries only what it uses. A body with a
/// [`COLD`] line gets the definitions its part before the line uses first, then that part,
/// then the line, the definitions only the rest uses, and the rest.
fn assemble(lib: &str, body: &str) -> String {
    let mut defs: Vec<Def<'_>> = Vec::new();
    let mut pending: Vec<&str> = Vec::new();
    for line in lib.lines() {
        if let Some(rest) = line.strip_prefix("local ") {
            let rest = rest.strip_prefix("function ").unwrap_or(rest);
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let mut lines = std::mem::take(&mut pending);
            lines.push(line);
            defs.push(Def {
                name: &rest[..end],
                lines,
            });
        } else if line.is_empty() || line.starts_with("--") {
            // Blank and comment lines at the left margin go with the next definition.
            pending.push(line);
        } else if let Some(d) = defs.last_mut() {
            d.lines.append(&mut pending);
            d.lines.push(line);
        }
    }
    // Marks what `text` uses, directly or through the definitions it uses.
    let mark = |text: &str, needed: &mut Vec<bool>| {
        let mut work: Vec<&str> = identifiers(text.lines());
        while let Some(word) = work.pop() {
            for (i, d) in defs.iter().enumerate() {
                if !needed[i] && d.name == word {
                    needed[i] = true;
                    work.extend(identifiers(d.lines.iter().copied()));
                }
            }
        }
    };
    let emit = |out: &mut String, which: &dyn Fn(usize) -> bool| {
        for (i, d) in defs.iter().enumerate() {
            if which(i) {
                for line in &d.lines {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
    };
    let mut out = String::new();
    let split = body.match_indices(COLD).find(|&(i, _)| {
        (i == 0 || body[..i].ends_with('\n')) && body[i + COLD.len()..].starts_with('\n')
    });
    match split {
        None => {
            let mut needed = vec![false; defs.len()];
            mark(body, &mut needed);
            emit(&mut out, &|i| needed[i]);
            out.push_str(body);
        }
        Some((at, _)) => {
            let (hot, cold) = body.split_at(at);
            let mut first = vec![false; defs.len()];
            mark(hot, &mut first);
            let mut all = first.clone();
            mark(cold, &mut all);
            emit(&mut out, &|i| first[i]);
            out.push_str(hot);
            let (line, rest) = cold.split_at(COLD.len() + 1);
            out.push_str(line);
            emit(&mut out, &|i| all[i] && !first[i]);
            out.push_str(rest);
        }
    }
    out
}

/// `code` (an `assemble`d script) as sent to Redis: comment lines left empty and indentation
/// removed, except the script's header line (`-- name: …`, which tools watching the server
/// use to name a script sent with `EVAL`). Redis hashes and compiles a script's whole text
/// when it is first sent (again after every restart): the comments were about half of it.
/// Lines stay where they were, so an error's line number still points into the assembled
/// text. No script has a multi-line string or a long comment.
fn compact(code: &str, name: &str) -> String {
    let header = format!("-- {name}:");
    let mut kept = false;
    let mut out = String::with_capacity(code.len());
    for line in code.split_inclusive('\n') {
        let t = line.trim_start_matches([' ', '\t']);
        if !t.starts_with("--") {
            out.push_str(t);
        } else if !kept && line.starts_with(&header) {
            kept = true;
            out.push_str(line);
        } else if line.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_scripts_bound_on_unstarted_expiries_is_the_contracts() {
        let line = format!(
            "local MAX_UNSTARTED = {}\n",
            kosh_jobs_core::backend::MAX_UNSTARTED_EXPIRIES
        );
        assert!(include_str!("scripts/lib.lua").contains(&line));
    }

    #[test]
    fn every_script_has_a_distinct_sha() {
        let all = super::all();
        let mut shas: Vec<_> = all.iter().map(|s| s.sha().to_owned()).collect();
        shas.sort();
        shas.dedup();
        assert_eq!(shas.len(), all.len());
    }

    #[test]
    fn a_script_carries_the_definitions_it_uses_and_no_others() {
        let lib = "-- head\nlocal A = 1\n-- about b\nlocal function b()\n  return A\nend\n\
                   local C = 3 -- uses b in a comment only\nlocal function d() return C end\n";
        let code = super::assemble(lib, "return b()\n");
        assert_eq!(
            code,
            "-- head\nlocal A = 1\n-- about b\nlocal function b()\n  return A\nend\nreturn b()\n"
        );
        assert_eq!(super::assemble(lib, "return 1\n"), "return 1\n");
        let both = super::assemble(lib, "return d() + b()\n");
        assert!(both.contains("local C = 3") && both.contains("local A = 1"));
    }

    #[test]
    fn compacting_empties_comment_lines_and_keeps_the_header_and_line_numbers() {
        let lib = "-- about a\nlocal function a()\n  -- inside\n  return '--x'\nend\n";
        let body = "-- name: does this\n-- more\n  return a()\n";
        let code = super::assemble(lib, body);
        let c = super::compact(&code, "name");
        assert_eq!(
            c,
            "\nlocal function a()\n\nreturn '--x'\nend\n-- name: does this\n\nreturn a()\n"
        );
        assert_eq!(c.lines().count(), code.lines().count());
        for s in super::all() {
            // The header names the script (benches/src/bin/day reads it from EVAL bodies).
            let header = format!("-- {}:", s.name());
            assert!(
                s.code().lines().any(|l| l.starts_with(&header)),
                "{}",
                s.name()
            );
        }
    }

    #[test]
    fn definitions_only_the_cold_part_uses_come_after_the_usual_path() {
        let lib =
            "local A = 1\nlocal function b() return A end\nlocal function c() return b() end\n\
                   local D = 4\n";
        let body = format!(
            "if b() then return 1 end\n{}\nreturn c() + D\n",
            super::COLD
        );
        let code = super::assemble(lib, &body);
        assert_eq!(
            code,
            format!(
                "local A = 1\nlocal function b() return A end\nif b() then return 1 end\n{}\n\
                 local function c() return b() end\nlocal D = 4\nreturn c() + D\n",
                super::COLD
            )
        );
        // The reserve's usual path does without the groups' and limits' machinery.
        let reserve = super::assemble(
            include_str!("scripts/lib.lua"),
            include_str!("scripts/reserve.lua"),
        );
        let cold = reserve.find(super::COLD).expect("reserve has a cold part");
        for f in [
            "local function recover(",
            "local function flow_room(",
            "local function unpark(",
        ] {
            assert!(reserve.find(f).is_some_and(|i| i > cold), "{f}");
        }
        // And the finish's usual path without the failures', retries' and groups'.
        let finish = super::assemble(
            include_str!("scripts/lib.lua"),
            include_str!("scripts/finish.lua"),
        );
        let cold = finish.find(super::COLD).expect("finish has a cold part");
        for f in [
            "local function was_current(",
            "local function archive(",
            "local function unrun(",
        ] {
            assert!(finish.find(f).is_some_and(|i| i > cold), "{f}");
        }
    }

    #[test]
    fn scripts_leave_out_what_they_do_not_use() {
        // `record` is for reading jobs; the hot paths never call it.
        assert!(super::GET.code().contains("local function record("));
        for s in [&*super::PUSH, &*super::RESERVE, &*super::FINISH] {
            assert!(!s.code().contains("local function record("), "{}", s.name());
        }
        // The two-digit table is only for scripts that write members or tokens.
        assert!(super::PUSH.code().contains("local function p2("));
        assert!(!super::COUNTS.code().contains("local function p2("));
    }
}
