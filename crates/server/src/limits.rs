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
        let cap = rate.max(1.0);
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
    fn per_ip_counts() {
        let ip: IpAddr = [10, 0, 0, 1].into();
        let p = PerIp::default();
        assert!(p.admit(ip, 2) && p.admit(ip, 2) && !p.admit(ip, 2));
        p.release(ip);
        assert!(p.admit(ip, 2));
        assert!(p.admit([10, 0, 0, 2].into(), 2));
    }
}
