//! The login limiter: failed logins (and those being checked) per address and user, per
//! address and per user, within a window; a login over a limit gets 429 before anything is
//! connected.

use crate::serve::state::lock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What login attempts are counted by: an address and a user, an address over all users, or
/// a user over all addresses.
type LoginKey = (Option<IpAddr>, Option<String>);

/// One key's logins: when the recent ones failed, and how many are being checked now.
#[derive(Default)]
struct Attempts {
    failed: Vec<Instant>,
    in_flight: usize,
}

/// How long a successful login keeps its address known for its user (see `reserve`).
const KNOWN_FOR: Duration = Duration::from_secs(24 * 3600);

/// The counts, and the limit per address and user (four times that per address and per user).
pub(crate) struct LoginLimiter {
    attempts: Mutex<HashMap<LoginKey, Attempts>>,
    /// Addresses each user logged in from lately: the user's limit over all addresses does not
    /// lock them out there.
    known: Mutex<HashMap<(IpAddr, String), Instant>>,
    max_failures: usize,
    window: Duration,
}

/// A login attempt counted against its limits until it is over (also when the request is
/// dropped half way); `failed` records the outcome.
pub(crate) struct Reserved<'a> {
    limiter: &'a LoginLimiter,
    keys: [LoginKey; 3],
    pub(crate) failed: bool,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        let mut all = lock(&self.limiter.attempts);
        for key in &self.keys {
            let a = all.entry(key.clone()).or_default();
            a.in_flight = a.in_flight.saturating_sub(1);
            if self.failed {
                a.failed.push(Instant::now());
            } else if a.in_flight == 0 && a.failed.is_empty() {
                all.remove(key);
            }
        }
    }
}

impl LoginLimiter {
    pub(crate) fn new(max_failures: usize, window: Duration) -> LoginLimiter {
        LoginLimiter {
            attempts: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
            max_failures: max_failures.max(1),
            window,
        }
    }

    /// Checks the limits and counts this attempt in them, in one step: failures within the
    /// window plus attempts still being checked, per address and user (`max_failures`), per
    /// address over all users and per user over all addresses (four times that each). A burst
    /// of parallel logins cannot all pass the check before the first of them fails; someone
    /// guessing at one user's password from an address does not lock the other users there
    /// out; guesses spread over many addresses still meet the user's limit, except at an address
    /// the user logged in from within a day (so whoever guesses from elsewhere cannot lock the
    /// user out of the places they use). None: over a limit.
    pub(crate) fn reserve(&self, ip: IpAddr, user: &str) -> Option<Reserved<'_>> {
        let keys = [
            (Some(ip), Some(user.to_string())),
            (Some(ip), None),
            (None, Some(user.to_string())),
        ];
        let many = self.max_failures.saturating_mul(4);
        let known = lock(&self.known)
            .get(&(ip, user.to_string()))
            .is_some_and(|t| t.elapsed() < KNOWN_FOR);
        let limits = [self.max_failures, many, if known { usize::MAX } else { many }];
        let mut all = lock(&self.attempts);
        for (key, limit) in keys.iter().zip(limits) {
            let a = all.entry(key.clone()).or_default();
            a.failed.retain(|t| t.elapsed() < self.window);
            if a.failed.len() + a.in_flight >= limit {
                return None;
            }
        }
        for key in &keys {
            all.entry(key.clone()).or_default().in_flight += 1;
        }
        Some(Reserved {
            limiter: self,
            keys,
            failed: false,
        })
    }

    /// A successful login: its address is known for its user for a day.
    pub(crate) fn remember(&self, ip: IpAddr, user: &str) {
        lock(&self.known).insert((ip, user.to_string()), Instant::now());
    }

    /// Forgets failures older than the window, and addresses not used for a day.
    pub(crate) fn sweep(&self) {
        lock(&self.known).retain(|_, t| t.elapsed() < KNOWN_FOR);
        lock(&self.attempts).retain(|_, a| {
            a.failed.retain(|t| t.elapsed() < self.window);
            !a.failed.is_empty() || a.in_flight > 0
        });
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        lock(&self.attempts).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    fn fail(l: &LoginLimiter, ip: IpAddr, user: &str) -> bool {
        match l.reserve(ip, user) {
            Some(mut r) => {
                r.failed = true;
                true
            }
            None => false,
        }
    }

    #[test]
    fn failures_per_address_and_user_then_429_for_that_user_only() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(fail(&l, ip(1), "alice"));
        }
        assert!(
            l.reserve(ip(1), "alice").is_none(),
            "the fourth try for alice from there"
        );
        assert!(l.reserve(ip(1), "bob").is_some(), "bob from the same address");
        assert!(l.reserve(ip(2), "alice").is_some(), "alice from elsewhere");
    }

    #[test]
    fn attempts_being_checked_count_so_a_burst_cannot_pass() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        let held: Vec<_> = (0..3)
            .map(|_| l.reserve(ip(1), "alice").expect("under the limit"))
            .collect();
        assert!(l.reserve(ip(1), "alice").is_none(), "three in flight fill the limit");
        drop(held);
        assert!(l.reserve(ip(1), "alice").is_some(), "ended without failing: free again");
    }

    #[test]
    fn a_success_does_not_wipe_the_failures() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        assert!(fail(&l, ip(1), "alice") && fail(&l, ip(1), "alice"));
        drop(l.reserve(ip(1), "alice"));
        assert!(fail(&l, ip(1), "alice"));
        assert!(l.reserve(ip(1), "alice").is_none());
    }

    #[test]
    fn one_address_and_one_user_have_limits_over_all_of_the_others() {
        let l = LoginLimiter::new(2, Duration::from_secs(60));
        // Per address over all users: 4 x 2.
        for n in 0..8 {
            assert!(fail(&l, ip(1), &format!("user{n}")));
        }
        assert!(l.reserve(ip(1), "someone_else").is_none());
        // Per user over all addresses: 4 x 2.
        for n in 10..18 {
            assert!(fail(&l, ip(n), "carol"));
        }
        assert!(l.reserve(ip(99), "carol").is_none());
        assert!(l.reserve(ip(99), "dave").is_some());
    }

    #[test]
    fn a_users_known_address_is_not_locked_out_by_guesses_from_elsewhere() {
        let l = LoginLimiter::new(2, Duration::from_secs(60));
        l.remember(ip(1), "erin");
        for n in 10..18 {
            assert!(fail(&l, ip(n), "erin"));
        }
        assert!(
            l.reserve(ip(99), "erin").is_none(),
            "a new address meets the user's limit"
        );
        assert!(
            l.reserve(ip(1), "erin").is_some(),
            "the address erin logged in from does not"
        );
    }

    #[test]
    fn failures_expire_with_the_window_and_are_swept() {
        let l = LoginLimiter::new(1, Duration::from_millis(50));
        assert!(fail(&l, ip(1), "alice"));
        assert!(l.reserve(ip(1), "alice").is_none());
        std::thread::sleep(Duration::from_millis(80));
        assert!(l.reserve(ip(1), "alice").is_some());
        l.sweep();
        assert_eq!(l.keys(), 0, "nothing left once the window passed");
    }
}
