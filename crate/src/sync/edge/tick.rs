//! The edge machine's timers: the dead-connection timeout, heartbeats and
//! delayed acknowledgements, and when the next `Tick` is due
//! ([`EdgeSession::next_tick`]), so a shell wakes the session when one of
//! them may fire instead of every second.

use super::{EdgeAction, EdgeSession, Phase};
use crate::sync::frame::Frame;

/// In the live phase, a batch is acknowledged at most this long after it
/// was applied (docs/protocol.md §4 "Edge applies")...
pub const ACK_DELAY_MS: i64 = 2_000;
/// ...or as soon as this many batches wait for their acknowledgement: one
/// less than the hub's window of 4 (`sync::hub::WINDOW`), so the hub may
/// still send one more batch while the acknowledgement travels and never
/// waits for a delayed one. (2 and 1 s until 2026-12-07: one in three with
/// 2 s cut the hub's CPU per delivered document by 13-19 %,
/// docs/benchmarks.md "Fewer acknowledgements".)
pub const ACK_EVERY: u32 = 3;
const _: () = assert!((ACK_EVERY as usize) < crate::sync::hub::WINDOW);

impl EdgeSession {
    /// Acknowledges the batches applied up to `upto`: at once during the
    /// initial sync (the hub's window paces it), else with the
    /// [`ACK_EVERY`]th waiting live batch, at most [`ACK_DELAY_MS`] later.
    /// One acknowledgement for three batches cuts the messages a hub reads
    /// from its live edges when writes come often (docs/benchmarks.md
    /// "Fan-out").
    pub(super) fn acknowledge(&mut self, upto: u64, now: i64, out: &mut Vec<EdgeAction>) {
        let (since, n) = self.ack_due.map_or((now, 0), |(_, since, n)| (since, n));
        if self.live && n + 1 < ACK_EVERY {
            self.ack_due = Some((upto, since, n + 1));
        } else {
            self.ack_due = None;
            self.send(out, now, Frame::ChangesAck { upto });
        }
    }

    pub(super) fn on_tick(&mut self, now: i64, out: &mut Vec<EdgeAction>) {
        if self.phase == Phase::Start {
            return;
        }
        if let Some((upto, since, _)) = self.ack_due
            && self.phase == Phase::Open
            && now - since >= ACK_DELAY_MS
        {
            self.ack_due = None;
            self.send(out, now, Frame::ChangesAck { upto });
        }
        if now - self.last_recv > self.cfg.timeout_ms {
            self.close(
                out,
                "timeout",
                &format!("nothing received for {} ms", now - self.last_recv),
                false,
            );
        } else if now - self.last_sent >= self.cfg.heartbeat_ms {
            self.nonce += 1;
            let nonce = self.nonce;
            self.send(out, now, Frame::Ping { nonce });
        }
    }

    /// When (ms, the clock of `handle`) the next `Tick` may have something
    /// to do: the dead-connection timeout, the next heartbeat or a delayed
    /// acknowledgement, whichever comes first; `i64::MAX` before the connection opened and after it
    /// closed. A shell asks again after every event.
    pub fn next_tick(&self) -> i64 {
        if matches!(self.phase, Phase::Start | Phase::Closed) {
            return i64::MAX;
        }
        let ack = match self.ack_due {
            Some((_, since, _)) if self.phase == Phase::Open => since.saturating_add(ACK_DELAY_MS),
            _ => i64::MAX,
        };
        self.last_recv
            .saturating_add(self.cfg.timeout_ms + 1)
            .min(self.last_sent.saturating_add(self.cfg.heartbeat_ms))
            .min(ack)
    }
}
