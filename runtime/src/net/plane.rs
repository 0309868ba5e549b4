//! A worker's data plane: its listener, one connection per peer worker, and the
//! registry of inbound logical channels that reader threads deliver into.
//!
//! A frame is never dropped silently while its channel lives: one that cannot be
//! delivered (an unknown kind, or the peer sent beyond its credit) fails its
//! channel, and a connection that breaks fails every channel it carried. A failed
//! channel is one whose receiving task sees it disconnected, so that task fails
//! and the job recovers from its latest checkpoint, instead of aligning a barrier
//! behind records that never arrived. Only frames of an attempt this worker has
//! forgotten (fenced off) are dropped, on purpose.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::error::{Error, Result};
use crate::net::frame::{write_frame, Frame, FrameKind};

/// A logical channel of an attempt: `(attempt, channel id)`.
pub type ChannelKey = (u64, u64);

/// Delivers one DATA payload of an inbound logical channel.
pub(crate) type Deliver = Box<dyn Fn(&[u8]) -> Result<()> + Send + Sync>;

/// An inbound logical channel: the connection it was opened on, and where its
/// frames go. Removing the entry drops the channel's sending end: its receiving
/// task sees it disconnected once it has taken what was delivered.
struct Inbound {
    connection: u64,
    deliver: Deliver,
}

type Registry = Arc<RwLock<HashMap<ChannelKey, Inbound>>>;

/// Numbers connections, so that a broken one fails only its own channels.
static NEXT_CONNECTION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Credit tokens of one outbound channel: CREDIT frames add, sends take.
type Tokens = (Sender<()>, Receiver<()>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One TCP connection to a peer worker, shared by every logical channel between the two.
pub struct Connection {
    peer: String,
    /// Unique in this process.
    serial: u64,
    writer: Mutex<BufWriter<TcpStream>>,
    /// Credit tokens per outbound channel: CREDIT frames put tokens in, senders take them out.
    credits: Mutex<HashMap<ChannelKey, Tokens>>,
    closed: AtomicBool,
}

impl Connection {
    /// The peer's worker id.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Whether the connection has failed or ended.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Writes and flushes one frame.
    pub fn write(&self, kind: FrameKind, key: ChannelKey, payload: &[u8]) -> Result<()> {
        if self.is_closed() {
            return Err(Error::ChannelClosed);
        }
        let mut w = lock(&self.writer);
        write_frame(&mut *w, kind, key.0, key.1, payload)
            .and_then(|()| w.flush())
            .map_err(|e| {
                self.close();
                tracing::warn!(peer = %self.peer, error = %e, "data connection failed");
                Error::ChannelClosed
            })
    }

    /// Grants the peer `n` more messages on inbound channel `key`.
    pub fn grant(&self, key: ChannelKey, n: u32) -> Result<()> {
        self.write(FrameKind::Credit, key, &n.to_le_bytes())
    }

    /// The credit tokens of outbound channel `key` (created on first use by either side).
    pub(crate) fn credit_tokens(&self, key: ChannelKey) -> Receiver<()> {
        let mut credits = lock(&self.credits);
        credits.entry(key).or_insert_with(unbounded).1.clone()
    }

    fn add_credits(&self, key: ChannelKey, n: u32) {
        let mut credits = lock(&self.credits);
        let tx = &credits.entry(key).or_insert_with(unbounded).0;
        for _ in 0..n {
            let _ = tx.send(());
        }
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // Dropping the token senders wakes every sender waiting for credit.
        lock(&self.credits).clear();
        if let Ok(w) = self.writer.try_lock() {
            let _ = w.get_ref().shutdown(std::net::Shutdown::Both);
        }
    }

    /// Forgets the credits of every channel of `attempt`.
    fn forget(&self, attempt: u64) {
        lock(&self.credits).retain(|k, _| k.0 != attempt);
    }
}

/// A worker's end of the data plane.
pub struct DataPlane {
    worker_id: String,
    address: SocketAddr,
    connections: Mutex<HashMap<String, Arc<Connection>>>,
    arrived: Condvar,
    inbound: Registry,
}

impl DataPlane {
    /// Listens on `listen` (port 0 picks a free one) as worker `worker_id`.
    pub fn bind(worker_id: &str, listen: &str) -> Result<Arc<Self>> {
        let listener = TcpListener::bind(listen).map_err(|e| Error::Io {
            action: "listening for data connections on",
            path: listen.into(),
            source: e,
        })?;
        let address = listener
            .local_addr()
            .map_err(|e| Error::io("reading the address of", listen, e))?;
        let plane = Arc::new(DataPlane {
            worker_id: worker_id.to_string(),
            address,
            connections: Mutex::new(HashMap::new()),
            arrived: Condvar::new(),
            inbound: Arc::default(),
        });
        let weak = Arc::downgrade(&plane);
        std::thread::Builder::new()
            .name("weir-data-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    let Some(plane) = weak.upgrade() else { return };
                    match stream {
                        Ok(stream) => {
                            if let Err(e) = plane.accept(stream) {
                                tracing::warn!(error = %e, "refused a data connection");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "accepting a data connection"),
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("spawning the data listener: {e}")))?;
        Ok(plane)
    }

    /// The address peers reach this worker at.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// This worker's id.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    fn accept(self: &Arc<Self>, stream: TcpStream) -> Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let mut reader = BufReader::new(
            stream
                .try_clone()
                .map_err(|e| Error::io("cloning", "data socket", e))?,
        );
        let Some(first) = Frame::read_from(&mut reader)
            .map_err(|e| Error::io("reading hello from", "data socket", e))?
        else {
            // Closed before a word: a TCP probe (a kubelet's readiness check).
            tracing::debug!("a data connection closed at once (a probe)");
            return Ok(());
        };
        let hello = Some(first)
            .filter(|f| f.kind == FrameKind::Hello)
            .ok_or_else(|| Error::Internal("data connection did not start with HELLO".into()))?;
        stream.set_read_timeout(None).ok();
        let peer = String::from_utf8_lossy(&hello.payload).into_owned();
        self.install(peer, stream, reader)?;
        Ok(())
    }

    fn install(
        self: &Arc<Self>,
        peer: String,
        stream: TcpStream,
        reader: BufReader<TcpStream>,
    ) -> Result<Arc<Connection>> {
        stream.set_nodelay(true).ok();
        let conn = Arc::new(Connection {
            peer: peer.clone(),
            serial: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
            writer: Mutex::new(BufWriter::with_capacity(1 << 16, stream)),
            credits: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        });
        if let Some(old) = lock(&self.connections).insert(peer.clone(), conn.clone()) {
            old.close();
        }
        self.arrived.notify_all();
        let (inbound, reader_conn) = (self.inbound.clone(), conn.clone());
        std::thread::Builder::new()
            .name(format!("weir-data-{peer}"))
            .spawn(move || read_loop(reader, &reader_conn, &inbound))
            .map_err(|e| Error::Internal(format!("spawning a data reader: {e}")))?;
        Ok(conn)
    }

    /// The connection to worker `peer` at `address`. Of two workers, the one with the
    /// smaller id dials; the other waits up to `timeout` for the call.
    pub fn connection(
        self: &Arc<Self>,
        peer: &str,
        address: &str,
        timeout: Duration,
    ) -> Result<Arc<Connection>> {
        let deadline = Instant::now() + timeout;
        let mut conns = lock(&self.connections);
        loop {
            if let Some(c) = conns.get(peer).filter(|c| !c.is_closed()) {
                return Ok(c.clone());
            }
            if self.worker_id.as_str() < peer {
                drop(conns);
                return self.dial(peer, address);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Internal(format!(
                    "worker {peer} ({address}) did not open its data connection within {timeout:?}"
                )));
            }
            conns = self
                .arrived
                .wait_timeout(conns, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    fn dial(self: &Arc<Self>, peer: &str, address: &str) -> Result<Arc<Connection>> {
        let stream = TcpStream::connect(address).map_err(|e| Error::Io {
            action: "connecting to the data plane of",
            path: format!("worker {peer} at {address}").into(),
            source: e,
        })?;
        let reader = BufReader::new(
            stream
                .try_clone()
                .map_err(|e| Error::io("cloning", "data socket", e))?,
        );
        let conn = self.install(peer.to_string(), stream, reader)?;
        conn.write(FrameKind::Hello, (0, 0), self.worker_id.as_bytes())?;
        Ok(conn)
    }

    /// Registers inbound channel `key` from `conn`'s peer; DATA frames for it
    /// are passed to `deliver`.
    pub(crate) fn register(&self, conn: &Connection, key: ChannelKey, deliver: Deliver) {
        self.inbound
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                key,
                Inbound {
                    connection: conn.serial,
                    deliver,
                },
            );
    }

    /// Drops every channel of `attempt`: later frames of it are discarded.
    pub fn forget_attempt(&self, attempt: u64) {
        self.inbound
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| k.0 != attempt);
        for conn in lock(&self.connections).values() {
            conn.forget(attempt);
        }
    }
}

fn read_loop(mut reader: BufReader<TcpStream>, conn: &Connection, inbound: &Registry) {
    let broke = loop {
        match Frame::read_from(&mut reader) {
            Ok(Some(frame)) => {
                let key = (frame.attempt, frame.channel);
                match frame.kind {
                    FrameKind::Data => deliver(conn, inbound, key, &frame.payload),
                    FrameKind::Credit => {
                        let n = frame
                            .payload
                            .get(..4)
                            .and_then(|b| b.try_into().ok())
                            .map_or(0, u32::from_le_bytes);
                        conn.add_credits(key, n);
                    }
                    FrameKind::Hello => {}
                }
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    let failed = {
        let mut registry = inbound.write().unwrap_or_else(|e| e.into_inner());
        let before = registry.len();
        registry.retain(|_, channel| channel.connection != conn.serial);
        before - registry.len()
    };
    match broke {
        Some(e) if !conn.is_closed() || failed > 0 => {
            tracing::warn!(peer = %conn.peer, error = %e, channels = failed, "data connection broke; its channels fail")
        }
        None if failed > 0 => {
            tracing::warn!(peer = %conn.peer, channels = failed, "data connection closed by the peer; its channels fail")
        }
        _ => {}
    }
    conn.close();
}

/// Delivers one DATA frame; one that cannot be delivered fails its channel.
fn deliver(conn: &Connection, inbound: &Registry, key: ChannelKey, payload: &[u8]) {
    let outcome = {
        let registry = inbound.read().unwrap_or_else(|e| e.into_inner());
        match registry.get(&key) {
            Some(channel) => (channel.deliver)(payload),
            None => {
                tracing::debug!(peer = %conn.peer, attempt = key.0, channel = key.1, "dropping a frame of a forgotten attempt");
                return;
            }
        }
    };
    if let Err(e) = outcome {
        tracing::error!(peer = %conn.peer, attempt = key.0, channel = key.1, error = %e,
            "a data frame could not be delivered; its channel fails");
        inbound
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }
}
