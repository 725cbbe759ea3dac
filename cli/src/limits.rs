//! How many connections `pgvault serve` holds open, in all and per client address, and which
//! one gives way when the server is full (issue 26).
//!
//! Each open connection holds a file descriptor. Without a bound, one client that opens
//! connections and sends nothing held every descriptor the process may have, and logins then
//! hung (they need descriptors for their database connections). The acceptor here admits a
//! connection, before the TLS handshake, only while its address has fewer than its share; when
//! the whole server is full, the connection that has been open longest without a request being
//! handled on it right now (an idle keep-alive, a silent or trickling client) is closed to make
//! room, so a client that holds connections without completing requests cannot keep others out.
//! The timeouts for the handshake, the first request, a request's body and an idle keep-alive
//! connection are set where the server is built (`serve::run`).

use axum_server::accept::Accept;
use std::collections::HashMap;
use std::future::{ready, Ready};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// File descriptors kept back from connections: logins, the listener, the certificate files,
/// the standard streams.
const RESERVED_DESCRIPTORS: u64 = 64;
/// What one database connection costs in file descriptors: its socket (the asynchronous
/// driver runs every connection on the server's own runtime; the synchronous one it replaced
/// started a runtime per connection and took 5).
pub const DESCRIPTORS_PER_DATABASE_CONNECTION: u64 = 1;

fn open_file_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20)
}

/// The default bound on open connections: half of what the open-file limit leaves after
/// `RESERVED_DESCRIPTORS` (the other half is for database connections), at least 16.
pub fn default_max_connections() -> usize {
    let n = open_file_limit().saturating_sub(RESERVED_DESCRIPTORS) / 2;
    usize::try_from(n.clamp(16, 1 << 16)).unwrap_or(16)
}

/// The default bound per address: an eighth of the whole, at least 8.
pub fn default_max_per_address(max_connections: usize) -> usize {
    (max_connections / 8).max(8).min(max_connections)
}

/// How many database connections the descriptors left after `max_connections` allow.
pub fn database_connection_budget(max_connections: usize) -> usize {
    let left = open_file_limit()
        .saturating_sub(RESERVED_DESCRIPTORS)
        .saturating_sub(max_connections as u64);
    usize::try_from(left / DESCRIPTORS_PER_DATABASE_CONNECTION).unwrap_or(usize::MAX)
}

/// The counts, shared by every connection.
pub struct Limits {
    max_total: usize,
    max_per_address: usize,
    /// Addresses the per-address bound does not apply to (trusted proxies: every client behind
    /// one arrives from its address).
    exempt: Vec<IpAddr>,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    by_address: HashMap<IpAddr, usize>,
    conns: HashMap<SocketAddr, Entry>,
}

struct Entry {
    opened: Instant,
    /// Requests being handled on it now (their body read, their answer not yet made).
    busy: usize,
    kill: Arc<Kill>,
    /// Counted in `by_address` (not exempt).
    counted: bool,
}

/// How a connection is closed from outside: its next read or write fails, and the task waiting
/// on it is woken for that.
#[derive(Default)]
struct Kill {
    killed: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Kill {
    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        if let Some(w) = lock(&self.waker).take() {
            w.wake();
        }
    }
    /// Err once killed; otherwise remembers who to wake.
    fn check(&self, cx: &Context<'_>) -> io::Result<()> {
        if self.killed.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room for another connection",
            ));
        }
        *lock(&self.waker) = Some(cx.waker().clone());
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Limits {
    pub fn new(max_total: usize, max_per_address: usize, exempt: Vec<IpAddr>) -> Arc<Limits> {
        Arc::new(Limits {
            max_total: max_total.max(1),
            max_per_address: max_per_address.max(1),
            exempt,
            open: Mutex::new(Open::default()),
        })
    }

    /// A place for the connection from `peer`, or None when its address has its share, or the
    /// server is full of connections that are all handling a request. When full, the oldest
    /// connection handling none is closed for it.
    fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<Slot> {
        let mut open = lock(&self.open);
        let counted = !self.exempt.contains(&peer.ip());
        if counted && open.by_address.get(&peer.ip()).copied().unwrap_or(0) >= self.max_per_address {
            return None;
        }
        if open.conns.len() >= self.max_total {
            let victim = open
                .conns
                .iter()
                .filter(|(_, e)| e.busy == 0)
                .min_by_key(|(_, e)| e.opened)
                .map(|(a, _)| *a)?;
            let e = Open::remove(&mut open, victim)?;
            e.kill.kill();
        }
        if counted {
            *open.by_address.entry(peer.ip()).or_default() += 1;
        }
        let kill = Arc::new(Kill::default());
        open.conns.insert(
            peer,
            Entry {
                opened: Instant::now(),
                busy: 0,
                kill: kill.clone(),
                counted,
            },
        );
        Some(Slot {
            limits: self.clone(),
            peer,
            kill,
        })
    }

    /// Marks the connection from `peer` as handling a request until the guard is dropped: it
    /// is not closed to make room meanwhile.
    pub fn busy(self: &Arc<Self>, peer: SocketAddr) -> Busy {
        if let Some(e) = lock(&self.open).conns.get_mut(&peer) {
            e.busy += 1;
        }
        Busy {
            limits: self.clone(),
            peer,
        }
    }

    #[cfg(test)]
    fn total(&self) -> usize {
        lock(&self.open).conns.len()
    }
}

impl Open {
    fn remove(&mut self, peer: SocketAddr) -> Option<Entry> {
        let e = self.conns.remove(&peer)?;
        if e.counted {
            if let Some(n) = self.by_address.get_mut(&peer.ip()) {
                *n -= 1;
                if *n == 0 {
                    self.by_address.remove(&peer.ip());
                }
            }
        }
        Some(e)
    }
}

/// A request being handled (see `Limits::busy`).
pub struct Busy {
    limits: Arc<Limits>,
    peer: SocketAddr,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(e) = lock(&self.limits.open).conns.get_mut(&self.peer) {
            e.busy = e.busy.saturating_sub(1);
        }
    }
}

/// One admitted connection, counted until it is dropped (or closed to make room).
pub struct Slot {
    limits: Arc<Limits>,
    peer: SocketAddr,
    kill: Arc<Kill>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = lock(&self.limits.open);
        // Still this connection's entry (not closed to make room, not a later one's).
        if open
            .conns
            .get(&self.peer)
            .is_some_and(|e| Arc::ptr_eq(&e.kill, &self.kill))
        {
            Open::remove(&mut open, self.peer);
        }
    }
}

/// The acceptor: admits the TCP connection or closes it (an error ends it in axum-server's
/// accept task, which drops the stream).
#[derive(Clone)]
pub struct Limited(pub Arc<Limits>);

impl<S> Accept<TcpStream, S> for Limited {
    type Stream = Counted;
    type Service = S;
    type Future = Ready<io::Result<(Counted, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let slot = stream.peer_addr().ok().and_then(|peer| self.0.admit(peer));
        ready(match slot {
            Some(slot) => Ok((Counted { stream, slot }, service)),
            None => Err(io::Error::other("connection limit reached")),
        })
    }
}

/// A connection and its place in the counts.
pub struct Counted {
    stream: TcpStream,
    slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.slot.kill.check(cx)?;
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.slot.kill.check(cx)?;
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.slot.kill.check(cx)?;
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: &str, port: u16) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), port)
    }

    #[test]
    fn one_address_gets_its_share_and_others_still_get_in() {
        let l = Limits::new(10, 3, vec![]);
        let mine: Vec<Slot> = (0..3).filter_map(|p| l.admit(peer("127.0.0.2", 1000 + p))).collect();
        assert_eq!(mine.len(), 3);
        assert!(
            l.admit(peer("127.0.0.2", 2000)).is_none(),
            "a fourth from the same address"
        );
        assert!(
            l.admit(peer("127.0.0.1", 2000)).is_some(),
            "another address still gets in"
        );
        drop(mine);
        assert_eq!(l.total(), 0, "closing releases every place");
        assert!(l.admit(peer("127.0.0.2", 3000)).is_some());
    }

    #[test]
    fn when_full_the_oldest_idle_connection_makes_room() {
        let l = Limits::new(3, 3, vec![]);
        let a = l.admit(peer("127.0.0.2", 1)).unwrap();
        let b = l.admit(peer("127.0.0.3", 1)).unwrap();
        let c = l.admit(peer("127.0.0.4", 1)).unwrap();
        let _working = l.busy(peer("127.0.0.2", 1));
        let d = l.admit(peer("127.0.0.5", 1)).expect("a new client gets in");
        assert!(
            !a.kill.killed.load(Ordering::SeqCst),
            "a connection handling a request stays"
        );
        assert!(b.kill.killed.load(Ordering::SeqCst), "the oldest idle one is closed");
        assert!(!c.kill.killed.load(Ordering::SeqCst));
        assert_eq!(l.total(), 3);
        drop(b); // its own drop after the kill counts nothing twice
        assert_eq!(l.total(), 3);
        let _all_busy = [l.busy(peer("127.0.0.4", 1)), l.busy(peer("127.0.0.5", 1))];
        assert!(l.admit(peer("127.0.0.6", 1)).is_none(), "nothing to close: refused");
        drop((c, d));
    }

    #[test]
    fn trusted_proxies_have_no_share() {
        let l = Limits::new(4, 1, vec!["10.0.0.1".parse().unwrap()]);
        let proxy: Vec<Slot> = (0..4).filter_map(|p| l.admit(peer("10.0.0.1", p))).collect();
        assert_eq!(proxy.len(), 4, "a trusted proxy is not held to the per-address share");
    }

    #[test]
    fn defaults_leave_room() {
        let max = default_max_connections();
        assert!(max >= 16);
        assert!(default_max_per_address(max) <= max);
        assert_eq!(default_max_per_address(16), 8);
        assert_eq!(default_max_per_address(1000), 125);
    }
}
