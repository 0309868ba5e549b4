//! A real Apache Kafka broker for the tests: one KRaft node (broker and
//! controller) on free ports of 127.0.0.1, its log in a temporary directory.
//!
//! The jars come from `WEIR_KAFKA_LIBS`, else `$HOME/.cache/weir/kafka-<v>/libs`
//! (where `.ci/setup.sh` copies them); if neither holds them they are fetched
//! once with Maven from `e2e/kafka/pom.xml`. Java 17 runs the broker.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::manifest_dir;

static FETCH: Mutex<()> = Mutex::new(());

/// The Kafka version `e2e/kafka/pom.xml` names.
fn version(pom: &str) -> String {
    let start = pom
        .find("<kafka.version>")
        .expect("kafka.version in the pom")
        + 15;
    let end = start + pom[start..].find('<').expect("closing tag");
    pom[start..end].to_string()
}

/// The broker's jars, fetched with Maven on first use if nowhere to be found.
fn libs() -> PathBuf {
    if let Ok(path) = std::env::var("WEIR_KAFKA_LIBS") {
        return PathBuf::from(path);
    }
    let pom = manifest_dir().join("../e2e/kafka/pom.xml");
    let version = version(&std::fs::read_to_string(&pom).expect("e2e/kafka/pom.xml"));
    let home = PathBuf::from(std::env::var("HOME").expect("HOME"));
    let libs = home.join(format!(".cache/weir/kafka-{version}/libs"));
    let _guard = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    if libs.join(format!("kafka-tools-{version}.jar")).is_file() {
        return libs;
    }
    let partial = libs.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&partial);
    let _ = std::fs::remove_dir_all(&libs);
    let status = Command::new("mvn")
        .args(["-q", "-f"])
        .arg(&pom)
        .args(["dependency:copy-dependencies", "-DincludeScope=runtime"])
        .arg(format!("-DoutputDirectory={}", partial.display()))
        .status()
        .expect("mvn runs (install Maven, or set WEIR_KAFKA_LIBS)");
    assert!(
        status.success(),
        "fetching the Kafka broker with Maven failed"
    );
    std::fs::rename(&partial, &libs).expect("the fetched jars move into place");
    libs
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A running single-node broker; stopped when dropped.
pub struct KafkaBroker {
    child: Option<Child>,
    /// The client port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl KafkaBroker {
    /// Formats a fresh broker and starts it; returns once it accepts clients.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (port, controller) = (free_port(), free_port());
        let config = dir.path().join("server.properties");
        std::fs::write(
            &config,
            format!(
                "process.roles=broker,controller\n\
                 node.id=1\n\
                 controller.quorum.bootstrap.servers=127.0.0.1:{controller}\n\
                 listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
                 controller.listener.names=CONTROLLER\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
                 log.dirs={}\n\
                 num.partitions=1\n\
                 offsets.topic.replication.factor=1\n\
                 offsets.topic.num.partitions=1\n\
                 transaction.state.log.replication.factor=1\n\
                 transaction.state.log.min.isr=1\n\
                 transaction.state.log.num.partitions=1\n\
                 group.initial.rebalance.delay.ms=0\n",
                dir.path().join("data").display()
            ),
        )
        .expect("server.properties");
        std::fs::write(
            dir.path().join("log4j2.properties"),
            "rootLogger.level=info\nrootLogger.appenderRef.file.ref=file\n\
             appender.file.type=File\nappender.file.name=file\n\
             appender.file.fileName=${sys:kafka.logs.dir}/broker.log\n\
             appender.file.layout.type=PatternLayout\n\
             appender.file.layout.pattern=%d %p %c{1} %m%n\n",
        )
        .expect("log4j2.properties");
        let format = java(dir.path())
            .args(["kafka.tools.StorageTool", "format", "--standalone"])
            .args(["--cluster-id", "MkU3OEVBNTcwNTJENDM2Qg"])
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .status()
            .expect("java runs the storage tool");
        assert!(format.success(), "formatting the broker's storage failed");
        let mut broker = KafkaBroker {
            child: None,
            port,
            dir,
        };
        broker.resume();
        broker
    }

    /// The bootstrap servers of this broker.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker (an outage); its data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The transactions the broker lists as not complete, as Kafka's own
    /// `kafka-transactions list` tool prints them: (transactional id, state).
    pub fn open_transactions(&self) -> Vec<(String, String)> {
        let output = java(self.dir.path())
            .arg("org.apache.kafka.tools.TransactionsCommand")
            .args(["--bootstrap-server", &self.bootstrap(), "list"])
            .stderr(Stdio::inherit())
            .output()
            .expect("java runs kafka-transactions");
        assert!(output.status.success(), "kafka-transactions list failed");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .skip(1)
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                Some((fields.first()?.to_string(), fields.get(3)?.to_string()))
            })
            .filter(|(_, state)| {
                !matches!(
                    state.as_str(),
                    "CompleteCommit" | "CompleteAbort" | "Empty" | "Dead"
                )
            })
            .collect()
    }

    /// Starts the broker again on the same ports and data; returns once it
    /// accepts connections.
    pub fn resume(&mut self) {
        let child = java(self.dir.path())
            .arg("kafka.Kafka")
            .arg(self.dir.path().join("server.properties"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("java runs the broker");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the Kafka broker did not listen within 60 s; see {}",
                self.dir.path().join("broker.log").display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `java` with the broker's class path, a small heap, and logs in `dir`.
fn java(dir: &Path) -> Command {
    let mut cmd = Command::new("java");
    cmd.args(["-Xmx384m", "-XX:+UseSerialGC", "-cp"])
        .arg(format!("{}/*", libs().display()))
        .arg(format!("-Dkafka.logs.dir={}", dir.display()))
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            dir.join("log4j2.properties").display()
        ));
    cmd
}
