//! One blocking connection to a Kafka broker speaking its wire protocol:
//! length-prefixed frames, each request with a header and a correlation id,
//! replies in the order of the requests. Several requests may be in flight.

use std::collections::VecDeque;
use std::io::{BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::RequestHeader;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use crate::error::{Error, Result};
use crate::kafka::REQUEST_TIMEOUT;

/// The client id every request carries (brokers log it).
const CLIENT_ID: &str = "weir";

/// Frames larger than this are refused as corrupt.
const MAX_FRAME: usize = 256 << 20;

/// A connection to one broker.
pub(crate) struct Connection {
    addr: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next_correlation: i32,
    /// Correlation ids and API keys of the requests whose replies are unread.
    in_flight: VecDeque<(i32, i16)>,
    frame: BytesMut,
}

impl Connection {
    /// Connects to `addr` (`host:port`).
    pub fn open(addr: &str) -> Result<Self> {
        let io = |e: std::io::Error| Error::Kafka(format!("connecting to broker {addr}: {e}"));
        let target =
            addr.to_socket_addrs().map_err(io)?.next().ok_or_else(|| {
                Error::Kafka(format!("broker address {addr} resolves to nothing"))
            })?;
        let stream = TcpStream::connect_timeout(&target, REQUEST_TIMEOUT).map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT)).map_err(io)?;
        stream
            .set_write_timeout(Some(REQUEST_TIMEOUT))
            .map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        Ok(Connection {
            addr: addr.to_string(),
            reader: BufReader::with_capacity(64 << 10, stream),
            writer,
            next_correlation: 0,
            in_flight: VecDeque::new(),
            frame: BytesMut::with_capacity(64 << 10),
        })
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
        self.writer
            .write_all(&self.frame)
            .map_err(|e| self.failed("sending a request", e))?;
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
        self.reader
            .read_exact(&mut size)
            .map_err(|e| self.failed("reading a reply", e))?;
        let size = i32::from_be_bytes(size);
        if size < 4 || size as usize > MAX_FRAME {
            return Err(self.failed("reading a reply", format!("a frame of {size} bytes")));
        }
        let mut body = vec![0u8; size as usize];
        self.reader
            .read_exact(&mut body)
            .map_err(|e| self.failed("reading a reply", e))?;
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

    fn failed(&self, what: &str, error: impl std::fmt::Display) -> Error {
        Error::Kafka(format!("{what} (broker {}): {error}", self.addr))
    }
}
