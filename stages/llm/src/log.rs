//! The request log: every completed exchange, appended and fsync'd before its result is used.
//!
//! A line per response, keyed by [`crate::HttpRequest::key`] (blake3 of URL and body, never the
//! API key). Before sending, the client looks the key up here: a rerun after a crash, a kill -9 or
//! an edit that changes only later requests sends nothing it has already paid for. The log lives
//! in the workspace (not in a stage's scratch directory) so that every stage and every run shares
//! it; stages of one process share one [`RequestLog`] per file ([`RequestLog::open`]), and an
//! exclusive file lock (fs4) around each append keeps lines whole when processes share a file.
//!
//! What a line holds: the key, the provider's URL, the time, the reply's text, finish reason and
//! token usage. Not the request body: the prompt contains the note, and the log must not become a
//! second copy of the corpus. The replies themselves derive from notes, so the log is as
//! sensitive as the stage outputs and stays inside the workspace like them.
//!
//! A crash can leave a last line half written; [`RequestLog::open`] skips lines that do not parse
//! and the next append starts on a fresh line.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use fs4::FileExt;
use serde::{Deserialize, Serialize};

use crate::provider::Completion;

#[derive(Serialize, Deserialize)]
struct Line {
    v: u32,
    key: String,
    url: String,
    /// Seconds since the Unix epoch.
    time: u64,
    #[serde(flatten)]
    completion: Completion,
}

pub struct RequestLog {
    path: PathBuf,
    file: Mutex<File>,
    index: Mutex<HashMap<String, Completion>>,
    /// Lines that did not parse when the log was opened (a line cut by a crash).
    skipped: usize,
}

fn open_logs() -> &'static Mutex<HashMap<PathBuf, Weak<RequestLog>>> {
    static LOGS: OnceLock<Mutex<HashMap<PathBuf, Weak<RequestLog>>>> = OnceLock::new();
    LOGS.get_or_init(Default::default)
}

impl RequestLog {
    /// Opens (creating it and its directory) the log at `path`, or returns the instance this
    /// process already has open, so that concurrent stages see each other's responses.
    pub fn open(path: &Path) -> std::io::Result<Arc<RequestLog>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let canon = std::path::absolute(path)?;
        let mut logs = open_logs().lock().unwrap();
        if let Some(l) = logs.get(&canon).and_then(Weak::upgrade) {
            return Ok(l);
        }
        let file = OpenOptions::new().create(true).read(true).append(true).open(&canon)?;
        let mut index = HashMap::new();
        let mut skipped = 0;
        FileExt::lock_shared(&file)?;
        let read = (|| -> std::io::Result<()> {
            let mut r = BufReader::new(&file);
            r.seek(SeekFrom::Start(0))?;
            let mut buf = Vec::new();
            loop {
                buf.clear();
                if r.read_until(b'\n', &mut buf)? == 0 {
                    break;
                }
                match serde_json::from_slice::<Line>(&buf) {
                    Ok(l) if l.v == 1 => {
                        index.insert(l.key, l.completion);
                    }
                    _ if buf.iter().all(u8::is_ascii_whitespace) => {}
                    _ => skipped += 1,
                }
            }
            Ok(())
        })();
        FileExt::unlock(&file)?;
        read?;
        let log = Arc::new(RequestLog {
            path: canon.clone(),
            file: Mutex::new(file),
            index: Mutex::new(index),
            skipped,
        });
        logs.insert(canon, Arc::downgrade(&log));
        Ok(log)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.index.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lines skipped at open because they did not parse.
    pub fn skipped_lines(&self) -> usize {
        self.skipped
    }

    pub fn get(&self, key: &str) -> Option<Completion> {
        self.index.lock().unwrap().get(key).cloned()
    }

    /// Appends a response and syncs it to disk before returning: once this returns, a kill
    /// cannot make camel pay for this request again.
    pub fn append(&self, key: &str, url: &str, completion: &Completion) -> std::io::Result<()> {
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let line =
            Line { v: 1, key: key.to_string(), url: url.to_string(), time, completion: completion.clone() };
        let mut bytes = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        let mut file = self.file.lock().unwrap();
        FileExt::lock(&*file)?;
        let result = (|| -> std::io::Result<()> {
            // A line cut by a crash would swallow this one: start on a fresh line.
            let len = file.metadata()?.len();
            if len > 0 {
                let mut last = [0u8; 1];
                let mut r = &*file;
                r.seek(SeekFrom::Start(len - 1))?;
                std::io::Read::read_exact(&mut r, &mut last)?;
                if last[0] != b'\n' {
                    file.write_all(b"\n")?;
                }
            }
            file.write_all(&bytes)?;
            file.sync_data()
        })();
        FileExt::unlock(&*file)?;
        result?;
        self.index.lock().unwrap().insert(key.to_string(), completion.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{FinishReason, Usage};

    fn c(s: &str) -> Completion {
        Completion {
            content: s.into(),
            finish_reason: FinishReason::Stop,
            usage: Usage { prompt_tokens: 1, completion_tokens: 2 },
        }
    }

    #[test]
    fn appends_survive_reopen_and_a_cut_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("llm/requests.jsonl");
        {
            let log = RequestLog::open(&p).unwrap();
            log.append("k1", "http://x", &c("one")).unwrap();
            log.append("k2", "http://x", &c("two")).unwrap();
            // The same path in the same process is the same log.
            assert_eq!(RequestLog::open(&p).unwrap().len(), 2);
        }
        // Simulate a kill in the middle of a write.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(br#"{"v":1,"key":"k3","url":"#).unwrap();
        drop(f);
        let log = RequestLog::open(&p).unwrap();
        assert_eq!((log.len(), log.skipped_lines()), (2, 1));
        assert_eq!(log.get("k2").unwrap().content, "two");
        log.append("k4", "http://x", &c("four")).unwrap();
        drop(log);
        let log = RequestLog::open(&p).unwrap();
        assert_eq!(log.get("k4").unwrap().content, "four");
        assert!(log.get("k3").is_none());
    }
}
