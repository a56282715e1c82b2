// The app each bundler builds in bundlers.test.mjs (the test writes the entry
// that imports the package one way or another and calls `run`): opens an
// IndexedDB database through @outpost/db, writes, reads back, checks that an
// unknown option is refused, and reports in window.__outpost.
export function run(Outpost, OutpostError) {
  const main = async () => {
    const db = await Outpost.open(`bundled-${Date.now()}`);
    await db.put("notes/1", { title: "bundled" }, { collection: "Notes" });
    const doc = await db.get("notes/1");
    let code = null;
    try {
      await db.scan({ where: { title: "x" } });
    } catch (e) {
      code = e instanceof OutpostError ? e.code : String(e);
    }
    await db.close();
    return { title: doc?.title ?? null, id: doc?.["@metadata"]?.["@id"] ?? null, unknownOption: code };
  };
  main().then(
    (r) => {
      window.__outpost = { ok: true, ...r };
      document.body.textContent = JSON.stringify(window.__outpost);
    },
    (e) => {
      window.__outpost = { ok: false, error: `${e?.code ?? ""} ${e?.message ?? e}` };
      document.body.textContent = JSON.stringify(window.__outpost);
    },
  );
}
