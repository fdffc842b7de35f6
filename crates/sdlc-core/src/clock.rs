//! The source of "now". The engine and services take a `Clock` so tests can control time.

use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// Tells the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stays where tests put it.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(now: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: Mutex::new(now),
        }
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *self.now.lock().expect("clock mutex is never poisoned") = now;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.now.lock().expect("clock mutex is never poisoned");
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().expect("clock mutex is never poisoned")
    }
}

/// Time since boot, counting time the machine was suspended (`CLOCK_BOOTTIME`): what a lease
/// deadline is measured on, since neither a wall clock stepped back nor a suspend that the
/// monotonic clock does not count may make a lapsed lease look current.
pub fn boot_clock() -> std::time::Duration {
    let mut now = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the value we own; CLOCK_BOOTTIME exists
    // on every Linux this runs on (2.6.39 on).
    let status = unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_BOOTTIME, &mut now) };
    if status != 0 {
        // Unreachable on Linux; a deadline that is always past refuses starts rather than
        // allowing one it cannot prove.
        return std::time::Duration::MAX;
    }
    std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}
