//! How the sink's own protocol client authenticates and encrypts, read from the
//! same librdkafka-named properties the source takes (`security.protocol`,
//! `sasl.*`, `ssl.*`), so one `--kafka-property` list serves both. Parsing is
//! pure: files are opened later, by [`super::tls`].

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// The `ssl.*` and `sasl.*` properties the sink honours; any other is refused,
/// since ignoring it would connect with less security than the user asked for.
const HONOURED: &[&str] = &[
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.endpoint.identification.algorithm",
];

/// The SASL mechanisms the sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mechanism {
    /// The user name and password in the clear (inside TLS, one hopes).
    Plain,
    /// Salted challenge-response with SHA-256 (RFC 7677).
    ScramSha256,
    /// Salted challenge-response with SHA-512.
    ScramSha512,
}

impl Mechanism {
    /// The mechanism's name in the SASL handshake.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// Who the client says it is, and how it proves it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Sasl {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// `sasl.username`.
    pub username: String,
    /// `sasl.password`.
    pub password: String,
}

/// The password stays out of logs and error messages.
impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Which brokers the client trusts and what it shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tls {
    /// `ssl.ca.location`: PEM certificates of the authorities to trust; the
    /// system's roots when unset.
    pub ca: Option<PathBuf>,
    /// `ssl.certificate.location` and `ssl.key.location`: the client's own
    /// certificate chain and private key (PEM), for brokers that require one.
    pub client: Option<(PathBuf, PathBuf)>,
    /// Whether the broker's certificate must name the host connected to
    /// (`ssl.endpoint.identification.algorithm=https`, the default).
    pub verify_hostname: bool,
}

/// The client's security settings: TLS or not, SASL or not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Security {
    /// Set for `ssl` and `sasl_ssl`.
    pub tls: Option<Tls>,
    /// Set for `sasl_plaintext` and `sasl_ssl`.
    pub sasl: Option<Sasl>,
}

impl Security {
    /// Reads the settings from librdkafka-named `properties`; a property or
    /// value the sink does not support is refused, naming it and what it
    /// accepts.
    pub fn from_properties(properties: &[(String, String)]) -> Result<Security> {
        // As in librdkafka, a property given twice takes its last value.
        let get = |key: &str| {
            properties
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        for (key, _) in properties {
            let secure = key.starts_with("ssl.") || key.starts_with("sasl.");
            if secure && !HONOURED.contains(&key.as_str()) {
                return Err(refused(format!(
                    "property {key} is not supported by the Kafka sink, which honours {}",
                    HONOURED.join(", ")
                )));
            }
        }
        let protocol = get("security.protocol")
            .unwrap_or("plaintext")
            .to_ascii_lowercase();
        let (tls, sasl) = match protocol.as_str() {
            "plaintext" => (false, false),
            "ssl" => (true, false),
            "sasl_plaintext" => (false, true),
            "sasl_ssl" => (true, true),
            other => {
                return Err(refused(format!(
                    "security.protocol {other:?} is not supported by the Kafka sink; \
                     it accepts plaintext, ssl, sasl_plaintext or sasl_ssl"
                )))
            }
        };
        let tls = tls.then(|| Self::tls(&get)).transpose()?;
        let sasl = sasl.then(|| Self::sasl(&get)).transpose()?;
        Ok(Security { tls, sasl })
    }

    fn tls<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<Tls> {
        let client = match (get("ssl.certificate.location"), get("ssl.key.location")) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (None, None) => None,
            _ => {
                return Err(refused(
                    "ssl.certificate.location and ssl.key.location go together: \
                     give both for a client certificate, or neither"
                        .into(),
                ))
            }
        };
        let verify_hostname = match get("ssl.endpoint.identification.algorithm")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("https") => true,
            Some("none") => false,
            Some(other) => {
                return Err(refused(format!(
                    "ssl.endpoint.identification.algorithm {other:?} is not supported by \
                     the Kafka sink; it accepts https or none"
                )))
            }
        };
        Ok(Tls {
            ca: get("ssl.ca.location").map(PathBuf::from),
            client,
            verify_hostname,
        })
    }

    fn sasl<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<Sasl> {
        // librdkafka's name is sasl.mechanisms; sasl.mechanism is its alias.
        let named = get("sasl.mechanism").or_else(|| get("sasl.mechanisms"));
        let mechanism = match named.map(str::to_ascii_uppercase).as_deref() {
            Some("PLAIN") => Mechanism::Plain,
            Some("SCRAM-SHA-256") => Mechanism::ScramSha256,
            Some("SCRAM-SHA-512") => Mechanism::ScramSha512,
            Some(other) => {
                return Err(refused(format!(
                    "sasl.mechanism {other} is not supported by the Kafka sink; \
                     it accepts PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                )))
            }
            None => {
                return Err(refused(
                    "a SASL security.protocol needs sasl.mechanism: PLAIN, SCRAM-SHA-256 or \
                     SCRAM-SHA-512 (librdkafka's default, GSSAPI, is not supported by the \
                     Kafka sink)"
                        .into(),
                ))
            }
        };
        let credential = |key: &str| {
            get(key)
                .map(str::to_string)
                .ok_or_else(|| refused(format!("sasl.mechanism {} needs {key}", mechanism.name())))
        };
        Ok(Sasl {
            mechanism,
            username: credential("sasl.username")?,
            password: credential("sasl.password")?,
        })
    }
}

/// A setting the sink cannot honour: the user's to fix, so no restart helps.
fn refused(reason: String) -> Error {
    Error::Usage(format!("Kafka client settings: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(properties: &[(&str, &str)]) -> Result<Security> {
        let owned: Vec<(String, String)> = properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Security::from_properties(&owned)
    }

    /// Properties, and what their refusal must say.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);

    fn refusal(properties: &[(&str, &str)]) -> String {
        match parse(properties) {
            Err(Error::Usage(reason)) => reason,
            other => panic!("{properties:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn no_properties_is_plaintext() {
        assert_eq!(parse(&[]).unwrap(), Security::default());
        assert_eq!(
            parse(&[("security.protocol", "PLAINTEXT")]).unwrap(),
            Security::default()
        );
    }

    #[test]
    fn sasl_ssl_with_scram_a_ca_and_a_client_certificate() {
        let security = parse(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "scram-sha-512"),
            ("sasl.username", "alice"),
            ("sasl.password", "s3cret"),
            ("ssl.ca.location", "/etc/kafka/ca.pem"),
            ("ssl.certificate.location", "/etc/kafka/client.pem"),
            ("ssl.key.location", "/etc/kafka/client.key"),
            ("ssl.endpoint.identification.algorithm", "none"),
        ])
        .unwrap();
        assert_eq!(
            security.tls,
            Some(Tls {
                ca: Some("/etc/kafka/ca.pem".into()),
                client: Some((
                    "/etc/kafka/client.pem".into(),
                    "/etc/kafka/client.key".into()
                )),
                verify_hostname: false,
            })
        );
        let sasl = security.sasl.unwrap();
        assert_eq!(sasl.mechanism, Mechanism::ScramSha512);
        assert_eq!(
            (sasl.username.as_str(), sasl.password.as_str()),
            ("alice", "s3cret")
        );
        assert!(!format!("{sasl:?}").contains("s3cret"));
    }

    #[test]
    fn ssl_alone_verifies_hostnames_against_the_system_roots() {
        let security = parse(&[("security.protocol", "ssl")]).unwrap();
        assert_eq!(
            security.tls,
            Some(Tls {
                ca: None,
                client: None,
                verify_hostname: true
            })
        );
        assert_eq!(security.sasl, None);
    }

    #[test]
    fn unsupported_settings_are_refused_naming_the_property_and_what_it_accepts() {
        let sasl = |mechanism| {
            vec![
                ("security.protocol", "sasl_ssl"),
                ("sasl.mechanism", mechanism),
                ("sasl.username", "alice"),
                ("sasl.password", "s3cret"),
            ]
        };
        let cases: &[Case] = &[
            (
                &sasl("GSSAPI"),
                &[
                    "sasl.mechanism GSSAPI",
                    "not supported by the Kafka sink",
                    "SCRAM-SHA-256",
                ],
            ),
            (
                &sasl("OAUTHBEARER"),
                &["sasl.mechanism OAUTHBEARER", "PLAIN"],
            ),
            (
                &[("security.protocol", "kerberos")],
                &["security.protocol \"kerberos\"", "sasl_ssl"],
            ),
            (
                &[("security.protocol", "sasl_plaintext")],
                &["needs sasl.mechanism", "GSSAPI"],
            ),
            (
                &[
                    ("security.protocol", "sasl_plaintext"),
                    ("sasl.mechanism", "PLAIN"),
                    ("sasl.username", "alice"),
                ],
                &["PLAIN needs sasl.password"],
            ),
            (
                &[("security.protocol", "ssl"), ("ssl.key.location", "k.pem")],
                &["ssl.certificate.location and ssl.key.location go together"],
            ),
            (
                &[
                    ("security.protocol", "ssl"),
                    ("ssl.endpoint.identification.algorithm", "dns"),
                ],
                &[
                    "ssl.endpoint.identification.algorithm \"dns\"",
                    "https or none",
                ],
            ),
            (
                &[("security.protocol", "ssl"), ("ssl.key.password", "x")],
                &[
                    "property ssl.key.password is not supported",
                    "ssl.ca.location",
                ],
            ),
        ];
        for (properties, expected) in cases {
            let reason = refusal(properties);
            for part in *expected {
                assert!(reason.contains(part), "{properties:?}: {reason}");
            }
        }
    }

    #[test]
    fn properties_that_do_not_concern_security_pass() {
        let security = parse(&[
            ("group.id", "readers"),
            ("client.id", "weir"),
            ("security.protocol", "plaintext"),
        ]);
        assert_eq!(security.unwrap(), Security::default());
    }
}
