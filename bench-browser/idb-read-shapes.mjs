// What a cold read of one page costs in Chromium's IndexedDB, by the shape
// of its readonly transaction (issue 14 §6, docs/benchmarks.md "A cold read
// asks for the run alone"): a database of runs (values of 8, 16, 32 pages of
// JSON-like text), page records and ~1 KiB documents, reopened, then 600
// random reads of each shape, interleaved; medians in ms:
//   doc           one get of a ~1 KiB record (what Dexie reads)
//   run           one get of a run
//   ours          the page's record, the keys of the run's records and the run
//                 (every read of a page in a run before layout format 2)
//   pageAndRun    the page's record and the run
//   runTwoStoreTx the run alone, in a transaction over both object stores
//                 (what a read asks for now when no record replaced the page)
//   blobPage      the run stored as a Blob: its get, then one page's slice read
//                 (`blob.slice(...).arrayBuffer()`)
//   blobWhole     the same Blob read whole
//
//   cd bench-browser && node idb-read-shapes.mjs   (RUN_PAGES=32,64: other run sizes)
import { createServer } from "node:http";
import { launchChromium } from "./harness.mjs";

const page = `<!doctype html><meta charset="utf-8"><script type="module">
const req = (r) => new Promise((res, rej) => { r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
const open = (name) => new Promise((res, rej) => { const r = indexedDB.open(name, 1); r.onupgradeneeded = () => { for (const s of ["pages", "runs", "docs", "blobs"]) r.result.createObjectStore(s); }; r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
const med = (a) => { a.sort((x, y) => x - y); return a[a.length >> 1]; };
const text = (i, n) => { let s = ""; while (s.length < n) s += \`{"id":"docs/\${i}","name":"user \${i * 7919 % 10007}","tags":["a\${i % 13}","b\${i % 7}"],"n":\${i * 31 % 1000}},\`; return s.slice(0, n); };
window.run = async (runs, runPages, reads) => {
  const name = "cp2-" + Math.random();
  let db = await open(name);
  const enc = new TextEncoder();
  for (let r = 0; r < runs; r += 10) {
    const tx = db.transaction(["pages", "runs", "docs", "blobs"], "readwrite", { durability: "relaxed" });
    for (let j = r; j < r + 10 && j < runs; j++) {
      const bytes = enc.encode(text(j, runPages * 4096));
      tx.objectStore("runs").put(bytes, [j * 64, runPages]);
      tx.objectStore("blobs").put(new Blob([bytes]), [j * 64, runPages]);
      tx.objectStore("pages").put(enc.encode(text(j + 1e6, 4096)), j * 64 + 63);
      for (let d = 0; d < 3 * runPages; d++) tx.objectStore("docs").put({ id: \`docs/\${j}/\${d}\`, body: text(d, 1000) }, \`docs/\${String(j).padStart(6, "0")}/\${d}\`);
    }
    await new Promise((res) => (tx.oncomplete = res));
  }
  db.close();
  db = await open(name);
  const rnd = (n) => (Math.random() * n) | 0;
  const t = { doc: [], run: [], ours: [], pageAndRun: [], runTwoStoreTx: [], blobPage: [], blobWhole: [] };
  for (let i = 0; i < reads; i++) {
    let s = performance.now();
    { const tx = db.transaction("docs", "readonly"); await req(tx.objectStore("docs").get(\`docs/\${String(rnd(runs)).padStart(6, "0")}/\${rnd(3 * runPages)}\`)); }
    t.doc.push(performance.now() - s);
    s = performance.now();
    { const j = rnd(runs); const tx = db.transaction("runs", "readonly"); await req(tx.objectStore("runs").get([j * 64, runPages])); }
    t.run.push(performance.now() - s);
    s = performance.now();
    { const j = rnd(runs); const tx = db.transaction(["pages", "runs"], "readonly"); const p = tx.objectStore("pages"); const a = req(p.get(j * 64 + 5)); const b = req(p.getAllKeys(IDBKeyRange.bound(j * 64, j * 64 + runPages - 1))); const c = req(tx.objectStore("runs").get([j * 64, runPages])); await Promise.all([a, b, c]); }
    t.ours.push(performance.now() - s);
    s = performance.now();
    { const j = rnd(runs); const tx = db.transaction(["pages", "runs"], "readonly"); const p = tx.objectStore("pages"); const a = req(p.get(j * 64 + 5)); const c = req(tx.objectStore("runs").get([j * 64, runPages])); await Promise.all([a, c]); }
    t.pageAndRun.push(performance.now() - s);
    s = performance.now();
    { const j = rnd(runs); const tx = db.transaction(["pages", "runs"], "readonly"); const c = req(tx.objectStore("runs").get([j * 64, runPages])); await Promise.all([c]); }
    t.runTwoStoreTx.push(performance.now() - s);
    s = performance.now();
    { const j = rnd(runs); const tx = db.transaction("blobs", "readonly"); const b = await req(tx.objectStore("blobs").get([j * 64, runPages])); const o = rnd(runPages) * 4096; const buf = await b.slice(o, o + 4096).arrayBuffer(); if (buf.byteLength !== 4096) throw new Error("short"); }
    t.blobPage.push(performance.now() - s);
    s = performance.now();
    { const j = rnd(runs); const tx = db.transaction("blobs", "readonly"); const b = await req(tx.objectStore("blobs").get([j * 64, runPages])); const buf = await b.arrayBuffer(); if (buf.byteLength !== runPages * 4096) throw new Error("short"); }
    t.blobWhole.push(performance.now() - s);
  }
  const out = {};
  for (const k of Object.keys(t)) if (t[k].length) out[k] = med(t[k]).toFixed(3);
  db.close(); indexedDB.deleteDatabase(name);
  return out;
};
window.ready = true;
</` + `script>`;
const server = createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/html", "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp" });
  res.end(page);
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const browser = await launchChromium({ prefix: "outpost-read-shapes-" });
const context = browser.context;
try {
  const tab = context.pages()[0] ?? (await context.newPage());
  await tab.goto(`http://127.0.0.1:${server.address().port}/`);
  await tab.waitForFunction(() => window.ready);
  for (const runPages of (process.env.RUN_PAGES ?? "8,16,32").split(",").map(Number)) {
    const runs = Math.round((1000 * 32) / runPages);
    console.log(`runs of ${runPages} pages:`, JSON.stringify(await tab.evaluate(([a, b, c]) => window.run(a, b, c), [runs, runPages, 600])));
  }
} finally {
  await browser.close();
  server.close();
}
