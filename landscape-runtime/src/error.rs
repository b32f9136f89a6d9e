//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while preparing, starting or controlling an instance.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the thing and the place.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The machine cannot run rootless instances (no user namespaces, no subordinate ids...).
    #[error("{0}")]
    Unsupported(String),
    /// The instance specification is invalid (bad mount path, empty command...).
    #[error("invalid instance spec: {0}")]
    InvalidSpec(String),
    /// An image could not be found, read, verified or unpacked.
    #[error("image {image}: {message}")]
    Image {
        /// The image reference as given.
        image: String,
        /// What went wrong and what to do.
        message: String,
    },
    /// The helper process (the single-threaded fork path) misbehaved or died.
    #[error("runtime helper: {0}")]
    Helper(String),
    /// A durable instance to adopt has ended (or its pid now names another process).
    #[error("instance {instance} ended while no host supervised it")]
    Gone {
        /// Instance id.
        instance: String,
        /// How it ended, as far as known.
        exit: Box<crate::Exit>,
    },
    /// Starting the container failed inside the new namespaces.
    #[error("instance {instance}: {message}")]
    Start {
        /// Instance id.
        instance: String,
        /// What failed.
        message: String,
    },
    /// A cgroup operation failed.
    #[error("cgroup {path}: {message}")]
    Cgroup {
        /// The cgroup directory.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// Resource limits are not enforced on this machine (no writable cgroups).
    #[error("resource limits are not enforced here: {0}")]
    LimitsNotEnforced(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
    pub(crate) fn nix(what: impl Into<String>, e: nix::Error) -> Self {
        Error::io(what, std::io::Error::from(e))
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
