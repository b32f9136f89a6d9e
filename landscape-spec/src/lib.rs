//! # landscape-spec
//!
//! The typed model of a Codesphere-style `ci.yml` (schema v0.1 to v0.4), a position-aware
//! parser, a validator that reports every problem at once with `file:line:col`, templates
//! (`${{ vault.NAME }}` ...), schema upgrades, the plan catalogue type and a JSON Schema.
//!
//! Pure: no I/O beyond the bytes it is given, no async, no processes.
//!
//! ```
//! use landscape_spec::{parse_str, Reference, Run, ServiceKind};
//!
//! let src = "\
//! schemaVersion: v0.4
//! run:
//!   web:
//!     plan: 8
//!     steps:
//!       - command: npm start
//!     env:
//!       DB_PASSWORD: ${{ vault.dbPassword }}
//!     network:
//!       ports: [{port: 3000, isPublic: false}]
//!       paths: [{port: 3000, path: /}]
//!     replicas: yes
//! ";
//! let parsed = parse_str("ci.yml", src);
//! // `yes` is not a boolean or a number here: one error, with its position.
//! let e = &parsed.diagnostics[0];
//! assert_eq!((e.code, e.span.start.line, e.span.start.col), ("wrong-type", 12, 15));
//!
//! // The rest of the file is still read into the typed model.
//! let landscape = parsed.landscape.unwrap();
//! let web = landscape.service("web").unwrap();
//! assert_eq!(web.kind(), ServiceKind::Reactive);
//! let refs: Vec<_> = web.env().flat_map(|(_, v)| v.value.references().cloned()).collect();
//! assert_eq!(refs, vec![Reference::Vault("dbPassword".into())]);
//! ```
//!
//! Design notes: the YAML layer is [`saphyr_parser`] (maintained, event-based, keeps a span for
//! every event, zero-copy for plain scalars, no recursion); on top of it [`yaml`] builds a small
//! spanned tree with duplicate-key detection, budgeted aliases and hard limits, and
//! `decode`/[`validate()`] turn that into the model and diagnostics.
#![warn(missing_docs)]

mod decode;
pub mod diag;
pub mod emit;
mod fast;
mod model;
mod plans;
pub mod schema;
mod span;
pub mod template;
#[doc(hidden)]
pub mod testgen;
pub mod upgrade;
pub mod validate;
pub mod yaml;

pub use diag::{codes, Diagnostic, Format, Related, Severity};
pub use model::*;
pub use plans::{PlanCatalogue, PlanCatalogueError, PlanInfo};
pub use span::{Pos, Span, Spanned};
pub use template::{Part, Reference, Template, TemplateError};
pub use upgrade::{upgrade, Change, Upgraded};
pub use validate::validate;
pub use yaml::Limits;

/// The result of reading one file: the model (when the file was readable at all) and every
/// diagnostic, sorted by position.
#[derive(Clone, Debug)]
pub struct Parsed {
    /// The file name used in diagnostics.
    pub file: String,
    /// The model. `None` only when the bytes are not YAML, hit a limit, or the top level is not
    /// a mapping. It may be present together with errors: values that failed are left out.
    pub landscape: Option<Landscape>,
    /// Every problem found, errors and warnings, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Parsed {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| !d.is_error())
    }

    /// The model, if the file has no errors.
    pub fn ok(&self) -> Option<&Landscape> {
        if self.has_errors() {
            None
        } else {
            self.landscape.as_ref()
        }
    }
}

/// Options for [`parse_with`].
#[derive(Clone, Debug, Default)]
pub struct ParseOptions {
    /// Input limits.
    pub limits: Limits,
    /// A plan catalogue, to check plan ids and replica counts.
    pub plans: Option<PlanCatalogue>,
    /// Skip the semantic rules of [`validate()`] (types and keys are still checked).
    pub skip_validation: bool,
}

/// Reads a `ci.yml` from text with the default options.
pub fn parse_str(file: &str, src: &str) -> Parsed {
    parse_str_with(file, src, &ParseOptions::default())
}

/// Reads a `ci.yml` from text: parse, decode into the model, validate. Like [`parse_with`],
/// without checking again that the text is UTF-8.
pub fn parse_str_with(file: &str, src: &str, opts: &ParseOptions) -> Parsed {
    finish(file, Input::Text(src), opts, true)
}

/// Reads a `ci.yml` from bytes with the default options (invalid UTF-8 is reported).
pub fn parse_bytes(file: &str, bytes: &[u8]) -> Parsed {
    parse_with(file, bytes, &ParseOptions::default())
}

/// Reads a `ci.yml` from bytes: parse, decode into the model, validate.
pub fn parse_with(file: &str, bytes: &[u8], opts: &ParseOptions) -> Parsed {
    finish(file, Input::Bytes(bytes), opts, true)
}

/// [`parse_with`] through the reference path only: the `saphyr-parser` reader and a decoder
/// that sees the whole tree. The fuzz targets and differential tests check that it gives
/// exactly what [`parse_with`] gives.
#[doc(hidden)]
pub fn parse_reference(file: &str, bytes: &[u8], opts: &ParseOptions) -> Parsed {
    finish(file, Input::Bytes(bytes), opts, false)
}

/// What a parse starts from.
#[derive(Clone, Copy)]
enum Input<'a> {
    /// Text, UTF-8 already.
    Text(&'a str),
    /// Bytes to check first.
    Bytes(&'a [u8]),
}

fn finish(file: &str, input: Input<'_>, opts: &ParseOptions, fast: bool) -> Parsed {
    let mut diagnostics = Vec::new();
    let (landscape, checked) = read(input, opts, &mut diagnostics, fast);
    if let Some(l) = &landscape {
        if !opts.skip_validation {
            diagnostics.extend(match checked {
                // The services were checked while they were read, against this version.
                Some((v, checked))
                    if v == l.schema_version.value && matches!(l.run, Run::Services(_)) =>
                {
                    validate::validate_with_checked(l, checked)
                }
                _ => validate(l, opts.plans.as_ref()),
            });
        }
    }
    diagnostics.sort_by(|a, b| {
        a.span
            .start
            .cmp(&b.span.start)
            .then(b.severity.cmp(&a.severity))
    });
    Parsed {
        file: file.to_string(),
        landscape,
        diagnostics,
    }
}

/// What [`read`] found: the model, and the services' checks if they were run while reading.
type Read = (Option<Landscape>, Option<(SchemaVersion, Vec<Diagnostic>)>);

fn read(input: Input<'_>, opts: &ParseOptions, diags: &mut Vec<Diagnostic>, fast: bool) -> Read {
    let checked = match input {
        Input::Text(t) => yaml::check_text(t, &opts.limits, diags),
        Input::Bytes(b) => yaml::check_bytes_scanned(b, &opts.limits, diags),
    };
    let Ok((text, facts)) = checked else {
        return (None, None);
    };
    let check = (!opts.skip_validation).then_some(opts.plans.as_ref());
    // Block-style files take the fast reader, which also decodes the services of `run` while
    // it reads them; anything it declines is read by saphyr and decoded from the whole tree.
    let streamed = fast
        .then(|| fast::parse_streaming(text, facts, &opts.limits, diags, check))
        .flatten();
    let (root, streamed) = match streamed {
        Some((root, streamed)) => (root, Some(streamed)),
        None => match yaml::parse_document_full(text, &opts.limits, diags) {
            Some(root) => (root, None),
            None => return (None, None),
        },
    };
    let mut dec = decode::Decoder {
        diags,
        version: SchemaVersion::V0_1,
        streamed,
        checked: None,
    };
    let l = dec.landscape(root);
    (l, dec.checked)
}

/// The file name of a profile: `ci.yml` for the default profile, `ci.<profile>.yml` otherwise.
pub fn profile_file_name(profile: Option<&str>) -> String {
    match profile {
        None | Some("") => "ci.yml".to_string(),
        Some(p) => format!("ci.{p}.yml"),
    }
}

/// The profile named by a file name: `Some(None)` for `ci.yml`, `Some(Some("dev"))` for
/// `ci.dev.yml`, `None` for names that are not ci files.
pub fn profile_of(file_name: &str) -> Option<Option<&str>> {
    let base = file_name.rsplit('/').next().unwrap_or(file_name);
    if base == "ci.yml" {
        return Some(None);
    }
    let p = base.strip_prefix("ci.")?.strip_suffix(".yml")?;
    if p.is_empty() || p.contains('/') {
        None
    } else {
        Some(Some(p))
    }
}
