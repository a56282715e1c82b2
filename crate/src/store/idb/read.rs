//! Reading pages: from the log's overlay in memory, else from the page
//! records and the runs (module [`runs`]) in one readonly transaction.

use std::collections::HashMap;

use js_sys::Array;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{IdbKeyRange, IdbRequest};

use super::runs::{self, RUNS};
use super::{IdbStore, PAGES, corrupt, error_from_js, js};
use crate::store::{PAGE_SIZE, PageBuf, PageNo, StoreError};

/// What one readonly transaction returned for the page records asked for.
enum Records {
    /// One value per page asked for (`undefined`: none).
    Each(Vec<JsValue>),
    /// Every record of a key range, by page number.
    Range(HashMap<PageNo, JsValue>),
}

impl IdbStore {
    /// The page `no` from the value IndexedDB returned for it.
    pub(super) fn page_of(&self, no: PageNo, v: Option<JsValue>) -> Result<PageBuf, StoreError> {
        let Some(v) = v else {
            return Err(StoreError::PageNotFound(no));
        };
        let bytes = js::bytes_of(&v).ok_or_else(|| corrupt(&self.name, no, "not a byte array"))?;
        if bytes.len() != PAGE_SIZE {
            return Err(corrupt(
                &self.name,
                no,
                &format!("page of {} bytes, expected {PAGE_SIZE}", bytes.len()),
            ));
        }
        Ok(PageBuf::new(bytes))
    }

    /// Reads the pages `nos`, one result per number, in order: the log's
    /// versions from memory, the others in one readonly transaction.
    pub(super) async fn read_many(&self, nos: &[PageNo]) -> Vec<Result<PageBuf, StoreError>> {
        let logged: Vec<Option<PageBuf>> = {
            let lg = self.log.borrow();
            nos.iter().map(|&no| lg.page(no)).collect()
        };
        let rest: Vec<PageNo> = nos
            .iter()
            .zip(&logged)
            .filter(|(_, l)| l.is_none())
            .map(|(no, _)| *no)
            .collect();
        let mut read = match self.fetch(&rest).await {
            Ok(r) => r.into_iter(),
            Err(e) if nos.len() == 1 => return vec![Err(e)],
            // The transaction could not start: the same failure for every page.
            Err(e) => {
                let again = |e: &StoreError| match e {
                    StoreError::Closed => StoreError::Closed,
                    e => StoreError::Other(e.to_string()),
                };
                return nos.iter().map(|_| Err(again(&e))).collect();
            }
        };
        logged
            .into_iter()
            .map(|l| match l {
                Some(b) => Ok(b),
                None => read.next().unwrap_or(Err(StoreError::Closed)),
            })
            .collect()
    }

    /// Reads `nos` from IndexedDB in one readonly transaction: each page's
    /// record, or, for a page inside a run without a record, the run.
    /// Pages numbered close together (a scan's leaves written in order) are
    /// read with one request over their key range (the span holds at most as
    /// many other pages as asked for); others one request each.
    pub(super) async fn fetch(
        &self,
        nos: &[PageNo],
    ) -> Result<Vec<Result<PageBuf, StoreError>>, StoreError> {
        let op = "read pages";
        let err = |e: JsValue| error_from_js(op, &e);
        let (Some(&lo), Some(&hi)) = (nos.iter().min(), nos.iter().max()) else {
            return Ok(Vec::new());
        };
        // Each page's run, and whether it may have a page record (a page
        // outside every run may).
        let mut within: Vec<Option<(PageNo, u64)>> = Vec::with_capacity(nos.len());
        let mut maybe: Vec<bool> = Vec::with_capacity(nos.len());
        {
            let r = self.runs.borrow();
            for &no in nos {
                within.push(r.containing(no));
                maybe.push(r.may_be_recorded(no));
            }
        }
        let mut wanted: Vec<(PageNo, u64)> = Vec::new();
        for r in within.iter().flatten() {
            if !wanted.contains(r) {
                wanted.push(*r);
            }
        }
        let db = self.db()?;
        let tx = if wanted.is_empty() {
            db.transaction_with_str(PAGES)
        } else {
            db.transaction_with_str_sequence(&Array::of2(
                &JsValue::from_str(PAGES),
                &JsValue::from_str(RUNS),
            ))
        }
        .map_err(err)?;
        let pages = tx.object_store(PAGES).map_err(err)?;
        let ranged = nos.len() >= 4 && hi - lo < 2 * nos.len() as u64;
        // Every request, in the order issued; where each answer is. One
        // request per page, none for a page of a run that has no page record
        // of it (the run's image is its newest); or, for a range, its
        // records' keys and values.
        let mut issued: Vec<IdbRequest> = Vec::new();
        let mut issue = |r: Result<IdbRequest, JsValue>| -> Result<usize, StoreError> {
            issued.push(r.map_err(err)?);
            Ok(issued.len() - 1)
        };
        let slots: Vec<Option<usize>> = if ranged {
            let range =
                IdbKeyRange::bound(&JsValue::from_f64(lo as f64), &JsValue::from_f64(hi as f64))
                    .map_err(err)?;
            vec![
                Some(issue(pages.get_all_keys_with_key(&range))?),
                Some(issue(pages.get_all_with_key(&range))?),
            ]
        } else {
            let mut slots = Vec::with_capacity(nos.len());
            for (&no, &maybe) in nos.iter().zip(&maybe) {
                slots.push(match maybe {
                    true => Some(issue(pages.get(&JsValue::from_f64(no as f64)))?),
                    false => None,
                });
            }
            slots
        };
        // Per run: the keys of the page records in its range (which of its
        // pages are read along), when it may have some, then the run:
        // requests are served in order, and the run's value (a blob file) is
        // the slow one.
        let mut run_slots: Vec<(Option<usize>, usize)> = Vec::with_capacity(wanted.len());
        if !wanted.is_empty() {
            let store = tx.object_store(RUNS).map_err(err)?;
            for &(s, n) in &wanted {
                let keys = if self.runs.borrow().any_recorded(s, n) {
                    let range = IdbKeyRange::bound(
                        &JsValue::from_f64(s as f64),
                        &JsValue::from_f64((s + n - 1) as f64),
                    )
                    .map_err(err)?;
                    Some(issue(pages.get_all_keys_with_key(&range))?)
                } else {
                    None
                };
                run_slots.push((keys, issue(store.get(&runs::key(s, n)))?));
            }
        }
        let epoch = self.epoch.get();
        // Every request's handlers are set in this turn.
        let answers = futures::future::try_join_all(issued.iter().map(js::request))
            .await
            .map_err(err)?;
        let answer = |slot: Option<usize>| slot.map_or(JsValue::UNDEFINED, |i| answers[i].clone());
        let mut values = Vec::with_capacity(slots.len());
        for &slot in &slots {
            values.push(answer(slot));
        }
        let (mut run_keys, mut run_values) = (Vec::new(), Vec::new());
        for &(k, v) in &run_slots {
            run_keys.push(answer(k));
            run_values.push(answer(Some(v)));
        }
        // The runs' other pages without a page record or a log version:
        // read along, handed to the engine's cache if no commit was issued
        // meanwhile (this transaction may not have seen its records). Where
        // the keys of a run's records were read, the layout learns them.
        if self.epoch.get() == epoch {
            let lg = self.log.borrow();
            let mut along = Vec::new();
            for ((&(s, n), keys), value) in wanted.iter().zip(&run_keys).zip(&run_values) {
                let Some(value) = value.dyn_ref::<js_sys::Uint8Array>() else {
                    continue;
                };
                if value.length() as u64 != n * PAGE_SIZE as u64 {
                    continue;
                }
                let recorded: Vec<PageNo> = match keys.dyn_ref::<Array>() {
                    Some(keys) => keys
                        .iter()
                        .filter_map(|k| k.as_f64())
                        .map(|k| k as PageNo)
                        .collect(),
                    None => Vec::new(),
                };
                if !keys.is_undefined() && self.runs.borrow_mut().learn(s, n, &recorded) {
                    self.layout_dirty.set(true);
                }
                let bytes = value.to_vec();
                for (no, page) in (s..s + n).zip(bytes.chunks_exact(PAGE_SIZE)) {
                    if !nos.contains(&no) && !recorded.contains(&no) && lg.page(no).is_none() {
                        along.push((no, PageBuf::new(page.to_vec())));
                    }
                }
            }
            *self.read_along.borrow_mut() = (epoch, along);
        }
        // Runs the layout lists but the store has not (deleted by rule 3 in
        // a transaction whose layout record still listed them): forget them,
        // and have the next fold write the record without them. No fold
        // issued since can have written them again: rule 1 kept its runs
        // off every run the layout listed.
        let gone: Vec<(PageNo, u64)> = wanted
            .iter()
            .zip(&run_values)
            .filter(|(_, v)| v.is_undefined())
            .map(|(r, _)| *r)
            .collect();
        if !gone.is_empty() {
            self.runs.borrow_mut().forget(&gone);
            self.layout_dirty.set(true);
        }
        let records = if ranged {
            let (keys, values): (Array, Array) = (
                values[0].clone().unchecked_into(),
                values[1].clone().unchecked_into(),
            );
            if keys.length() != values.length() {
                return Err(StoreError::Other(format!(
                    "{op}: {} keys but {} values in one range",
                    keys.length(),
                    values.length()
                )));
            }
            let mut found = HashMap::with_capacity(keys.length() as usize);
            for i in 0..keys.length() {
                if let Some(k) = keys.get(i).as_f64() {
                    found.insert(k as PageNo, values.get(i));
                }
            }
            Records::Range(found)
        } else {
            Records::Each(values)
        };
        Ok(nos
            .iter()
            .enumerate()
            .map(|(i, &no)| {
                let record = match &records {
                    Records::Each(v) => v.get(i).cloned(),
                    Records::Range(m) => m.get(&no).cloned(),
                }
                .filter(|v| !v.is_undefined());
                match (record, within[i]) {
                    (Some(v), _) => self.page_of(no, Some(v)),
                    (None, Some((s, n))) => {
                        let at = wanted.iter().position(|r| *r == (s, n));
                        match at
                            .and_then(|at| run_values.get(at))
                            .filter(|v| !v.is_undefined())
                        {
                            Some(v) => runs::page_in(v, s, n, no)
                                .map(PageBuf::new)
                                .map_err(|reason| corrupt(&self.name, no, &reason)),
                            None => Err(StoreError::PageNotFound(no)),
                        }
                    }
                    (None, None) => Err(StoreError::PageNotFound(no)),
                }
            })
            .collect())
    }
}
