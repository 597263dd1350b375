//! Where the file goes and who may touch it: missing folders are created, a relative path is
//! taken against the current folder, every open error names the absolute path and says what
//! is wrong, and a read-only or forbidden file is `PermissionDenied`, never `Unavailable`.
//!
//! Tests that need their own current folder or fewer rights run this test binary again as a
//! child process ([`child_connects`]).

use std::path::Path;

use kosh_jobs_core::{Backend, NewJob};
use kosh_jobs_sqlite::{SqliteBackend, SqliteError, SqliteOptions};

fn job(queue: &str) -> NewJob {
    NewJob::new("t", queue, "{}", kosh_jobs_core::Timestamp::now_system())
}

/// Opens the file at `path` with default options.
async fn open(path: impl AsRef<Path>) -> Result<SqliteBackend, SqliteError> {
    SqliteBackend::connect_with(SqliteOptions::builder(path.as_ref()).build()?).await
}

/// Writes a kosh-jobs database with one job, closed again when this returns.
async fn make_db(path: &Path) {
    let b = open(path).await.expect("create");
    b.push(vec![job("q")]).await.expect("push");
    b.close().await;
}

#[tokio::test]
async fn missing_folders_are_created() {
    let dir = tempfile::tempdir().unwrap();
    let by_url = dir.path().join("data/jobs/one.db");
    let b = SqliteBackend::connect(&format!("sqlite://{}", by_url.display()))
        .await
        .expect("the folders are created");
    b.push(vec![job("q")]).await.unwrap();
    assert_eq!(b.path(), Some(by_url.as_path()));
    b.close().await;
    assert!(std::fs::metadata(&by_url).unwrap().is_file());

    let by_options = dir.path().join("other/deeper/two.db");
    let b = open(&by_options).await.expect("the folders are created");
    assert_eq!(b.counts().await.unwrap().len(), 0);
    b.close().await;
    assert!(std::fs::metadata(&by_options).unwrap().is_file());
}

#[tokio::test]
async fn a_folder_that_is_a_file_is_named_with_the_absolute_path() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("notes.txt");
    std::fs::write(&blocker, "my notes").unwrap();
    for path in [blocker.join("jobs.db"), blocker.join("a/b/jobs.db")] {
        let err = SqliteBackend::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&format!("`{}`", path.display())), "{msg}");
        assert!(
            msg.contains(&format!("the folder `{}` is a file", blocker.display())),
            "{msg}"
        );
        assert!(matches!(err, SqliteError::Open { .. }), "{err:?}");
        let core = kosh_jobs_core::Error::from(err);
        assert!(
            matches!(core, kosh_jobs_core::Error::Storage(_)),
            "{core:?}"
        );
    }
    assert_eq!(std::fs::read_to_string(&blocker).unwrap(), "my notes");
}

#[tokio::test]
async fn a_folder_where_the_file_should_be_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    std::fs::create_dir(&path).unwrap();
    let err = open(&path).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("`{}`", path.display())) && msg.contains("is a folder, not a file"),
        "{msg}"
    );
}

/// A relative path is taken against the current folder: its folders are created there, and
/// its errors name the absolute path. Runs in a child process started in a folder of its
/// own (the current folder is the whole process's).
#[test]
fn relative_paths_are_resolved_against_the_current_folder() {
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path().canonicalize().unwrap();
    std::fs::write(here.join("blocker"), "a file").unwrap();

    let child = Child::new("sqlite://data/sub/jobs.db").cwd(&here).run();
    let db = here.join("data/sub/jobs.db");
    assert_eq!(child.opened(), Some(format!("{db:?}")), "{}", child.stdout);
    assert!(std::fs::metadata(&db).unwrap().is_file());

    let child = Child::new("sqlite:blocker/jobs.db").cwd(&here).run();
    let msg = child.error().expect("a file in the way");
    assert!(
        msg.contains(&format!("`{}`", here.join("blocker/jobs.db").display())),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "the folder `{}` is a file",
            here.join("blocker").display()
        )),
        "{msg}"
    );
}

/// A database the process may only read is refused as read-only, and a file or folder it
/// may not touch at all as permission denied; both are `PermissionDenied`, never
/// `Unavailable`. The children run without the right to write (as `nobody` when the tests
/// run as root, whom file permissions do not stop).
#[test]
fn read_only_and_forbidden_files_are_permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    };
    // The file cannot be written; then only its directory cannot (no -wal/-shm files).
    for (file_mode, what) in [
        (0o444, "a read-only file"),
        (0o666, "a read-only directory"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.db");
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(make_db(&path));
        mode(&path, file_mode);
        mode(dir.path(), 0o555);
        let child = Child::new(&format!("sqlite://{}", path.display()))
            .without_write_rights()
            .run();
        mode(dir.path(), 0o755);
        let msg = child
            .error()
            .unwrap_or_else(|| panic!("{what}: {}", child.stdout));
        assert!(msg.contains("is read-only"), "{what}: {msg}");
        assert!(
            msg.contains(&format!("`{}`", path.display())),
            "{what}: {msg}"
        );
        assert_eq!(
            child.variant(),
            Some("ReadOnly"),
            "{what}: {}",
            child.stdout
        );
        assert_eq!(
            child.core_kind(),
            Some("PermissionDenied"),
            "{what}: {}",
            child.stdout
        );
    }

    // A file that may not even be read.
    let dir = tempfile::tempdir().unwrap();
    mode(dir.path(), 0o755);
    let path = dir.path().join("jobs.db");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(make_db(&path));
    mode(&path, 0o000);
    let child = Child::new(&format!("sqlite://{}", path.display()))
        .without_write_rights()
        .run();
    let msg = child.error().unwrap_or_else(|| panic!("{}", child.stdout));
    assert!(
        msg.contains(&format!("`{}`", path.display())) && msg.contains("permission denied"),
        "{msg}"
    );
    child.assert_denied();

    // A file that may not be created.
    let dir = tempfile::tempdir().unwrap();
    mode(dir.path(), 0o555);
    let path = dir.path().join("jobs.db");
    let child = Child::new(&format!("sqlite://{}", path.display()))
        .without_write_rights()
        .run();
    mode(dir.path(), 0o755);
    let msg = child.error().unwrap_or_else(|| panic!("{}", child.stdout));
    assert!(
        msg.contains(&format!(
            "`{}`: permission denied creating the file in the folder `{}`",
            path.display(),
            dir.path().display()
        )),
        "{msg}"
    );
    child.assert_denied();

    // A folder that may not be created.
    let dir = tempfile::tempdir().unwrap();
    mode(dir.path(), 0o555);
    let path = dir.path().join("data/jobs.db");
    let child = Child::new(&format!("sqlite://{}", path.display()))
        .without_write_rights()
        .run();
    mode(dir.path(), 0o755);
    let msg = child.error().unwrap_or_else(|| panic!("{}", child.stdout));
    assert!(
        msg.contains(&format!(
            "permission denied creating the folder `{}`",
            dir.path().join("data").display()
        )),
        "{msg}"
    );
    child.assert_denied();
}

const CHILD_URL: &str = "KOSH_SQLITE_PATHS_CHILD_URL";

/// The child processes' entry point: connects to the URL in `KOSH_SQLITE_PATHS_CHILD_URL` and
/// prints what happened. Does nothing when run as an ordinary test.
#[test]
fn child_connects() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match rt.block_on(SqliteBackend::connect(&url)) {
        Ok(b) => println!("OPEN-OK: {:?}", b.path().expect("a file")),
        Err(e) => {
            println!("OPEN-ERROR: {e}");
            println!("VARIANT: {}", variant(&format!("{e:?}")));
            let core = kosh_jobs_core::Error::from(e);
            println!("CORE: {}", variant(&format!("{core:?}")));
        }
    }
}

/// The name of the enum variant in a `Debug` rendering.
fn variant(debug: &str) -> &str {
    debug
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .next()
        .unwrap_or_default()
}

/// A run of [`child_connects`] in a process of its own.
struct Child {
    cmd: std::process::Command,
}

/// What a [`Child`] printed.
struct ChildOutput {
    stdout: String,
}

impl Child {
    fn new(url: &str) -> Self {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "child_connects",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_URL, url);
        Child { cmd }
    }

    fn cwd(mut self, dir: &Path) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Runs the child without the right to write others' files: as `nobody` when this
    /// process is root (root may write anything).
    fn without_write_rights(self) -> Self {
        let root = std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
        if !root {
            return self;
        }
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(self.cmd.get_program())
            .args(self.cmd.get_args());
        for (k, v) in self.cmd.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        if let Some(dir) = self.cmd.get_current_dir() {
            cmd.current_dir(dir);
        }
        Child { cmd }
    }

    fn run(mut self) -> ChildOutput {
        let out = self
            .cmd
            .output()
            .expect("run the child (as root this needs `setpriv` from util-linux)");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ChildOutput { stdout }
    }
}

impl ChildOutput {
    /// The rest of the line after `tag` (libtest may print the test's name before it).
    fn line(&self, tag: &str) -> Option<&str> {
        self.stdout
            .lines()
            .find_map(|l| l.find(tag).map(|at| &l[at + tag.len()..]))
    }

    fn opened(&self) -> Option<String> {
        self.line("OPEN-OK: ").map(str::to_owned)
    }

    fn error(&self) -> Option<&str> {
        self.line("OPEN-ERROR: ")
    }

    fn variant(&self) -> Option<&str> {
        self.line("VARIANT: ")
    }

    fn core_kind(&self) -> Option<&str> {
        self.line("CORE: ")
    }

    /// The child's error was `PermissionDenied`, as a `SqliteError` and as a core `Error`.
    fn assert_denied(&self) {
        assert_eq!(self.variant(), Some("PermissionDenied"), "{}", self.stdout);
        assert_eq!(
            self.core_kind(),
            Some("PermissionDenied"),
            "{}",
            self.stdout
        );
    }
}
