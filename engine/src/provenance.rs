//! `provenance.json`, the record of what produced a cache entry, as a typed struct: the engine
//! writes it beside every entry it commits and `camel show` reads it back. Neither side builds
//! or picks apart the JSON by hand, so a field cannot be misspelt on one side only.
//!
//! The bytes must stay what earlier versions wrote for the same content (entries already in
//! workspaces are read by this code): pretty-printed JSON with every object's keys sorted. The
//! struct's fields are therefore declared in alphabetical order; serde writes them in
//! declaration order. A test pins the format with a literal file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The name of the file in each cache entry.
pub const PROVENANCE_FILE: &str = "provenance.json";

/// What produced one cache entry. Fields are in alphabetical order on purpose (module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The version of camel that ran the stage.
    pub camel_version: String,
    /// When the stage finished, RFC 3339 to the second (UTC).
    pub finished: String,
    /// The machine it ran on.
    pub host: String,
    /// Each input by name: where it came from and its content hash.
    pub inputs: BTreeMap<String, ProvenanceInput>,
    /// The entry's key (the digest of the cache key).
    pub key: String,
    /// The stage's kind.
    pub kind: String,
    /// The hashed params, as in the cache key (secrets are not here).
    pub params: serde_json::Value,
    pub pipeline: ProvenancePipeline,
    /// The stage's name in the pipeline.
    pub stage: String,
    /// When the stage started, RFC 3339 to the second (UTC).
    pub started: String,
    /// The kind's implementation version.
    pub version: u32,
}

/// One input of a stage, in [`Provenance::inputs`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenanceInput {
    /// As written in the pipeline: a path, or `STAGE.OUTPUT`.
    pub from: String,
    /// Its blake3 content hash, hex.
    pub hash: String,
}

/// The pipeline a stage ran in, in [`Provenance::pipeline`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenancePipeline {
    /// The pipeline file, absolute.
    pub file: PathBuf,
    pub name: String,
}

impl Provenance {
    /// The file's bytes: pretty-printed JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("provenance serializes")
    }

    /// Reads the provenance of the entry in `entry_dir`; `None` when it is missing or does not
    /// parse (an entry stays usable without it: it is a record, not part of the outputs).
    pub fn read(entry_dir: &Path) -> Option<Provenance> {
        let bytes = std::fs::read(entry_dir.join(PROVENANCE_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// provenance.json exactly as camel wrote it before this struct existed (built with
    /// `serde_json::json!`, keys sorted), for a stage with one input and nested params.
    const WRITTEN_BEFORE: &str = r#"{
  "camel_version": "0.1.0",
  "finished": "2026-11-30T12:00:05Z",
  "host": "box",
  "inputs": {
    "b": {
      "from": "b.out",
      "hash": "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    },
    "notes": {
      "from": "data/notes.csv",
      "hash": "0000000000000000000000000000000000000000000000000000000000000001"
    }
  },
  "key": "3f5a9c0e7b1d2a4c6e8f0a1b3c5d7e9f",
  "kind": "command",
  "params": {
    "env": {
      "LANG": "C"
    },
    "outputs": {
      "out": "out.txt"
    },
    "run": "cat \"$CAMEL_IN_B\" > \"$CAMEL_OUT_OUT\""
  },
  "pipeline": {
    "file": "/home/me/p.yaml",
    "name": "diamond"
  },
  "stage": "d",
  "started": "2026-11-30T12:00:00Z",
  "version": 1
}"#;

    fn sample() -> Provenance {
        Provenance {
            camel_version: "0.1.0".into(),
            finished: "2026-11-30T12:00:05Z".into(),
            host: "box".into(),
            inputs: [
                (
                    "b".to_string(),
                    ProvenanceInput {
                        from: "b.out".into(),
                        hash: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262".into(),
                    },
                ),
                (
                    "notes".to_string(),
                    ProvenanceInput {
                        from: "data/notes.csv".into(),
                        hash: "0000000000000000000000000000000000000000000000000000000000000001".into(),
                    },
                ),
            ]
            .into(),
            key: "3f5a9c0e7b1d2a4c6e8f0a1b3c5d7e9f".into(),
            kind: "command".into(),
            params: serde_json::json!({
                "run": "cat \"$CAMEL_IN_B\" > \"$CAMEL_OUT_OUT\"",
                "outputs": {"out": "out.txt"},
                "env": {"LANG": "C"},
            }),
            pipeline: ProvenancePipeline { file: "/home/me/p.yaml".into(), name: "diamond".into() },
            stage: "d".into(),
            started: "2026-11-30T12:00:00Z".into(),
            version: 1,
        }
    }

    /// The literal is what the old writer produced: the `json!` that `exec.rs` used until the
    /// struct replaced it, fed the sample's content.
    #[test]
    fn the_literal_is_the_old_writers_output() {
        #[derive(Serialize)]
        struct Input<'a> {
            from: &'a str,
            hash: String,
        }
        let s = sample();
        let inputs: BTreeMap<&str, Input> = s
            .inputs
            .iter()
            .map(|(k, i)| (k.as_str(), Input { from: i.from.as_str(), hash: i.hash.clone() }))
            .collect();
        let v = serde_json::json!({
            "key": s.key,
            "pipeline": {"name": s.pipeline.name, "file": s.pipeline.file},
            "stage": s.stage,
            "kind": s.kind,
            "version": s.version,
            "params": s.params,
            "inputs": inputs,
            "camel_version": s.camel_version,
            "started": s.started,
            "finished": s.finished,
            "host": std::borrow::Cow::Borrowed(s.host.as_str()),
        });
        assert_eq!(String::from_utf8(serde_json::to_vec_pretty(&v).unwrap()).unwrap(), WRITTEN_BEFORE);
    }

    #[test]
    fn writes_the_same_bytes_as_before() {
        assert_eq!(String::from_utf8(sample().to_bytes()).unwrap(), WRITTEN_BEFORE);
    }

    #[test]
    fn reads_what_was_written_before() {
        let p: Provenance = serde_json::from_str(WRITTEN_BEFORE).unwrap();
        assert_eq!(p, sample());
        assert_eq!(p.to_bytes(), WRITTEN_BEFORE.as_bytes());
    }

    #[test]
    fn read_tolerates_a_missing_or_broken_file() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(Provenance::read(d.path()), None);
        std::fs::write(d.path().join(PROVENANCE_FILE), "{not json").unwrap();
        assert_eq!(Provenance::read(d.path()), None);
        std::fs::write(d.path().join(PROVENANCE_FILE), WRITTEN_BEFORE).unwrap();
        assert_eq!(Provenance::read(d.path()), Some(sample()));
    }
}
