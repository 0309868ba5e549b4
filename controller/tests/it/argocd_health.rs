//! The chart's Argo CD health check (`charts/weir/argocd/streamjob-health.lua`),
//! run by Lua 5.4 (Debian's `lua5.4`, which `.ci/setup.sh` installs) against
//! StreamJobs recorded from the cluster suite (`tests/fixtures/argocd/`), each
//! with the health it must give.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// `value` as a Lua table constructor (objects keyed by string, arrays from 1).
fn lua_literal(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("nil"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => lua_string(s, out),
        Value::Array(items) => {
            out.push('{');
            for item in items {
                lua_literal(item, out);
                out.push(',');
            }
            out.push('}');
        }
        Value::Object(fields) => {
            out.push('{');
            for (key, item) in fields {
                out.push('[');
                lua_string(key, out);
                out.push_str("]=");
                lua_literal(item, out);
                out.push(',');
            }
            out.push('}');
        }
    }
}

fn lua_string(s: &str, out: &mut String) {
    out.push('"');
    for byte in s.bytes() {
        match byte {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(byte as char);
            }
            0x20..=0x7e => out.push(byte as char),
            // Newlines, control characters and UTF-8 bytes as decimal escapes.
            _ => out.push_str(&format!("\\{byte:03}")),
        }
    }
    out.push('"');
}

/// Runs the health check on `streamjob`: (status, message).
fn health(streamjob: &Value) -> (String, String) {
    let script = std::fs::read_to_string(root().join("../charts/weir/argocd/streamjob-health.lua"))
        .expect("charts/weir/argocd/streamjob-health.lua");
    let mut program = String::from("local object = ");
    lua_literal(streamjob, &mut program);
    program.push_str("\nlocal function health(obj)\n");
    program.push_str(&script);
    program.push_str(
        "\nend\nlocal hs = health(object)\nio.write(hs.status, \"\\n\", hs.message or \"\", \"\\n\")\n",
    );
    let mut lua = Command::new("lua5.4")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lua5.4 (Debian's package lua5.4; .ci/setup.sh installs it)");
    lua.stdin
        .take()
        .expect("stdin")
        .write_all(program.as_bytes())
        .expect("the program written to lua5.4");
    let output = lua.wait_with_output().expect("lua5.4 ran");
    assert!(
        output.status.success(),
        "lua5.4 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let mut lines = text.lines();
    (
        lines.next().unwrap_or_default().to_string(),
        lines.next().unwrap_or_default().to_string(),
    )
}

#[test]
fn the_health_check_reads_every_recorded_streamjob_as_argo_cd_should() {
    let dir = root().join("tests/fixtures/argocd");
    let mut seen = std::collections::BTreeSet::new();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/argocd")
        .flatten()
        .map(|e| e.path())
        .collect();
    paths.sort();
    for path in paths {
        let fixture: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("a fixture"))
                .expect("JSON");
        let (status, message) = health(&fixture["streamjob"]);
        let wanted = fixture["health"].as_str().expect("health");
        let mentions = fixture["message"].as_str().expect("message");
        assert_eq!(status, wanted, "{}: {message}", path.display());
        assert!(
            message.contains(mentions),
            "{}: {message:?} does not mention {mentions:?}",
            path.display()
        );
        seen.insert(status);
    }
    for health in ["Healthy", "Progressing", "Degraded", "Suspended"] {
        assert!(seen.contains(health), "no recorded StreamJob is {health}");
    }
}

#[test]
fn strings_reach_lua_byte_for_byte() {
    let tricky = "quote \" backslash \\ newline \n tab \t ünïcode";
    let (status, _) = health(&serde_json::json!({
        "metadata": {"generation": 1},
        "status": {"phase": tricky, "observedGeneration": 1, "conditions": []},
    }));
    assert_eq!(status, "Progressing");
    let mut literal = String::new();
    lua_string(tricky, &mut literal);
    let output = Command::new("lua5.4")
        .arg("-e")
        .arg(format!("io.write({literal})"))
        .output()
        .expect("lua5.4");
    assert_eq!(String::from_utf8_lossy(&output.stdout), tricky);
}
