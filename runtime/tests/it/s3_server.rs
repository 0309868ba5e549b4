//! A real S3-compatible server for the tests: `s3s-fs` on a free port of
//! 127.0.0.1, serving a temporary directory, with one bucket.
//!
//! The binary is taken from `WEIR_S3S_FS`, else `$HOME/.cache/weir/bin/s3s-fs`
//! (where `.ci/run` installs it), else `s3s-fs` on the `PATH`; if none exists it
//! is installed into `$HOME/.cache/weir` once (`cargo install s3s-fs@0.14.1`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The bucket every test server has.
pub const BUCKET: &str = "weir";
const ACCESS_KEY: &str = "weir-test-key";
const SECRET_KEY: &str = "weir-test-secret";
const VERSION: &str = "0.14.1";

static INSTALL: Mutex<()> = Mutex::new(());

fn cache_root() -> PathBuf {
    PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/weir")
}

/// The s3s-fs binary, installed on first use if it is nowhere to be found.
fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("WEIR_S3S_FS") {
        return PathBuf::from(path);
    }
    let cached = cache_root().join("bin/s3s-fs");
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if cached.is_file() {
        return cached;
    }
    if Command::new("s3s-fs").arg("--help").output().is_ok() {
        return PathBuf::from("s3s-fs");
    }
    let status = Command::new("cargo")
        .args([
            "install",
            &format!("s3s-fs@{VERSION}"),
            "--locked",
            "--features",
            "binary",
            "--root",
        ])
        .arg(cache_root())
        .status()
        .expect("cargo runs");
    assert!(
        status.success() && cached.is_file(),
        "installing s3s-fs failed; install it by hand: cargo install s3s-fs@{VERSION} --locked --features binary"
    );
    cached
}

/// A running s3s-fs; stopped when dropped.
pub struct S3Server {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    root: tempfile::TempDir,
}

impl S3Server {
    /// Starts a server with an empty bucket [`BUCKET`].
    pub fn start() -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(root.path().join(BUCKET)).expect("bucket directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = S3Server {
            child: None,
            port,
            root,
        };
        server.resume();
        server
    }

    /// Stops the server (an outage); objects stay on disk.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory; returns once it answers.
    pub fn resume(&mut self) {
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The URI of `prefix` in the bucket.
    pub fn uri(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    /// Points `cmd`'s AWS client at this server.
    pub fn env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        for (k, v) in self.vars() {
            cmd.env(k, v);
        }
        cmd
    }

    /// The environment an AWS client needs to talk to this server.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
            // No profile files of the machine's user: only this environment counts.
            ("AWS_CONFIG_FILE", "/nonexistent".to_string()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
    }

    /// Keys of the objects under `prefix` in the bucket, as files on the server's disk.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        collect(&self.root.path().join(BUCKET), "", &mut keys);
        keys.retain(|k| k.starts_with(prefix));
        keys.sort();
        keys
    }
}

impl S3Server {
    /// The bytes of object `key` (from the server's disk).
    pub fn read(&self, key: &str) -> Vec<u8> {
        std::fs::read(self.root.path().join(BUCKET).join(key)).expect("object on disk")
    }

    /// Cuts object `key` to half its size on the server's disk (damage).
    pub fn truncate(&self, key: &str) {
        let path = self.root.path().join(BUCKET).join(key);
        let bytes = std::fs::read(&path).expect("object on disk");
        std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
    }

    /// Makes every GET of object `key` fail on the server (a 500 InternalError,
    /// which the client retries, then gives up on) while its listing is unchanged:
    /// the object's file is moved aside and a directory put in its place.
    pub fn fail_reads(&self, key: &str) {
        let path = self.root.path().join(BUCKET).join(key);
        std::fs::rename(&path, self.aside(key)).expect("move aside");
        std::fs::create_dir(&path).expect("a directory in its place");
    }

    /// Where [`S3Server::fail_reads`] keeps an object's file meanwhile (outside the bucket).
    fn aside(&self, key: &str) -> std::path::PathBuf {
        self.root.path().join(key.replace('/', "%"))
    }

    /// Undoes [`S3Server::fail_reads`].
    pub fn mend_reads(&self, key: &str) {
        let path = self.root.path().join(BUCKET).join(key);
        std::fs::remove_dir(&path).expect("the directory goes");
        std::fs::rename(self.aside(key), &path).expect("move back");
    }

    /// Copies every object under key prefix `from` to the same key under `to`
    /// (on the server's disk, as a bucket-to-bucket copy would); returns how many.
    pub fn copy_prefix(&self, from: &str, to: &str) -> usize {
        let bucket = self.root.path().join(BUCKET);
        let keys = self.keys(from);
        for key in &keys {
            let target = bucket.join(to).join(&key[from.len()..]);
            std::fs::create_dir_all(target.parent().expect("a parent")).expect("mkdir");
            std::fs::copy(bucket.join(key), &target).expect("copy");
        }
        keys.len()
    }
}

fn collect(dir: &std::path::Path, rel: &str, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if entry.path().is_dir() {
            collect(&entry.path(), &key, out);
        } else {
            out.push(key);
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
