// Helpers to tamper with Chromium's IndexedDB files of an origin (a LevelDB
// directory) while the browser is stopped: find the newest write-ahead log
// and cut it in the middle of its last record, as a crash does when it tears
// the log's tail.
import { readFileSync, readdirSync, statSync, truncateSync, existsSync } from "node:fs";
import { join } from "node:path";

const BLOCK = 32 * 1024; // LevelDB log block size
const HEADER = 7; // crc32c (4) + length (2) + type (1)
const FULL = 1;
const FIRST = 2;

/**
 * Every IndexedDB LevelDB directory of a profile: the origin's default
 * storage (`Default/IndexedDB/<origin>.indexeddb.leveldb`) and each storage
 * bucket's (`Default/WebStorage/<n>/IndexedDB/indexeddb.leveldb`).
 */
export function allIndexedDbDirs(profile) {
  const dirs = [];
  const idb = join(profile, "Default", "IndexedDB");
  if (existsSync(idb)) for (const f of readdirSync(idb)) if (f.endsWith(".indexeddb.leveldb")) dirs.push(join(idb, f));
  const ws = join(profile, "Default", "WebStorage");
  if (existsSync(ws)) {
    for (const f of readdirSync(ws)) {
      const d = join(ws, f, "IndexedDB", "indexeddb.leveldb");
      if (existsSync(d)) dirs.push(d);
    }
  }
  return dirs;
}

/**
 * The LevelDB directory holding the IndexedDB database `dbName`: where an
 * Outpost database lives, in its storage bucket or the default storage.
 * Chromium's IndexedDB keeps a database's name in its LevelDB as a string
 * with its length (a varint count of UTF-16 code units, then UTF-16BE), so
 * that is what is searched for (the length keeps "a" from matching "a-b").
 */
export function indexedDbDirOf(profile, dbName) {
  const len = [];
  for (let n = dbName.length; ; n >>= 7) {
    if (n < 0x80) {
      len.push(n);
      break;
    }
    len.push((n & 0x7f) | 0x80);
  }
  const utf16be = Buffer.concat([Buffer.from(len), Buffer.from(dbName, "utf16le").swap16()]);
  const hits = allIndexedDbDirs(profile).filter((d) =>
    readdirSync(d).some((f) => /\.(log|ldb)$/.test(f) && readFileSync(join(d, f)).includes(utf16be)),
  );
  if (hits.length !== 1) throw new Error(`IndexedDB database ${dbName}: ${hits.length} LevelDB directories name it (${hits.join(", ")})`);
  return hits[0];
}

/** The files under `dir` (recursively) whose bytes contain `marker`, relative to `dir`. */
export function filesHolding(dir, marker) {
  const needle = Buffer.from(marker);
  const hits = [];
  const walk = (d) => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      let s;
      try {
        s = statSync(p);
      } catch {
        continue; // gone meanwhile (a browser running)
      }
      if (s.isDirectory()) walk(p);
      else if (s.isFile() && readFileSync(p).includes(needle)) hits.push(p.slice(dir.length + 1));
    }
  };
  walk(dir);
  return hits;
}

/** The newest `*.log` (LevelDB's write-ahead log) in `dir`. */
export function newestLog(dir) {
  const logs = readdirSync(dir)
    .filter((f) => /^\d+\.log$/.test(f))
    .sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10));
  if (logs.length === 0) throw new Error(`no LevelDB log in ${dir}`);
  return join(dir, logs[logs.length - 1]);
}

/**
 * The byte range `[start, end)` of the last logical record of a LevelDB log
 * (its fragments may span blocks), from the record headers.
 */
export function lastRecord(file) {
  const buf = readFileSync(file);
  let off = 0;
  let start = -1;
  let end = -1;
  while (off + HEADER <= buf.length) {
    const left = BLOCK - (off % BLOCK);
    if (left < HEADER) {
      off += left; // block trailer
      continue;
    }
    const len = buf.readUInt16LE(off + 4);
    const type = buf[off + 6];
    if (type === 0 && len === 0) break; // zeroed tail
    if (off + HEADER + len > buf.length) break; // already torn
    if (type === FULL || type === FIRST) start = off;
    off += HEADER + len;
    end = off;
  }
  if (start < 0) throw new Error(`no complete record in ${file}`);
  return { start, end, size: buf.length };
}

/** Cuts the newest log of `dir` in the middle of its last record; returns what it did. */
export function tearLogTail(dir) {
  const file = newestLog(dir);
  const { start, end, size } = lastRecord(file);
  const cut = start + Math.max(HEADER + 1, Math.floor((end - start) / 2));
  truncateSync(file, cut);
  return { file, size, lastRecord: [start, end], cutAt: cut, sizeAfter: statSync(file).size };
}
