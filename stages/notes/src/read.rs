//! Reading: DuckDB for CSV/Parquet/JSON, plain Rust for i2b2 directories and SQuAD JSON.
//!
//! Every error names the file (and the line where DuckDB knows it) and never quotes the file's
//! content: DuckDB's own messages quote the offending row ("Original Line: …"), so they are
//! classified and rewritten here, never passed on.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use duckdb::arrow::array::{Array, BinaryArray, RecordBatch, StringArray, StringBuilder};
use duckdb::{Config, Connection};

use crate::NotesError;

/// An in-memory DuckDB with deliberate limits: `threads` workers, `memory_limit` before spilling
/// to `temp_dir`, insertion order preserved (the corpus is in file order), no extension
/// downloads, and a small streaming buffer. (DuckDB counts that buffer well below what its chunks
/// hold: at 64MB it read a 1 GB CSV about 1 GB ahead of the Rust side, the notes bench's peak RSS
/// 1.5 GB and growing with the file, outside `memory_limit`; at 1MB the peak is 0.7 GB, 0.55 GB
/// for a 256 MB file, and the run is faster, 3.5 s instead of 4.3 s.)
pub fn open_duckdb(threads: usize, memory_limit: &str, temp_dir: &Path) -> Result<Connection, NotesError> {
    let fail =
        |e: duckdb::Error| NotesError::new(format!("could not start DuckDB: {}", first_line(&e.to_string())));
    let config = Config::default()
        .threads(threads as i64)
        .and_then(|c| c.max_memory(memory_limit))
        .and_then(|c| c.with("preserve_insertion_order", "true"))
        .and_then(|c| c.with("temp_directory", temp_dir.to_string_lossy()))
        .and_then(|c| c.with("autoinstall_known_extensions", "false"))
        .and_then(|c| c.enable_autoload_extension(false))
        .map_err(fail)?;
    let conn = Connection::open_in_memory_with_flags(config).map_err(fail)?;
    conn.execute_batch(
        "SET produce_arrow_string_view = false;
         SET arrow_large_buffer_size = false;
         SET streaming_buffer_size = '1MB';",
    )
    .map_err(fail)?;
    Ok(conn)
}

/// `s` as a SQL string literal.
pub fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `s` as a SQL identifier.
pub fn sql_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Checks that `path` is a non-empty regular file.
pub fn check_file(path: &Path, what: &str) -> Result<(), NotesError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| NotesError::new(format!("{}: cannot be read ({})", path.display(), e.kind())))?;
    if meta.is_dir() {
        return Err(NotesError::new(format!("{}: is a directory, but {what} is a file", path.display())));
    }
    if meta.len() == 0 {
        return Err(NotesError::new(format!("{}: is empty (expected {what})", path.display())));
    }
    Ok(())
}

fn is_gzip(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// Fails on a file that holds gzip data (it starts with gzip's magic bytes, 1f 8b) under a name
/// without `.gz`: DuckDB and the header reader go by the name, and would call it "not UTF-8".
pub fn check_not_misnamed_gzip(path: &Path) -> Result<(), NotesError> {
    if is_gzip(path) {
        return Ok(());
    }
    let mut magic = [0u8; 2];
    let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut magic)).unwrap_or(0);
    if n == 2 && magic == [0x1f, 0x8b] {
        let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        return Err(NotesError::new(format!(
            "{}: is gzip-compressed, but its name does not end in .gz; rename it to {name}.gz",
            path.display()
        )));
    }
    Ok(())
}

/// The integrity check of a `.gz` input, run on its own thread while DuckDB reads the file:
/// DuckDB stops at the end of a truncated gzip stream without an error (a download cut short
/// lost its last rows silently), and checks no CRC. This decompresses the whole stream to
/// nowhere, which reads the trailer (CRC-32 and length) of every member.
pub struct GzipCheck {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<Result<(), String>>,
    path: PathBuf,
}

impl GzipCheck {
    /// Starts checking `path` if its name ends in `.gz`.
    pub fn start(path: &Path) -> Option<GzipCheck> {
        if !is_gzip(path) {
            return None;
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, st) = (path.to_path_buf(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("notes-gzip-check".into())
            .spawn(move || {
                let file = std::fs::File::open(&p).map_err(|e| e.kind().to_string())?;
                let mut dec = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, file));
                let mut buf = vec![0u8; 1 << 20];
                while !st.load(std::sync::atomic::Ordering::Relaxed) {
                    match dec.read(&mut buf) {
                        Ok(0) => return Ok(()),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e.to_string()),
                    }
                }
                Ok(())
            })
            .ok()?;
        Some(GzipCheck { stop, handle, path: path.to_path_buf() })
    }

    /// Waits for the check to end (or stops it, with `abandon`); an error names the file.
    pub fn finish(self, abandon: bool) -> Result<(), NotesError> {
        if abandon {
            self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        match self.handle.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(NotesError::new(format!(
                "{}: truncated or corrupt gzip ({why}); re-download it",
                self.path.display()
            ))),
            Err(_) => Err(NotesError::new(format!("{}: the gzip check failed", self.path.display()))),
        }
    }
}

/// The column names of a delimited file's header, read here (DuckDB then reads the file with
/// exactly these columns, so a row with another number of fields is an error, not a guess).
pub fn read_header(path: &Path, delim: u8) -> Result<Vec<String>, NotesError> {
    check_not_misnamed_gzip(path)?;
    let file = std::fs::File::open(path)
        .map_err(|e| NotesError::new(format!("{}: cannot be read ({})", path.display(), e.kind())))?;
    let mut reader: Box<dyn BufRead> = if is_gzip(path) {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    // The header ends at the first newline outside quotes; 1 MiB is far more than any header.
    let mut buf = Vec::new();
    let mut in_quotes = false;
    let mut byte = [0u8; 1];
    loop {
        match reader.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(NotesError::new(format!(
                    "{}: cannot be read{} ({e})",
                    path.display(),
                    if is_gzip(path) { " as gzip" } else { "" }
                )));
            }
        }
        let b = byte[0];
        if b == b'"' {
            in_quotes = !in_quotes;
        }
        if b == b'\n' && !in_quotes {
            break;
        }
        buf.push(b);
        if buf.len() > 1 << 20 {
            return Err(NotesError::new(format!(
                "{}: the header (line 1) is longer than 1 MiB; is this a CSV file with a header?",
                path.display()
            )));
        }
    }
    if buf.is_empty() {
        return Err(NotesError::new(format!("{}: is empty (no header line)", path.display())));
    }
    if buf.ends_with(b"\r") {
        buf.pop();
    }
    let line = String::from_utf8(buf).map_err(|e| {
        NotesError::new(format!(
            "{}: line 1 is not valid UTF-8 (byte {}); convert the file to UTF-8",
            path.display(),
            e.utf8_error().valid_up_to() + 1
        ))
    })?;
    let line = line.strip_prefix('\u{feff}').unwrap_or(&line);
    let mut cols = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => quoted = !quoted,
            c if !quoted && c as u32 == delim as u32 => cols.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    cols.push(cur);
    Ok(cols)
}

/// Checks that `required` columns are in `found`; the error lists what is missing, never the
/// header's own content (a file without a header would show a row of notes there).
pub fn require_columns(
    path: &Path,
    found: &[String],
    required: &[&str],
    delim: Option<u8>,
) -> Result<(), NotesError> {
    let missing: Vec<&str> = required.iter().copied().filter(|r| !found.iter().any(|f| f == r)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(missing_columns(path, found, &missing, required, delim))
}

/// The error for columns `missing` of `required`, absent from the header `found`.
fn missing_columns(
    path: &Path,
    found: &[String],
    missing: &[&str],
    required: &[&str],
    delim: Option<u8>,
) -> NotesError {
    let mut msg = format!(
        "{}: no column {} in its header ({} column{} found; expected {})",
        path.display(),
        missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
        found.len(),
        if found.len() == 1 { "" } else { "s" },
        required.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
    );
    let other = delim.and_then(|d| other_delimiter(found, d));
    if let (Some(o), Some(d)) = (other, delim) {
        msg.push_str(&format!(
            "; the header contains {} but the delimiter is {}: wrong delimiter?",
            show_delim(o),
            show_delim(d)
        ));
    } else if !is_header(found, required) {
        if delim.is_some() {
            msg.push_str("; none of the expected columns is in line 1: is the header missing?");
        }
    } else {
        for m in missing {
            if let Some(h) = near_hint(found, m) {
                msg.push_str(&format!("; for `{m}`, {h}"));
            }
        }
    }
    NotesError::new(msg)
}

/// A near match of `want` in `header` (a header shown to be one, see [`is_header`]): the same
/// name but for case or surrounding spaces, or a likely misspelling.
pub fn near_hint(header: &[String], want: &str) -> Option<String> {
    if let Some(h) = header.iter().find(|h| h.trim() == want) {
        return Some(format!(
            "the header has `{h}`, with spaces around the name (names are compared exactly)"
        ));
    }
    if let Some(h) = header.iter().find(|h| h.trim().to_lowercase() == want.to_lowercase()) {
        return Some(format!("the header has `{h}` (names are compared exactly, case included)"));
    }
    camel_engine::validate::nearest(want, header.iter().map(String::as_str))
        .map(|n| format!("did you mean `{n}`?"))
}

/// The names DuckDB reads a delimited file's columns by: the header's own, except that an empty
/// name, and every repeat of a name (DuckDB compares names without case), get a placeholder
/// that is no column's name. DuckDB would refuse the file otherwise (a trailing comma in an
/// Excel export's header, a column exported twice).
pub fn scan_names(header: &[String]) -> Vec<String> {
    let lower: Vec<String> = header.iter().map(|h| h.to_lowercase()).collect();
    let mut out: Vec<String> = Vec::with_capacity(header.len());
    for (i, h) in header.iter().enumerate() {
        let repeat = lower[..i].contains(&lower[i]);
        if !h.is_empty() && !repeat {
            out.push(h.clone());
            continue;
        }
        let mut name = format!("_camel_column_{}", i + 1);
        while lower.contains(&name) || out.iter().any(|o| o.to_lowercase() == name) {
            name.push('_');
        }
        out.push(name);
    }
    out
}

/// Where each of `required` is in a delimited file's header, as the name to select it by from
/// [`csv_scan`]. A name must appear once; with `loose` (the fixed MIMIC layouts) a name that
/// differs only by case or surrounding spaces (`row_id` from a BigQuery export) is taken
/// where the exact one is absent.
pub fn find_columns(
    path: &Path,
    header: &[String],
    required: &[&str],
    loose: bool,
    delim: u8,
) -> Result<Vec<String>, NotesError> {
    let scan = scan_names(header);
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for r in required {
        let mut at: Vec<usize> = (0..header.len()).filter(|&i| header[i] == *r).collect();
        if at.is_empty() && loose {
            at = (0..header.len()).filter(|&i| header[i].trim().to_lowercase() == r.to_lowercase()).collect();
        }
        match at.as_slice() {
            [] => missing.push(*r),
            [i] => out.push(scan[*i].clone()),
            many => return Err(NotesError::new(format!("{}: {}", path.display(), repeated(r, many)))),
        }
    }
    if !missing.is_empty() {
        return Err(missing_columns(path, header, &missing, required, Some(delim)));
    }
    Ok(out)
}

/// Column `name` is at the (0-based) positions `at` of a header.
pub fn repeated(name: &str, at: &[usize]) -> String {
    let pos: Vec<String> = at.iter().map(|i| (i + 1).to_string()).collect();
    format!(
        "column `{name}` appears {} times in the header (columns {}): which one is meant is ambiguous; rename the others",
        at.len(),
        pos.join(", ")
    )
}

/// Whether `header` (line 1 of a delimited file) is demonstrably a header: one of its fields is
/// one of the `expected` column names (trimmed, any case). Only then may its fields be shown in a
/// message: the first line of a file without a header is a row of notes.
pub fn is_header(header: &[String], expected: &[&str]) -> bool {
    header.iter().any(|h| expected.iter().any(|e| h.trim().eq_ignore_ascii_case(e.trim())))
}

/// The delimiter a header read as one field (`header`, split on `delim`) more likely uses: the
/// first of tab, `;`, `|` and `,` in it. A semicolon- or tab-separated export read with the
/// default `,` is the usual case.
pub fn other_delimiter(header: &[String], delim: u8) -> Option<u8> {
    match header {
        [one] => [b'\t', b';', b'|', b','].into_iter().find(|&c| c != delim && one.contains(c as char)),
        _ => None,
    }
}

/// What to say about a line 1 that is not demonstrably a header, without quoting any of it:
/// another delimiter first when line 1 is one field that contains one (`other`), else a missing
/// header.
pub fn not_a_header(file: &str, fields: usize, delim: u8, other: Option<u8>) -> String {
    if let Some(o) = other {
        return format!(
            "line 1 of {file} is one field split on {} but contains {}: wrong delimiter? Set {} in this \
             source (or, if the file has no header line, add one naming its columns)",
            show_delim(delim),
            show_delim(o),
            delimiter_param(o)
        );
    }
    format!(
        "line 1 of {file} has {fields} field{} split on {} and none of them is an expected column: is the \
         header missing? The file needs a header line naming its columns (or another `delimiter`)",
        if fields == 1 { "" } else { "s" },
        show_delim(delim)
    )
}

/// The `delimiter:` param that selects `d`, as written in a pipeline.
pub fn delimiter_param(d: u8) -> String {
    match d {
        b'\t' => "`delimiter: \"\\t\"`".into(),
        c => format!("`delimiter: \"{}\"`", c as char),
    }
}

pub fn show_delim(d: u8) -> String {
    match d {
        b'\t' => "tabs".into(),
        c => format!("`{}`", c as char),
    }
}

/// The longest CSV record DuckDB reads (its `max_line_size`; a record with values spanning lines
/// is one), and what errors say. DuckDB's default is 2 MB.
pub const MAX_RECORD_BYTES: u64 = 16 << 20;
/// DuckDB's CSV scan buffer (`buffer_size`), which must exceed `max_line_size`. Left to DuckDB,
/// it grows with `max_line_size`: the notes bench (1 GB NOTEEVENTS.csv, 2 threads) peaked at
/// 690 MB with DuckDB's 2 MB defaults and at 1,188 MB with 16 MB records; with these 32 MB
/// buffers, 773 MB.
const SCAN_BUFFER_BYTES: u64 = 32 << 20;
const MAX_RECORD: &str = "16 MB";

/// `read_csv` of `path` with every setting explicit: `columns` as VARCHAR (all of the header's
/// columns, so that a row with another count fails), RFC 4180 quoting, strict mode, header
/// skipped, parallel reading.
pub fn csv_scan(path: &Path, delim: u8, columns: &[String]) -> String {
    let cols: Vec<String> =
        scan_names(columns).iter().map(|c| format!("{}: 'VARCHAR'", sql_str(c))).collect();
    format!(
        "read_csv({}, auto_detect = false, header = true, delim = {}, quote = '\"', escape = '\"', \
         columns = {{{}}}, strict_mode = true, parallel = true, null_padding = false, \
         ignore_errors = false, encoding = 'utf-8', compression = 'auto', max_line_size = {MAX_RECORD_BYTES}, \
         buffer_size = {SCAN_BUFFER_BYTES})",
        sql_str(&path.to_string_lossy()),
        sql_str(&(delim as char).to_string()),
        cols.join(", ")
    )
}

/// Runs `sql`, a query that reads the table function call `scan`, and hands each Arrow batch to
/// `f`, in order. Errors name `file`.
pub fn stream(
    conn: &Connection,
    scan: &str,
    sql: &str,
    file: &Path,
    f: &mut dyn FnMut(&RecordBatch) -> Result<(), NotesError>,
) -> Result<(), NotesError> {
    let mut stmt = conn.prepare(sql).map_err(|e| diagnose(scan, file, &e))?;
    // The crate's batch iterator panics when DuckDB fails mid-stream (a malformed row far into a
    // file): start the streaming query through it, then fetch each chunk with `step`, which
    // returns the error.
    drop(stmt.stream_arrow([]).map_err(|e| diagnose(scan, file, &e))?);
    while let Some(chunk) = stmt.step().map_err(|e| diagnose(scan, file, &e))? {
        f(&RecordBatch::from(&chunk))?;
    }
    Ok(())
}

/// The error to report for `err`. DuckDB 1.5.6 reports a malformed CSV row (invalid UTF-8, say) as
/// an INTERNAL error ("Attempted to access index 10 within vector of size 2") when the query reads
/// only some of the file's columns, and that error invalidates the database. Reading every column
/// gives the real error (which row, what is wrong): on an internal error a fresh single-threaded
/// DuckDB streams `SELECT * FROM scan` up to its first error. Only failing runs pay for it.
fn diagnose(scan: &str, file: &Path, err: &duckdb::Error) -> NotesError {
    if !err.to_string().contains("INTERNAL Error") {
        return duck_error(file, err);
    }
    let again = || -> Result<(), duckdb::Error> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(
            "SET threads = 1; SET autoinstall_known_extensions = false; SET autoload_known_extensions = false;",
        )?;
        let mut stmt = conn.prepare(&format!("SELECT * FROM {scan}"))?;
        drop(stmt.stream_arrow([])?);
        while stmt.step()?.is_some() {}
        Ok(())
    };
    match again() {
        Err(real) if !real.to_string().contains("INTERNAL Error") => duck_error(file, &real),
        _ => duck_error(file, err),
    }
}

/// The names of the columns `scan` (a table function call) yields.
pub fn columns_of(conn: &Connection, scan: &str, file: &Path) -> Result<Vec<String>, NotesError> {
    Ok(column_types(conn, scan, file)?.into_iter().map(|(name, _)| name).collect())
}

/// The columns `scan` (a table function call) yields: each name and DuckDB type (`VARCHAR`,
/// `BLOB`, `VARCHAR[]`, …).
pub fn column_types(conn: &Connection, scan: &str, file: &Path) -> Result<Vec<(String, String)>, NotesError> {
    let mut stmt =
        conn.prepare(&format!("DESCRIBE SELECT * FROM {scan}")).map_err(|e| duck_error(file, &e))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(|e| duck_error(file, &e))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(|e| duck_error(file, &e))
}

/// Whether a DuckDB type holds more than one value (a list, struct, map or union): such a
/// column is not text, and a cast would make text of its structure.
pub fn is_nested_type(t: &str) -> bool {
    let t = t.trim().to_ascii_uppercase();
    t.ends_with(']') || ["STRUCT", "MAP", "UNION"].iter().any(|k| t.starts_with(k))
}

/// How a column of a batch becomes text on the Rust side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decode {
    /// JSON values as DuckDB's JSON type gives them: a string is its text, a number or boolean
    /// is written as it is, `null` is null, and an object or a list is an error.
    Json,
    /// Parquet BINARY (DuckDB's BLOB) that holds text: UTF-8, checked.
    Utf8Bytes,
}

/// Column `alias` of `b` (read from the file's column `column`) decoded as `how` says. Errors
/// name the file, the data row and the column, never the value.
pub fn decode_column(
    b: &RecordBatch,
    alias: &str,
    column: &str,
    how: Decode,
    file: &Path,
    first_row: u64,
) -> Result<StringArray, NotesError> {
    let at = |i: usize, what: String| {
        NotesError::new(format!(
            "{}: data row {}: column `{column}` {what}",
            file.display(),
            first_row + i as u64 + 1
        ))
    };
    let col = b.column_by_name(alias).ok_or_else(|| {
        NotesError::new(format!("{}: DuckDB returned no column `{column}`", file.display()))
    })?;
    let other = || {
        NotesError::new(format!("{}: DuckDB returned column `{column}` with another type", file.display()))
    };
    let mut out = StringBuilder::with_capacity(col.len(), 0);
    match how {
        Decode::Json => {
            let a = col.as_any().downcast_ref::<StringArray>().ok_or_else(other)?;
            for i in 0..a.len() {
                if !a.is_valid(i) {
                    out.append_null();
                    continue;
                }
                let v = a.value(i);
                match v.as_bytes().first() {
                    Some(b'"') => {
                        let s: String = serde_json::from_str(v)
                            .map_err(|_| at(i, "holds a string DuckDB gave back malformed".into()))?;
                        out.append_value(s);
                    }
                    Some(b'{') => return Err(at(i, "holds a JSON object, not text".into())),
                    Some(b'[') => return Err(at(i, "holds a JSON list, not text".into())),
                    _ if v == "null" => out.append_null(),
                    _ => out.append_value(v),
                }
            }
        }
        Decode::Utf8Bytes => {
            let a = col.as_any().downcast_ref::<BinaryArray>().ok_or_else(other)?;
            for i in 0..a.len() {
                if !a.is_valid(i) {
                    out.append_null();
                    continue;
                }
                let s = std::str::from_utf8(a.value(i)).map_err(|e| {
                    at(
                        i,
                        format!(
                            "is binary that is not UTF-8 text (byte {} of the value); convert it to UTF-8",
                            e.valid_up_to() + 1
                        ),
                    )
                })?;
                out.append_value(s);
            }
        }
    }
    Ok(out.finish())
}

/// A column of a DuckDB batch as strings.
pub fn string_column<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a StringArray> {
    b.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<StringArray>())
}

/// Rewrites a DuckDB error into a message that names the file and says what is wrong, without
/// any of the file's content.
pub fn duck_error(file: &Path, e: &duckdb::Error) -> NotesError {
    NotesError::new(describe_duck_error(file, &e.to_string()))
}

pub fn describe_duck_error(file: &Path, msg: &str) -> String {
    let line = msg
        .split("CSV Error on Line: ")
        .nth(1)
        .map(|r| r.chars().take_while(char::is_ascii_digit).collect::<String>())
        .filter(|s| !s.is_empty());
    // Classified on DuckDB's own words only: the quoted row, the option dump and the path go.
    let path = file.to_string_lossy();
    let words: String = msg
        .lines()
        .filter(|l| !l.starts_with("Original Line:") && !l.trim_start().starts_with("file ="))
        .map(|l| l.replace(path.as_ref(), ""))
        .collect::<Vec<_>>()
        .join("\n");
    let has = |p: &str| words.to_ascii_lowercase().contains(&p.to_ascii_lowercase());
    let what: String = if has("unterminated quote") {
        "a quoted value is never closed (unterminated quote)".into()
    } else if has("invalid unicode") {
        "it is not valid UTF-8; convert it to UTF-8".into()
    } else if let Some(rest) = words.split("Expected Number of Columns: ").nth(1) {
        let expected: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let found: String = rest
            .split("Found: ")
            .nth(1)
            .map(|r| r.chars().take_while(char::is_ascii_digit).collect())
            .unwrap_or_default();
        format!(
            "a row has {found} fields where the header has {expected} (wrong delimiter, or an unescaped quote?)"
        )
    } else if has("maximum line size") {
        format!("a CSV record is longer than {MAX_RECORD}, the most that is read")
    } else if has("invalid state") {
        "it is not valid CSV (a quote inside an unquoted value, or the wrong quote/escape character)".into()
    } else if has("no files found")
        || has("no such file")
        || has("cannot open file")
        || has("could not open file")
    {
        "cannot be opened".into()
    } else if has("is a directory") {
        "is a directory, not a file".into()
    } else if has("malformed json") || has("json") && (has("parse") || has("invalid")) {
        json_error(file, &words)
    } else if has("magic bytes") || has("parquet") {
        "it is not a readable Parquet file".into()
    } else if has("gzip") || has("decompress") {
        "it could not be decompressed".into()
    } else if has("out of memory") {
        "DuckDB ran out of memory: raise `memory_limit`".into()
    } else if has("could not convert") || has("conversion error") {
        "a value could not be converted".into()
    } else if has("interrupt") {
        "reading was interrupted".into()
    } else {
        // Only the error class ("Invalid Input Error"), which is DuckDB's own words.
        let class = msg.split(':').next().unwrap_or("").trim();
        let class = if class.len() < 40 && class.chars().all(|c| c.is_ascii_alphabetic() || c == ' ') {
            class
        } else {
            "error"
        };
        format!("DuckDB could not read it ({class})")
    };
    match line {
        Some(l) => format!("{}: {what} (CSV record {l})", file.display()),
        None => format!("{}: {what}", file.display()),
    }
}

/// DuckDB's "Malformed JSON in file …, at byte B in line L: REASON." in our words. DuckDB's L
/// counts records (lines that are not blank) from 2: the first record is its line 2. The line is
/// found again in the file (only failing runs pay for it); REASON is the JSON parser's fixed
/// wording, kept where it is only words.
fn json_error(file: &Path, words: &str) -> String {
    let number = |after: &str| -> Option<u64> {
        words
            .split(after)
            .nth(1)
            .and_then(|r| r.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok())
    };
    let byte = number("at byte ");
    let record = number(" in line ").and_then(|l| l.checked_sub(1)).filter(|&r| r > 0);
    let reason = words
        .split(" in line ")
        .nth(1)
        .and_then(|r| r.split_once(": "))
        .map(|(_, r)| r.split(['.', '\n']).next().unwrap_or("").trim())
        .filter(|r| !r.is_empty() && r.len() <= 80)
        .filter(|r| r.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-')));
    let mut what = String::from("is not valid JSON");
    if let Some(r) = reason {
        what.push_str(&format!(" ({r}"));
        if let Some(b) = byte {
            what.push_str(&format!(", at byte {b}"));
        }
        what.push(')');
    } else if let Some(b) = byte {
        what.push_str(&format!(" (at byte {b})"));
    }
    if reason.is_some_and(|r| r.contains("UTF-8")) {
        what.push_str("; convert the file to UTF-8");
    }
    match record {
        Some(r) => match line_of_record(file, r) {
            Some(l) => format!("line {l} {what}"),
            None => format!("JSON record {r} {what}"),
        },
        None => format!("a line {what}"),
    }
}

/// The line number of the `record`-th line (1-based) that is not blank, reading `path`
/// (decompressed if it is `.gz`).
fn line_of_record(path: &Path, record: u64) -> Option<u64> {
    let file = std::fs::File::open(path).ok()?;
    let mut reader: Box<dyn BufRead> = if is_gzip(path) {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, file))
    };
    let (mut line, mut seen) = (0u64, 0u64);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).ok()? == 0 {
            return None;
        }
        line += 1;
        if !buf.iter().all(u8::is_ascii_whitespace) {
            seen += 1;
            if seen == record {
                return Some(line);
            }
        }
    }
}

/// Fails on a JSON-lines file that is one JSON array (`[{…}, {…}]`), or gzip under another name.
pub fn check_json_lines(path: &Path) -> Result<(), NotesError> {
    check_not_misnamed_gzip(path)?;
    let Ok(file) = std::fs::File::open(path) else { return Ok(()) };
    let mut reader: Box<dyn Read> =
        if is_gzip(path) { Box::new(flate2::read::MultiGzDecoder::new(file)) } else { Box::new(file) };
    let mut head = [0u8; 4096];
    let n = reader.read(&mut head).unwrap_or(0);
    let head = head[..n].strip_prefix(b"\xef\xbb\xbf").unwrap_or(&head[..n]);
    if head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(NotesError::new(format!(
            "{}: a JSON array is not JSON lines; write one object per line",
            path.display()
        )));
    }
    Ok(())
}

/// One i2b2 note: its id (relative path, or `DATA.PARAGRAPH`) and text.
pub struct I2b2Note {
    pub id: String,
    pub text: String,
}

/// i2b2/n2c2: a directory of `.txt`/`.xml` notes sorted by relative path, or SQuAD-shaped JSON.
pub fn read_i2b2(path: &Path, limit: Option<u64>) -> Result<(Vec<I2b2Note>, u64), NotesError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| NotesError::new(format!("{}: cannot be read ({})", path.display(), e.kind())))?;
    if meta.is_dir() {
        let mut files = Vec::new();
        walk(path, path, &mut files)?;
        // One note per stem (relative path without extension): its .txt where there is one
        // (the releases that ship both hold the same text twice), else its .xml's <TEXT>.
        let mut stems: std::collections::BTreeMap<String, (Option<PathBuf>, Option<PathBuf>)> =
            Default::default();
        let mut skipped = 0u64;
        for (rel, full) in files {
            let ext = full.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
            let stem = match rel.rsplit_once('.') {
                Some((s, _)) => s.to_string(),
                None => rel.clone(),
            };
            match ext.as_deref() {
                Some("txt") => stems.entry(stem).or_default().0 = Some(full),
                Some("xml") => stems.entry(stem).or_default().1 = Some(full),
                _ => skipped += 1,
            }
        }
        let mut notes = Vec::new();
        for (stem, (txt, xml)) in stems {
            if limit.is_some_and(|l| notes.len() as u64 >= l) {
                break;
            }
            let text = match (txt, xml) {
                (Some(t), _) => read_utf8(&t)?,
                (None, Some(x)) => xml_text(&x, &read_utf8(&x)?)?,
                (None, None) => continue,
            };
            notes.push(I2b2Note { id: stem, text });
        }
        if notes.is_empty() {
            return Err(NotesError::new(format!("{}: holds no .txt or .xml notes", path.display())));
        }
        Ok((notes, skipped))
    } else {
        check_file(path, "an i2b2 directory or SQuAD-shaped JSON")?;
        let text = read_utf8(path)?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            NotesError::new(format!(
                "{}: malformed JSON (line {}, column {})",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
        let shape = || {
            NotesError::new(format!(
                "{}: not SQuAD-shaped JSON (data[].paragraphs[].context)",
                path.display()
            ))
        };
        let data = v.get("data").and_then(|d| d.as_array()).ok_or_else(shape)?;
        let mut notes = Vec::new();
        'outer: for (i, d) in data.iter().enumerate() {
            let paragraphs = d.get("paragraphs").and_then(|p| p.as_array()).ok_or_else(shape)?;
            for (j, p) in paragraphs.iter().enumerate() {
                if limit.is_some_and(|l| notes.len() as u64 >= l) {
                    break 'outer;
                }
                // CAMEL: "".join(context): a string, or a list of strings.
                let text = match p.get("context") {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Array(a)) => {
                        let mut s = String::new();
                        for x in a {
                            s.push_str(x.as_str().ok_or_else(shape)?);
                        }
                        s
                    }
                    _ => return Err(shape()),
                };
                notes.push(I2b2Note { id: format!("{i}.{j}"), text });
            }
        }
        Ok((notes, 0))
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), NotesError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| NotesError::new(format!("{}: cannot be listed ({})", dir.display(), e.kind())))?;
    for e in entries {
        let e =
            e.map_err(|e| NotesError::new(format!("{}: cannot be listed ({})", dir.display(), e.kind())))?;
        let p = e.path();
        let meta = std::fs::metadata(&p)
            .map_err(|err| NotesError::new(format!("{}: cannot be read ({})", p.display(), err.kind())))?;
        if meta.is_dir() {
            walk(root, &p, out)?;
        } else {
            let rel = p.strip_prefix(root).unwrap_or(&p);
            let rel = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            out.push((rel, p));
        }
    }
    Ok(())
}

fn read_utf8(path: &Path) -> Result<String, NotesError> {
    let bytes = std::fs::read(path)
        .map_err(|e| NotesError::new(format!("{}: cannot be read ({})", path.display(), e.kind())))?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        NotesError::new(format!(
            "{}: line {line} is not valid UTF-8 (byte {}); convert it to UTF-8",
            path.display(),
            at + 1
        ))
    })
}

/// The text of an i2b2/n2c2 XML note: the content of `<TEXT>` (CDATA, or escaped text).
fn xml_text(path: &Path, xml: &str) -> Result<String, NotesError> {
    let Some(open) = xml.find("<TEXT>") else {
        return Err(NotesError::new(format!("{}: no <TEXT> element", path.display())));
    };
    let body_start = open + "<TEXT>".len();
    let Some(close_rel) = xml[body_start..].find("</TEXT>") else {
        return Err(NotesError::new(format!("{}: <TEXT> is never closed", path.display())));
    };
    let body = &xml[body_start..body_start + close_rel];
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while !rest.is_empty() {
        match rest.find("<![CDATA[") {
            Some(i) => {
                unescape_into(&rest[..i], &mut out);
                let after = &rest[i + 9..];
                let Some(end) = after.find("]]>") else {
                    return Err(NotesError::new(format!(
                        "{}: a CDATA section in <TEXT> is never closed",
                        path.display()
                    )));
                };
                out.push_str(&after[..end]);
                rest = &after[end + 3..];
            }
            None => {
                unescape_into(rest, &mut out);
                break;
            }
        }
    }
    Ok(out)
}

fn unescape_into(s: &str, out: &mut String) {
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let semi = after.find(';').filter(|&j| j <= 10);
        let decoded = semi.and_then(|j| {
            let ent = &after[1..j];
            let c = match ent {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => ent
                    .strip_prefix("#x")
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, j))
        });
        match decoded {
            Some((c, j)) => {
                out.push(c);
                rest = &after[j + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
}

/// The texts of an evaluation set's `field`, read by DuckDB from JSON (an array of objects, or
/// lines), CSV or Parquet.
pub fn read_eval_texts(conn: &Connection, path: &Path, field: &str) -> Result<Vec<String>, NotesError> {
    check_file(path, "an evaluation set")?;
    let name = path.to_string_lossy().to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    let scan = if name.ends_with(".parquet") || name.ends_with(".pq") {
        format!("read_parquet({})", sql_str(&path.to_string_lossy()))
    } else if name.ends_with(".csv") || name.ends_with(".tsv") {
        let delim = if name.ends_with(".tsv") { b'\t' } else { b',' };
        let cols = read_header(path, delim)?;
        require_columns(path, &cols, &[field], Some(delim))?;
        csv_scan(path, delim, &cols)
    } else {
        // A JSON array is one object to DuckDB, so the limit must cover the whole file; DuckDB
        // reserves a buffer of that size per thread, so it is the file's size, not a fixed maximum.
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let gzipped = path.to_string_lossy().to_ascii_lowercase().ends_with(".gz");
        let limit = (size * if gzipped { 20 } else { 1 } + (1 << 20)).max(16 << 20);
        format!(
            "read_json({}, format = 'auto', maximum_object_size = {limit})",
            sql_str(&path.to_string_lossy())
        )
    };
    let cols = columns_of(conn, &scan, path)?;
    require_columns(path, &cols, &[field], None)?;
    let sql = format!("SELECT CAST({} AS VARCHAR) AS t FROM {scan}", sql_ident(field));
    let mut texts = Vec::new();
    stream(conn, &scan, &sql, path, &mut |b| {
        let col =
            string_column(b, "t").ok_or_else(|| NotesError::new("DuckDB returned an unexpected type"))?;
        for i in 0..col.len() {
            if col.is_valid(i) {
                texts.push(col.value(i).to_string());
            }
        }
        Ok(())
    })?;
    Ok(texts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duckdb_messages_lose_their_content() {
        let f = Path::new("/d/NOTEEVENTS.csv");
        let m = "Invalid Input Error: CSV Error on Line: 12\nOriginal Line: 5,secret patient text\nValue with unterminated quote found.";
        let d = describe_duck_error(f, m);
        assert_eq!(
            d,
            "/d/NOTEEVENTS.csv: a quoted value is never closed (unterminated quote) (CSV record 12)"
        );
        let m = "Invalid Input Error: CSV Error on Line: 3\nOriginal Line: a;b;c\nExpected Number of Columns: 11 Found: 3";
        assert!(describe_duck_error(f, m).contains("a row has 3 fields where the header has 11"));
        let m = "Conversion Error: Could not convert string 'John Smith' to INT64";
        assert!(!describe_duck_error(f, m).contains("John"));
        let m = "Weird Error: something about John Smith";
        assert_eq!(describe_duck_error(f, m), "/d/NOTEEVENTS.csv: DuckDB could not read it (Weird Error)");
    }

    #[test]
    fn headers_and_xml() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        std::fs::write(&p, "\u{feff}\"ROW_ID\",\"TEXT\"\r\n1,\"x\"\n").unwrap();
        assert_eq!(read_header(&p, b',').unwrap(), ["ROW_ID", "TEXT"]);
        std::fs::write(&p, "a\tb\n").unwrap();
        let cols = read_header(&p, b',').unwrap();
        let e = require_columns(&p, &cols, &["ROW_ID"], Some(b',')).unwrap_err().to_string();
        assert!(e.contains("wrong delimiter") && e.contains("`ROW_ID`") && !e.contains("a\tb"), "{e}");
        let x = "<?xml?><root><TEXT><![CDATA[Record date: 2090\n& more]]></TEXT><TAGS/></root>";
        assert_eq!(xml_text(&p, x).unwrap(), "Record date: 2090\n& more");
        assert_eq!(xml_text(&p, "<TEXT>a &lt;b&gt; &amp; &#65;</TEXT>").unwrap(), "a <b> & A");
        assert!(xml_text(&p, "<X/>").is_err());
    }
}
