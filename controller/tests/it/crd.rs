//! The CRD YAML in `crds/` is current, and invalid manifests are refused naming the field.

use std::path::PathBuf;

use weir_controller::StreamJob;

/// The repository, as `cargo test` gives it to the tests it runs (the path
/// compiled in may be another checkout's: checkouts share a target directory).
fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("..")
}

#[test]
fn the_checked_in_crd_is_what_crdgen_prints() {
    let path = root().join("crds/streamjob.yaml");
    let checked_in = std::fs::read_to_string(&path).expect("crds/streamjob.yaml");
    assert!(
        checked_in == weir_controller::crd_yaml(),
        "{} is stale: run `cargo run -p weir-controller --bin crdgen > crds/streamjob.yaml`",
        path.display()
    );
}

#[test]
fn the_helm_chart_carries_the_same_crd() {
    let chart = root().join("charts/weir/crds/streamjob.yaml");
    let copy = std::fs::read_to_string(&chart).expect("charts/weir/crds/streamjob.yaml");
    assert!(
        copy == weir_controller::crd_yaml(),
        "{} is stale: copy crds/streamjob.yaml there",
        chart.display()
    );
}

/// Parses a manifest and validates it; the error names the field.
fn check(yaml: &str) -> Result<(), String> {
    let value: serde_yaml::Value = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
    let job: StreamJob = serde_path_to_error::deserialize(value)
        .map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
    job.spec.validate().map_err(|e| e.to_string())
}

#[test]
fn the_checked_in_table_crd_is_what_crdgen_prints_and_the_chart_carries() {
    for path in ["crds/streamtable.yaml", "charts/weir/crds/streamtable.yaml"] {
        let checked_in = std::fs::read_to_string(root().join(path)).expect(path);
        assert!(
            checked_in == weir_controller::table_crd_yaml(),
            "{path} is stale: run `cargo run -p weir-controller --bin crdgen streamtable > {path}`"
        );
    }
}

#[test]
fn every_example_table_declares_a_valid_table() {
    let text = std::fs::read_to_string(root().join("examples/streamtable.yaml")).unwrap();
    let mut seen = 0;
    for doc in text
        .split("\n---\n")
        .filter(|d| d.contains("kind: StreamTable"))
    {
        let table: weir_controller::StreamTable = serde_yaml::from_str(doc).unwrap();
        weir_controller::table::declared_table(&table).unwrap_or_else(|e| panic!("{e}"));
        seen += 1;
    }
    assert!(seen >= 1);
}

#[test]
fn every_example_sql_job_finds_its_tables_among_the_example_tables() {
    let text = std::fs::read_to_string(root().join("examples/streamtable.yaml")).unwrap();
    let tables: Vec<weir_controller::StreamTable> = text
        .split("\n---\n")
        .filter(|d| d.contains("kind: StreamTable"))
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect();
    let mut using = 0;
    for entry in std::fs::read_dir(root().join("examples"))
        .expect("examples")
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in text
            .split("\n---\n")
            .filter(|d| d.contains("kind: StreamJob"))
        {
            let job: weir_controller::StreamJob = serde_yaml::from_str(doc).unwrap();
            let Some(script) = &job.spec.job.sql else {
                continue;
            };
            let resolved = weir_controller::sql_tables::resolve(script, &tables)
                .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.message));
            using += resolved.tables.len();
        }
    }
    assert!(using >= 1, "an example SQL job uses a StreamTable");
}

#[test]
fn every_example_is_valid() {
    let dir = root().join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples").flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in text
                .split("\n---\n")
                .filter(|d| d.contains("kind: StreamJob"))
            {
                check(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
    }
    assert!(seen >= 3, "examples of StreamJobs: {seen}");
}

#[test]
fn every_invalid_example_is_refused_naming_its_field() {
    let dir = root().join("examples/invalid");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/invalid").flatten() {
        let path = entry.path();
        let text = std::fs::read_to_string(&path).unwrap();
        // The first line says which field the refusal must name: `# field: spec.parallelism`.
        let field = text
            .lines()
            .find_map(|l| l.strip_prefix("# field: "))
            .unwrap_or_else(|| panic!("{} has no `# field:` line", path.display()))
            .trim()
            .to_string();
        let error = check(&text).expect_err(&format!("{} was accepted", path.display()));
        assert!(
            error.contains(&field),
            "{}: {error:?} does not name {field}",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 5, "invalid examples: {seen}");
}
