//! Write safety `hub` in the browser (`docs/protocol.md` §4 "Write
//! safety"): [`EdgeSync::hub_write`] hands a compare-and-set of one to
//! [`MAX_WRITE_OPS`] documents to the session's machine
//! ([`EdgeEvent::HubWrite`]), which sends it to the hub and answers with
//! [`EdgeAction::HubWriteDone`]; the shell resolves the caller's promise with
//! a plain object of the [`HubWriteOutcome`]. Nothing is written locally by
//! the write: the new versions arrive by the pull (an applied write is told
//! once they are here).
//!
//! Every write is answered: `offline` at once when there is no connection,
//! by the machine otherwise, and `unknown` when the connection is torn down
//! without the machine's answer (see [`answer_torn_down`]).

use js_sys::{Array, Function, Object, Promise, Reflect};
use outpost::ChangeVector;
use outpost::sync::frame::{MAX_WRITE_OPS, WireExpect, WireWrite};
use outpost::sync::hub_write::HubWriteOutcome;
use outpost::sync::{EdgeAction, EdgeEvent};
use wasm_bindgen::prelude::*;

use super::{EdgeSync, Inner, Task, now_ms};
use crate::convert::prop;
use crate::error::{invalid_argument, message_of};

/// Writes with safety `hub` handed to the machine and not yet answered.
#[derive(Default)]
pub(super) struct Pending {
    /// The last token given.
    last: u64,
    /// Token and the caller's `resolve`.
    waiting: Vec<(u64, Function)>,
}

#[wasm_bindgen]
impl EdgeSync {
    /// Write safety `hub`: asks the hub to apply `ops` (`[{ id, body } |
    /// { id, deleted: true }]`, each with `collection?` and `expect`:
    /// `"missing"`, a change vector as `changeVector` shows it, or
    /// `"any"`/absent) alone and all or nothing. Resolves with `{ code:
    /// "applied", changeVectors }`, `{ code: "conflict", id, current }`,
    /// `{ code: <refusal>, id, message }` or `{ code: "offline" | "unknown",
    /// reason }`; throws `invalid_argument` for malformed ops.
    #[wasm_bindgen(js_name = "hubWrite")]
    pub fn hub_write(&self, ops: JsValue) -> Result<Promise, JsValue> {
        let ops = wire_ops(&ops)?;
        let mut slot = None;
        let promise = Promise::new(&mut |resolve, _| slot = Some(resolve));
        let Some(resolve) = slot else {
            return Ok(promise);
        };
        let inner = &self.inner;
        let token = {
            let mut st = inner.state.borrow_mut();
            if st.stopped || st.conn.is_none() {
                None
            } else {
                st.writes.last += 1;
                let token = st.writes.last;
                st.writes.waiting.push((token, resolve.clone()));
                Some((token, st.generation))
            }
        };
        let Some((token, generation)) = token else {
            let reason = "no connection with the hub (reconnecting or stopped)";
            answer(
                &resolve,
                &HubWriteOutcome::Offline {
                    reason: reason.into(),
                },
            );
            return Ok(promise);
        };
        // Fed by the pump (see `Task::HubWrite`), even before the socket
        // opened: the machine sends it after the handshake.
        super::enqueue(inner, generation, Task::HubWrite(token, ops));
        Ok(promise)
    }
}

/// The wire form of the JS ops, checked as far as the edge can.
fn wire_ops(ops: &JsValue) -> Result<Vec<WireWrite>, JsValue> {
    let Some(list) = ops.dyn_ref::<Array>() else {
        return Err(invalid_argument("hubWrite expects an array of writes"));
    };
    let n = list.length() as usize;
    if n == 0 || n > MAX_WRITE_OPS {
        return Err(invalid_argument(format!(
            "{n} documents (1 to {MAX_WRITE_OPS} per write)"
        )));
    }
    list.iter().map(|op| wire_op(&op)).collect()
}

fn wire_op(op: &JsValue) -> Result<WireWrite, JsValue> {
    let id = prop(op, "id")
        .as_string()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid_argument("a write needs an id (a non-empty string)"))?;
    let bad = |what: &str| invalid_argument(format!("{id}: {what}"));
    let collection = match prop(op, "collection") {
        c if c.is_undefined() || c.is_null() => None,
        c => Some(c.as_string().ok_or_else(|| bad("collection is a string"))?),
    };
    let expect = match prop(op, "expect") {
        e if e.is_undefined() || e.is_null() => WireExpect::Any,
        e => match e.as_string().as_deref() {
            Some("any") => WireExpect::Any,
            Some("missing") => WireExpect::Missing,
            Some(text) => WireExpect::Cv(
                ChangeVector::parse_text(text)
                    .map_err(|e| bad(&format!("expect: not a change vector ({e})")))?,
            ),
            None => return Err(bad(r#"expect is "missing", "any" or a change vector"#)),
        },
    };
    let deleted = prop(op, "deleted").is_truthy();
    let body = if deleted {
        Vec::new()
    } else {
        let doc = prop(op, "body");
        if !doc.is_object() || Array::is_array(&doc) {
            return Err(bad("a body is a plain object"));
        }
        js_sys::JSON::stringify(&doc)
            .map_err(|e| bad(&message_of(&e)))?
            .as_string()
            .unwrap_or_default()
            .into_bytes()
    };
    Ok(WireWrite {
        id,
        collection,
        expect,
        deleted,
        body,
    })
}

fn set(o: &Object, k: &str, v: &JsValue) {
    let _ = Reflect::set(o, &JsValue::from_str(k), v);
}

/// Resolves a caller's promise with the plain object of `outcome`.
fn answer(resolve: &Function, outcome: &HubWriteOutcome) {
    let o = Object::new();
    set(&o, "code", &JsValue::from_str(outcome.code()));
    match outcome {
        HubWriteOutcome::Applied {
            hub_etag,
            change_vectors,
        } => {
            let cvs: Array = change_vectors
                .iter()
                .map(|cv| JsValue::from_str(&cv.to_text()))
                .collect();
            set(&o, "changeVectors", &cvs);
            set(&o, "hubEtag", &JsValue::from_f64(*hub_etag as f64));
        }
        HubWriteOutcome::Conflict { id, current } => {
            set(&o, "id", &JsValue::from_str(id));
            set(&o, "current", &JsValue::from_str(&current.to_text()));
        }
        HubWriteOutcome::Refused { id, message, .. } => {
            set(&o, "id", &JsValue::from_str(id));
            set(&o, "message", &JsValue::from_str(message));
        }
        HubWriteOutcome::Offline { reason } | HubWriteOutcome::Unknown { reason } => {
            set(&o, "reason", &JsValue::from_str(reason));
        }
    }
    let _ = resolve.call1(&JsValue::UNDEFINED, &o);
}

/// The machine's answer to `token` (from [`EdgeShell::hub_write_done`]).
///
/// [`EdgeShell::hub_write_done`]: outpost::sync::run::EdgeShell::hub_write_done
pub(super) fn done(inner: &Inner, token: u64, outcome: &HubWriteOutcome) {
    let resolve = {
        let mut st = inner.state.borrow_mut();
        let w = &mut st.writes.waiting;
        w.iter()
            .position(|(t, _)| *t == token)
            .map(|i| w.swap_remove(i).1)
    };
    if let Some(resolve) = resolve {
        answer(&resolve, outcome);
    }
}

/// A write whose connection ended before the pump handed it to the
/// machine: nothing was sent.
pub(super) fn never_sent(inner: &Inner, token: u64) {
    done(
        inner,
        token,
        &HubWriteOutcome::Offline {
            reason: "the connection with the hub ended before the write was sent".into(),
        },
    );
}

/// Takes the machine's answers out of `actions` and gives them now (a
/// session that ended: nothing of it runs after this).
pub(super) fn answer_now(inner: &Inner, actions: &mut Vec<EdgeAction>) {
    actions.retain(|a| match a {
        EdgeAction::HubWriteDone { token, outcome } => {
            done(inner, *token, outcome);
            false
        }
        _ => true,
    });
}

/// The connection was torn down: its machine (`session`, already taken out
/// of the state) answers what it still holds (`Offline` if never sent,
/// `Unknown` if sent, `Applied` if applied), answers already queued for the
/// pump are given now, and whatever is left is `unknown`.
pub(super) fn answer_torn_down(inner: &Inner, session: &mut outpost::sync::EdgeSession) {
    let mut closing = session.handle(EdgeEvent::Closed, now_ms());
    answer_now(inner, &mut closing);
    let mut queued = Vec::new();
    let mut unsent = Vec::new();
    for (_, task) in inner.state.borrow_mut().tasks.iter_mut() {
        if let Task::HubWrite(token, _) = task {
            unsent.push(*token);
        }
        if let Task::Run(actions) = task {
            let (answers, keep): (Vec<_>, Vec<_>) = std::mem::take(actions)
                .into_iter()
                .partition(|a| matches!(a, EdgeAction::HubWriteDone { .. }));
            *actions = keep;
            queued.extend(answers);
        }
    }
    answer_now(inner, &mut queued);
    for token in unsent {
        never_sent(inner, token);
    }
    let left = std::mem::take(&mut inner.state.borrow_mut().writes.waiting);
    let unknown = HubWriteOutcome::Unknown {
        reason: "the session with the hub ended before its answer".into(),
    };
    for (_, resolve) in left {
        answer(&resolve, &unknown);
    }
}
