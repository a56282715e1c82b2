// Prints the sizes of the sections of a .wasm file and, when the module has a
// "name" section, its code size by crate and its largest functions: what
// dominates its size. Used by scripts/build-wasm.sh; not part of the published
// package.
//
//   node pkg-js/tools/wasm-sections.mjs module.wasm [--top N] [--no-sections]
import { readFileSync } from "node:fs";

const args = process.argv.slice(2);
const file = args.find((a, i) => !a.startsWith("--") && args[i - 1] !== "--top");
const topAt = args.indexOf("--top");
const top = topAt >= 0 ? Number(args[topAt + 1]) : 10;
const showSections = !args.includes("--no-sections");
const buf = readFileSync(file);
const NAMES = ["custom", "type", "import", "function", "table", "memory", "global",
  "export", "start", "element", "code", "data", "data count"];

let pos = 8;
function leb() {
  let result = 0, shift = 0, b;
  do {
    b = buf[pos++];
    result += (b & 0x7f) * 2 ** shift;
    shift += 7;
  } while (b & 0x80);
  return result;
}
function name() {
  const n = leb();
  const s = buf.toString("utf8", pos, pos + n);
  pos += n;
  return s;
}

const sections = [];
let code = null;
let imports = 0;
const fnNames = new Map();
while (pos < buf.length) {
  const id = buf[pos++];
  const size = leb();
  const start = pos;
  let label = NAMES[id] ?? `unknown ${id}`;
  if (id === 0) {
    const n = name();
    label = `custom "${n}"`;
    if (n === "name") {
      while (pos < start + size) {
        const sub = buf[pos++];
        const len = leb();
        const end = pos + len;
        if (sub === 1) {
          const count = leb();
          for (let i = 0; i < count; i++) fnNames.set(leb(), name());
        }
        pos = end;
      }
    }
  } else if (id === 2) {
    const count = leb();
    for (let i = 0; i < count; i++) {
      name(); name();
      const kind = buf[pos++];
      if (kind === 0) { imports++; leb(); }
      else if (kind === 1) { pos++; const f = leb(); leb(); if (f & 1) leb(); }
      else if (kind === 2) { const f = leb(); leb(); if (f & 1) leb(); }
      else if (kind === 3) { pos += 2; }
      else break;
    }
  } else if (id === 10) {
    const count = leb();
    code = [];
    for (let i = 0; i < count; i++) {
      const len = leb();
      code.push({ index: i, len });
      pos += len;
    }
  }
  sections.push({ label, size });
  pos = start + size;
}

if (showSections) {
  console.log(`    sections of ${file}:`);
  for (const s of sections.sort((a, b) => b.size - a.size)) {
    if (s.size < 100) continue;
    console.log(`      ${s.label.padEnd(28)} ${String(s.size).padStart(8)} bytes (${(100 * s.size / buf.length).toFixed(1)}%)`);
  }
}

// The crate a (demangled) Rust symbol belongs to: its first path segment,
// looking through `<T as Trait>` and `<impl ...>` wrappers.
function crateOf(symbol) {
  const m = symbol.replace(/^[<&\s]+|^(dyn |impl |mut )+/g, "").match(/^([A-Za-z_][A-Za-z0-9_]*)(\[[0-9a-f]+\])?::/);
  return m ? m[1] : symbol.startsWith("__wbg") || symbol.startsWith("__wbindgen") ? "wasm-bindgen glue" : "(other)";
}

if (code && fnNames.size > 0 && top > 0) {
  const total = code.reduce((n, f) => n + f.len, 0);
  const byCrate = new Map();
  for (const f of code) {
    const c = crateOf(fnNames.get(f.index + imports) ?? "");
    byCrate.set(c, (byCrate.get(c) ?? 0) + f.len);
  }
  console.log(`    code by crate (${code.length} functions, ${total} bytes):`);
  for (const [c, n] of [...byCrate].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`      ${c.padEnd(28)} ${String(n).padStart(8)} bytes (${(100 * n / total).toFixed(1)}%)`);
  }
  console.log(`    largest functions:`);
  for (const f of code.sort((a, b) => b.len - a.len).slice(0, top)) {
    const n = fnNames.get(f.index + imports) ?? `func[${f.index + imports}]`;
    console.log(`      ${String(f.len).padStart(8)} bytes  ${n.replace(/::h[0-9a-f]{16}$/, "").slice(0, 100)}`);
  }
}
