//! A real Apache Kafka broker for the tests: one KRaft node (broker and
//! controller) on free ports of 127.0.0.1, its log in a temporary directory.
//! [`KafkaBroker::start_secured`] adds SASL and TLS listeners, with a CA and
//! certificates made by `openssl` at start and SCRAM users formatted into the
//! broker's storage.
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

/// The user the secured listeners know, with [`PASSWORD`] for every mechanism.
pub const USER: &str = "alice";
/// [`USER`]'s password.
pub const PASSWORD: &str = "alice-secret";

/// The secured listeners of a broker from [`KafkaBroker::start_secured`], on
/// 127.0.0.1 beside its PLAINTEXT one, and what their clients need.
pub struct Secured {
    /// SASL over TLS: SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN.
    pub sasl_ssl: u16,
    /// SASL without TLS: the same mechanisms.
    pub sasl_plaintext: u16,
    /// TLS that requires a client certificate signed by the CA.
    pub ssl: u16,
    /// The CA that signed the broker's certificate (for 127.0.0.1 and
    /// localhost) and the client's, PEM.
    pub ca: PathBuf,
    /// A client certificate the `ssl` listener accepts, PEM.
    pub client_certificate: PathBuf,
    /// Its private key, PEM.
    pub client_key: PathBuf,
}

/// A running single-node broker; stopped when dropped.
pub struct KafkaBroker {
    child: Option<Child>,
    /// The client port on 127.0.0.1.
    pub port: u16,
    /// The secured listeners, if started with them.
    pub secured: Option<Secured>,
    dir: tempfile::TempDir,
}

impl KafkaBroker {
    /// Formats a fresh broker and starts it; returns once it accepts clients.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// A broker with [`Secured`] listeners as well as the PLAINTEXT one (which
    /// the brokers' own traffic and the tests' tools keep using).
    pub fn start_secured() -> Self {
        Self::start_with(true)
    }

    fn start_with(secure: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (port, controller) = (free_port(), free_port());
        let config = dir.path().join("server.properties");
        let secured = secure.then(|| Secured {
            sasl_ssl: free_port(),
            sasl_plaintext: free_port(),
            ssl: free_port(),
            ca: dir.path().join("ca.pem"),
            client_certificate: dir.path().join("client.pem"),
            client_key: dir.path().join("client.key"),
        });
        let (mut listeners, mut advertised) = (
            format!("PLAINTEXT://127.0.0.1:{port}"),
            format!("PLAINTEXT://127.0.0.1:{port}"),
        );
        let mut security = String::new();
        if let Some(secured) = &secured {
            let extra = format!(
                ",SASL_SSL://127.0.0.1:{},SASL_PLAINTEXT://127.0.0.1:{},SSL://127.0.0.1:{}",
                secured.sasl_ssl, secured.sasl_plaintext, secured.ssl
            );
            listeners.push_str(&extra);
            advertised.push_str(&extra);
            security = secured_config(dir.path());
        }
        std::fs::write(
            &config,
            format!(
                "process.roles=broker,controller\n\
                 node.id=1\n\
                 controller.quorum.bootstrap.servers=127.0.0.1:{controller}\n\
                 listeners={listeners},CONTROLLER://127.0.0.1:{controller}\n\
                 advertised.listeners={advertised}\n\
                 controller.listener.names=CONTROLLER\n\
                 inter.broker.listener.name=PLAINTEXT\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,\
                 SASL_SSL:SASL_SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL\n\
                 {security}\
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
        let mut format = java(dir.path());
        format
            .args(["kafka.tools.StorageTool", "format", "--standalone"])
            .args(["--cluster-id", "MkU3OEVBNTcwNTJENDM2Qg"])
            .arg("--config")
            .arg(&config);
        if secure {
            for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
                format
                    .arg("--add-scram")
                    .arg(format!("{mechanism}=[name={USER},password={PASSWORD}]"));
            }
        }
        let format = format
            .stdout(Stdio::null())
            .status()
            .expect("java runs the storage tool");
        assert!(format.success(), "formatting the broker's storage failed");
        let mut broker = KafkaBroker {
            child: None,
            port,
            secured,
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

/// How long the broker keeps a SCRAM-SHA-256 session on the SASL_SSL listener
/// before the client must authenticate again (KIP-368): short, so that a job's
/// connections outlive their sessions.
const REAUTH_MS: u64 = 2_000;

/// The secured listeners' settings, after making their certificates in `dir`:
/// SCRAM on both SASL listeners (the users are in the storage), PLAIN with
/// [`USER`] in its JAAS line, a client certificate required on `SSL`, and
/// SCRAM-SHA-256 sessions on SASL_SSL that end after [`REAUTH_MS`].
fn secured_config(dir: &Path) -> String {
    certificates(dir);
    let mut config = format!(
        "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN\n\
         ssl.keystore.type=PEM\n\
         ssl.keystore.location={}\n\
         ssl.truststore.type=PEM\n\
         ssl.truststore.location={}\n\
         listener.name.ssl.ssl.client.auth=required\n\
         listener.name.sasl_ssl.scram-sha-256.connections.max.reauth.ms={REAUTH_MS}\n",
        dir.join("broker.pem").display(),
        dir.join("ca.pem").display()
    );
    for listener in ["sasl_ssl", "sasl_plaintext"] {
        for mechanism in ["scram-sha-256", "scram-sha-512"] {
            config.push_str(&format!(
                "listener.name.{listener}.{mechanism}.sasl.jaas.config=\
                 org.apache.kafka.common.security.scram.ScramLoginModule required;\n"
            ));
        }
        config.push_str(&format!(
            "listener.name.{listener}.plain.sasl.jaas.config=\
             org.apache.kafka.common.security.plain.PlainLoginModule required \
             user_{USER}=\"{PASSWORD}\";\n"
        ));
    }
    config
}

/// A CA (`ca.pem`), the broker's key and certificate for 127.0.0.1 and
/// localhost (`broker.pem`, as Kafka's PEM key store wants them), and a
/// client's (`client.pem`, `client.key`), all made with `openssl`.
fn certificates(dir: &Path) {
    let openssl = |args: &str| {
        let status = Command::new("openssl")
            .args(args.split(' '))
            .current_dir(dir)
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs (install it)");
        assert!(status.success(), "openssl {args} failed");
    };
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -noenc";
    openssl(&format!(
        "req -x509 -days 2 -subj /CN=weir-test-ca {key} -keyout ca.key -out ca.pem"
    ));
    for (name, extension) in [
        ("broker", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ("client", "extendedKeyUsage=clientAuth"),
    ] {
        openssl(&format!(
            "req -subj /CN={name} {key} -keyout {name}.key -out {name}.csr"
        ));
        std::fs::write(dir.join(format!("{name}.ext")), extension).expect("extension file");
        openssl(&format!(
            "x509 -req -days 2 -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
             -extfile {name}.ext -out {name}.pem"
        ));
    }
    let key = std::fs::read_to_string(dir.join("broker.key")).expect("broker.key");
    let cert = std::fs::read_to_string(dir.join("broker.pem")).expect("broker.pem");
    std::fs::write(dir.join("broker.pem"), key + &cert).expect("broker.pem");
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
