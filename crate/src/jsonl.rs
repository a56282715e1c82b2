//! The JSON-lines format of documents shared by the `outpost` CLI (`scan`,
//! `changes`, `import`, `export`) and the hub (`import`, `export`), so files
//! move freely between them.
//!
//! A document is shown as its body with an `@metadata` object added:
//!
//! ```json
//! {"name":"Ada","@metadata":{"@id":"patients/dr-7/1","@collection":"Patients",
//!  "@change-vector":"…","@etag":12,"@last-modified":"2026-11-22T10:36:00.123Z"}}
//! ```
//!
//! `scan`, `changes` and `export` write one such object per line (JSON lines);
//! `import` reads the same lines back, so `export | import` round-trips. Import
//! takes the id from `@metadata.@id`, or else from a top-level string `"id"`
//! (which then stays part of the body), and the collection from
//! `@metadata.@collection`; every other `@metadata` entry is computed by the
//! database and ignored on import.
//!
//! [`Import`] is the one import routine of the CLI and the hub, fed its input
//! a piece at a time ([`import`] feeds it a reader's buffers; a running hub,
//! the pieces of a `POST /admin/import` body as they arrive). Their progress
//! bars, bad-line reports and summaries are the `outpost-cmdline` crate's, so
//! the engine needs no terminal dependency. Its memory is
//! bounded whatever the input: a line is split off by [`Lines`], which
//! never holds more than [`MAX_LINE_BYTES`] of one (a longer line is refused while it is read, and
//! skipped up to its newline without being buffered), and a batch is bounded
//! by documents *and* by bytes ([`ImportOptions::batch_bytes`]), counting for
//! each line its length plus an estimate of its parsed size
//! ([`line_weight`]); a line whose parsed form would exceed
//! [`MAX_LINE_WEIGHT`] is refused. One batch in memory holds at most
//! `max(batch_bytes, MAX_LINE_WEIGHT)` of weighed lines, parsed once more
//! only while it is committed.

use std::io::BufRead;

use crate::db::{
    AUDIT_RECORD_VERSION, AuditImport, AuditImportDoc, AuditKind, Batch, Database, PutOptions,
    encode_record, sha256_hex,
};
use crate::doc::{Document, MAX_BODY_BYTES, validate_collection, validate_id};
use crate::error::Error;
use crate::store::PageStore;
use serde_json::{Map, Value};

/// The longest line [`import`] reads: the largest document body
/// ([`MAX_BODY_BYTES`], 16 MiB) plus 64 KiB for its id and `@metadata`.
pub const MAX_LINE_BYTES: usize = MAX_BODY_BYTES + (64 << 10);

/// The largest estimated in-memory size of one parsed line
/// ([`line_weight`]): 64 MiB. A line of many tiny JSON values (16 MiB of
/// `[0,0,0,…]` would take some 400 MiB once parsed) is refused.
pub const MAX_LINE_WEIGHT: usize = 64 << 20;

/// Default bound of a batch in bytes of weighed lines: 8 MiB.
pub const DEFAULT_BATCH_BYTES: usize = 8 << 20;

/// Default bound of a batch in documents.
pub const DEFAULT_BATCH_DOCS: usize = 1000;

/// Estimated bytes of memory per JSON token (`,` `:` `[` `{`) once parsed.
const TOKEN_WEIGHT: usize = 48;

/// The document as one JSON object: its body plus an `@metadata` object.
///
/// Tombstones (deleted documents, seen in the changes feed) have no body: they
/// are shown as `{"@metadata": {..., "@deleted": true}}`.
pub fn doc_to_json(doc: &Document) -> Value {
    let meta = doc.metadata_json();
    let mut out = match &doc.body {
        Value::Object(o) => {
            let mut o = o.clone();
            o.remove("@metadata");
            o
        }
        Value::Null => Map::new(),
        other => {
            let mut o = Map::new();
            o.insert("body".into(), other.clone());
            o
        }
    };
    out.insert("@metadata".into(), Value::Object(meta));
    Value::Object(out)
}

/// One document parsed from a line of an import file.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportDoc {
    /// The document id.
    pub id: String,
    /// The collection from `@metadata.@collection`, if any.
    pub collection: Option<String>,
    /// The body: the line's object without its `@metadata`.
    pub body: Value,
}

/// Parses one line of an import file (see the module docs for the shape).
/// The error text says what is wrong, for the "line N: ..." report, together
/// with a stable code.
pub fn parse_import_line(line: &str) -> Result<ImportDoc, (String, &'static str)> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| (format!("invalid JSON: {e}"), "invalid_json"))?;
    let Value::Object(mut obj) = value else {
        return Err((
            format!("expected a JSON object, found {}", kind_of(&value)),
            "invalid_json",
        ));
    };
    let meta = match obj.remove("@metadata") {
        None => None,
        Some(Value::Object(m)) => Some(m),
        Some(other) => {
            return Err((
                format!("\"@metadata\" must be an object, found {}", kind_of(&other)),
                "invalid_json",
            ));
        }
    };
    let meta_str = |key: &str| -> Result<Option<String>, (String, &'static str)> {
        match meta.as_ref().and_then(|m| m.get(key)) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err((
                format!(
                    "\"@metadata.{key}\" must be a string, found {}",
                    kind_of(other)
                ),
                "invalid_json",
            )),
        }
    };
    let id = match meta_str("@id")? {
        Some(id) => id,
        None => match obj.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err((
                    format!("\"id\" must be a string, found {}", kind_of(other)),
                    "invalid_id",
                ));
            }
            None => {
                return Err((
                    "no document id: expected a string \"id\" or \"@metadata\": {\"@id\": ...}"
                        .to_string(),
                    "invalid_id",
                ));
            }
        },
    };
    validate_id(&id).map_err(|e| (e.to_string(), "invalid_id"))?;
    let collection = meta_str("@collection")?;
    if let Some(c) = &collection {
        validate_collection(c).map_err(|e| (e.to_string(), "invalid_collection"))?;
    }
    Ok(ImportDoc {
        id,
        collection,
        body: Value::Object(obj),
    })
}

/// The weight of a line for batching: its length plus an estimate of the
/// memory its parsed form takes (per value and per key, outside strings).
pub fn line_weight(line: &[u8]) -> usize {
    let mut strings = crate::body::Strings::default();
    let tokens = line
        .iter()
        .filter(|&&b| strings.outside(b) && matches!(b, b',' | b':' | b'[' | b'{'))
        .count();
    line.len()
        .saturating_add(tokens.saturating_mul(TOKEN_WEIGHT))
}

/// What [`read_line_bounded`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineRead {
    /// End of input.
    Eof,
    /// A line (in the buffer, newline included if there was one) of this
    /// many bytes.
    Line(usize),
    /// A line longer than the limit, of this many bytes: skipped up to its
    /// newline; the buffer holds only its beginning.
    TooLong(usize),
}

/// Reads one line into `buf` (cleared first), never buffering more than
/// `max` bytes of it: a longer line is consumed up to its newline and
/// reported as [`LineRead::TooLong`]. The splitting is [`Lines`]'.
pub fn read_line_bounded<R: BufRead + ?Sized>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    let mut lines = Lines::with_buffer(std::mem::take(buf), max);
    let read = loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break lines.end();
        }
        let mut rest = chunk;
        let line = lines.take(&mut rest);
        let used = chunk.len() - rest.len();
        r.consume(used);
        if let Some(read) = line {
            break read;
        }
    };
    *buf = lines.buf;
    Ok(read)
}

/// Splits bytes that arrive in pieces of any size (a file read a buffer at a
/// time, an HTTP body a chunk at a time) into lines, never buffering more
/// than `max` bytes of one: a longer line is skipped up to its newline and
/// reported as [`LineRead::TooLong`], its beginning only kept.
#[derive(Debug)]
pub struct Lines {
    buf: Vec<u8>,
    /// Bytes of the current line so far, newline included.
    total: usize,
    too_long: bool,
    /// The last [`Lines::take`] or [`Lines::end`] handed out a line: the
    /// next byte begins another.
    handed_out: bool,
    max: usize,
}

impl Lines {
    /// A splitter for lines of at most `max` bytes.
    pub fn new(max: usize) -> Lines {
        Lines::with_buffer(Vec::new(), max)
    }

    fn with_buffer(mut buf: Vec<u8>, max: usize) -> Lines {
        buf.clear();
        Lines {
            buf,
            total: 0,
            too_long: false,
            handed_out: false,
            max,
        }
    }

    /// Takes bytes from the front of `input` up to the end of the current
    /// line: the line ([`Lines::text`] holds it) once its newline came,
    /// `None` when `input` ran out first (the line goes on in the next
    /// piece).
    pub fn take(&mut self, input: &mut &[u8]) -> Option<LineRead> {
        if self.handed_out {
            self.buf.clear();
            self.total = 0;
            self.too_long = false;
            self.handed_out = false;
        }
        let (take, done) = match input.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (input.len(), false),
        };
        if !self.too_long {
            if self.buf.len() + take > self.max {
                self.too_long = true;
                self.buf.clear();
                self.buf.shrink_to(64 << 10);
            } else {
                self.buf.extend_from_slice(&input[..take]);
            }
        }
        self.total += take;
        *input = &input[take..];
        done.then(|| self.hand_out())
    }

    /// The end of the input: the last line if it had no newline, else
    /// [`LineRead::Eof`].
    pub fn end(&mut self) -> LineRead {
        if self.handed_out || self.total == 0 {
            return LineRead::Eof;
        }
        self.hand_out()
    }

    fn hand_out(&mut self) -> LineRead {
        self.handed_out = true;
        if self.too_long {
            LineRead::TooLong(self.total)
        } else {
            LineRead::Line(self.total)
        }
    }

    /// The line last handed out (newline included if it had one; only its
    /// beginning, or nothing, for [`LineRead::TooLong`]).
    pub fn text(&self) -> &[u8] {
        &self.buf
    }
}

/// Options of [`import`].
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// At most this many documents per atomic commit.
    pub batch_docs: usize,
    /// At most this many bytes of weighed lines ([`line_weight`]) per
    /// atomic commit (a heavier single line is committed alone).
    pub batch_bytes: usize,
    /// Stop at the first bad line instead of skipping it.
    pub strict: bool,
    /// Collection for lines that name none.
    pub collection: Option<String>,
    /// Record each batch in the database's audit trail (a hub's database):
    /// who, how and from where, per document its line, id, line hash and
    /// the version written ([`crate::db::AuditImport`], in the batch's own
    /// commit). `None`: nothing is recorded (an edge's database).
    pub audit: Option<ImportAudit>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            batch_docs: DEFAULT_BATCH_DOCS,
            batch_bytes: DEFAULT_BATCH_BYTES,
            strict: false,
            collection: None,
            audit: None,
        }
    }
}

/// Who imports, how and from what, for [`ImportOptions::audit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportAudit {
    /// Who ran it, as the operator said.
    pub by: String,
    /// How it came in (the command, or the request and its credential).
    pub via: String,
    /// The input's name.
    pub source: String,
}

/// Largest estimated audit record of one batch: a batch is committed before
/// its record would pass it (far under [`crate::db::MAX_AUDIT_PAYLOAD`]).
const AUDIT_BATCH_BYTES: usize = 8 << 20;

/// An estimate of a document's bytes in an [`crate::db::AuditImport`]
/// record: its id and collection escaped at worst (6 bytes a byte), the
/// line hash, a change vector of 8 entries of 53 bytes (a new document's
/// has one; one overwritten keeps its entries) and the field names. A
/// record past [`crate::db::MAX_AUDIT_PAYLOAD`] all the same (8 times
/// [`AUDIT_BATCH_BYTES`]) fails its batch as bad input, which is then
/// committed a document at a time.
fn audit_weight(doc: &ImportDoc) -> usize {
    let named = doc.id.len() + doc.collection.as_ref().map_or(0, String::len);
    6 * named + 64 + 8 * 53 + 128
}

/// What an import did (also the hub's answer to a `POST /admin/import`,
/// hence serde).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportSummary {
    /// Lines read.
    pub lines: u64,
    /// Documents written.
    pub imported: u64,
    /// Commits made.
    pub batches: u64,
    /// Bad lines skipped.
    pub bad: u64,
    /// Bytes read.
    pub bytes: u64,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "imported {} documents from {} lines ({} bytes) in {} batches; {} bad lines skipped",
            self.imported, self.lines, self.bytes, self.batches, self.bad
        )?;
        if self.bad > 0 {
            write!(f, " (INCOMPLETE: some lines were not imported)")?;
        }
        Ok(())
    }
}

/// Progress of an [`import`], for the caller to show.
#[derive(Debug)]
pub enum ImportEvent<'a> {
    /// Another line was read; `bytes` read so far.
    Progress {
        /// Bytes read so far.
        bytes: u64,
    },
    /// A bad line was skipped (not with `strict`, which stops instead).
    BadLine {
        /// Its number (1-based).
        line: u64,
        /// What is wrong with it.
        message: &'a str,
        /// A stable code (`invalid_json`, `invalid_id`, `too_large`, …).
        code: &'static str,
        /// Bad lines so far, this one included.
        count: u64,
    },
}

/// Why an [`import`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading the input failed.
    #[error("read the input: {0}")]
    Read(#[from] std::io::Error),
    /// A bad line, with `strict`.
    #[error(
        "line {line}: {message} ({code}) (--strict: stopping; the documents of this batch were not written)"
    )]
    BadLine {
        /// Its number.
        line: u64,
        /// What is wrong.
        message: String,
        /// A stable code.
        code: &'static str,
    },
    /// The database refused a batch for another reason than its input.
    #[error("the batch of lines {first}-{last} was not written: {error}")]
    Database {
        /// Its first line.
        first: u64,
        /// Its last line.
        last: u64,
        /// The engine's error.
        error: Error,
    },
}

impl ImportError {
    /// A short, stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ImportError::Read(_) => "io",
            ImportError::BadLine { code, .. } => code,
            ImportError::Database { error, .. } => error.code(),
        }
    }
}

/// A line waiting in the current batch: its text, not its parsed form, so a
/// batch in memory costs its bytes until it is committed.
struct Pending {
    line: u64,
    text: Vec<u8>,
}

struct Importer<'o, F> {
    opts: &'o ImportOptions,
    on: F,
    st: ImportSummary,
}

impl<F: FnMut(ImportEvent<'_>)> Importer<'_, F> {
    fn bad(&mut self, line: u64, message: &str, code: &'static str) -> Result<(), ImportError> {
        if self.opts.strict {
            return Err(ImportError::BadLine {
                line,
                message: message.to_string(),
                code,
            });
        }
        self.st.bad += 1;
        (self.on)(ImportEvent::BadLine {
            line,
            message,
            code,
            count: self.st.bad,
        });
        Ok(())
    }

    /// Parses a line (validated when read) into an import document.
    fn parse(&self, text: &[u8]) -> Result<ImportDoc, (String, &'static str)> {
        let text = std::str::from_utf8(text)
            .map_err(|e| (format!("not valid UTF-8: {e}"), "invalid_json"))?;
        let mut doc = parse_import_line(text.trim())?;
        if doc.collection.is_none() {
            doc.collection.clone_from(&self.opts.collection);
        }
        Ok(doc)
    }

    fn batch_of<'a>(&self, items: impl Iterator<Item = &'a Pending>) -> Batch {
        let mut b = Batch::new();
        let mut docs = Vec::new();
        for p in items {
            if let Ok(doc) = self.parse(&p.text) {
                if self.opts.audit.is_some() {
                    docs.push(AuditImportDoc {
                        line: p.line,
                        id: doc.id.clone(),
                        collection: doc.collection.clone(),
                        line_sha256: sha256_hex(&p.text),
                        change_vector: String::new(),
                    });
                }
                b.put_with(
                    doc.id,
                    doc.body,
                    PutOptions {
                        collection: doc.collection,
                        ..PutOptions::default()
                    },
                );
            }
        }
        if let Some(a) = &self.opts.audit {
            let record = AuditImport {
                v: AUDIT_RECORD_VERSION,
                by: a.by.clone(),
                via: a.via.clone(),
                source: a.source.clone(),
                docs,
            };
            b.audit_writes(AuditKind::Import, encode_record(&record), AuditImport::fill);
        }
        b
    }

    /// Commits the pending lines as one atomic batch; if the engine refuses
    /// it for bad input, commits them one by one so the bad line can be
    /// named and the others kept.
    async fn commit<S: PageStore>(
        &mut self,
        db: &Database<S>,
        pending: &mut Vec<Pending>,
    ) -> Result<(), ImportError> {
        if pending.is_empty() {
            return Ok(());
        }
        let first = pending.first().map_or(0, |p| p.line);
        let last = pending.last().map_or(0, |p| p.line);
        match db.commit(self.batch_of(pending.iter())).await {
            Ok(_) => {
                self.st.imported += pending.len() as u64;
                self.st.batches += 1;
            }
            Err(Error::Input(_)) if !self.opts.strict => {
                for p in pending.iter() {
                    match db.commit(self.batch_of(std::iter::once(p))).await {
                        Ok(_) => {
                            self.st.imported += 1;
                            self.st.batches += 1;
                        }
                        Err(e @ Error::Input(_)) => self.bad(p.line, &e.to_string(), e.code())?,
                        Err(error) => {
                            return Err(ImportError::Database {
                                first: p.line,
                                last: p.line,
                                error,
                            });
                        }
                    }
                }
            }
            Err(error) => return Err(ImportError::Database { first, last, error }),
        }
        pending.clear();
        Ok(())
    }
}

/// Imports JSON lines from `input` into `db` in atomic batches of at most
/// `opts.batch_docs` documents and `opts.batch_bytes` bytes (see the module
/// docs for the memory bound). Bad lines (not JSON, no valid id, longer than
/// [`MAX_LINE_BYTES`], …) are reported through `on` and skipped, or, with
/// `opts.strict`, stop the import. Batches committed before an error stay.
/// The lines are taken as [`Import`] takes them, a buffer of `input` at a
/// time.
///
/// Returns what was done, and why it stopped early if it did.
pub async fn import<S: PageStore, R: BufRead>(
    db: &Database<S>,
    mut input: R,
    opts: &ImportOptions,
    on: impl FnMut(ImportEvent<'_>),
) -> (ImportSummary, Result<(), ImportError>) {
    let mut import = Import::new(opts, on);
    let result = async {
        loop {
            let chunk = match input.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len();
            import.push(db, chunk).await?;
            input.consume(n);
        }
        import.finish(db).await
    }
    .await;
    (import.im.st, result)
}

/// An import fed its input a piece at a time, as it arrives (a hub's
/// `POST /admin/import` body; [`import`] feeds it a reader's buffers): the
/// same lines, batches, limits and events whatever the pieces' sizes.
pub struct Import<'o, F> {
    im: Importer<'o, F>,
    pending: Vec<Pending>,
    weight: usize,
    /// The pending batch's estimated audit record ([`audit_weight`]).
    audit_weight: usize,
    lines: Lines,
}

impl<'o, F: FnMut(ImportEvent<'_>)> Import<'o, F> {
    /// An import with `opts`, reporting through `on`.
    pub fn new(opts: &'o ImportOptions, on: F) -> Self {
        Import {
            im: Importer {
                opts,
                on,
                st: ImportSummary::default(),
            },
            pending: Vec::new(),
            weight: 0,
            audit_weight: 0,
            lines: Lines::new(MAX_LINE_BYTES),
        }
    }

    /// Takes the next piece of the input, committing each batch it
    /// completes. After an error the import is over: call nothing but
    /// [`Import::summary`].
    pub async fn push<S: PageStore>(
        &mut self,
        db: &Database<S>,
        mut input: &[u8],
    ) -> Result<(), ImportError> {
        while !input.is_empty() {
            if let Some(read) = self.lines.take(&mut input) {
                self.line(db, read).await?;
            }
        }
        Ok(())
    }

    /// The end of the input: takes its last line (if it had no newline) and
    /// commits what waits.
    pub async fn finish<S: PageStore>(&mut self, db: &Database<S>) -> Result<(), ImportError> {
        let read = self.lines.end();
        if read != LineRead::Eof {
            self.line(db, read).await?;
        }
        self.im.commit(db, &mut self.pending).await
    }

    /// What was done so far.
    pub fn summary(&self) -> &ImportSummary {
        &self.im.st
    }

    /// One line of the input, its text in `self.lines`.
    async fn line<S: PageStore>(
        &mut self,
        db: &Database<S>,
        read: LineRead,
    ) -> Result<(), ImportError> {
        let n = match read {
            LineRead::Eof => return Ok(()),
            LineRead::Line(n) | LineRead::TooLong(n) => n,
        };
        let im = &mut self.im;
        let opts = im.opts;
        im.st.lines += 1;
        im.st.bytes += n as u64;
        (im.on)(ImportEvent::Progress { bytes: im.st.bytes });
        let line = im.st.lines;
        if let LineRead::TooLong(n) = read {
            return im.bad(
                line,
                &format!(
                    "the line is {n} bytes; the limit is {MAX_LINE_BYTES} (a document body is at most {MAX_BODY_BYTES} bytes)"
                ),
                "too_large",
            );
        }
        let trimmed = self.lines.text().trim_ascii();
        if trimmed.is_empty() {
            return Ok(());
        }
        let w = line_weight(trimmed);
        if w > MAX_LINE_WEIGHT {
            return im.bad(
                line,
                &format!(
                    "the line would take about {} MiB of memory once parsed (too many small values); the import limit is {} MiB",
                    w >> 20,
                    MAX_LINE_WEIGHT >> 20
                ),
                "too_large",
            );
        }
        let aw = match im.parse(trimmed) {
            Ok(doc) if opts.audit.is_some() => audit_weight(&doc),
            Ok(_) => 0,
            Err((msg, code)) => return im.bad(line, &msg, code),
        };
        if !self.pending.is_empty()
            && (self.weight.saturating_add(w) > opts.batch_bytes
                || self.audit_weight + aw > AUDIT_BATCH_BYTES)
        {
            im.commit(db, &mut self.pending).await?;
            self.weight = 0;
            self.audit_weight = 0;
        }
        self.pending.push(Pending {
            line,
            text: trimmed.to_vec(),
        });
        self.weight = self.weight.saturating_add(w);
        self.audit_weight += aw;
        if self.pending.len() >= opts.batch_docs.max(1) || self.weight >= opts.batch_bytes {
            im.commit(db, &mut self.pending).await?;
            self.weight = 0;
            self.audit_weight = 0;
        }
        Ok(())
    }
}

/// A short name of a JSON value's kind, for error messages.
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
