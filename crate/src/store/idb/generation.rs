//! Where a database lives, and moving it: finding the newest complete
//! generation at open ([`locate`]), and the move of a purge into the next
//! generation's storage bucket ([`IdbStore::move_to_next_generation`]: the
//! log folded, the page records copied in batches, then the runs without
//! the images page records replaced, the meta record last, the old bucket
//! deleted). See the module documentation of [`super::place`].

use js_sys::{Array, Object, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{IdbDatabase, IdbKeyRange};

use super::js::{self, error_from_js, rw_transaction};
use super::place::{self, Place};
use super::{Conn, IdbStore, META, META_KEY, OpenReport, PAGES, Pending, log, runs};
use crate::store::{PAGE_SIZE, PageNo, StoreError};

/// Pages per transaction when a purge copies the database into the next
/// generation (1 MiB of pages).
const COPY_BATCH: u32 = 256;

/// Opens the database `name` in `place` with its schema.
pub(super) async fn open_conn(
    m: Option<&Object>,
    name: &str,
    place: Place,
) -> Result<(Conn, OpenReport), StoreError> {
    let (factory, bucket) = place::factory(m, name, place)
        .await
        .map_err(|e| error_from_js("open storage bucket", &e))?;
    let (db, report) = js::open_schema(&factory, name)
        .await
        .map_err(|e| error_from_js("open database", &e))?;
    match js::has_schema(&db) {
        Ok(true) => Ok((Conn::new(db, place, bucket), report)),
        other => {
            db.close();
            Err(StoreError::Unsupported {
                file: name.to_string(),
                reason: match other {
                    Err(e) => format!("{:?}", error_from_js("read the schema", &e)),
                    Ok(_) => "the IndexedDB database lacks the object stores pages and meta".into(),
                },
            })
        }
    }
}

/// Whether the database of `conn` has a meta record or a log record (a
/// generation is complete once it has: a copy writes its meta record last,
/// and nothing is appended to a generation before it is complete).
pub(super) async fn has_meta(conn: &Conn) -> Result<bool, StoreError> {
    let err = |e: JsValue| error_from_js("read meta", &e);
    if js::get(&conn.db, META, &META_KEY.into())
        .await
        .map_err(err)?
        .is_some()
    {
        return Ok(true);
    }
    let tx = conn.db.transaction_with_str(log::LOG).map_err(err)?;
    let n = js::request(
        &tx.object_store(log::LOG)
            .and_then(|s| s.count())
            .map_err(err)?,
    )
    .await
    .map_err(err)?;
    Ok(n.as_f64().unwrap_or(0.0) > 0.0)
}

/// Finds and opens the database `name`: the newest complete generation of its
/// buckets (deleting incomplete newer and superseded older ones), else its
/// database in the default storage if it has one there, else (`create`) a
/// new generation 1 (or the default storage, without buckets).
pub(super) async fn locate(
    m: Option<&Object>,
    name: &str,
    create: bool,
) -> Result<(Conn, OpenReport), StoreError> {
    let Some(m) = m else {
        return open_conn(None, name, Place::Default).await;
    };
    let bucket_err = |e: JsValue| error_from_js("list storage buckets", &e);
    // Asked beside the list of buckets, awaited only where needed.
    let in_default = place::in_default_storage(name);
    let gens = place::generations(m, name).await.map_err(bucket_err)?;
    let Some(&oldest) = gens.first() else {
        let legacy = in_default.await.map_err(bucket_err)?;
        if !legacy && !create {
            return Err(StoreError::Other(format!(
                "the IndexedDB database {name} was deleted while open (Outpost.destroy in \
                 another tab?): close this handle"
            )));
        }
        let place = if legacy {
            Place::Default
        } else {
            Place::Bucket(1)
        };
        return open_conn(Some(m), name, place).await;
    };
    let mut chosen = None;
    for &g in gens.iter().rev() {
        let (conn, report) = open_conn(Some(m), name, Place::Bucket(g)).await?;
        if g == oldest || has_meta(&conn).await? {
            chosen = Some((conn, report));
            break;
        }
        // A copy cut short: its meta record is written last.
        drop(conn);
        place::delete(Some(m), name, Place::Bucket(g))
            .await
            .map_err(|e| error_from_js("delete an incomplete generation", &e))?;
    }
    let (conn, report) = chosen.expect("the oldest generation is always chosen");
    let Place::Bucket(current) = conn.place else {
        unreachable!("a bucket was opened")
    };
    for &g in gens.iter().filter(|&&g| g < current) {
        // A copy completed, the deletion of its source cut short.
        place::delete(Some(m), name, Place::Bucket(g))
            .await
            .map_err(|e| error_from_js("delete a superseded generation", &e))?;
    }
    if current == 1 && in_default.await.map_err(bucket_err)? {
        // Moved out of the default storage, its deletion cut short.
        place::delete(None, name, Place::Default)
            .await
            .map_err(|e| error_from_js("delete the database moved into a bucket", &e))?;
    }
    Ok((conn, report))
}

impl IdbStore {
    /// Test hook: what [`PageStore::erase_residue`](crate::store::PageStore)
    /// does to the runs where there are no storage buckets (Chromium has
    /// them, so the path is reached only through this). Only with the
    /// `testing` feature.
    #[cfg(any(test, feature = "testing"))]
    #[doc(hidden)]
    pub async fn testing_scrub_runs(&self) -> Result<(), StoreError> {
        self.scrub_runs().await
    }

    /// Test hook: writes generation `g` of this database as an interrupted
    /// move leaves it: a complete copy (`complete`, its source not deleted)
    /// or a copy cut short (one page, no meta record). Only with the
    /// `testing` feature.
    #[cfg(any(test, feature = "testing"))]
    #[doc(hidden)]
    pub async fn testing_write_generation(&self, g: u64, complete: bool) -> Result<(), StoreError> {
        use crate::store::{PAGE_SIZE, PageStore};
        use js_sys::Uint8Array;
        let m = self
            .buckets
            .clone()
            .ok_or_else(|| StoreError::Other("no storage buckets in this browser".into()))?;
        if complete {
            // As a move does: the log folded into the pages, then the copy.
            self.read_meta().await?;
            self.fold("strict").await?;
            self.copy_to(&m, &self.db()?, Place::Bucket(g)).await?;
            return Ok(());
        }
        let (conn, _) = open_conn(Some(&m), &self.name, Place::Bucket(g)).await?;
        let pending = Pending::of(
            rw_transaction(&conn.db, "strict").map_err(|e| error_from_js("write", &e))?,
        );
        pending
            .tx
            .object_store(PAGES)
            .and_then(|s| {
                s.put_with_key(
                    &Uint8Array::new_with_length(PAGE_SIZE as u32),
                    &JsValue::from_f64(1.0),
                )
            })
            .map_err(|e| error_from_js("write", &e))?;
        pending.wait("write").await
    }

    /// Copies the database into generation `next` (pages in batches, the
    /// meta record last): the new connection, or `None` when nothing was
    /// ever committed. The copy has no runs' layout record: its first
    /// `read_meta` reads the runs' keys, and its first fold writes the
    /// record (module `runs`).
    pub(super) async fn copy_to(
        &self,
        m: &Object,
        from: &IdbDatabase,
        next: Place,
    ) -> Result<Option<Conn>, StoreError> {
        let op = "copy into the next storage bucket";
        let err = |e: JsValue| error_from_js(op, &e);
        let Some(meta) = js::get(from, META, &META_KEY.into()).await.map_err(err)? else {
            return Ok(None);
        };
        let (conn, _) = open_conn(Some(m), &self.name, next).await?;
        // Leftovers of an earlier attempt, if any.
        let tx = rw_transaction(&conn.db, "relaxed").map_err(err)?;
        let pending = Pending::of(tx);
        (|| -> Result<(), JsValue> {
            pending.tx.object_store(PAGES)?.clear()?;
            pending.tx.object_store(META)?.clear()?;
            pending.tx.object_store(log::LOG)?.clear()?;
            pending.tx.object_store(runs::RUNS)?.clear()?;
            Ok(())
        })()
        .map_err(err)?;
        pending.wait(op).await?;
        // The page numbers that have a page record: in a run, their images
        // are older (module `runs`) and are not copied.
        let mut recorded: Vec<PageNo> = Vec::new();
        let mut lo = 0.0;
        loop {
            let tx = from.transaction_with_str(PAGES).map_err(err)?;
            let store = tx.object_store(PAGES).map_err(err)?;
            let range = IdbKeyRange::lower_bound(&JsValue::from_f64(lo)).map_err(err)?;
            let kr = store
                .get_all_keys_with_key_and_limit(&range, COPY_BATCH)
                .map_err(err)?;
            let vr = store
                .get_all_with_key_and_limit(&range, COPY_BATCH)
                .map_err(err)?;
            // Joined: both futures set their handlers in this turn.
            let (keys, values) = futures::join!(js::request(&kr), js::request(&vr));
            let keys: Array = keys.map_err(err)?.unchecked_into();
            let values: Array = values.map_err(err)?.unchecked_into();
            let n = keys.length();
            if n == 0 || values.length() != n {
                break;
            }
            let pending = Pending::of(rw_transaction(&conn.db, "relaxed").map_err(err)?);
            (|| -> Result<(), JsValue> {
                let pages = pending.tx.object_store(PAGES)?;
                for i in 0..n {
                    pages.put_with_key(&values.get(i), &keys.get(i))?;
                    if let Some(k) = keys.get(i).as_f64() {
                        recorded.push(k as PageNo);
                    }
                }
                Ok(())
            })()
            .map_err(err)?;
            pending.wait(op).await?;
            let Some(last) = keys.get(n - 1).as_f64() else {
                break;
            };
            if n < COPY_BATCH {
                break;
            }
            lo = last + 1.0;
        }
        // Boxed: its own state machine, not one inlined into every caller's.
        Box::pin(self.copy_runs(from, &conn.db, &recorded, false)).await?;
        // The meta record last, strict (the browser flushes everything before
        // it): the generation is complete once it is there.
        let pending = Pending::of(rw_transaction(&conn.db, "strict").map_err(err)?);
        pending
            .tx
            .object_store(META)
            .and_then(|s| s.put_with_key(&meta, &JsValue::from_f64(META_KEY)))
            .map_err(err)?;
        pending.wait(op).await?;
        Ok(Some(conn))
    }

    /// Moves the database into the next generation's bucket and deletes the
    /// previous one (see [`PageStore::erase_residue`]).
    pub(super) async fn move_to_next_generation(&self, m: &Object) -> Result<(), StoreError> {
        let (from, place) = {
            let g = self.conn.borrow();
            let c = g.as_ref().ok_or(StoreError::Closed)?;
            (c.db.clone(), c.place)
        };
        let next = Place::Bucket(match place {
            Place::Default => 1,
            Place::Bucket(g) => g + 1,
        });
        *self.held.borrow_mut() = Some(Vec::new());
        // The copy takes the page records and the meta record: fold the log
        // into them first (commits issued from now on are held).
        if let Err(e) = self.fold("strict").await {
            self.release_held();
            return Err(e);
        }
        let conn = match self.copy_to(m, &from, next).await {
            Ok(Some(conn)) => conn,
            Ok(None) => {
                self.release_held();
                return Ok(());
            }
            Err(e) => {
                self.release_held();
                let _ = place::delete(Some(m), &self.name, next).await;
                return Err(e);
            }
        };
        let old = self.conn.borrow_mut().replace(conn);
        if old.is_none() {
            // Closed meanwhile: keep it closed (held commits fail `Closed`).
            *self.conn.borrow_mut() = None;
        }
        // The new generation has no fence token yet, nor a layout record:
        // the runs the store knows are a superset of its runs, and the next
        // fold writes the record.
        self.fence.set(0.0);
        self.layout_dirty.set(true);
        self.epoch.set(self.epoch.get() + 1);
        self.release_held();
        if let Some(old) = old {
            // Let what was issued on the old connection finish (a readwrite
            // transaction over both stores starts after every earlier one)
            // before its storage goes.
            let op = "finish the previous generation";
            let barrier = rw_transaction(&from, "relaxed").map_err(|e| error_from_js(op, &e))?;
            Pending::of(barrier).wait(op).await?;
            drop(old);
        }
        let op = "delete the previous storage";
        place::delete(Some(m), &self.name, place)
            .await
            .map_err(|e| error_from_js(op, &e))?;
        let Place::Bucket(now) = next else {
            unreachable!()
        };
        for g in place::generations(m, &self.name)
            .await
            .map_err(|e| error_from_js(op, &e))?
        {
            if g != now {
                place::delete(Some(m), &self.name, Place::Bucket(g))
                    .await
                    .map_err(|e| error_from_js(op, &e))?;
            }
        }
        Ok(())
    }

    /// Copies the runs of `from` into `to`, one run per transaction, with
    /// the pages that have a page record (`recorded`, ascending) zeroed:
    /// those images are older than the records (module `runs`), and a
    /// purge's move must not carry them over. A run with every page
    /// recorded is left out.
    ///
    /// With `to` the same database (`in_place`, where there are no storage
    /// buckets): rewrites the runs that hold such images, and deletes those
    /// that hold nothing else (the layout record lists them until the next
    /// fold, module `runs`). A fold meanwhile may add records (they win
    /// over the run either way) but never a run over these.
    async fn copy_runs(
        &self,
        from: &IdbDatabase,
        to: &IdbDatabase,
        recorded: &[PageNo],
        in_place: bool,
    ) -> Result<(), StoreError> {
        let op = "copy into the next storage bucket";
        let err = |e: JsValue| error_from_js(op, &e);
        let keys = js::request(
            &from
                .transaction_with_str(runs::RUNS)
                .and_then(|tx| tx.object_store(runs::RUNS))
                .and_then(|s| s.get_all_keys())
                .map_err(err)?,
        )
        .await
        .map_err(err)?;
        let layout = runs::Runs::from_keys(&keys.unchecked_into()).map_err(|reason| {
            StoreError::Corrupt {
                file: format!("{}/{}", self.name, runs::RUNS),
                page: None,
                offset: 0,
                reason,
            }
        })?;
        for (start, n) in layout.iter() {
            let live: Vec<PageNo> = (start..start + n)
                .filter(|no| recorded.binary_search(no).is_err())
                .collect();
            if in_place && live.len() as u64 == n {
                continue;
            }
            if live.is_empty() {
                if in_place {
                    let pending = Pending::of(rw_transaction(to, "strict").map_err(err)?);
                    pending
                        .tx
                        .object_store(runs::RUNS)
                        .and_then(|s| s.delete(&runs::key(start, n)))
                        .map_err(err)?;
                    pending.wait(op).await?;
                    // The layout record lists it until the next fold.
                    self.runs.borrow_mut().forget(&[(start, n)]);
                    self.layout_dirty.set(true);
                }
                continue;
            }
            let Some(v) = js::get(from, runs::RUNS, &runs::key(start, n))
                .await
                .map_err(err)?
            else {
                continue;
            };
            let mut bytes = vec![0u8; n as usize * PAGE_SIZE];
            for no in live {
                let page = runs::page_in(&v, start, n, no)
                    .map_err(|reason| js::corrupt(&self.name, no, &reason))?;
                let at = (no - start) as usize * PAGE_SIZE;
                bytes[at..at + PAGE_SIZE].copy_from_slice(&page);
            }
            let durability = if in_place { "strict" } else { "relaxed" };
            let pending = Pending::of(rw_transaction(to, durability).map_err(err)?);
            pending
                .tx
                .object_store(runs::RUNS)
                .and_then(|s| {
                    s.put_with_key(&Uint8Array::from(bytes.as_slice()), &runs::key(start, n))
                })
                .map_err(err)?;
            pending.wait(op).await?;
        }
        Ok(())
    }

    /// Where there are no storage buckets (a purge cannot move the
    /// database): overwrites, in the runs, the page images that page
    /// records replaced (see [`IdbStore::copy_runs`]).
    pub(super) async fn scrub_runs(&self) -> Result<(), StoreError> {
        let op = "erase old page images in runs";
        let err = |e: JsValue| error_from_js(op, &e);
        let db = self.db()?;
        let keys: Array = js::request(
            &db.transaction_with_str(PAGES)
                .and_then(|tx| tx.object_store(PAGES))
                .and_then(|s| s.get_all_keys())
                .map_err(err)?,
        )
        .await
        .map_err(err)?
        .unchecked_into();
        let recorded: Vec<PageNo> = keys
            .iter()
            .filter_map(|k| k.as_f64())
            .map(|k| k as PageNo)
            .collect();
        Box::pin(self.copy_runs(&db, &db, &recorded, true)).await
    }
}
