//! The Lua scripts: one per state change, each prefixed with the shared `lib.lua`.

use std::sync::LazyLock;

/// A script with its SHA1, computed once.
pub(crate) struct LuaScript {
    name: &'static str,
    code: &'static str,
    sha: String,
}

impl LuaScript {
    fn new(name: &'static str, code: &'static str) -> Self {
        LuaScript {
            name,
            code,
            sha: redis::Script::new(code).get_hash().to_owned(),
        }
    }
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }
    pub(crate) fn sha(&self) -> &str {
        &self.sha
    }
}

macro_rules! scripts {
    ($($ident:ident => $file:literal),* $(,)?) => {
        $(
            pub(crate) static $ident: LazyLock<LuaScript> = LazyLock::new(|| {
                LuaScript::new(
                    $file,
                    concat!(include_str!("scripts/lib.lua"), include_str!(concat!("scripts/", $file, ".lua"))),
                )
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
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_script_has_a_distinct_sha() {
        let all = super::all();
        let mut shas: Vec<_> = all.iter().map(|s| s.sha().to_owned()).collect();
        shas.sort();
        shas.dedup();
        assert_eq!(shas.len(), all.len());
    }
}
