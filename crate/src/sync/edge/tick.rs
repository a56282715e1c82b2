//! The edge machine's timers: the dead-connection timeout and heartbeats,
//! and when the next `Tick` is due ([`EdgeSession::next_tick`]), so a shell
//! wakes the session when one of them may fire instead of every second.

use super::{EdgeAction, EdgeSession, Phase};
use crate::sync::frame::Frame;

impl EdgeSession {
    pub(super) fn on_tick(&mut self, now: i64, out: &mut Vec<EdgeAction>) {
        if self.phase == Phase::Start {
            return;
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
    /// to do: the dead-connection timeout or the next heartbeat, whichever
    /// comes first; `i64::MAX` before the connection opened and after it
    /// closed. A shell asks again after every event.
    pub fn next_tick(&self) -> i64 {
        if matches!(self.phase, Phase::Start | Phase::Closed) {
            return i64::MAX;
        }
        self.last_recv
            .saturating_add(self.cfg.timeout_ms + 1)
            .min(self.last_sent.saturating_add(self.cfg.heartbeat_ms))
    }
}
