//! The README's quickstart, as a new user runs it: a fresh project in an empty temporary
//! directory with the README's `[dependencies]` (kosh-jobs by path instead of version) and its
//! first Rust block as `src/main.rs`, built and run with `cargo run`. It must print the
//! result and leave its SQLite file under `data/` in that directory, a folder it had to
//! create.
//!
//! And the mistake a new user makes next: a backend's URL without that backend's feature. A
//! second fresh project depends on kosh-jobs without `sqlite` and `redis`; `connect` must
//! refuse their URLs as `InvalidInput` naming the feature and the Cargo line that enables it,
//! and touch nothing. (Every other test builds with all features, so only a project of its
//! own can see these errors.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("kosh-jobs sits in the workspace")
        .to_path_buf()
}

/// The body of the first fenced block whose info string starts with `lang`.
fn block(readme: &str, lang: &str) -> String {
    let start = readme
        .find(&format!("```{lang}"))
        .unwrap_or_else(|| panic!("the README has a ```{lang} block"));
    let body = &readme[start..];
    let body = &body[body.find('\n').expect("a fenced block has lines") + 1..];
    body[..body.find("```").expect("the block ends")].to_owned()
}

#[test]
fn the_quickstart_runs_in_a_fresh_directory() {
    let ws = workspace();
    let readme = std::fs::read_to_string(ws.join("README.md")).expect("README.md");
    let deps = block(&readme, "toml");
    let code = block(&readme, "rust");
    let path = ws.join("kosh-jobs");
    let deps = deps.replacen(
        "kosh-jobs = { version = \"0.1\",",
        &format!("kosh-jobs = {{ path = {:?},", path.display().to_string()),
        1,
    );
    assert!(
        deps.contains("path ="),
        "the README's dependency line changed:\n{deps}"
    );

    let (dir, out) = cargo_run("quickstart", &deps, &code);
    let project = dir.path();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the quickstart failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("imported 1200 rows"),
        "the quickstart printed:\n{stdout}\n{stderr}"
    );
    assert!(
        project.join("data").join("jobs.db").is_file(),
        "the quickstart's SQLite file is not under data/ in its directory"
    );
}

/// Builds and runs a fresh project named `name` with these `[dependencies]` and this
/// `src/main.rs` in an empty temporary directory (returned, for the files the program left).
fn cargo_run(name: &str, deps: &str, code: &str) -> (tempfile::TempDir, Output) {
    let ws = workspace();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let project = dir.path();
    std::fs::create_dir(project.join("src")).unwrap();
    std::fs::write(
        project.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
             publish = false\n\n[workspace]\n\n{deps}"
        ),
    )
    .unwrap();
    std::fs::write(project.join("src/main.rs"), code).unwrap();
    // Reuse the workspace's lock file, so the build is offline and picks the versions the
    // workspace was tested with; one target directory for these projects (they share most
    // dependencies), kept between runs. Cargo's lock on it builds them one after the other.
    std::fs::copy(ws.join("Cargo.lock"), project.join("Cargo.lock")).unwrap();
    let target = ws.join("target").join("readme-quickstart");

    let out = Command::new(env!("CARGO"))
        .args(["run", "--quiet", "--offline"])
        .current_dir(project)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("JOBS_URL")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    (dir, out)
}

#[test]
fn a_backend_url_without_its_feature_names_the_feature() {
    let path = workspace().join("kosh-jobs");
    let deps = format!(
        "[dependencies]\n\
         kosh-jobs = {{ path = {:?}, default-features = false, features = [\"macros\"] }}\n\
         tokio = {{ version = \"1\", features = [\"macros\", \"rt-multi-thread\"] }}\n",
        path.display().to_string()
    );
    let code = r#"#[tokio::main]
async fn main() {
    for url in ["sqlite://x.db", "redis://127.0.0.1:1"] {
        match kosh_jobs::connect(url).await {
            Err(kosh_jobs::Error::InvalidInput(msg)) => println!("{url} => InvalidInput: {msg}"),
            Err(other) => println!("{url} => another error: {other:?}"),
            Ok(_) => println!("{url} => opened"),
        }
    }
}
"#;
    let (dir, out) = cargo_run("features-off", &deps, code);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the program failed:\n{stdout}\n{stderr}"
    );
    let version = env!("CARGO_PKG_VERSION");
    for (url, feature) in [
        ("sqlite://x.db", "sqlite"),
        ("redis://127.0.0.1:1", "redis"),
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{url} => ")))
            .unwrap_or_else(|| panic!("no line for {url}:\n{stdout}\n{stderr}"));
        let msg = line
            .strip_prefix(&format!("{url} => InvalidInput: "))
            .unwrap_or_else(|| panic!("not InvalidInput: {line}"));
        let cargo_line =
            format!("kosh-jobs = {{ version = \"{version}\", features = [\"{feature}\"] }}");
        assert!(
            msg.contains(&format!("`{feature}` feature")) && msg.contains(&cargo_line),
            "the error for {url} should name the `{feature}` feature and `{cargo_line}`: {msg}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !dir.path().join("x.db").exists(),
        "connect made x.db without the sqlite backend: {left:?}"
    );
}
