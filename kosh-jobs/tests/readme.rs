//! The README's quickstart, as a new user runs it: a fresh project in an empty temporary
//! directory with the README's `[dependencies]` (kosh-jobs by path instead of version) and its
//! first Rust block as `src/main.rs`, built and run with `cargo run`. It must print the
//! result and leave its SQLite file under `data/` in that directory, a folder it had to
//! create.

use std::path::{Path, PathBuf};
use std::process::Command;

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

    let dir = tempfile::tempdir().expect("a temporary directory");
    let project = dir.path();
    std::fs::create_dir(project.join("src")).unwrap();
    std::fs::write(
        project.join("Cargo.toml"),
        format!(
            "[package]\nname = \"quickstart\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
             publish = false\n\n[workspace]\n\n{deps}"
        ),
    )
    .unwrap();
    std::fs::write(project.join("src/main.rs"), code).unwrap();
    // Reuse the workspace's lock file, so the build is offline and picks the versions the
    // workspace was tested with; a target directory of its own, kept between runs.
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
