//! SASL authentication of a fresh connection, as Kafka frames it (KIP-152):
//! `SaslHandshake` v1 names the mechanism, then each client message goes in a
//! `SaslAuthenticate` v2 request and each server message comes back in its
//! reply. PLAIN takes one round; SCRAM two, the second checking the broker.
//!
//! A broker with `connections.max.reauth.ms` set ends the session after the
//! lifetime its last reply states; [`authenticate`] returns it, so that the
//! connection is replaced before then.
//!
//! A refusal (wrong password, unknown user, mechanism not enabled) fails for
//! good: trying again cannot help, and a job that retried it for a minute
//! would hide the cause behind a timeout. A broken connection is transient.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64;
use base64::Engine;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result};
use crate::kafka::cluster::Step;
use crate::kafka::scram::{Hash, Scram};
use crate::kafka::security::{Mechanism, Sasl};
use crate::kafka::wire::Connection;

/// The handshake version: v1 frames the exchange in `SaslAuthenticate`
/// requests (Kafka 1.0 and later).
const HANDSHAKE_VERSION: i16 = 1;
/// The authenticate version: flexible, with the session lifetime (Kafka 2.2
/// and later).
const AUTHENTICATE_VERSION: i16 = 2;

/// What the broker says of a session it accepted.
pub(crate) struct Session {
    /// How long the broker keeps it, if it ends sessions.
    pub lifetime: Option<Duration>,
}

/// Authenticates `connection` as `sasl` says. `Err` is a refusal (see the
/// module docs); [`Step::Again`] a connection that broke on the way.
pub(crate) fn authenticate(connection: &mut Connection, sasl: &Sasl) -> Result<Step<Session>> {
    let handshake = SaslHandshakeRequest::default()
        .with_mechanism(StrBytes::from_static_str(sasl.mechanism.name()));
    let reply = connection.call(&handshake, HANDSHAKE_VERSION);
    let reply = match transient(connection, reply)? {
        Step::Done(reply) => reply,
        Step::Again(why) => return Ok(Step::Again(why)),
    };
    if let Some(error) = reply.error_code.err() {
        let enabled: Vec<&str> = reply.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(refused(
            connection,
            sasl,
            &format!(
                "{error:?}; the broker's listener enables {}",
                enabled.join(", ")
            ),
        ));
    }
    match sasl.mechanism {
        Mechanism::Plain => {
            // RFC 4616: authorization id (none), user name, password.
            let message = format!("\0{}\0{}", sasl.username, sasl.password);
            Ok(match exchange(connection, sasl, message)? {
                Step::Done((_, session)) => Step::Done(session),
                Step::Again(why) => Step::Again(why),
            })
        }
        Mechanism::ScramSha256 => scram(connection, sasl, Hash::Sha256),
        Mechanism::ScramSha512 => scram(connection, sasl, Hash::Sha512),
    }
}

fn scram(connection: &mut Connection, sasl: &Sasl, hash: Hash) -> Result<Step<Session>> {
    let mut random = [0u8; 24];
    SystemRandom::new()
        .fill(&mut random)
        .map_err(|_| Error::Internal("the system's random numbers failed".into()))?;
    // URL-safe base64 has no comma, which would end the nonce.
    let scram = Scram::new(hash, &sasl.username, &sasl.password, &BASE64.encode(random));
    let server_first = match exchange(connection, sasl, scram.client_first())? {
        Step::Done((message, _)) => message,
        Step::Again(why) => return Ok(Step::Again(why)),
    };
    let (client_final, expected) = scram
        .client_final(&server_first)
        .map_err(|why| refused(connection, sasl, &why))?;
    let (server_final, session) = match exchange(connection, sasl, client_final)? {
        Step::Done(reply) => reply,
        Step::Again(why) => return Ok(Step::Again(why)),
    };
    expected
        .check(&server_final)
        .map_err(|why| refused(connection, sasl, &why))?;
    Ok(Step::Done(session))
}

/// Sends one client message and returns the server's answer, and the
/// session's lifetime as of this reply.
fn exchange(
    connection: &mut Connection,
    sasl: &Sasl,
    message: String,
) -> Result<Step<(String, Session)>> {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message));
    let reply = connection.call(&request, AUTHENTICATE_VERSION);
    let reply = match transient(connection, reply)? {
        Step::Done(reply) => reply,
        Step::Again(why) => return Ok(Step::Again(why)),
    };
    if let Some(error) = reply.error_code.err() {
        let said = reply
            .error_message
            .as_ref()
            .map_or_else(|| format!("{error:?}"), |m| m.as_str().to_string());
        return Err(refused(connection, sasl, &said));
    }
    let session = Session {
        lifetime: u64::try_from(reply.session_lifetime_ms)
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis),
    };
    let message = String::from_utf8(reply.auth_bytes.to_vec())
        .map_err(|_| refused(connection, sasl, "the broker's SASL message is not UTF-8"))?;
    Ok(Step::Done((message, session)))
}

/// A call's outcome with a broken connection (`Error::Kafka`) made transient,
/// unless the broker refused the TLS session.
fn transient<T>(connection: &Connection, result: Result<T>) -> Result<Step<T>> {
    match result {
        Ok(value) => Ok(Step::Done(value)),
        Err(Error::Kafka(why)) if !connection.refused() => Ok(Step::Again(why)),
        Err(e) => Err(e),
    }
}

fn refused(connection: &Connection, sasl: &Sasl, why: &str) -> Error {
    Error::Kafka(format!(
        "broker {}: authentication failed ({} as user {}): {why}",
        connection.addr(),
        sasl.mechanism.name(),
        sasl.username
    ))
}
