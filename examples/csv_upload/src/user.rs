//! Who an upload is for. The app has no accounts yet: the user is a name the client gives
//! (the upload form's `user` field, or an `X-User` header), `demo` when it gives none.
//!
//! The user is stored on the import and becomes its job's **group key**
//! (`#[job(group = user)]` on [`ImportCsv`](crate::import::ImportCsv)): the import queue runs
//! at most one import per user at once and takes turns fairly between users (see
//! [`Services::limit_imports_per_user`](crate::run::Services::limit_imports_per_user)).

use std::fmt;

/// The user of an upload that names none.
pub const DEFAULT_USER: &str = "demo";

/// The most characters a user name may have.
pub const MAX_USER_CHARS: usize = 64;

/// The most bytes (UTF-8) a user name may have: it is the import job's group key, which the
/// job store caps at 128 bytes (`kosh_jobs::backend::validate_group_key`). 64 characters fit
/// unless many of them take three or four bytes each.
pub const MAX_USER_BYTES: usize = 128;

/// A checked user name: trimmed, 1 to [`MAX_USER_CHARS`] characters (and at most
/// [`MAX_USER_BYTES`] bytes), no control characters.
///
/// ```
/// use csv_upload::user::User;
/// assert_eq!(User::parse("  ana ").unwrap().as_str(), "ana");
/// assert!(User::parse("").is_err());
/// assert!(User::parse("a\nb").is_err());
/// assert_eq!(User::default().as_str(), "demo");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct User(String);

/// Why a user name was refused; the message is for the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// Nothing but blanks.
    #[error("the user is empty: give 1 to {MAX_USER_CHARS} characters, or leave the field out for the user `{DEFAULT_USER}`")]
    Empty,
    /// Longer than [`MAX_USER_CHARS`] characters or [`MAX_USER_BYTES`] bytes.
    #[error("the user is too long ({chars} characters, {bytes} bytes): at most {MAX_USER_CHARS} characters and {MAX_USER_BYTES} bytes")]
    TooLong {
        /// Its characters.
        chars: usize,
        /// Its bytes in UTF-8.
        bytes: usize,
    },
    /// A control character (a newline, a tab, NUL, ...).
    #[error("the user contains the control character {0:?}")]
    Control(char),
    /// Not UTF-8 (an `X-User` header with raw bytes).
    #[error("the user is not UTF-8 text")]
    NotText,
}

impl User {
    /// Checks a name as the client sent it; surrounding blanks are dropped first.
    pub fn parse(raw: &str) -> Result<User, UserError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(UserError::Empty);
        }
        if let Some(c) = name.chars().find(|c| c.is_control()) {
            return Err(UserError::Control(c));
        }
        let chars = name.chars().count();
        if chars > MAX_USER_CHARS || name.len() > MAX_USER_BYTES {
            return Err(UserError::TooLong {
                chars,
                bytes: name.len(),
            });
        }
        Ok(User(name.to_owned()))
    }

    /// Checks raw bytes (a header's value).
    pub fn parse_bytes(raw: &[u8]) -> Result<User, UserError> {
        std::str::from_utf8(raw)
            .map_err(|_| UserError::NotText)
            .and_then(User::parse)
    }

    /// The user a request names: the form field if it sent one, else the header, else
    /// [`DEFAULT_USER`]. Only the one that counts is checked: a bad header beside a good
    /// form field is not an error.
    pub fn choose(form: Option<&str>, header: Option<&[u8]>) -> Result<User, UserError> {
        match (form, header) {
            (Some(f), _) => User::parse(f),
            (None, Some(h)) => User::parse_bytes(h),
            (None, None) => Ok(User::default()),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl Default for User {
    fn default() -> Self {
        User(DEFAULT_USER.to_owned())
    }
}

impl fmt::Display for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_kept_as_written() {
        assert_eq!(User::parse("ana").unwrap().as_str(), "ana");
        assert_eq!(User::parse(" \tBen Smith  ").unwrap().as_str(), "Ben Smith");
        assert_eq!(User::parse("José").unwrap().as_str(), "José");
        let hostile = "<img src=x onerror=alert(1)>";
        assert_eq!(
            User::parse(hostile).unwrap().as_str(),
            hostile,
            "text, shown as text"
        );
    }

    #[test]
    fn empty_long_and_control_characters_are_refused() {
        assert_eq!(User::parse(""), Err(UserError::Empty));
        assert_eq!(User::parse("   "), Err(UserError::Empty));
        assert_eq!(User::parse("a\nb"), Err(UserError::Control('\n')));
        assert_eq!(User::parse("a\u{0}"), Err(UserError::Control('\u{0}')));
        assert_eq!(User::parse("a\u{7f}b"), Err(UserError::Control('\u{7f}')));
        assert!(User::parse(&"x".repeat(64)).is_ok());
        assert_eq!(
            User::parse(&"x".repeat(65)),
            Err(UserError::TooLong {
                chars: 65,
                bytes: 65
            })
        );
        // 64 characters, but 256 bytes: more than a group key may have.
        assert_eq!(
            User::parse(&"🙂".repeat(64)),
            Err(UserError::TooLong {
                chars: 64,
                bytes: 256
            })
        );
        assert!(User::parse(&"é".repeat(64)).is_ok(), "128 bytes fit");
        assert_eq!(User::parse_bytes(b"\xff\xfe"), Err(UserError::NotText));
    }

    #[test]
    fn a_valid_user_is_a_valid_group_key() {
        for name in ["ana", &"x".repeat(64), &"é".repeat(64), "a b\u{a0}c"] {
            let user = User::parse(name).unwrap();
            kosh_jobs::backend::validate_group_key(user.as_str())
                .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        }
    }

    #[test]
    fn the_form_wins_over_the_header_and_demo_is_the_default() {
        let ok = |form, header| User::choose(form, header).map(User::into_string);
        assert_eq!(ok(None, None), Ok("demo".into()));
        assert_eq!(ok(None, Some(b" ben ".as_slice())), Ok("ben".into()));
        assert_eq!(ok(Some("ana"), Some(b"ben".as_slice())), Ok("ana".into()));
        assert_eq!(
            ok(Some("ana"), Some(b"bad\x01".as_slice())),
            Ok("ana".into())
        );
        assert_eq!(ok(Some(""), Some(b"ben".as_slice())), Err(UserError::Empty));
        assert_eq!(ok(None, Some(b"".as_slice())), Err(UserError::Empty));
    }
}
