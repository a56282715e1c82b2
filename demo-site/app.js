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
// URL parameters (all optional): ?as=alice|bob picks the identity (the demo
// tokens of `outpost-hub init --demo`; any other identity with ?token=…),
// ?hub=ws://host/sync another hub, ?token=… another token, ?db=… another
// local database name.
import { Outpost } from "./pkg/src/web.js";

const TOKENS = { alice: "alice-demo-token", bob: "bob-demo-token" };
const SHOWN = 200; // notes listed at most (the count shows the rest)
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
  const [notes, count, conflicts, rejections] = await Promise.all([
    current.scan({ prefix: "notes/", limit: SHOWN }),
    current.count(),
    current.conflicts({ limit: 100 }),
    current.rejections(),
  ]);
  if (current !== db) return;
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
        el("div", { class: "id" }, `${id}${m["@conflicted"] ? " · in conflict" : ""}${doc.by ? ` · by ${doc.by}` : ""}`),
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
            await db.put(id, { title: title.value, text: text.value, by: identity }, { collection: "Notes" });
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

function startSync() {
  performance.mark("outpost-sync-start"); // (the end-to-end test measures from here)
  const hub = params.get("hub") || new URL("sync", location.href).href;
  sync = db.sync({
    url: hub,
    identity,
    credential: params.get("token") || TOKENS[identity],
    onStatus: (s) => {
      showStatus(s);
      if (s.state === "live") scheduleRender();
    },
    onRejection: () => scheduleRender(),
    onGrant: (g) => setGrant(g),
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
  if (!TOKENS[who] && !params.get("token")) throw new Error(`unknown identity ${who}`);
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
  $("me").textContent = `local database "${dbName}"`;
  db = await Outpost.open(dbName);
  unsubscribe = db.subscribe(() => scheduleRender());
  $("app").hidden = false;
  $("paused").checked = false;
  startSync();
  window.demo = { db, get sync() { return sync; }, identity, get grant() { return grant; } };
  await render();
}

$("add").addEventListener("submit", async (e) => {
  e.preventDefault();
  const id = `notes/${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
  try {
    await db.put(id, { title: $("title").value, text: $("text").value, by: identity }, { collection: "Notes" });
    $("title").value = "";
    $("text").value = "";
    $("title").focus();
  } catch (err) {
    showError(err);
  }
});

$("paused").addEventListener("change", (e) => {
  if (e.target.checked) stopSync().catch(showError);
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
