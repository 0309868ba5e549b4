//! One blocking connection to a Kafka broker speaking its wire protocol:
//! length-prefixed frames, each request with a header and a correlation id,
//! replies in the order of the requests. Several requests may be in flight.
//! The bytes go over plain TCP or TLS, and a SASL exchange may come first; a
//! [`Dialer`] holds how.

use std::collections::VecDeque;
use std::io::{BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::RequestHeader;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use crate::error::{Error, Result};
use crate::kafka::cluster::Step;
use crate::kafka::sasl;
use crate::kafka::security::{Sasl, Security};
use crate::kafka::tls::{Tls, TlsStream};
use crate::kafka::REQUEST_TIMEOUT;

/// The client id every request carries (brokers log it).
const CLIENT_ID: &str = "weir";

/// Frames larger than this are refused as corrupt.
const MAX_FRAME: usize = 256 << 20;

/// How connections to the brokers are opened: TLS or not, SASL or not.
#[derive(Debug, Clone, Default)]
pub(crate) struct Dialer {
    tls: Option<Tls>,
    sasl: Option<Arc<Sasl>>,
}

impl Dialer {
    /// A dialer as `security` says; reads the TLS files it names.
    pub fn new(security: &Security) -> Result<Self> {
        Ok(Dialer {
            tls: security.tls.as_ref().map(Tls::new).transpose()?,
            sasl: security.sasl.clone().map(Arc::new),
        })
    }
}

/// The bytes of a connection: plain TCP, or TLS over it.
enum Stream {
    Plain(TcpStream),
    // Boxed: a TLS session's buffers are large, and most connections are plain.
    Tls(Box<TlsStream>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf),
            Stream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}

/// A connection to one broker.
pub(crate) struct Connection {
    addr: String,
    /// Reads through the buffer; writes go around it to the stream, whole
    /// frames at a time, so the two never mix.
    stream: BufReader<Stream>,
    next_correlation: i32,
    /// When to replace the connection: before the broker ends its SASL
    /// session (unless it keeps sessions for as long as they are open).
    renew_at: Option<Instant>,
    /// See [`Connection::refused`].
    refused: bool,
    /// Correlation ids and API keys of the requests whose replies are unread.
    in_flight: VecDeque<(i32, i16)>,
    frame: BytesMut,
}

impl Connection {
    /// Connects to `addr` (`host:port`) as `dialer` says: TCP, then the TLS
    /// handshake and SASL authentication if asked for. A broker that cannot
    /// be reached, or a connection that breaks, is [`Step::Again`]; a broker
    /// that refuses the client's certificate or credentials (or whose
    /// certificate the client refuses) is an error, since trying again
    /// cannot help.
    pub fn open(addr: &str, dialer: &Dialer) -> Result<Step<Self>> {
        let tcp = match connect(addr) {
            Ok(tcp) => tcp,
            Err(Error::Kafka(why)) => return Ok(Step::Again(why)),
            Err(e) => return Err(e),
        };
        let stream = match &dialer.tls {
            None => Stream::Plain(tcp),
            Some(tls) => match tls.connect(addr, tcp)? {
                Step::Done(tls) => Stream::Tls(Box::new(tls)),
                Step::Again(why) => return Ok(Step::Again(why)),
            },
        };
        let mut connection = Connection {
            addr: addr.to_string(),
            stream: BufReader::with_capacity(64 << 10, stream),
            next_correlation: 0,
            renew_at: None,
            refused: false,
            in_flight: VecDeque::new(),
            frame: BytesMut::with_capacity(64 << 10),
        };
        if let Some(credentials) = &dialer.sasl {
            let started = Instant::now();
            match sasl::authenticate(&mut connection, credentials)? {
                // As Kafka's Java client, renew at 85% of the lifetime.
                Step::Done(session) => {
                    connection.renew_at = session.lifetime.map(|l| started + l.mul_f64(0.85))
                }
                Step::Again(why) => return Ok(Step::Again(why)),
            }
        }
        Ok(Step::Done(connection))
    }

    /// Whether the broker's SASL session is near its end: the connection is
    /// to be replaced once its replies are read.
    pub fn session_ending(&self) -> bool {
        self.renew_at.is_some_and(|at| Instant::now() >= at)
    }

    /// Whether the connection should be replaced before the next request:
    /// its session is near its end and no reply is pending.
    pub fn should_renew(&self) -> bool {
        self.in_flight.is_empty() && self.session_ending()
    }

    /// The broker's address, `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Requests whose replies have not been read.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Sends `request` at `version` without waiting for its reply.
    pub fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<()> {
        let correlation = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        self.frame.clear();
        self.frame.put_i32(0);
        let encoded = header
            .encode(&mut self.frame, R::header_version(version))
            .and_then(|()| request.encode(&mut self.frame, version));
        encoded.map_err(|e| self.failed("encoding a request", e))?;
        let size = (self.frame.len() - 4) as i32;
        self.frame[..4].copy_from_slice(&size.to_be_bytes());
        let stream = self.stream.get_mut();
        let sent = stream.write_all(&self.frame).and_then(|()| stream.flush());
        sent.map_err(|e| self.broken("sending a request", e))?;
        self.in_flight.push_back((correlation, R::KEY));
        Ok(())
    }

    /// Reads the reply to the oldest request in flight, which must be an `R`
    /// sent at `version`.
    pub fn receive<R: Request>(&mut self, version: i16) -> Result<R::Response> {
        let Some((correlation, key)) = self.in_flight.pop_front() else {
            return Err(Error::Internal(format!(
                "reading a reply from broker {} with no request in flight",
                self.addr
            )));
        };
        if key != R::KEY {
            return Err(Error::Internal(format!(
                "reading a reply of API {} for a request of API {key}",
                R::KEY
            )));
        }
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .map_err(|e| self.broken("reading a reply", e))?;
        let size = i32::from_be_bytes(size);
        if size < 4 || size as usize > MAX_FRAME {
            return Err(self.failed("reading a reply", format!("a frame of {size} bytes")));
        }
        let mut body = vec![0u8; size as usize];
        self.stream
            .read_exact(&mut body)
            .map_err(|e| self.broken("reading a reply", e))?;
        let mut body = Bytes::from(body);
        let header = kafka_protocol::messages::ResponseHeader::decode(
            &mut body,
            <R::Response as HeaderVersion>::header_version(version),
        )
        .map_err(|e| self.failed("decoding a reply header", e))?;
        if header.correlation_id != correlation {
            return Err(self.failed(
                "reading a reply",
                format!(
                    "correlation id {} where {correlation} was due",
                    header.correlation_id
                ),
            ));
        }
        R::Response::decode(&mut body, version).map_err(|e| self.failed("decoding a reply", e))
    }

    /// Sends `request` and waits for its reply; nothing else may be in flight.
    pub fn call<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        if !self.in_flight.is_empty() {
            return Err(Error::Internal(format!(
                "a call to broker {} while replies are pending",
                self.addr
            )));
        }
        self.send(request, version)?;
        self.receive::<R>(version)
    }

    /// Whether the broker refused the TLS session (say, for want of a client
    /// certificate, which TLS 1.3 reports only after the handshake): trying
    /// again cannot help.
    pub fn refused(&self) -> bool {
        self.refused
    }

    /// The error of a failed read or write, noting a TLS refusal.
    fn broken(&mut self, what: &str, error: std::io::Error) -> Error {
        let tls = error
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        match tls {
            Some(refusal) => {
                self.refused = true;
                let why = format!(
                    "the TLS session was refused: {refusal} (does the broker require a client \
                     certificate: ssl.certificate.location and ssl.key.location?)"
                );
                self.failed(what, why)
            }
            None => self.failed(what, error),
        }
    }

    fn failed(&self, what: &str, error: impl std::fmt::Display) -> Error {
        Error::Kafka(format!("{what} (broker {}): {error}", self.addr))
    }
}

/// A TCP connection to `addr` with the request timeout on reads and writes.
fn connect(addr: &str) -> Result<TcpStream> {
    let io = |e: std::io::Error| Error::Kafka(format!("connecting to broker {addr}: {e}"));
    let target = addr
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| Error::Kafka(format!("broker address {addr} resolves to nothing")))?;
    let tcp = TcpStream::connect_timeout(&target, REQUEST_TIMEOUT).map_err(io)?;
    tcp.set_nodelay(true).map_err(io)?;
    tcp.set_read_timeout(Some(REQUEST_TIMEOUT)).map_err(io)?;
    tcp.set_write_timeout(Some(REQUEST_TIMEOUT)).map_err(io)?;
    Ok(tcp)
}
