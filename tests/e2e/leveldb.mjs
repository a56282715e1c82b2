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

/** The IndexedDB LevelDB directory of `origin` (e.g. "http://127.0.0.1:4321") in a profile. */
export function indexedDbDir(profile, origin) {
  const u = new URL(origin);
  const dir = join(profile, "Default", "IndexedDB", `${u.protocol.replace(":", "")}_${u.hostname}_${u.port || (u.protocol === "https:" ? 443 : 80)}.indexeddb.leveldb`);
  if (!existsSync(dir)) throw new Error(`no IndexedDB directory ${dir}`);
  return dir;
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
