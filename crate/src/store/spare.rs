//! Spare page buffers, kept per thread for the next page the B-tree builds:
//! a transaction's copy of a page replaces the version before it, which
//! its undo journal held until the transaction ended; that buffer serves
//! the next copy instead of going back to the allocator.

use std::cell::RefCell;
use std::sync::Arc;

use super::{PAGE_SIZE, PageBuf};

/// Buffers kept per thread at most (256 KiB).
const KEEP: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for one page.
pub(crate) fn take() -> Vec<u8> {
    match SPARE.with(|s| s.borrow_mut().pop()) {
        Some(mut v) => {
            v.clear();
            v
        }
        None => Vec::with_capacity(PAGE_SIZE),
    }
}

/// A copy of `page` in a spare buffer.
pub(crate) fn copy_of(page: &[u8]) -> Vec<u8> {
    let mut v = take();
    v.extend_from_slice(page);
    v
}

/// Keeps `buf` for a later [`take`] if nothing else holds it.
pub(crate) fn give(buf: PageBuf) {
    if let Ok(v) = Arc::try_unwrap(buf)
        && v.capacity() == PAGE_SIZE
    {
        SPARE.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < KEEP {
                s.push(v);
            }
        });
    }
}
