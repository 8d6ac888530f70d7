//! Rate limits: token buckets that refill continuously at the configured rate and hold at most one
//! second's worth, so `n` per second allows a burst of `n`, then one every `1/n` seconds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// A bucket starts full; the rate is given at each use, so a config change applies at once.
#[derive(Clone, Debug, Default)]
pub struct Bucket {
    tokens: f64,
    /// `None`: never used, full.
    last: Option<Instant>,
}

impl Bucket {
    fn refill(&mut self, rate: f64, now: Instant) {
        self.refill_to(rate, rate.max(1.0), now);
    }

    fn refill_to(&mut self, rate: f64, cap: f64, now: Instant) {
        self.tokens = match self.last {
            None => cap,
            Some(last) => {
                (self.tokens + now.saturating_duration_since(last).as_secs_f64() * rate).min(cap)
            }
        };
        self.last = Some(now);
    }

    /// Whether one more event fits now; does not take it.
    pub fn ready(&mut self, rate: f64, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens >= 1.0
    }

    /// Takes one event if it fits.
    pub fn take(&mut self, rate: f64, now: Instant) -> bool {
        if self.ready(rate, now) {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether one more event fits in a bucket that holds `cap` (a burst larger than a
    /// second's worth); does not take it.
    pub fn ready_burst(&mut self, rate: f64, cap: f64, now: Instant) -> bool {
        self.refill_to(rate, cap, now);
        self.tokens >= 1.0
    }

    /// Takes one event from a bucket that holds `cap`, if it fits.
    pub fn take_burst(&mut self, rate: f64, cap: f64, now: Instant) -> bool {
        if self.ready_burst(rate, cap, now) {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes one event from each of `a` and `b` only if both have room.
    pub fn take_both(a: (&mut Bucket, f64), b: (&mut Bucket, f64), now: Instant) -> bool {
        if a.0.ready(a.1, now) && b.0.ready(b.1, now) {
            a.0.tokens -= 1.0;
            b.0.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Open connections per IP address.
#[derive(Default)]
pub struct PerIp {
    open: Mutex<HashMap<IpAddr, u32>>,
}

impl PerIp {
    /// Counts a new connection from `ip`, unless `max` (0 = unlimited) are already open.
    pub fn admit(&self, ip: IpAddr, max: u32) -> bool {
        let mut open = crate::state::lock(&self.open);
        let n = open.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            if *n == 0 {
                open.remove(&ip);
            }
            return false;
        }
        *n += 1;
        true
    }

    pub fn release(&self, ip: IpAddr) {
        let mut open = crate::state::lock(&self.open);
        if let Some(n) = open.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

/// Failed token logins from one address may come in a burst this big before the rate applies.
pub const AUTH_FAILURE_BURST: f64 = 10.0;
/// Addresses whose failures are remembered at most; past it, addresses whose bucket has refilled
/// are forgotten (a full bucket is the same as no entry).
const AUTH_FAILURE_ADDRESSES: usize = 65_536;

/// Failed token logins per source address: a token bucket each, kept only while not full.
#[derive(Default)]
pub struct AuthFailures {
    by_ip: Mutex<HashMap<IpAddr, Bucket>>,
}

impl AuthFailures {
    /// Whether `ip` may try a token now (its failures have not used up its bucket).
    pub fn allowed(&self, ip: IpAddr, rate: f64, now: Instant) -> bool {
        crate::state::lock(&self.by_ip)
            .get_mut(&ip)
            .is_none_or(|b| b.ready_burst(rate, AUTH_FAILURE_BURST, now))
    }

    /// Counts a failed token from `ip`.
    pub fn failed(&self, ip: IpAddr, rate: f64, now: Instant) {
        let mut by_ip = crate::state::lock(&self.by_ip);
        if by_ip.len() >= AUTH_FAILURE_ADDRESSES && !by_ip.contains_key(&ip) {
            by_ip.retain(|_, b| {
                b.ready_burst(rate, AUTH_FAILURE_BURST, now) && b.tokens < AUTH_FAILURE_BURST - 0.5
            });
            if by_ip.len() >= AUTH_FAILURE_ADDRESSES {
                // Every remembered address is still failing: the newest is not tracked (each
                // attempt is still throttled by the app's own bucket).
                return;
            }
        }
        by_ip
            .entry(ip)
            .or_default()
            .take_burst(rate, AUTH_FAILURE_BURST, now);
    }
}

/// Connections that have not logged into a room yet, oldest first, each with the flag that
/// closes it. Over the budget, the oldest is shed to make room for the newest: a flood of
/// connections that never log in cannot keep users who do from getting in.
#[derive(Default)]
pub struct Pending {
    conns: Mutex<std::collections::BTreeMap<u64, std::sync::Arc<crate::state::Flag>>>,
}

impl Pending {
    /// Registers connection `seq` (numbered in accept order); returns how many were shed.
    pub fn add(&self, seq: u64, flag: std::sync::Arc<crate::state::Flag>, budget: usize) -> usize {
        let mut conns = crate::state::lock(&self.conns);
        conns.insert(seq, flag);
        let mut shed = 0;
        while budget > 0 && conns.len() > budget {
            if let Some((_, oldest)) = conns.pop_first() {
                oldest.raise();
                shed += 1;
            }
        }
        shed
    }

    /// Sheds the oldest pending connection (to free a descriptor); false if there is none.
    pub fn shed_oldest(&self) -> bool {
        match crate::state::lock(&self.conns).pop_first() {
            Some((_, oldest)) => {
                oldest.raise();
                true
            }
            None => false,
        }
    }

    /// Connection `seq` logged in or ended.
    pub fn remove(&self, seq: u64) {
        crate::state::lock(&self.conns).remove(&seq);
    }

    pub fn len(&self) -> usize {
        crate::state::lock(&self.conns).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_paces() {
        let t0 = Instant::now();
        let mut b = Bucket::default();
        assert_eq!((0..20).filter(|_| b.take(10.0, t0)).count(), 10);
        assert!(!b.take(10.0, t0 + Duration::from_millis(50)));
        assert!(b.take(10.0, t0 + Duration::from_millis(101)));
        // A long pause refills one second's worth only.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| b.take(10.0, later)).count(), 10);
    }

    #[test]
    fn both_or_neither() {
        let t0 = Instant::now();
        let (mut a, mut b) = (Bucket::default(), Bucket::default());
        assert!(Bucket::take_both((&mut a, 2.0), (&mut b, 1.0), t0));
        assert!(!Bucket::take_both((&mut a, 2.0), (&mut b, 1.0), t0));
        // `a` kept its second token.
        assert!(a.take(2.0, t0));
    }

    #[test]
    fn auth_failures_burst_then_pace_per_address() {
        let t0 = Instant::now();
        let f = AuthFailures::default();
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        for _ in 0..10 {
            assert!(f.allowed(a, 1.0, t0));
            f.failed(a, 1.0, t0);
        }
        assert!(!f.allowed(a, 1.0, t0), "the burst is used up");
        assert!(f.allowed(b, 1.0, t0), "another address is not affected");
        assert!(f.allowed(a, 1.0, t0 + Duration::from_millis(1001)));
    }

    #[test]
    fn pending_sheds_the_oldest_over_budget() {
        use crate::state::Flag;
        use std::sync::Arc;
        let p = Pending::default();
        let flags: Vec<Arc<Flag>> = (0..4).map(|_| Arc::new(Flag::default())).collect();
        for (i, f) in flags.iter().enumerate() {
            p.add(i as u64, f.clone(), 3);
        }
        assert!(flags[0].is_raised() && !flags[1].is_raised() && !flags[3].is_raised());
        p.remove(1);
        assert!(p.shed_oldest());
        assert!(flags[2].is_raised() && !flags[3].is_raised());
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn per_ip_counts() {
        let ip: IpAddr = [10, 0, 0, 1].into();
        let p = PerIp::default();
        assert!(p.admit(ip, 2) && p.admit(ip, 2) && !p.admit(ip, 2));
        p.release(ip);
        assert!(p.admit(ip, 2));
        assert!(p.admit([10, 0, 0, 2].into(), 2));
    }
}
