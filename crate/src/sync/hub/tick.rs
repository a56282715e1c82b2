//! The hub machine's timers: what a `Tick` checks (the time allowed to
//! authenticate or to answer a purge order, the dead-connection timeout,
//! heartbeats, progress `Changes`, acknowledgement records), and when the
//! next `Tick` is due, so a shell wakes a session when one of them may fire
//! instead of every second (docs/benchmarks.md "Fan-out": one wake-up per
//! session per second was the hub's idle CPU at 5,000 edges).

use super::{HubAction, HubSession, Phase};
use crate::sync::compact::ACK_RECORD_MS;
use crate::sync::frame::Frame;

impl HubSession {
    pub(super) fn on_tick(&mut self, now: i64, out: &mut Vec<HubAction>) {
        if self.authenticating() && now - self.opened > self.hello_timeout_ms {
            self.refuse(
                out,
                now,
                "timeout",
                "no Hello within the time allowed to authenticate",
            );
        } else if self.phase == Phase::Purging && now > self.purge_deadline {
            self.refuse(
                out,
                now,
                "timeout",
                "no PurgeReceipt within the time allowed",
            );
        } else if now - self.last_recv > self.timeout_ms {
            self.close(out, "timeout", "nothing received from the edge");
        } else if now - self.last_sent >= self.heartbeat_ms && self.phase == Phase::Open {
            self.nonce += 1;
            let nonce = self.nonce;
            self.send(out, now, Frame::Ping { nonce });
        }
        self.maybe_send_progress(now, out);
        self.maybe_record_ack(now, out);
    }

    /// When (ms, the clock of `handle`) the next `Tick` may have something
    /// to do, as of the events handled so far: the earliest of the session's
    /// deadlines. A shell feeds `Tick` at that time (or later), and asks
    /// again after every event; `i64::MAX` once the session is closed.
    pub fn next_tick(&self) -> i64 {
        if self.phase == Phase::Closed {
            return i64::MAX;
        }
        let mut at = self.last_recv.saturating_add(self.timeout_ms + 1);
        if self.authenticating() {
            at = at.min(self.opened.saturating_add(self.hello_timeout_ms + 1));
        }
        if self.phase == Phase::Purging {
            at = at.min(self.purge_deadline.saturating_add(1));
        }
        if self.phase == Phase::Open {
            at = at.min(self.last_sent.saturating_add(self.heartbeat_ms));
            if self.live && !self.reading && self.unacked.is_empty() && self.cursor > self.seen_upto
            {
                at = at.min(self.last_progress.saturating_add(ACK_RECORD_MS));
            }
            let (upto, recorded) = self.ack_recorded;
            let every = if self.seen_upto > upto {
                ACK_RECORD_MS
            } else {
                60 * ACK_RECORD_MS
            };
            at = at.min(recorded.saturating_add(every));
        }
        at
    }
}
