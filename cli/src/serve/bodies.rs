//! How much of request bodies the server holds at once. A body is read whole before its
//! request is handled (`auth::guard`), so a client that sends bodies slowly holds memory for
//! up to `--first-request-timeout` each: bodies over `SMALL_BODY` (or of unknown length, counted
//! as `MAX_BODY`) count against a budget for the whole server and a smaller one per address, and
//! a body that does not fit gets 503 at once. Small bodies (a login, most writes) are not
//! counted: each connection has one request at a time (HTTP/1.1 only), and connections are
//! capped in all and per address (`limits`).

use crate::serve::state::lock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Bodies up to this size are not counted.
pub(crate) const SMALL_BODY: u64 = 4 << 10;
/// Bytes of counted bodies held at once by the whole server...
pub(crate) const ALL_BODIES: u64 = 64 << 20;
/// ... and from one address (a trusted proxy, which speaks for many clients, has no share).
pub(crate) const BODIES_PER_ADDRESS: u64 = 8 << 20;

pub(crate) struct Bodies {
    total: u64,
    per_address: u64,
    trusted: Vec<IpAddr>,
    /// Bytes held in all, and by address.
    held: Mutex<(u64, HashMap<IpAddr, u64>)>,
}

/// Bytes of a body being read; given back when dropped.
pub(crate) struct Held {
    bodies: Arc<Bodies>,
    address: Option<IpAddr>,
    bytes: u64,
}

impl Bodies {
    pub(crate) fn new(total: u64, per_address: u64, trusted: Vec<IpAddr>) -> Arc<Bodies> {
        Arc::new(Bodies {
            total,
            per_address,
            trusted,
            held: Mutex::new((0, HashMap::new())),
        })
    }

    /// Room for a body of `bytes` from `address`: None when it would pass either budget.
    pub(crate) fn take(self: &Arc<Bodies>, address: IpAddr, bytes: u64) -> Option<Held> {
        let mut held = lock(&self.held);
        if held.0 + bytes > self.total {
            return None;
        }
        let address = (!self.trusted.contains(&address)).then_some(address);
        if let Some(a) = address {
            let mine = held.1.entry(a).or_default();
            if *mine + bytes > self.per_address {
                if *mine == 0 {
                    held.1.remove(&a);
                }
                return None;
            }
            *mine += bytes;
        }
        held.0 += bytes;
        Some(Held {
            bodies: self.clone(),
            address,
            bytes,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = lock(&self.bodies.held);
        held.0 -= self.bytes;
        if let Some(a) = self.address {
            if let Some(mine) = held.1.get_mut(&a) {
                *mine -= self.bytes;
                if *mine == 0 {
                    held.1.remove(&a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_count_against_the_server_and_their_address_until_dropped() {
        let proxy: IpAddr = "10.0.0.9".parse().unwrap();
        let b = Bodies::new(10, 4, vec![proxy]);
        let (a1, a2): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let x = b.take(a1, 3).expect("room");
        assert!(b.take(a1, 2).is_none(), "past the address's share");
        let y = b.take(a1, 1).expect("up to the share");
        let z = b.take(a2, 4).expect("another address has its own share");
        assert!(b.take(a2, 1).is_none());
        assert!(b.take(proxy, 3).is_none(), "past the whole budget (8 + 3 > 10)");
        let p = b.take(proxy, 2).expect("a trusted proxy has no share of its own");
        drop((x, y));
        assert!(b.take(a1, 4).is_some(), "given back when dropped");
        drop((z, p));
        assert_eq!(*lock(&b.held), (0, HashMap::new()), "nothing left held");
    }
}
