// The ~1 KiB JSON documents of both Chromium benchmarks: page.js (run.mjs)
// and the initial-sync benchmark (sync.mjs: its Node side loads them into
// the hub and pouchdb-server; sync-page.js uses them for its local-write
// diagnostic). Deterministic: the same documents for every engine.

export function rng(seed) {
  // SplitMix32-ish; deterministic.
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
  };
}
const WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike " +
  "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu " +
  "clinic patient visit nurse ward dose fever pulse note follow review stable").split(" ");
const CITIES = ["Lagos", "Nairobi", "Accra", "Kampala", "Dakar", "Lusaka", "Harare", "Maputo"];

/** The id of document `i`: `docs/000000` … (6 digits). */
export const idOf = (i) => "docs/" + String(i).padStart(6, "0");

/** A document of about 1 KiB of JSON (without metadata). */
export function makeDoc(i, seed = 1) {
  const r = rng(i * 7919 + seed);
  const w = () => WORDS[(r() * WORDS.length) | 0];
  let notes = "";
  while (notes.length < 780) notes += w() + " ";
  return {
    type: "patient",
    name: w() + " " + w(),
    email: `${w()}.${i}@example.org`,
    city: CITIES[(r() * CITIES.length) | 0],
    age: (r() * 90) | 0,
    n: i,
    active: r() < 0.5,
    tags: [w(), w(), w(), w()],
    vitals: { pulse: 50 + ((r() * 60) | 0), temp: 36 + r() * 3, bp: [110 + ((r() * 40) | 0), 70 + ((r() * 20) | 0)] },
    notes,
  };
}
