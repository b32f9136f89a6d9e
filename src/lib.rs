//! # landscape
//!
//! Facade over the landscape crates: run multi-service applications ("landscapes")
//! described by a Codesphere-style `ci.yml`.
//!
//! ```
//! let parsed = landscape::spec::parse_str("ci.yml", "schemaVersion: v0.2\nrun:\n  web:\n    steps:\n      - command: npm start\n");
//! assert!(!parsed.has_errors());
//! ```
//!
//! | module | crate | feature |
//! |---|---|---|
//! | [`spec`] | `landscape-spec` | always |
//! | `vault` | `landscape-vault` | `vault` |
//! | `net` | `landscape-net` | `net` |
//! | `runtime` | `landscape-runtime` | `runtime` |
//! | `compose` | the composition: [`compose::Landscape`] runs a ci.yml (supervisor + router) | `net` + `runtime` |
//! | `control` | the control API of a running landscape (JSON over HTTP/1.1 on a unix socket) | `net` + `runtime` |
#![warn(missing_docs)]

pub use landscape_spec as spec;

#[cfg(feature = "net")]
pub use landscape_net as net;
#[cfg(feature = "runtime")]
pub use landscape_runtime as runtime;
#[cfg(feature = "vault")]
pub use landscape_vault as vault;

#[cfg(all(feature = "net", feature = "runtime"))]
pub mod compose;
#[cfg(all(feature = "net", feature = "runtime"))]
pub mod control;
