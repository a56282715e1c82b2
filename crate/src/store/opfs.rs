//! The Origin Private File System page store (browsers, in a dedicated
//! worker; wasm32 only).
//!
//! It is the file store's format, recovery and writer
//! ([`LocalFileStore`]: data file + write-ahead log, no writer thread) over a
//! [`Vfs`] whose two files are OPFS synchronous access handles
//! (`FileSystemSyncAccessHandle`). Everything below the handles is the code
//! the native crash tests run over `FaultVfs`; this module only opens the
//! handles and maps their calls and errors.
//!
//! **Where.** The database `name` lives in the OPFS directory
//! `outpost/<escaped name>/`, files `outpost.db` and `outpost.wal` (the file
//! store's names). The name is escaped so that any string is a valid entry
//! name: ASCII letters, digits, `-` and `_` stay, every other byte of its
//! UTF-8 becomes `.xx` (hex), so `"a/b"` is `a.2fb`.
//!
//! **Durability.** `flush()` of a handle is the durability point (the
//! `sync_data` of [`VfsFile`]); a durable commit flushes the WAL before it
//! resolves, as the file store's fsync.
//!
//! **One opener.** Synchronous access handles exist only in dedicated
//! workers and are exclusive: while one worker (or tab) has the database
//! open, another open fails with `NoModificationAllowedError`, reported as
//! [`StoreError::Locked`]. There is no cross-tab lock to take and nothing
//! to refresh: the opener is the only reader and writer. Outside a
//! dedicated worker, or in a browser without OPFS, opening fails with
//! [`StoreError::Unsupported`]. A `QuotaExceededError` of a write becomes
//! [`StoreError::QuotaExceeded`] (the store is then poisoned until
//! reopened, as after any failed write of the file store).
//!
//! Getting the directory and creating the handles is asynchronous, so
//! [`open`] creates both handles first and then runs the synchronous open
//! (recovery, checkpoint) over them.

use std::cell::RefCell;
use std::io;
use std::path::Path;
use std::sync::Arc;

use js_sys::{Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    FileSystemDirectoryHandle, FileSystemFileHandle, FileSystemGetDirectoryOptions,
    FileSystemGetFileOptions, FileSystemReadWriteOptions, FileSystemRemoveOptions,
    FileSystemSyncAccessHandle, StorageManager,
};

use super::StoreError;
use super::file::{DATA_FILE, FileStoreOptions, LocalFileStore, WAL_FILE};
use super::vfs::{DirLock, LockError, LockMode, Vfs, VfsFile};

/// The OPFS directory holding every Outpost database of the origin.
pub const ROOT_DIR: &str = "outpost";

/// Checkpoint once the WAL holds this many bytes. The WAL's pages are kept
/// in memory until then (as in the file store), so this bounds that memory
/// and the replay after a crash; 16 MiB is about 4,000 page frames.
const CHECKPOINT_WAL_BYTES: u64 = 16 << 20;
/// The WAL grows in steps of this size.
const WAL_GROW_BYTES: u64 = 1 << 20;

/// The entry name of the database `name` in [`ROOT_DIR`] (see the module
/// documentation).
pub fn dir_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!(".{b:02x}"));
        }
    }
    if out.is_empty() {
        out.push('.');
        out.push_str("00");
    }
    out
}

/// Whether this JS scope can use OPFS synchronous access handles: a
/// dedicated worker of a browser that has them.
pub fn available() -> bool {
    let g = js_sys::global();
    let has = |k: &str| {
        Reflect::get(&g, &JsValue::from_str(k))
            .map(|v| v.is_function())
            .unwrap_or(false)
    };
    has("FileSystemSyncAccessHandle") && has("DedicatedWorkerGlobalScope")
}

/// The name and message of a thrown DOM exception (or any JS value).
fn name_message(v: &JsValue) -> (String, String) {
    let get = |k: &str| {
        Reflect::get(v, &JsValue::from_str(k))
            .ok()
            .and_then(|x| x.as_string())
            .unwrap_or_default()
    };
    let (name, msg) = (get("name"), get("message"));
    if name.is_empty() && msg.is_empty() {
        (String::new(), format!("{v:?}"))
    } else {
        (name, msg)
    }
}

/// A failed handle call as an I/O error: a `QuotaExceededError` is
/// `ErrorKind::StorageFull` (the store reports it as
/// [`StoreError::QuotaExceeded`]).
fn io_error(v: JsValue) -> io::Error {
    let (name, msg) = name_message(&v);
    let kind = if name == "QuotaExceededError" {
        io::ErrorKind::StorageFull
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, format!("{name}: {msg}"))
}

/// A failed asynchronous OPFS call of `op` as a store error.
fn store_error(op: &str, path: &str, v: &JsValue) -> StoreError {
    let (name, msg) = name_message(v);
    match name.as_str() {
        "NoModificationAllowedError" | "InvalidStateError" => StoreError::Locked {
            path: path.to_string(),
            holder: Some("another worker or tab of this origin".to_string()),
        },
        "QuotaExceededError" => StoreError::QuotaExceeded(format!("{op} {path}: {name}: {msg}")),
        _ => StoreError::Other(format!("{op} {path}: {name}: {msg}")),
    }
}

async fn call(p: Promise, op: &str, path: &str) -> Result<JsValue, StoreError> {
    JsFuture::from(p)
        .await
        .map_err(|e| store_error(op, path, &e))
}

/// The origin's OPFS root directory.
async fn root() -> Result<FileSystemDirectoryHandle, StoreError> {
    let unsupported = |reason: String| StoreError::Unsupported {
        file: format!("opfs:{ROOT_DIR}"),
        reason,
    };
    let storage = Reflect::get(&js_sys::global(), &JsValue::from_str("navigator"))
        .and_then(|n| Reflect::get(&n, &JsValue::from_str("storage")))
        .ok()
        .filter(|s| !s.is_undefined() && !s.is_null())
        .ok_or_else(|| unsupported("navigator.storage is missing".into()))?;
    let storage: StorageManager = storage.unchecked_into();
    let dir = JsFuture::from(storage.get_directory()).await.map_err(|e| {
        unsupported(format!(
            "navigator.storage.getDirectory(): {:?}",
            name_message(&e)
        ))
    })?;
    Ok(dir.unchecked_into())
}

/// The directory [`ROOT_DIR`]`/<dir_name(name)>`, created if `create`;
/// `None` if it does not exist and `create` is false.
async fn db_dir(name: &str, create: bool) -> Result<Option<FileSystemDirectoryHandle>, StoreError> {
    let root = root().await?;
    let opts = FileSystemGetDirectoryOptions::new();
    opts.set_create(create);
    let mut dir = root;
    for part in [ROOT_DIR.to_string(), dir_name(name)] {
        match JsFuture::from(dir.get_directory_handle_with_options(&part, &opts)).await {
            Ok(d) => dir = d.unchecked_into(),
            Err(e) if name_message(&e).0 == "NotFoundError" && !create => return Ok(None),
            Err(e) => return Err(store_error("open directory", &part, &e)),
        }
    }
    Ok(Some(dir))
}

/// One file of the store: an open synchronous access handle.
#[derive(Clone)]
struct OpfsFile(FileSystemSyncAccessHandle);

fn at(off: u64) -> FileSystemReadWriteOptions {
    let o = FileSystemReadWriteOptions::new();
    o.set_at(off as f64);
    o
}

impl VfsFile for OpfsFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        let mut done = 0usize;
        while done < buf.len() {
            let n = self
                .0
                .read_with_u8_array_and_options(&mut buf[done..], &at(off + done as u64))
                .map_err(io_error)? as usize;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(done)
    }
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let n = self
                .0
                .write_with_u8_array_and_options(&buf[done..], &at(off + done as u64))
                .map_err(io_error)? as usize;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "OPFS write wrote nothing",
                ));
            }
            done += n;
        }
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.get_size().map_err(io_error)? as u64)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.truncate_with_f64(len as f64).map_err(io_error)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.flush().map_err(io_error)
    }
}

/// The two files of one store, opened ahead (see the module documentation).
struct OpfsVfs {
    /// File name (`outpost.db`, `outpost.wal`) and handle; emptied by
    /// [`Vfs::release`], which closes them.
    files: RefCell<Vec<(String, OpfsFile)>>,
}

impl OpfsVfs {
    fn file(&self, path: &Path) -> io::Result<OpfsFile> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        self.files
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f.clone())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} is not open", path.display()),
                )
            })
    }
}

impl Vfs for OpfsVfs {
    fn open(&self, path: &Path, _create: bool) -> io::Result<Box<dyn VfsFile>> {
        Ok(Box::new(self.file(path)?))
    }
    fn exists(&self, path: &Path) -> bool {
        self.file(path).is_ok()
    }
    fn create_dir_all(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
    fn open_read_only(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        self.open(path, false)
    }
    fn lock_dir(&self, _dir: &Path, _mode: LockMode) -> Result<DirLock, LockError> {
        // The access handles are the lock: they are exclusive, and held.
        Ok(DirLock::none())
    }
    fn release(&self) {
        for (_, f) in self.files.borrow_mut().drain(..) {
            f.0.close();
        }
    }
}

/// Opens (creating if missing) the database `name` in the origin's OPFS and
/// recovers it (see [`LocalFileStore::open`]). Fails with
/// [`StoreError::Unsupported`] outside a dedicated worker or without OPFS,
/// [`StoreError::Locked`] while another worker or tab has it open.
// `FileStoreOptions::vfs` is an `Arc<dyn Vfs>` (shared with the file store's
// thread natively); here nothing crosses a thread.
#[allow(clippy::arc_with_non_send_sync)]
pub async fn open(name: &str) -> Result<LocalFileStore, StoreError> {
    if !available() {
        return Err(StoreError::Unsupported {
            file: format!("opfs:{ROOT_DIR}/{}", dir_name(name)),
            reason: "the OPFS store needs a dedicated worker of a browser with OPFS synchronous access handles \
                     (FileSystemSyncAccessHandle); open the database in a Worker (openInWorker)"
                .into(),
        });
    }
    let dir = db_dir(name, true)
        .await?
        .ok_or_else(|| StoreError::Other("OPFS directory vanished".into()))?;
    let vfs = Arc::new(OpfsVfs {
        files: RefCell::new(Vec::new()),
    });
    let base = format!("/{ROOT_DIR}/{}", dir_name(name));
    let fopts = FileSystemGetFileOptions::new();
    fopts.set_create(true);
    for file in [DATA_FILE, WAL_FILE] {
        let path = format!("{base}/{file}");
        let opened = async {
            let h = call(
                dir.get_file_handle_with_options(file, &fopts),
                "open",
                &path,
            )
            .await?;
            let h: FileSystemFileHandle = h.unchecked_into();
            let a = call(h.create_sync_access_handle(), "open", &path).await?;
            Ok::<_, StoreError>(a.unchecked_into::<FileSystemSyncAccessHandle>())
        }
        .await;
        match opened {
            Ok(a) => vfs.files.borrow_mut().push((file.to_string(), OpfsFile(a))),
            Err(e) => {
                vfs.release();
                return Err(e);
            }
        }
    }
    let opts = FileStoreOptions {
        checkpoint_wal_bytes: CHECKPOINT_WAL_BYTES,
        wal_grow_bytes: WAL_GROW_BYTES,
        ..FileStoreOptions::with_vfs(vfs.clone())
    };
    LocalFileStore::open(&base, opts).inspect_err(|_| vfs.release())
}

/// Deletes the database `name` from the origin's OPFS (its directory and
/// files). Nothing to do if it does not exist or OPFS is refused here;
/// [`StoreError::Locked`] while a worker has it open.
pub async fn destroy(name: &str) -> Result<(), StoreError> {
    if !has_storage_directory() {
        return Ok(());
    }
    // A browser that refuses OPFS here (a private window may) holds nothing
    // there: `Outpost.destroy` of an IndexedDB database must not fail for it.
    let Ok(root) = root().await else {
        return Ok(());
    };
    let opts = FileSystemGetDirectoryOptions::new();
    opts.set_create(false);
    let outpost =
        match JsFuture::from(root.get_directory_handle_with_options(ROOT_DIR, &opts)).await {
            Ok(d) => d.unchecked_into::<FileSystemDirectoryHandle>(),
            Err(e) if name_message(&e).0 == "NotFoundError" => return Ok(()),
            Err(e) => return Err(store_error("open directory", ROOT_DIR, &e)),
        };
    let entry = dir_name(name);
    let ropts = FileSystemRemoveOptions::new();
    ropts.set_recursive(true);
    match JsFuture::from(outpost.remove_entry_with_options(&entry, &ropts)).await {
        Ok(_) => Ok(()),
        Err(e) if name_message(&e).0 == "NotFoundError" => Ok(()),
        Err(e) => Err(store_error("remove", &format!("/{ROOT_DIR}/{entry}"), &e)),
    }
}

/// Whether `navigator.storage.getDirectory` exists here (OPFS, in any
/// context: the main thread may delete what workers wrote).
pub fn has_storage_directory() -> bool {
    Reflect::get(&js_sys::global(), &JsValue::from_str("navigator"))
        .and_then(|n| Reflect::get(&n, &JsValue::from_str("storage")))
        .and_then(|s| Reflect::get(&s, &JsValue::from_str("getDirectory")))
        .map(|f| f.is_function())
        .unwrap_or(false)
}
