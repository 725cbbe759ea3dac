//! How many connections `pgvault serve` holds open, in all and per client address (issue 26).
//!
//! Each open connection holds a file descriptor. Without a bound, one client that opens
//! connections and sends nothing held every descriptor the process may have, and logins then
//! hung (they need descriptors for their database connections). The acceptor here admits a
//! connection only while both counts are under their limits, before the TLS handshake, and
//! closes it at once otherwise; the count drops when the connection closes. The timeouts for
//! the handshake, the first request and an idle keep-alive connection are set where the
//! server is built (`serve::run`).

use axum_server::accept::Accept;
use std::collections::HashMap;
use std::future::{ready, Ready};
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// File descriptors kept back from connections: database connections, logins, the listener,
/// the certificate files, the standard streams.
const RESERVED_DESCRIPTORS: u64 = 64;

/// The default bound on open connections: half of what the open-file limit leaves after
/// `RESERVED_DESCRIPTORS` (the other half is for the database connections of sessions and
/// tokens), at least 16.
pub fn default_max_connections() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20);
    let n = soft.saturating_sub(RESERVED_DESCRIPTORS) / 2;
    usize::try_from(n.clamp(16, 1 << 16)).unwrap_or(16)
}

/// The default bound per address: a quarter of the whole, at least 8, so that a single
/// address never holds more than a quarter of what the server admits.
pub fn default_max_per_address(max_connections: usize) -> usize {
    (max_connections / 4).max(8).min(max_connections)
}

/// The counts, shared by every connection.
pub struct Limits {
    max_total: usize,
    max_per_address: usize,
    /// Addresses the per-address bound does not apply to (trusted proxies: every client behind
    /// one arrives from its address).
    exempt: Vec<IpAddr>,
    open: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

impl Limits {
    pub fn new(max_total: usize, max_per_address: usize, exempt: Vec<IpAddr>) -> Arc<Limits> {
        Arc::new(Limits {
            max_total: max_total.max(1),
            max_per_address: max_per_address.max(1),
            exempt,
            open: Mutex::new(Counts::default()),
        })
    }

    /// A place for one more connection from `ip`, or None when a limit is reached.
    pub fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.max_total {
            return None;
        }
        let ip = ip.filter(|ip| !self.exempt.contains(ip));
        if let Some(ip) = ip {
            let n = open.by_address.entry(ip).or_default();
            if *n >= self.max_per_address {
                return None;
            }
            *n += 1;
        }
        open.total += 1;
        Some(Slot {
            limits: self.clone(),
            ip,
        })
    }

    #[cfg(test)]
    fn total(&self) -> usize {
        self.open.lock().unwrap().total
    }
}

/// One admitted connection, counted until it is dropped.
pub struct Slot {
    limits: Arc<Limits>,
    ip: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total -= 1;
        if let Some(ip) = self.ip {
            if let Some(n) = open.by_address.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    open.by_address.remove(&ip);
                }
            }
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
        let ip = stream.peer_addr().ok().map(|a| a.ip());
        ready(match self.0.admit(ip) {
            Some(slot) => Ok((Counted { stream, _slot: slot }, service)),
            None => Err(io::Error::other("connection limit reached")),
        })
    }
}

/// A connection and its place in the counts.
pub struct Counted {
    stream: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
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
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn one_address_gets_its_share_and_others_still_get_in() {
        let l = Limits::new(10, 3, vec![]);
        let mine: Vec<Slot> = (0..3).filter_map(|_| l.admit(ip("127.0.0.2"))).collect();
        assert_eq!(mine.len(), 3);
        assert!(l.admit(ip("127.0.0.2")).is_none(), "a fourth from the same address");
        assert!(l.admit(ip("127.0.0.1")).is_some(), "another address still gets in");
        drop(mine);
        assert_eq!(l.total(), 0, "closing releases every place");
        assert!(l.admit(ip("127.0.0.2")).is_some());
    }

    #[test]
    fn the_total_is_a_hard_limit_and_trusted_proxies_have_no_share() {
        let l = Limits::new(4, 1, vec!["10.0.0.1".parse().unwrap()]);
        let proxy: Vec<Slot> = (0..4).filter_map(|_| l.admit(ip("10.0.0.1"))).collect();
        assert_eq!(proxy.len(), 4, "a trusted proxy is not held to the per-address share");
        assert!(l.admit(ip("127.0.0.1")).is_none(), "nothing past the total");
    }

    #[test]
    fn defaults_leave_room() {
        let max = default_max_connections();
        assert!(max >= 16);
        assert!(default_max_per_address(max) <= max);
        assert_eq!(default_max_per_address(16), 8);
        assert_eq!(default_max_per_address(1000), 250);
    }
}
