//! Every local job command in `examples/` runs as written.

use std::path::PathBuf;

#[test]
fn every_local_example_runs() {
    let root = crate::support::manifest_dir().join("../examples/local");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("examples/local")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sh"))
        .collect();
    scripts.sort();
    assert!(!scripts.is_empty());
    for script in scripts {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("sh")
            .arg(&script)
            .current_dir(dir.path())
            .env("WEIR", env!("CARGO_BIN_EXE_weir"))
            .output()
            .expect("sh runs");
        assert!(
            out.status.success(),
            "{} failed:\n{}\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
