//! Time as the server's handlers see it: read once where an event enters (a frame, a timer)
//! and passed in, never read inside, so the handlers, the rooms and the limits run on virtual
//! time in tests.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One moment, on both clocks.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// Monotonic time: rates and deadlines.
    pub at: Instant,
    /// Milliseconds since the Unix epoch: message times and token expiry.
    pub unix_ms: u64,
}

impl Now {
    /// The system's clocks now.
    pub fn system() -> Self {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Now {
            at: Instant::now(),
            unix_ms,
        }
    }

    /// Seconds since the Unix epoch.
    pub fn unix_s(&self) -> i64 {
        (self.unix_ms / 1000) as i64
    }

    /// `d` later on both clocks.
    pub fn after(self, d: Duration) -> Now {
        Now {
            at: self.at + d,
            unix_ms: self.unix_ms + d.as_millis() as u64,
        }
    }
}
