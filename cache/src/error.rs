use std::path::PathBuf;

/// Errors of the hashing and storage layer.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} does not exist")]
    Missing { path: PathBuf },
    #[error("{path} is neither a regular file nor a directory")]
    NotFileOrDir { path: PathBuf },
    #[error("failed to parse {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to serialize {path}")]
    Serialize {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} is a symbolic link; outputs must be regular files and directories")]
    Symlink { path: PathBuf },
    #[error("declared output `{name}` was not produced (expected {path})")]
    OutputMissing { name: String, path: PathBuf },
}

impl CacheError {
    pub(crate) fn read(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                CacheError::Missing { path }
            } else {
                CacheError::Read { path, source }
            }
        }
    }

    pub(crate) fn write(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| CacheError::Write { path, source }
    }
}
