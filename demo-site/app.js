// The Outpost demo: notes kept in this browser (IndexedDB) and replicated
// with the hub that serves this page. No framework: the lists are rebuilt
// from the database after each change (subscribe) and each sync status
// change; a note being edited keeps its form (and what was typed in it).
//
// What this identity may do comes from the hub: the grant it states when a
// session opens (`sync.grant`: read and write prefixes), remembered in
// localStorage for the next visit offline. Edit controls show only where the
// grant allows writing; before any grant is known they show (the hub checks
// every write anyway).
//
// Identities are keys: the first visit as alice (or bob) asks for the
// enrollment code `outpost-hub init --demo` printed (./scripts/run.sh shows
// it; it is also in enroll-codes.txt next to the hub's configuration),
// redeems it for this browser's key (`db.enroll`: a non-extractable
// WebCrypto key kept in IndexedDB), and from then on every session proves
// that key (`db.sync` without a credential). A code is good once: another
// browser or profile needs a new one (`outpost-hub edge enroll alice`).
//
// URL parameters (all optional): ?as=NAME picks the identity (alice and bob
// in the demo configuration), ?code=… enrolls at once with that code,
// ?hub=ws://host/sync another hub, ?db=… another local database name,
// ?token=… a shared-secret token instead of a key (development mode: only
// a hub with `[dev] tokens = true` accepts it).
import { Outpost } from "./pkg/src/web.js";

const SHOWN = 200; // notes listed at most (the count shows the rest)
// Claimed names: documents notes/claims/<name> (collection Claims), inside
// the demo edges' write prefix notes/, written with safety "hub".
const CLAIMS = "notes/claims/";
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

let db; // the open database
let sync; // its replication (undefined while paused)
let identity;
let dbName;
let renderQueued = false;
let unsubscribe;
/** What the hub lets this identity do: { read: [...], write: [...] } or null (not known yet). */
let grant = null;
/** Notes being edited: id -> their <li> (kept across re-renders, with what was typed). */
const editing = new Map();

/** An element with text and attributes. */
function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return e;
}

function showError(e) {
  $("error").hidden = false;
  $("error").textContent = `${e?.code ? `[${e.code}] ` : ""}${e?.message ?? e}`;
  console.error(e);
}

function statusText(s) {
  switch (s.state) {
    case "initial":
      return `receiving ${s.received.toLocaleString()} of ${s.total.toLocaleString()}`;
    case "error":
      return `error: ${s.code} (${s.message})`;
    default:
      return s.state;
  }
}

function showStatus(s) {
  const b = $("sync-status");
  b.dataset.state = s.state;
  b.textContent = statusText(s);
}

/** Whether a prefix list (normalised: lowercase, ending in "/", "*" = all) covers `id`. */
function covers(prefixes, id) {
  const lower = id.toLowerCase();
  return prefixes.some((p) => p === "*" || lower.startsWith(p) || `${lower}/` === p);
}

/** Whether this identity may change `id`, as far as the hub said (unknown: yes, the hub decides). */
function mayWrite(id) {
  return !grant || covers(grant.write, id);
}

const grantKey = () => `outpost-demo-grant:${dbName}`;

function showGrant() {
  const list = (l) => (l.length ? l.map((p) => (p === "*" ? "everything" : p)).join(", ") : "nothing");
  const readOnly = grant && grant.write.length === 0;
  $("grant").dataset.readonly = String(Boolean(readOnly));
  $("grant").textContent = grant
    ? `${identity} may read ${list(grant.read)} and write ${list(grant.write)}${readOnly ? " (read-only)" : ""}, says the hub.`
    : `${identity}: waiting for the hub to say what this identity may do.`;
  const canAdd = mayWrite("notes/new");
  $("add").hidden = !canAdd;
  $("forbidden-line").hidden = Boolean(readOnly);
  $("conflicts-hint").textContent = readOnly
    ? "A note edited in two places while they were apart keeps both versions until someone who may write it picks one."
    : "A note edited in two places while they were apart keeps both versions (the hub's policy for collection Notes is manual). Pick the one to keep.";
}

function setGrant(g) {
  if (JSON.stringify(g ?? null) === JSON.stringify(grant)) return;
  grant = g ?? null;
  try {
    if (grant) localStorage.setItem(grantKey(), JSON.stringify(grant));
  } catch {
    // (storage full or disabled: the grant is shown for this visit only)
  }
  showGrant();
  scheduleRender();
}

/** Replaces the children of `list` by `nodes`, never detaching a node that stays (a form keeps its focus and caret). */
function updateList(list, nodes) {
  const keep = new Set(nodes);
  for (const c of [...list.children]) if (!keep.has(c)) c.remove();
  let at = list.firstChild;
  for (const n of nodes) {
    if (n === at) at = at.nextSibling;
    else list.insertBefore(n, at);
  }
}

/** Re-renders at most once per frame. */
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render().catch(showError);
  });
}

async function render() {
  if (!db) return;
  const current = db;
  const [all, count, conflicts, rejections, claims] = await Promise.all([
    current.scan({ prefix: "notes/", limit: SHOWN }),
    current.count(),
    current.conflicts({ limit: 100 }),
    current.rejections(),
    current.scan({ prefix: CLAIMS, limit: SHOWN }),
  ]);
  if (current !== db) return;
  const notes = all.filter((d) => !d["@metadata"]["@id"].toLowerCase().startsWith(CLAIMS));
  $("claims").replaceChildren(
    ...claims.map((d) =>
      el("li", { dataset: { id: d["@metadata"]["@id"] } }, el("div", { class: "body" }, el("div", { class: "title" }, d.name ?? ""), el("div", { class: "id" }, `claimed by ${d.owner ?? "?"}`))),
    ),
  );
  $("counts").textContent = `${count.toLocaleString()} document${count === 1 ? "" : "s"} here`;
  $("no-notes").hidden = notes.length > 0;
  const shown = new Set(notes.map((d) => d["@metadata"]["@id"]));
  for (const id of editing.keys()) if (!shown.has(id) || !mayWrite(id)) editing.delete(id);
  const items = notes.map((d) => editing.get(d["@metadata"]["@id"]) ?? noteItem(d));
  if (notes.length === SHOWN) items.push(el("li", { class: "muted" }, `… the first ${SHOWN} are shown`));
  updateList($("notes"), items);
  $("conflict-count").textContent = conflicts.length ? `(${conflicts.length})` : "";
  $("conflicts").replaceChildren(...conflicts.map(conflictItem));
  if (!conflicts.length) $("conflicts").append(el("li", { class: "muted" }, "None."));
  $("rejection-count").textContent = rejections.length ? `(${rejections.length})` : "";
  $("rejections").replaceChildren(
    ...rejections.map((r) =>
      el("li", {}, el("span", { class: "code" }, r.code), " ", el("span", { class: "id" }, r.id), el("div", {}, r.message)),
    ),
  );
}

function noteItem(doc) {
  const m = doc["@metadata"];
  const id = m["@id"];
  const li = el("li", { class: m["@conflicted"] ? "conflicted" : "", dataset: { id } });
  const view = () => {
    editing.delete(id);
    li.replaceChildren(
      el(
        "div",
        { class: "body" },
        el("div", { class: "title" }, doc.title ?? "(untitled)"),
        el("div", { class: "text" }, doc.text ?? ""),
        el("div", { class: "id" }, `${id}${m["@collection"] === "Pinned" ? " · pinned (never deleted)" : ""}${m["@conflicted"] ? " · in conflict" : ""}${doc.by ? ` · by ${doc.by}` : ""}`),
      ),
      ...(mayWrite(id)
        ? [
            el("button", { type: "button", class: "edit", onclick: edit }, "Edit"),
            el("button", { type: "button", class: "delete", onclick: () => db.delete(id).catch(showError) }, "Delete"),
          ]
        : []),
    );
  };
  const edit = () => {
    const title = el("input", { class: "edit-title", value: doc.title ?? "" });
    const text = el("input", { class: "edit-text", value: doc.text ?? "" });
    const form = el(
      "form",
      {
        class: "body",
        onsubmit: async (e) => {
          e.preventDefault();
          try {
            // An edit keeps the note's collection (moving a pinned note out of
            // "Pinned" would be a delete, which the hub's guard refuses).
            await db.put(id, { title: title.value, text: text.value, by: identity }, { collection: m["@collection"] ?? "Notes" });
            editing.delete(id); // the next render shows the saved note
            scheduleRender();
          } catch (err) {
            showError(err);
          }
        },
      },
      title,
      text,
      el("button", { type: "submit" }, "Save"),
      el("button", { type: "button", class: "cancel", onclick: () => (view(), scheduleRender()) }, "Cancel"),
    );
    editing.set(id, li);
    li.replaceChildren(form);
    title.focus();
  };
  view();
  return li;
}

function conflictItem(c) {
  return el(
    "li",
    { dataset: { id: c.id } },
    el("div", { class: "id" }, c.id),
    el(
      "div",
      { class: "versions" },
      ...c.versions.map((v, i) =>
        el(
          "div",
          { class: "version" },
          v.deleted
            ? el("div", { class: "muted" }, "(deleted)")
            : el("div", {}, el("b", {}, v.body?.title ?? ""), el("div", {}, v.body?.text ?? ""), el("div", { class: "muted" }, v.body?.by ? `by ${v.body.by}` : "")),
          el("div", { class: "muted" }, new Date(v.lastModified).toLocaleString()),
          mayWrite(c.id)
            ? el(
                "button",
                {
                  type: "button",
                  class: "keep",
                  dataset: { index: String(i) },
                  onclick: () => db.resolve(c.id, v.deleted ? null : v.body).catch(showError),
                },
                "Keep this one",
              )
            : "",
        ),
      ),
    ),
  );
}

const hubUrl = () => params.get("hub") || new URL("sync", location.href).href;

/** Shows the enrollment form (`why`: what went wrong, if anything). */
function askForCode(why) {
  $("enroll").hidden = false;
  $("enroll-who").textContent = identity;
  $("enroll-error").hidden = !why;
  $("enroll-error").textContent = why ?? "";
}

/** Redeems `code` for this browser's key of the identity, then syncs with the key. */
async function enroll(code) {
  $("enroll-button").disabled = true;
  try {
    const me = await db.enroll({ url: hubUrl(), identity, code: code.trim() });
    showMe(me);
    $("enroll").hidden = true;
    startSync();
  } catch (e) {
    askForCode(`${e?.code ? `[${e.code}] ` : ""}${e?.message ?? e}`);
  } finally {
    $("enroll-button").disabled = false;
  }
}

function showMe(me) {
  const key = me ? `, key ${me.fingerprint}${me.enrolled ? "" : " (not enrolled yet)"}` : ", development token";
  $("me").textContent = `local database "${dbName}"${key}`;
}

function startSync() {
  performance.mark("outpost-sync-start"); // (the end-to-end test measures from here)
  const token = params.get("token");
  sync = db.sync({
    url: hubUrl(),
    identity,
    ...(token ? { credential: token } : {}),
    onStatus: (s) => {
      showStatus(s);
      if (s.state === "live") scheduleRender();
      // The hub no longer takes this browser's key (or it has none): a new code re-enrolls it.
      if (!token && s.state === "error" && ["unauthorized", "no_key", "bad_signature"].includes(s.code)) {
        askForCode(`The hub refused this browser's key (${s.code}). Ask the operator for a new code (outpost-hub edge enroll ${identity}).`);
      }
    },
    onRejection: () => scheduleRender(),
    onGrant: (g) => setGrant(g),
    // The operator narrowed this identity's read scope, revoked it, or purged
    // a subject's data (`outpost-hub purge`): those notes were erased here,
    // and a signed receipt went back.
    onPurge: ({ removed, reason }) => {
      const p = $("purged");
      p.hidden = false;
      const why = { revoked: "access revoked", narrowed: "access narrowed", purged: "purged at the hub" }[reason] ?? reason;
      p.textContent = `${removed} note${removed === 1 ? "" : "s"} erased from this browser (${why})`;
      scheduleRender();
    },
  });
  showStatus(sync.status);
  if (sync.grant) setGrant(sync.grant);
}

async function stopSync() {
  const s = sync;
  sync = undefined;
  if (s) await s.stop();
  showStatus({ state: "offline" });
}

async function start(who) {
  if (db) {
    unsubscribe?.();
    await db.close(); // also stops its sync
    db = undefined;
    sync = undefined;
  }
  identity = who;
  dbName = params.get("db") || `outpost-demo-${who}`;
  editing.clear();
  grant = null;
  try {
    grant = JSON.parse(localStorage.getItem(grantKey()) ?? "null");
  } catch {
    grant = null;
  }
  showGrant();
  for (const b of document.querySelectorAll("#who button")) b.setAttribute("aria-pressed", String(b.dataset.identity === who));
  $("enroll").hidden = true;
  db = await Outpost.open(dbName);
  unsubscribe = db.subscribe(() => scheduleRender());
  $("app").hidden = false;
  $("paused").checked = false;
  window.demo = { db, get sync() { return sync; }, identity, get grant() { return grant; } };
  const me = params.get("token") ? null : await db.identity(identity);
  showMe(me);
  if (!me || me.enrolled) startSync();
  else if (params.get("code")) await enroll(params.get("code"));
  else {
    showStatus({ state: "offline" });
    askForCode();
  }
  await render();
}

$("enroll-form").addEventListener("submit", (e) => {
  e.preventDefault();
  enroll($("enroll-code").value).catch(showError);
});

$("add").addEventListener("submit", async (e) => {
  e.preventDefault();
  const id = `notes/${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
  try {
    // A pinned note is in collection "Pinned", which the demo hub guards
    // (never_delete): deleting it is refused with delete_forbidden, here at
    // once and offline too, and at the hub.
    const collection = $("pinned").checked ? "Pinned" : "Notes";
    // The write safety chosen: "local" resolves once saved here; "replicated"
    // once the hub has it too; "hub" once the hub applied it (a new id: it
    // must not exist there) and this browser pulled it.
    const safety = $("safety").value;
    const options = safety === "local" ? { collection } : safety === "replicated" ? { collection, safety, timeoutMs: 10_000 } : { collection, safety, expect: "missing", timeoutMs: 10_000 };
    const out = $("add-result");
    out.hidden = false;
    out.textContent = safety === "local" ? "" : `saving with safety ${safety}…`;
    try {
      await db.put(id, { title: $("title").value, text: $("text").value, by: identity }, options);
      out.textContent = `saved with safety ${safety}${safety === "local" ? " (here; it replicates when the hub is reachable)" : safety === "hub" ? " (applied at the hub, then pulled here)" : " (the hub has it)"}`;
    } catch (err) {
      out.textContent = `safety ${safety}: [${err.code}] ${err.message}`;
      if (safety !== "replicated") return; // nothing was written: keep what was typed
    }
    $("title").value = "";
    $("text").value = "";
    $("title").focus();
  } catch (err) {
    showError(err);
  }
});

// Claims a name with safety "hub": applied at the hub alone if nobody holds
// it there; otherwise a "conflict", and nothing is written anywhere.
$("claim").addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = $("claim-name").value.trim();
  const out = $("claim-result");
  out.hidden = false;
  out.dataset.code = "";
  out.textContent = `claiming ${name} at the hub…`;
  try {
    const r = await db.put(`${CLAIMS}${name.toLowerCase()}`, { name, owner: identity, by: identity }, { safety: "hub", expect: "missing", collection: "Claims", timeoutMs: 10_000 });
    out.dataset.code = "applied";
    out.textContent = `${name} is yours (applied at the hub, version ${r.changeVector})`;
    $("claim-name").value = "";
  } catch (err) {
    out.dataset.code = err.code;
    out.textContent =
      err.code === "conflict"
        ? `${name} is taken (the hub holds version ${err.current}): nothing was written`
        : err.code === "offline"
          ? `offline: the claim needs the hub; nothing was written`
          : `[${err.code}] ${err.message}`;
  }
  scheduleRender();
});

$("paused").addEventListener("change", (e) => {
  if (e.target.checked) stopSync().catch(showError);
  else if (!$("enroll").hidden) e.target.checked = true; // not enrolled yet
  else startSync();
});

$("forbidden").addEventListener("click", () =>
  db.put(`secrets/${Date.now().toString(36)}`, { title: "not allowed here", by: identity }).catch(showError),
);

for (const b of document.querySelectorAll("#who button")) {
  b.addEventListener("click", () => {
    const url = new URL(location.href);
    url.searchParams.set("as", b.dataset.identity);
    history.replaceState(null, "", url);
    start(b.dataset.identity).catch(showError);
  });
}

const initial = params.get("as");
if (initial) start(initial).catch(showError);
