//! TLS to the brokers with rustls: whom to trust (`ssl.ca.location`, else the
//! system's roots), what to show (a client certificate, for brokers with
//! `ssl.client.auth=required`), and whether a certificate must name the host
//! connected to. The configuration is built once per sink, its files read then,
//! and every connection shares it.

use std::fmt;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    SignatureScheme, StreamOwned,
};

use crate::error::{Error, Result};
use crate::kafka::cluster::Step;
use crate::kafka::security;

/// A TLS session over a broker's TCP connection.
pub(crate) type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// The client side of TLS, shared by every connection of a sink.
#[derive(Clone)]
pub(crate) struct Tls {
    config: Arc<ClientConfig>,
}

impl Tls {
    /// Reads the certificates and key `settings` name; a file that is missing
    /// or holds no usable PEM is refused, naming its property.
    pub fn new(settings: &security::Tls) -> Result<Tls> {
        // Explicit, not the process default: the S3 client links another provider.
        let provider = Arc::new(ring::default_provider());
        let mut roots = RootCertStore::empty();
        match &settings.ca {
            Some(path) => {
                for cert in certificates("ssl.ca.location", path)? {
                    roots.add(cert).map_err(|e| {
                        bad_file(
                            "ssl.ca.location",
                            path,
                            &format!("a bad CA certificate: {e}"),
                        )
                    })?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
                if roots.is_empty() {
                    return Err(Error::Usage(format!(
                        "Kafka client settings: no system root certificates found ({:?}); \
                         name the brokers' CA with ssl.ca.location",
                        native.errors
                    )));
                }
            }
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| Error::Usage(format!("Kafka client settings: TLS roots: {e}")))?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Internal(format!("TLS protocol versions: {e}")))?;
        let builder = if settings.verify_hostname {
            builder.with_webpki_verifier(webpki)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyHostname(webpki)))
        };
        let config = match &settings.client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = certificates("ssl.certificate.location", cert)?;
                let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    bad_file(
                        "ssl.key.location",
                        key,
                        &format!("no unencrypted PEM key: {e}"),
                    )
                })?;
                builder
                    .with_client_auth_cert(chain, private)
                    .map_err(|e| bad_file("ssl.key.location", key, &e.to_string()))?
            }
        };
        Ok(Tls {
            config: Arc::new(config),
        })
    }

    /// Runs the handshake with the broker at `addr` (`host:port`) over `tcp`.
    /// A certificate the settings do not trust, or a broker refusing ours, is
    /// an error for good; a connection that breaks is [`Step::Again`].
    pub fn connect(&self, addr: &str, tcp: TcpStream) -> Result<Step<TlsStream>> {
        let host = addr
            .rsplit_once(':')
            .map_or(addr, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| Error::Kafka(format!("broker {addr}: not a TLS server name: {e}")))?;
        let session = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| Error::Kafka(format!("broker {addr}: starting TLS: {e}")))?;
        let mut stream = StreamOwned::new(session, tcp);
        while stream.conn.is_handshaking() {
            if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
                let refusal = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>());
                return match refusal {
                    Some(refusal) => Err(Error::Kafka(format!(
                        "broker {addr}: TLS handshake failed: {refusal}"
                    ))),
                    None => Ok(Step::Again(format!("broker {addr}: TLS handshake: {e}"))),
                };
            }
        }
        Ok(Step::Done(stream))
    }
}

/// Every PEM certificate in `path`, at least one.
fn certificates(property: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad_file(property, path, &e.to_string()))?;
    if certs.is_empty() {
        return Err(bad_file(property, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn bad_file(property: &str, path: &Path, why: &str) -> Error {
    Error::Usage(format!(
        "Kafka client settings: {property} {}: {why}",
        path.display()
    ))
}

/// `ssl.endpoint.identification.algorithm=none`: the chain must still lead to
/// a trusted root, but the certificate need not name the host. The WebPKI
/// verifier checks the chain before the name, so a name mismatch is the only
/// error it can report about a chain it accepted.
#[derive(Debug)]
struct AnyHostname(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostname {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified =
            self.0
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        match verified {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Made with `openssl req -x509`, valid 2026-2126: two unrelated CAs, and a
    /// certificate for `broker.example` the first one signed.
    const CA_ONE: &str = "-----BEGIN CERTIFICATE-----
MIIBeDCCAR+gAwIBAgIUJ6vs5YOy/94ba7lHiHE5HkUqpyQwCgYIKoZIzj0EAwIw
ETEPMA0GA1UEAwwGY2Egb25lMCAXDTI2MTIwMjAxNTMxM1oYDzIxMjYxMTA4MDE1
MzEzWjARMQ8wDQYDVQQDDAZjYSBvbmUwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC
AATHFVMTtTj4ALu06PtaOFHn3r58DcCfXKteyozwjpFM8iE0RxqIrfD4zSUveJ0S
zRe4IMwuvxJl0XeDDnWM9Hlvo1MwUTAdBgNVHQ4EFgQUYG1I5fBTLx4myZYZvl0W
27kFQm8wHwYDVR0jBBgwFoAUYG1I5fBTLx4myZYZvl0W27kFQm8wDwYDVR0TAQH/
BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiAr5EqLrmb+nkwWxI+0BGcLy9soORNK
xvBO++WMGY1SgwIgEZlviAUXk71Cs0EVbGrKY9r2B12Xy6Lg4mFaR72Z01w=
-----END CERTIFICATE-----";
    const CA_TWO: &str = "-----BEGIN CERTIFICATE-----
MIIBejCCAR+gAwIBAgIUeJw8XqaMZeC50qVNDYvVsMmT1UgwCgYIKoZIzj0EAwIw
ETEPMA0GA1UEAwwGY2EgdHdvMCAXDTI2MTIwMjAxNTMxM1oYDzIxMjYxMTA4MDE1
MzEzWjARMQ8wDQYDVQQDDAZjYSB0d28wWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC
AARvEWVT2IRTA8sNajONRsn4uIYRnY1qNLFxJtFBTt+X/WU/h/COyG2w3lJZPypJ
4x2bxFg6h4sAFIvsFyFfFZ2vo1MwUTAdBgNVHQ4EFgQUzBMC2Xi4HQjSQiRS1jot
2PSFYhAwHwYDVR0jBBgwFoAUzBMC2Xi4HQjSQiRS1jot2PSFYhAwDwYDVR0TAQH/
BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEAoD8IcH9+nmUkArYMlV6CfVkMNa+m
xzAHsujnkB8MzkUCIQCK6rqLAqi1Rww0KslYdsxSob6sGhFoGNx+32VFfFGjmQ==
-----END CERTIFICATE-----";
    const BROKER_EXAMPLE: &str = "-----BEGIN CERTIFICATE-----
MIIBgzCCASmgAwIBAgIUGlm1MEaVGoyYyA8aQOH+8NsVBKowCgYIKoZIzj0EAwIw
ETEPMA0GA1UEAwwGY2Egb25lMCAXDTI2MTIwMjAxNTMxM1oYDzIxMjYxMTA4MDE1
MzEzWjARMQ8wDQYDVQQDDAZicm9rZXIwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC
AASjqpq2L2idbxnyHK+KJG77o8e4BdaW+vRmu/GSydHLXimjII/TJUi8UuR0ybtg
Ys7X5ERnCDYdFie71NoE6gDfo10wWzAZBgNVHREEEjAQgg5icm9rZXIuZXhhbXBs
ZTAdBgNVHQ4EFgQUwpqWVKVrbZ29GLptT2xKaFYoo6UwHwYDVR0jBBgwFoAUYG1I
5fBTLx4myZYZvl0W27kFQm8wCgYIKoZIzj0EAwIDSAAwRQIhAMgJdDyvyoeUNMpS
gsIi36YgAUmmqPC66LYqC+BE7OCLAiA89FgLp8TtLMNFn6Z9axyur9Y2lBTuowdp
tLsn1RIz4w==
-----END CERTIFICATE-----";

    fn settings(ca: &Path) -> security::Tls {
        security::Tls {
            ca: Some(ca.to_path_buf()),
            client: None,
            verify_hostname: true,
        }
    }

    fn refusal(settings: &security::Tls) -> String {
        match Tls::new(settings) {
            Err(Error::Usage(reason)) => reason,
            Err(other) => panic!("not a usage error: {other}"),
            Ok(_) => panic!("{settings:?} was accepted"),
        }
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_refused_naming_the_property() {
        let dir = tempfile::tempdir().unwrap();
        let missing = refusal(&settings(&dir.path().join("absent.pem")));
        assert!(missing.contains("ssl.ca.location"), "{missing}");
        assert!(missing.contains("absent.pem"), "{missing}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let empty = refusal(&settings(&empty));
        assert!(empty.contains("no PEM certificate"), "{empty}");
    }

    #[test]
    fn the_system_roots_serve_when_no_ca_is_named() {
        // The machines that run the tests have the ca-certificates package.
        Tls::new(&security::Tls {
            ca: None,
            client: None,
            verify_hostname: true,
        })
        .unwrap();
    }

    #[test]
    fn without_identification_any_name_passes_but_only_from_a_trusted_ca() {
        let verify = |ca: &str, name: &str, any_host: bool| {
            let mut roots = RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
                .unwrap();
            let provider = Arc::new(ring::default_provider());
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            let verifier: Arc<dyn ServerCertVerifier> = match any_host {
                true => Arc::new(AnyHostname(webpki)),
                false => webpki,
            };
            let leaf = CertificateDer::from_pem_slice(BROKER_EXAMPLE.as_bytes()).unwrap();
            let name = ServerName::try_from(name.to_string()).unwrap();
            // 2030-01-01, within the certificates' validity.
            let now = UnixTime::since_unix_epoch(Duration::from_secs(1_893_456_000));
            verifier
                .verify_server_cert(&leaf, &[], &name, &[], now)
                .map(|_| ())
        };
        verify(CA_ONE, "broker.example", false).unwrap();
        let other_name = verify(CA_ONE, "other.example", false).unwrap_err();
        assert!(
            other_name.to_string().contains("not valid for name"),
            "{other_name}"
        );
        verify(CA_ONE, "other.example", true).unwrap();
        verify(CA_ONE, "127.0.0.1", true).unwrap();
        for any_host in [false, true] {
            let other_ca = verify(CA_TWO, "broker.example", any_host).unwrap_err();
            assert!(other_ca.to_string().contains("UnknownIssuer"), "{other_ca}");
        }
    }
}
