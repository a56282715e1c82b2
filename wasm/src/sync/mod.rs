//! The browser (and worker) edge client: replication with a hub over a
//! `WebSocket`, as a thin shell around the engine's pure state machine
//! [`EdgeSession`] (`docs/protocol.md`).
//!
//! The shell moves bytes between the socket and the machine, runs a one-second
//! `Tick` (heartbeats, dead connections) and reconnects with
//! [`backoff_ms`](outpost::sync::edge::backoff_ms) (exponential backoff with
//! jitter; the socket's life is in [`socket`]). The machine's actions are queued, one
//! task per event, and performed in order by one pump through
//! [`run_edge`], the engine's one depth-first action loop, with this
//! module's [`Shell`] as its effects: storage actions run through
//! [`edge_storage`] on the handle's database.
//!
//! **Identity.** A session proves the identity's key (kept by
//! [`crate::keys`], loaded before each connection by [`auth`]): the
//! handshake's challenge and every pushed batch are signed with WebCrypto
//! (`Shell::sign`). With an enrollment code the first session redeems it
//! for the key (made if there is none) and the following ones use the key
//! alone (`Shell::enrolled`, event `"enrolled"`); with a credential, a
//! token (the hub's development mode). A hub's refusal (`unauthorized`,
//! `revoked`, ...) is fatal: the status becomes `{ state: "error", code }`.
//!
//! **Waking.** The replication learns of this tab's commits from the engine's
//! commit observer ([`Database::watch_commits`]), minus the batches it
//! applied itself; other tabs' writes come through the package's
//! `BroadcastChannel` (`localChanged`).
//!
//! **Several tabs.** Every storage action runs inside the JS hook
//! `exclusive(fn)` supplied by the package's JS layer (`pkg-js/src/core.js`):
//! it takes the same cross-tab Web Lock as every other operation of the handle,
//! refreshes the handle, runs `fn` and, when `fn` resolves to a positive etag
//! (something was written), tells the other tabs and the subscribers. So synced
//! documents show up in every tab's `subscribe`, and a sync commit never races
//! a write of another tab.
//!
//! **No long main-thread tasks.** A `Changes` batch (up to 500 documents /
//! 512 KiB) is applied, under one lock hold, in slices of at most
//! [`apply::SLICE_DOCS`] documents and [`apply::SLICE_BYTES`] bytes, each in an event-loop
//! task of its own; a slice's commit is not awaited before the next slice is
//! applied, so the engine's group commit overlaps applying with IndexedDB
//! commits. Only the last slice moves the pull checkpoint to the batch's
//! `upto`; the others rewrite the previous checkpoint. Re-applying a version
//! is a no-op, so a crash between slices only re-sends a batch.

//!
//! **Write safety `hub`.** `EdgeSync.hubWrite` hands a compare-and-set to the
//! machine through the pump ([`Task::HubWrite`]) and resolves with its answer
//! ([`hub_write`]); a teardown answers what the machine still held.

mod apply;
mod auth;
mod hub_write;
mod socket;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::rc::Rc;

use js_sys::{Function, Promise};
use outpost::Database;
use outpost::sync::driver::edge_storage;
use outpost::sync::run::{EdgeShell, OwnEtags, Step, run_edge};
use outpost::sync::{EdgeAction, EdgeConfig, EdgeEvent, EdgeSession, SyncStatus, WireGrant};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::WebSocket;

use self::apply::apply_remote;
use self::auth::{Auth, key_accepted};
use self::socket::{connect, feed, on_tick, schedule_reconnect, teardown, with_conn};

use crate::api::Outpost;
use crate::convert::{check_options, opt_string, prop, rejection_to_js, value_to_js};
use crate::error::{js_error, message_of};
use crate::keys;
use crate::panic::{Panicked, run};
use crate::store::AnyStore;

/// Period of the `Tick` fed to the machine (heartbeats and timeouts).
const TICK_MS: f64 = 1000.0;
/// A socket that has not opened after this long is abandoned (retried).
const CONNECT_TIMEOUT_MS: i64 = 15_000;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(cb: &JsValue, ms: f64) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
    #[wasm_bindgen(js_name = setInterval)]
    fn set_interval(cb: &JsValue, ms: f64) -> JsValue;
    #[wasm_bindgen(js_name = clearInterval)]
    fn clear_interval(id: &JsValue);
}

fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

/// One WebSocket and the machine of its session.
struct Conn {
    ws: WebSocket,
    session: EdgeSession,
    opened: bool,
    started: i64,
    /// The socket's event handlers (kept alive as long as the socket).
    handlers: Vec<Closure<dyn FnMut(JsValue)>>,
}

/// Work done one item at a time, in order, by the pump.
enum Task {
    /// Load the persisted state and open a socket.
    Connect,
    /// Actions of the session of generation `.0`, performed by [`run_edge`]
    /// (depth-first: a storage action's follow-ups run before the next task).
    Run(Vec<EdgeAction>),
    /// The database committed etags `.0 + 1 ..= .1` (the engine's commit
    /// observer): `LocalChanged` unless they were all this replication's own.
    Commits(u64, u64),
    /// A write with safety `hub` (token, documents), fed to the machine
    /// between two tasks: never while a task's actions are half performed,
    /// so the `Sign` it asks for is performed in the order the machine
    /// emitted it (a batch's `Sign` emitted later in that task would
    /// otherwise be signed first and its signature taken for the write's).
    HubWrite(u64, Vec<outpost::sync::frame::WireWrite>),
}

struct State {
    /// Generation of the current connection: bumped on every connect and
    /// teardown, so events of an old socket or session are ignored.
    generation: u64,
    conn: Option<Conn>,
    tasks: VecDeque<(u64, Task)>,
    pumping: bool,
    /// Failed attempts since the last `Welcome` (backoff exponent).
    attempt: u32,
    stopped: bool,
    /// A fatal error (bad credentials, unsupported version): no retries.
    fatal: bool,
    status: SyncStatus,
    /// What the hub said this edge may read and write (last `Welcome`).
    grant: Option<WireGrant>,
    reconnect_timer: Option<JsValue>,
    /// The `setInterval` id of the tick.
    interval: Option<JsValue>,
    /// The tick's closure (kept for the controller's lifetime: `stop()` may
    /// run inside it).
    tick: Option<Closure<dyn FnMut()>>,
    /// Handlers of torn-down sockets, dropped later (never while running).
    graveyard: Vec<Closure<dyn FnMut(JsValue)>>,
    /// `stop()` promises waiting for the pump to finish.
    idle_waiters: Vec<Function>,
    /// Etag runs committed by this replication's own storage actions, not
    /// yet matched by a [`Task::Commits`].
    own: OwnEtags,
    /// Writes with safety `hub` awaiting the machine's answer.
    writes: hub_write::Pending,
}

struct Inner {
    db: Database<AnyStore>,
    panicked: Panicked,
    /// The sessions' settings (their key filled in by [`prepare_key`]).
    cfg: RefCell<EdgeConfig>,
    auth: RefCell<Auth>,
    /// The local database's name (the key store's key, with the identity).
    local: String,
    /// The identity's key pair, once loaded (key and enrollment sessions).
    key: RefCell<Option<keys::EdgeKey>>,
    url: String,
    /// `exclusive(fn)`: runs `fn` (returns a promise) under the handle's lock.
    exclusive: Function,
    /// `event(type, value)`: "status", "rejection", "grant", "pushed",
    /// "enrolled" and "closed" notifications.
    event: Function,
    state: RefCell<State>,
}

/// An edge's replication with a hub (created by the package's `db.sync()`;
/// use that, not this class).
#[wasm_bindgen(skip_typescript)]
pub struct EdgeSync {
    inner: Rc<Inner>,
}

fn required(options: &JsValue, name: &str) -> Result<String, JsValue> {
    match opt_string(options, name)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(js_error(
            "invalid_options",
            &format!("sync: option {name} is required (a non-empty string)"),
        )),
    }
}

#[wasm_bindgen]
impl EdgeSync {
    /// Starts replicating `db` with the hub at `options.url` (`ws://` or
    /// `wss://`) as `options.identity`, database `options.database`
    /// (default `"main"`): with the identity's stored key, or, given
    /// `options.code`, redeeming that enrollment code for the key (made if
    /// needed), or, given `options.credential`, with that token (the hub's
    /// development mode). `hooks` is `{ exclusive(fn), event(type, value) }`
    /// (see the module docs).
    #[wasm_bindgen(constructor)]
    pub fn new(db: &Outpost, options: JsValue, hooks: JsValue) -> Result<EdgeSync, JsValue> {
        check_options(&options, "sync")?;
        if !options.is_object() {
            return Err(js_error(
                "invalid_options",
                "sync expects { url, identity, credential?, code? }",
            ));
        }
        let url = required(&options, "url")?;
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(js_error(
                "invalid_options",
                &format!("sync: url must start with ws:// or wss:// (got {url:?})"),
            ));
        }
        let identity = required(&options, "identity")?;
        let credential = opt_string(&options, "credential")?.filter(|s| !s.is_empty());
        let code = opt_string(&options, "code")?.filter(|s| !s.is_empty());
        let auth = match (&credential, code) {
            (Some(_), Some(_)) => {
                return Err(js_error(
                    "invalid_options",
                    "sync: give a credential (development token) or an enrollment code, not both",
                ));
            }
            (Some(_), None) => Auth::Token,
            (None, Some(code)) => Auth::Enroll(code),
            (None, None) => Auth::Key,
        };
        let database = opt_string(&options, "database")?.unwrap_or_else(|| "main".into());
        let hook = |name: &str| -> Result<Function, JsValue> {
            prop(&hooks, name)
                .dyn_into::<Function>()
                .map_err(|_| js_error("invalid_argument", &format!("sync: hook {name} missing")))
        };
        let local = db.name();
        let (db, panicked) = db.parts();
        let credential = credential.unwrap_or_default();
        let inner = Rc::new(Inner {
            db,
            panicked,
            cfg: RefCell::new(EdgeConfig::new(&database, &identity, &credential)),
            auth: RefCell::new(auth),
            local,
            key: RefCell::new(None),
            url,
            exclusive: hook("exclusive")?,
            event: hook("event")?,
            state: RefCell::new(State {
                generation: 0,
                conn: None,
                tasks: VecDeque::new(),
                pumping: false,
                attempt: 0,
                stopped: false,
                fatal: false,
                status: SyncStatus::Connecting,
                grant: None,
                reconnect_timer: None,
                interval: None,
                tick: None,
                graveyard: Vec::new(),
                idle_waiters: Vec::new(),
                own: OwnEtags::default(),
                writes: hub_write::Pending::default(),
            }),
        });
        let weak = Rc::downgrade(&inner);
        let tick = Closure::<dyn FnMut()>::new(move || {
            if let Some(inner) = weak.upgrade() {
                on_tick(&inner);
            }
        });
        let id = set_interval(tick.as_ref(), TICK_MS);
        {
            let mut st = inner.state.borrow_mut();
            st.interval = Some(id);
            st.tick = Some(tick);
        }
        enqueue(&inner, 0, Task::Connect);
        watch_commits(&inner);
        Ok(EdgeSync { inner })
    }

    /// The current status: `{ state: "connecting" | "initial" | "live" |
    /// "offline" | "error", ... }`.
    #[wasm_bindgen(getter)]
    pub fn status(&self) -> JsValue {
        let s = self.inner.state.borrow().status.clone();
        value_to_js(&s).unwrap_or(JsValue::NULL)
    }

    /// What the hub said this edge may do, from its last `Welcome`: `{ read:
    /// string[], write: string[] }` (normalised prefixes, `"*"` for every id;
    /// `write` empty: read-only), or `null` before the first `Welcome` (or
    /// from a hub of protocol version 1).
    #[wasm_bindgen(getter)]
    pub fn grant(&self) -> JsValue {
        let g = self.inner.state.borrow().grant.clone();
        g.and_then(|g| value_to_js(&g).ok())
            .unwrap_or(JsValue::NULL)
    }

    /// Feeds `LocalChanged`: the application committed a write (here or in
    /// another tab) that may need pushing.
    #[wasm_bindgen(js_name = "localChanged")]
    pub fn local_changed(&self) {
        let g = self.inner.state.borrow().generation;
        feed(&self.inner, g, EdgeEvent::LocalChanged);
    }

    /// Reconnects now if not connected (skips the backoff delay): for the
    /// browser's `online` event.
    #[wasm_bindgen(js_name = "reconnectNow")]
    pub fn reconnect_now(&self) {
        let inner = &self.inner;
        {
            let mut st = inner.state.borrow_mut();
            if st.stopped || st.fatal || st.conn.is_some() {
                return;
            }
            if let Some(t) = st.reconnect_timer.take() {
                clear_timeout(&t);
            } else if st.tasks.iter().any(|(_, t)| matches!(t, Task::Connect)) {
                return;
            }
            st.attempt = 0;
        }
        enqueue(inner, 0, Task::Connect);
    }

    /// Drops the connection (it is retried after the backoff delay): for the
    /// browser's `offline` event.
    pub fn disconnect(&self) {
        let inner = &self.inner;
        let had = teardown(inner, "offline");
        if had {
            set_status(inner, SyncStatus::Offline);
            schedule_reconnect(inner);
        }
    }

    /// Stops for good: closes the socket, cancels retries. Resolves once no
    /// storage action of the replication is running.
    pub fn stop(&self) -> Promise {
        let inner = &self.inner;
        let was_stopped = {
            let mut st = inner.state.borrow_mut();
            let was = st.stopped;
            st.stopped = true;
            st.tasks.clear();
            if let Some(t) = st.reconnect_timer.take() {
                clear_timeout(&t);
            }
            if let Some(id) = st.interval.take() {
                clear_interval(&id);
            }
            was
        };
        teardown(inner, "stopped");
        if !was_stopped {
            set_status(inner, SyncStatus::Offline);
        }
        let mut slots = None;
        let promise = Promise::new(&mut |resolve, _reject| slots = Some(resolve));
        if let Some(resolve) = slots {
            let mut st = inner.state.borrow_mut();
            if st.pumping {
                st.idle_waiters.push(resolve);
            } else {
                drop(st);
                let _ = resolve.call0(&JsValue::UNDEFINED);
            }
        }
        promise
    }
}

/// Calls the JS `event` hook (never while the state is borrowed).
fn emit(inner: &Inner, kind: &str, value: &JsValue) {
    if let Err(e) = inner
        .event
        .call2(&JsValue::UNDEFINED, &JsValue::from_str(kind), value)
    {
        web_sys_log(&format!(
            "Outpost sync: the {kind} hook threw: {}",
            message_of(&e)
        ));
    }
}

fn web_sys_log(msg: &str) {
    let console = js_sys::Reflect::get(&js_sys::global(), &"console".into()).ok();
    if let Some(c) = console
        && let Ok(f) = js_sys::Reflect::get(&c, &"warn".into())
        && let Ok(f) = f.dyn_into::<Function>()
    {
        let _ = f.call1(&c, &JsValue::from_str(msg));
    }
}

fn set_status(inner: &Inner, s: SyncStatus) {
    {
        let mut st = inner.state.borrow_mut();
        if st.status == s {
            return;
        }
        st.status = s.clone();
    }
    if let Ok(v) = value_to_js(&s) {
        emit(inner, "status", &v);
    }
}

fn set_grant(inner: &Inner, g: WireGrant) {
    {
        let mut st = inner.state.borrow_mut();
        if st.grant.as_ref() == Some(&g) {
            return;
        }
        st.grant = Some(g.clone());
    }
    if let Ok(v) = value_to_js(&g) {
        emit(inner, "grant", &v);
    }
}

fn enqueue(inner: &Rc<Inner>, generation: u64, task: Task) {
    {
        let mut st = inner.state.borrow_mut();
        if st.stopped {
            return;
        }
        st.tasks.push_back((generation, task));
    }
    pump(inner);
}

/// Runs the queued tasks one at a time (one async loop at most).
fn pump(inner: &Rc<Inner>) {
    {
        let mut st = inner.state.borrow_mut();
        if st.pumping || st.tasks.is_empty() {
            return;
        }
        st.pumping = true;
    }
    let inner = inner.clone();
    wasm_bindgen_futures::spawn_local(async move {
        loop {
            let next = inner.state.borrow_mut().tasks.pop_front();
            let Some((generation, task)) = next else {
                break;
            };
            match task {
                Task::Connect => connect(&inner).await,
                Task::Commits(from, to) => {
                    let (others, g) = {
                        let mut st = inner.state.borrow_mut();
                        (st.own.others_in(from, to), st.generation)
                    };
                    if others {
                        feed(&inner, g, EdgeEvent::LocalChanged);
                    }
                }
                Task::HubWrite(token, ops) => {
                    let now = now_ms();
                    let actions = with_conn(&inner, generation, |c| {
                        c.session.handle(EdgeEvent::HubWrite { token, ops }, now)
                    });
                    match actions {
                        Some(actions) => {
                            run_edge(
                                &mut Shell {
                                    inner: &inner,
                                    generation,
                                },
                                actions,
                            )
                            .await;
                        }
                        None => hub_write::never_sent(&inner, token),
                    }
                }
                Task::Run(actions) => {
                    run_edge(
                        &mut Shell {
                            inner: &inner,
                            generation,
                        },
                        actions,
                    )
                    .await;
                }
            }
        }
        let waiters = {
            let mut st = inner.state.borrow_mut();
            st.pumping = false;
            std::mem::take(&mut st.idle_waiters)
        };
        for w in waiters {
            let _ = w.call0(&JsValue::UNDEFINED);
        }
    });
}

/// Wakes the replication on the database's commits (the engine's commit
/// observer): each is looked at by the pump, after the storage action that
/// may have made it (see [`Task::Commits`]). Ends once the replication is
/// stopped or dropped, or the database closed.
fn watch_commits(inner: &Rc<Inner>) {
    let mut watch = inner.db.watch_commits();
    let weak = Rc::downgrade(inner);
    wasm_bindgen_futures::spawn_local(async move {
        loop {
            let from = watch.seen();
            let Some(to) = watch.changed().await else {
                return;
            };
            let Some(inner) = weak.upgrade() else {
                return;
            };
            if inner.state.borrow().stopped {
                return;
            }
            enqueue(&inner, 0, Task::Commits(from, to));
        }
    });
}

/// Whether `generation` is the live connection's.
fn current(inner: &Inner, generation: u64) -> bool {
    let st = inner.state.borrow();
    !st.stopped && st.generation == generation && st.conn.is_some()
}

/// Runs `f` inside the JS `exclusive` hook (cross-tab lock + refresh; the
/// hook announces a write when the promise resolves to a positive etag).
async fn exclusive<T: 'static>(
    inner: &Inner,
    f: impl Future<Output = T> + 'static,
) -> Result<T, JsValue> {
    let slot: Rc<RefCell<Option<T>>> = Rc::new(RefCell::new(None));
    let out = slot.clone();
    let db = inner.db.clone();
    let panicked = inner.panicked.clone();
    let cb = Closure::once_into_js(move || -> Promise {
        run(panicked, async move {
            let before = db.stats().last_etag;
            let r = f.await;
            let after = db.stats().last_etag;
            *out.borrow_mut() = Some(r);
            Ok(JsValue::from_f64(if after > before {
                after as f64
            } else {
                0.0
            }))
        })
    });
    let p = inner.exclusive.call1(&JsValue::UNDEFINED, &cb)?;
    JsFuture::from(Promise::resolve(&p)).await?;
    let r = slot.borrow_mut().take();
    r.ok_or_else(|| js_error("other", "sync: the storage step did not run"))
}

/// The code of a JS error value (`""` if none).
fn code_of(e: &JsValue) -> String {
    js_sys::Reflect::get(e, &"code".into())
        .ok()
        .and_then(|c| c.as_string())
        .unwrap_or_default()
}

/// Handles a failure of the `exclusive` hook: fatal when the handle is
/// closed or poisoned (replication stops with an error status).
fn hook_failed(inner: &Rc<Inner>, e: &JsValue) -> bool {
    let code = code_of(e);
    if matches!(code.as_str(), "closed" | "panic" | "poisoned") {
        inner.state.borrow_mut().fatal = true;
        teardown(inner, "storage");
        set_status(
            inner,
            SyncStatus::Error {
                code,
                message: message_of(e),
            },
        );
        true
    } else {
        false
    }
}

/// Queues the machine's actions for the pump, which performs them in order
/// (see [`Shell`]).
fn dispatch(inner: &Rc<Inner>, generation: u64, actions: Vec<EdgeAction>) {
    if !actions.is_empty() {
        enqueue(inner, generation, Task::Run(actions));
    }
}

/// The effects of [`run_edge`] for the session of `generation`.
struct Shell<'a> {
    inner: &'a Rc<Inner>,
    generation: u64,
}

impl EdgeShell for Shell<'_> {
    fn feed(&mut self, ev: EdgeEvent<'_>) -> Option<Vec<EdgeAction>> {
        let now = now_ms();
        with_conn(self.inner, self.generation, |c| {
            c.opened.then(|| c.session.handle(ev, now))
        })
        .flatten()
    }

    async fn send(&mut self, frame: Vec<u8>) -> bool {
        if let Some(Err(e)) = with_conn(self.inner, self.generation, |c| {
            c.ws.send_with_u8_array(&frame)
        }) {
            web_sys_log(&format!("Outpost sync: send failed: {}", message_of(&e)));
        }
        true
    }

    async fn storage(&mut self, action: EdgeAction) -> Step<EdgeEvent<'static>> {
        match storage_task(self.inner, self.generation, action).await {
            Some(Some(ev)) => Step::Feed(ev),
            Some(None) => Step::Done,
            None => Step::End,
        }
    }

    async fn sign(&mut self, message: Vec<u8>) -> Step<EdgeEvent<'static>> {
        let inner = self.inner;
        let key = inner.key.borrow().as_ref().map(|k| k.private.clone());
        let signed = match key {
            Some(k) => keys::sign(&k, &message).await,
            None => Err(js_error("no_key", "sync: no key to sign with")),
        };
        match signed {
            Ok(sig) if current(inner, self.generation) => Step::Feed(EdgeEvent::Signed(sig)),
            Ok(_) => Step::End,
            Err(e) => {
                // The key cannot sign (WebCrypto gone, key store broken):
                // retrying cannot help.
                inner.state.borrow_mut().fatal = true;
                teardown(inner, "cannot sign");
                let (code, message) = (code_of(&e), message_of(&e));
                set_status(inner, SyncStatus::Error { code, message });
                Step::End
            }
        }
    }

    fn enrolled(&mut self) {
        let inner = self.inner.clone();
        *inner.auth.borrow_mut() = Auth::Key;
        let cfg = inner.cfg.borrow().clone().enrolled();
        *inner.cfg.borrow_mut() = cfg;
        wasm_bindgen_futures::spawn_local(async move {
            key_accepted(&inner).await;
            let identity = inner.cfg.borrow().identity.clone();
            let info = inner.key.borrow().as_ref().map(|k| k.info(&identity));
            emit(&inner, "enrolled", &info.unwrap_or(JsValue::NULL));
        });
    }

    fn status(&mut self, s: SyncStatus) {
        let inner = self.inner;
        if matches!(s, SyncStatus::Initial { .. } | SyncStatus::Live) {
            inner.state.borrow_mut().attempt = 0;
            // A key session was welcomed: the key is the identity's (also
            // for a key the operator registered with `--pubkey`).
            let unmarked = inner.key.borrow().as_ref().is_some_and(|k| !k.enrolled);
            if unmarked && *inner.auth.borrow() == Auth::Key {
                let inner = inner.clone();
                wasm_bindgen_futures::spawn_local(async move { key_accepted(&inner).await });
            }
        }
        if current(inner, self.generation) {
            set_status(inner, s);
        }
    }

    // The hub holds this database's writes up to `upto`: the package's
    // storage witness records it (storage-lost reports).
    fn pushed(&mut self, upto: u64, docs: u32) {
        let v = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&v, &"upto".into(), &(upto as f64).into());
        let _ = js_sys::Reflect::set(&v, &"docs".into(), &f64::from(docs).into());
        emit(self.inner, "pushed", &v);
    }

    // Documents that left this edge's read scope were erased (a purge
    // order of the hub): the application hears it as a `purge` event.
    fn purged(&mut self, order: u64, reason: String, removed: u64) {
        let v = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&v, &"order".into(), &(order as f64).into());
        let _ = js_sys::Reflect::set(&v, &"reason".into(), &reason.into());
        let _ = js_sys::Reflect::set(&v, &"removed".into(), &(removed as f64).into());
        emit(self.inner, "purge", &v);
    }

    fn hub_write_done(&mut self, token: u64, outcome: outpost::sync::hub_write::HubWriteOutcome) {
        hub_write::done(self.inner, token, &outcome);
    }

    fn granted(&mut self, g: WireGrant) {
        if current(self.inner, self.generation) {
            set_grant(self.inner, g);
        }
    }

    async fn close(&mut self, code: String, message: String, fatal: bool) {
        let inner = self.inner;
        let v = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&v, &"code".into(), &code.into());
        let _ = js_sys::Reflect::set(&v, &"message".into(), &message.into());
        let _ = js_sys::Reflect::set(&v, &"fatal".into(), &fatal.into());
        emit(inner, "closed", &v);
        if fatal {
            inner.state.borrow_mut().fatal = true;
        }
        if teardown(inner, "closed by the edge") && !fatal {
            schedule_reconnect(inner);
        }
    }
}

/// Performs one storage action of the session of `generation`: the event to
/// feed back, if any, or `None` when the session is gone (stopped, torn
/// down, or the handle closed).
async fn storage_task(
    inner: &Rc<Inner>,
    generation: u64,
    action: EdgeAction,
) -> Option<Option<EdgeEvent<'static>>> {
    if !current(inner, generation) {
        return None;
    }
    let failed =
        |e: &JsValue| (!hook_failed(inner, e)).then(|| Some(EdgeEvent::ApplyFailed(message_of(e))));
    match action {
        EdgeAction::ApplyRemote { .. } => apply_remote(inner, generation, action).await,
        EdgeAction::RecordRejection(r) => {
            let rec = r.clone();
            match run_storage(inner, EdgeAction::RecordRejection(r)).await {
                Ok((None, _)) => {
                    if let Ok(v) = rejection_to_js(&rec) {
                        emit(inner, "rejection", &v);
                    }
                    Some(None)
                }
                Ok((Some(ev), _)) => Some(Some(ev)),
                Err(e) => failed(&e),
            }
        }
        action => match run_storage(inner, action).await {
            Ok((ev, _)) => Some(ev),
            Err(e) => failed(&e),
        },
    }
}

/// Runs one storage action through the driver, inside `exclusive`; hands
/// the action back with the event to feed.
async fn run_storage(
    inner: &Inner,
    action: EdgeAction,
) -> Result<(Option<EdgeEvent<'static>>, EdgeAction), JsValue> {
    let db = inner.db.clone();
    let cfg = inner.cfg.borrow().clone();
    exclusive(inner, async move {
        let ev = edge_storage(&db, &cfg, &action).await;
        (ev, action)
    })
    .await
}
