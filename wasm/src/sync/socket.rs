//! The WebSocket of an edge's session: opening it with a new session
//! ([`connect`]), its events fed to the machine, the connect timeout,
//! its teardown, and the reconnect after a backoff.

use std::rc::{Rc, Weak};

use js_sys::{ArrayBuffer, Uint8Array};
use outpost::sync::driver::load_edge_state;
use outpost::sync::edge::backoff_ms;
use outpost::sync::{EdgeEvent, EdgePersisted, EdgeSession, SyncStatus};
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, WebSocket};

use super::auth::prepare_key;
use super::{
    CONNECT_TIMEOUT_MS, Conn, Inner, Task, code_of, dispatch, enqueue, exclusive, hook_failed,
    hub_write, now_ms, set_status, set_timeout, web_sys_log,
};
use crate::convert::prop;
use crate::error::message_of;

/// Loads the persisted state and opens a socket with a new session.
pub(super) async fn connect(inner: &Rc<Inner>) {
    {
        let mut st = inner.state.borrow_mut();
        if st.stopped || st.fatal || st.conn.is_some() {
            return;
        }
        st.graveyard.clear();
    }
    set_status(inner, SyncStatus::Connecting);
    let db = inner.db.clone();
    if let Err(e) = prepare_key(inner).await {
        inner.state.borrow_mut().fatal = true;
        set_status(
            inner,
            SyncStatus::Error {
                code: code_of(&e),
                message: message_of(&e),
            },
        );
        return;
    }
    let cfg = inner.cfg.borrow().clone();
    let loaded = exclusive(inner, async move { load_edge_state(&db, &cfg).await }).await;
    let persisted: EdgePersisted = match loaded {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            web_sys_log(&format!("Outpost sync: cannot load the sync state: {e}"));
            set_status(inner, SyncStatus::Offline);
            schedule_reconnect(inner);
            return;
        }
        Err(e) => {
            if !hook_failed(inner, &e) {
                set_status(inner, SyncStatus::Offline);
                schedule_reconnect(inner);
            }
            return;
        }
    };
    if inner.state.borrow().stopped {
        return;
    }
    let ws = match WebSocket::new(&inner.url) {
        Ok(ws) => ws,
        Err(e) => {
            inner.state.borrow_mut().fatal = true;
            set_status(
                inner,
                SyncStatus::Error {
                    code: "invalid_url".into(),
                    message: message_of(&e),
                },
            );
            return;
        }
    };
    ws.set_binary_type(BinaryType::Arraybuffer);
    let now = now_ms();
    let generation = {
        let mut st = inner.state.borrow_mut();
        st.generation += 1;
        st.generation
    };
    let session = EdgeSession::new(inner.cfg.borrow().clone(), persisted, now);
    let weak = Rc::downgrade(inner);
    let handler = |f: fn(&Rc<Inner>, u64, JsValue)| {
        let weak: Weak<Inner> = weak.clone();
        Closure::<dyn FnMut(JsValue)>::new(move |ev: JsValue| {
            if let Some(inner) = weak.upgrade() {
                f(&inner, generation, ev);
            }
        })
    };
    let onopen = handler(on_open);
    let onmessage = handler(on_message);
    let onclose = handler(on_close);
    ws.set_onopen(Some(onopen.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    ws.set_onclose(Some(onclose.as_ref().unchecked_ref()));
    inner.state.borrow_mut().conn = Some(Conn {
        ws,
        session,
        opened: false,
        started: now,
        handlers: vec![onopen, onmessage, onclose],
    });
}

/// Runs `f` on the live connection of `generation`; returns what it returned.
pub(super) fn with_conn<R>(
    inner: &Inner,
    generation: u64,
    f: impl FnOnce(&mut Conn) -> R,
) -> Option<R> {
    let mut st = inner.state.borrow_mut();
    if st.stopped || st.generation != generation {
        return None;
    }
    st.conn.as_mut().map(f)
}

/// Feeds an event to the session of `generation` and performs its actions.
pub(super) fn feed(inner: &Rc<Inner>, generation: u64, ev: EdgeEvent<'_>) {
    let now = now_ms();
    let actions = with_conn(inner, generation, |c| {
        if c.opened {
            c.session.handle(ev, now)
        } else {
            Vec::new()
        }
    });
    if let Some(actions) = actions {
        dispatch(inner, generation, actions);
    }
}

fn on_open(inner: &Rc<Inner>, generation: u64, _ev: JsValue) {
    let now = now_ms();
    let actions = with_conn(inner, generation, |c| {
        c.opened = true;
        c.session.handle(EdgeEvent::Opened, now)
    });
    if let Some(actions) = actions {
        dispatch(inner, generation, actions);
    }
}

fn on_message(inner: &Rc<Inner>, generation: u64, ev: JsValue) {
    let data = prop(&ev, "data");
    // A text message is not a frame: fed as an empty one, it ends the session
    // with a protocol error.
    let bytes = match data.dyn_ref::<ArrayBuffer>() {
        Some(buf) => Uint8Array::new(buf).to_vec(),
        None => Vec::new(),
    };
    feed(inner, generation, EdgeEvent::Received(&bytes));
}

fn on_close(inner: &Rc<Inner>, generation: u64, _ev: JsValue) {
    let now = now_ms();
    let actions = with_conn(inner, generation, |c| {
        c.session.handle(EdgeEvent::Closed, now)
    });
    let Some(mut actions) = actions else {
        return;
    };
    // The machine's answers to writes with safety `hub`, before the
    // teardown answers what is left `unknown`.
    hub_write::answer_now(inner, &mut actions);
    teardown(inner, "closed");
    dispatch(inner, generation, actions);
    set_status(inner, SyncStatus::Offline);
    schedule_reconnect(inner);
}

pub(super) fn on_tick(inner: &Rc<Inner>) {
    let now = now_ms();
    let (generation, opened, stale) = {
        let st = inner.state.borrow();
        match &st.conn {
            Some(c) => (
                st.generation,
                c.opened,
                !c.opened && now - c.started > CONNECT_TIMEOUT_MS,
            ),
            None => return,
        }
    };
    if opened {
        feed(inner, generation, EdgeEvent::Tick);
    } else if stale {
        teardown(inner, "connect timeout");
        set_status(inner, SyncStatus::Offline);
        schedule_reconnect(inner);
    }
}

/// Closes and forgets the current socket (its late events are ignored).
/// Returns whether there was one.
pub(super) fn teardown(inner: &Inner, reason: &str) -> bool {
    let mut st = inner.state.borrow_mut();
    st.generation += 1;
    let Some(conn) = st.conn.take() else {
        return false;
    };
    conn.ws.set_onopen(None);
    conn.ws.set_onmessage(None);
    conn.ws.set_onclose(None);
    let _ = conn.ws.close_with_code_and_reason(1000, reason);
    // The handlers may be running right now: drop them at the next connect.
    st.graveyard.extend(conn.handlers);
    drop(st);
    let mut session = conn.session;
    hub_write::answer_torn_down(inner, &mut session);
    true
}

pub(super) fn schedule_reconnect(inner: &Rc<Inner>) {
    let delay = {
        let mut st = inner.state.borrow_mut();
        if st.stopped || st.fatal || st.conn.is_some() || st.reconnect_timer.is_some() {
            return;
        }
        let d = backoff_ms(st.attempt, js_sys::Math::random());
        st.attempt = st.attempt.saturating_add(1);
        d
    };
    let weak = Rc::downgrade(inner);
    let cb = Closure::once_into_js(move || {
        if let Some(inner) = weak.upgrade() {
            inner.state.borrow_mut().reconnect_timer = None;
            enqueue(&inner, 0, Task::Connect);
        }
    });
    let id = set_timeout(&cb, delay as f64);
    inner.state.borrow_mut().reconnect_timer = Some(id);
}
