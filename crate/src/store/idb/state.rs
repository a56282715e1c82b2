//! The state `read_meta` reads in one readonly transaction: the log's
//! keys and new records, the meta record, the folded sequence number, the
//! fence token and the runs' layout record (module [`super::runs`]).

use js_sys::Array;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::IdbKeyRange;

use super::{FENCE_KEY, IdbStore, META, META_KEY, bytes_of, js, log, runs};
use crate::store::StoreError;

/// What [`IdbStore::read_state`] read, in one transaction.
pub(super) struct State {
    /// Keys of the log records, ascending.
    pub(super) keys: Vec<u64>,
    /// The `meta` record (key 0), as stored.
    pub(super) meta: Option<JsValue>,
    /// The highest folded sequence number (`meta` key 1; 0 when absent).
    pub(super) folded: u64,
    /// The fence token (`meta` key 2; 0 when absent).
    pub(super) fence: f64,
    /// The log records above the sequence number asked for, ascending.
    pub(super) new: Vec<(u64, Vec<u8>)>,
    /// The layout record (module [`runs`]), or, where the database has none,
    /// the keys of the runs.
    pub(super) layout: Result<JsValue, Array>,
}

impl IdbStore {
    /// Reads, in one readonly transaction, the log's keys, the `meta`
    /// record, the folded sequence number, the log records above `seen` and
    /// the runs' layout record (without one, the runs' keys after it).
    pub(super) async fn read_state(&self, seen: u64) -> Result<State, JsValue> {
        let db = self.db().map_err(|e| JsValue::from_str(&e.to_string()))?;
        let names = Array::of2(&JsValue::from_str(log::LOG), &JsValue::from_str(META));
        let tx = db.transaction_with_str_sequence(&names)?;
        let log_store = tx.object_store(log::LOG)?;
        let meta_store = tx.object_store(META)?;
        let layout = meta_store.get(&JsValue::from_f64(runs::LAYOUT_KEY))?;
        let keys = log_store.get_all_keys()?;
        let meta = meta_store.get(&JsValue::from_f64(META_KEY))?;
        let folded = meta_store.get(&JsValue::from_f64(log::FOLDED_KEY))?;
        let fence = meta_store.get(&JsValue::from_f64(FENCE_KEY))?;
        let above = IdbKeyRange::lower_bound_with_open(&JsValue::from_f64(seen as f64), true)?;
        let new = log_store.get_all_with_key(&above)?;
        // Joined: every request's handlers are set in this turn.
        let (keys, meta, folded, fence, new, layout) = futures::join!(
            js::request(&keys),
            js::request(&meta),
            js::request(&folded),
            js::request(&fence),
            js::request(&new),
            js::request(&layout)
        );
        let keys: Vec<u64> = Array::from(&keys?)
            .iter()
            .filter_map(|k| k.as_f64())
            .map(|k| k as u64)
            .collect();
        let meta = meta?;
        let new: Array = new?.unchecked_into();
        let above: Vec<u64> = keys.iter().copied().filter(|&k| k > seen).collect();
        if above.len() != new.length() as usize {
            return Err(JsValue::from_str("the log changed during one read"));
        }
        let mut records = Vec::with_capacity(above.len());
        for (i, k) in above.into_iter().enumerate() {
            let v = bytes_of(&new.get(i as u32))
                .ok_or_else(|| JsValue::from_str("a log record is not a byte array"))?;
            records.push((k, v));
        }
        Ok(State {
            keys,
            meta: (!meta.is_undefined()).then_some(meta),
            folded: folded?.as_f64().unwrap_or(0.0) as u64,
            fence: fence?.as_f64().unwrap_or(0.0),
            new: records,
            layout: match layout? {
                v if v.is_undefined() => Err(self.run_keys().await?),
                v => Ok(v),
            },
        })
    }

    /// Takes the runs' layout from its record as `read_state` read it, or,
    /// in a database without one (upgraded from schema version 3), from
    /// the keys of the `runs` object store, and then has the next fold
    /// write the record (module [`runs`]).
    pub(super) fn load_layout(&self, layout: &Result<JsValue, Array>) -> Result<(), StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            file: format!("{}/{}", self.name, runs::RUNS),
            page: None,
            offset: 0,
            reason,
        };
        self.layout_dirty.set(layout.is_err());
        let layout = match layout {
            Ok(v) => bytes_of(v)
                .ok_or_else(|| "the layout record is not a byte array".to_string())
                .and_then(|b| runs::Runs::decode(&b)),
            Err(keys) => runs::Runs::from_keys(keys),
        }
        .map_err(corrupt)?;
        *self.runs.borrow_mut() = layout;
        Ok(())
    }

    /// The keys of the `runs` object store, in a readonly transaction of
    /// their own.
    async fn run_keys(&self) -> Result<Array, JsValue> {
        let db = self.db().map_err(|e| JsValue::from_str(&e.to_string()))?;
        let req = db
            .transaction_with_str(runs::RUNS)?
            .object_store(runs::RUNS)?
            .get_all_keys()?;
        Ok(js::request(&req).await?.unchecked_into())
    }
}
