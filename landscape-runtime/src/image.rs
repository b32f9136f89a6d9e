//! Images for Managed Containers: an OCI image layout directory, an OCI archive (a tar of
//! a layout), a `docker save` archive, or a pull from a registry (feature `registry`, on by
//! default: OCI distribution API over hyper-util's client; HTTPS with the `registry-tls`
//! feature, plain HTTP for loopback and insecure registries; Basic and Bearer-token
//! authentication, see [`RegistryOptions`]). Every blob is verified against its sha256 digest,
//! layers are applied in order with whiteouts (`.wh.NAME`, `.wh..wh..opq`), and the result
//! is unpacked once into a content-addressed cache (`<cache>/rootfs/<manifest digest>`)
//! that all instances share read-only as their lower layer.
//!
//! Manifests, indexes, configs, descriptors, digests and media types are the standard
//! `oci-spec` types (`oci_spec::image`); Docker v2 manifests and manifest lists read as the
//! same documents under their Docker media types. From an index, the entry for `linux` and
//! this host's architecture (Go's names, as `oci_spec::image::Arch` gives them) is used.
//!
//! When the runtime runs as root, file owners are shifted into the subordinate id range
//! (so that image files owned by root are owned by container root); unprivileged, every
//! file belongs to the runtime's user, which is the container user.

#[cfg(feature = "registry")]
use crate::registry::{api_host, Session};
pub use crate::registry::{Credentials, RegistryOptions};
use crate::{Error, IdMap, Process, Result, User};
use oci_spec::image::{
    Arch, Descriptor, Digest as OciDigest, ImageConfiguration, ImageIndex, ImageManifest,
    ImageManifestBuilder, MediaType, Os, Sha256Digest, ToDockerV2S2,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// An OCI image layout directory, optionally with a tag (`org.opencontainers.image.ref.name`).
    OciLayout {
        /// The layout directory.
        path: PathBuf,
        /// The tag, or the only/first manifest.
        tag: Option<String>,
    },
    /// A tar archive of an OCI image layout.
    OciArchive {
        /// The archive.
        path: PathBuf,
        /// The tag.
        tag: Option<String>,
    },
    /// A `docker save` archive (`manifest.json`, config and layer tars; archives from Docker
    /// 25+ are OCI layouts as well and read either way).
    DockerArchive {
        /// The archive.
        path: PathBuf,
        /// A repo tag (`name:tag`, or just `tag`), or the first image.
        tag: Option<String>,
    },
    /// An already unpacked root filesystem directory (no config).
    Rootfs(PathBuf),
    /// A registry reference.
    Registry {
        /// `host[:port]`.
        registry: String,
        /// Repository path (`library/busybox`).
        repository: String,
        /// Tag or `sha256:` digest.
        reference: String,
    },
}

fn split_tag(rest: &str) -> (PathBuf, Option<String>) {
    match rest.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') && !t.is_empty() && !p.is_empty() => {
            (PathBuf::from(p), Some(t.to_string()))
        }
        _ => (PathBuf::from(rest), None),
    }
}

impl ImageRef {
    /// Parses `oci-layout:PATH[:TAG]`, `oci-archive:PATH[:TAG]`, `docker-archive:PATH[:TAG]`,
    /// `rootfs:PATH` or a
    /// registry reference `[HOST[:PORT]/]REPO[:TAG|@DIGEST]`.
    pub fn parse(s: &str) -> Result<ImageRef> {
        let bad = |m: &str| Error::Image {
            image: s.to_string(),
            message: m.to_string(),
        };
        if let Some(rest) = s.strip_prefix("oci-layout:") {
            let (path, tag) = split_tag(rest);
            return Ok(ImageRef::OciLayout { path, tag });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (path, tag) = split_tag(rest);
            return Ok(ImageRef::OciArchive { path, tag });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            let (path, tag) = split_tag(rest);
            return Ok(ImageRef::DockerArchive { path, tag });
        }
        if let Some(rest) = s.strip_prefix("rootfs:") {
            return Ok(ImageRef::Rootfs(PathBuf::from(rest)));
        }
        if s.is_empty() || s.contains(char::is_whitespace) {
            return Err(bad("expected host, oci-layout:PATH, oci-archive:PATH, rootfs:PATH or a registry reference like 127.0.0.1:5000/busybox:latest"));
        }
        let (first, rest) = s.split_once('/').unwrap_or(("", s));
        let (registry, path) = if !first.is_empty()
            && (first.contains('.') || first.contains(':') || first == "localhost")
        {
            let docker_hub = first == "docker.io" || first == "index.docker.io";
            let path = if docker_hub && !rest.contains('/') {
                format!("library/{rest}")
            } else {
                rest.to_string()
            };
            (first.to_string(), path)
        } else {
            let p = if s.contains('/') {
                s.to_string()
            } else {
                format!("library/{s}")
            };
            ("registry-1.docker.io".to_string(), p)
        };
        let (repository, reference) = if let Some((r, d)) = path.split_once('@') {
            (r.to_string(), d.to_string())
        } else {
            match path.rsplit_once(':') {
                Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
                _ => (path.clone(), "latest".to_string()),
            }
        };
        if repository.is_empty()
            || !repository
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b))
        {
            return Err(bad(
                "repository names use lowercase letters, digits, '.', '_', '-' and '/'",
            ));
        }
        Ok(ImageRef::Registry {
            registry,
            repository,
            reference,
        })
    }
}

/// The parts of an image's config a container needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    /// Entrypoint.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Cmd.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// Environment (`K=V`).
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// Working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// User (`uid[:gid]`; names are not resolved).
    #[serde(default)]
    pub user: Option<String>,
}

impl ImageConfig {
    /// The process the image runs by default (entrypoint + cmd, env, working directory).
    pub fn process(&self) -> Process {
        let mut args = self.entrypoint.clone().unwrap_or_default();
        args.extend(self.cmd.clone().unwrap_or_default());
        let env = self
            .env
            .iter()
            .flatten()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Process {
            args,
            env,
            cwd: self.working_dir.clone().filter(|w| !w.is_empty()),
        }
    }
    /// The image's numeric user, if it names one.
    pub fn user(&self) -> Option<User> {
        let u = self.user.as_deref().filter(|u| !u.is_empty())?;
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        Some(User {
            uid: uid.parse().ok()?,
            gid: gid.parse().ok()?,
        })
    }
}

impl From<&oci_spec::image::Config> for ImageConfig {
    fn from(c: &oci_spec::image::Config) -> Self {
        ImageConfig {
            entrypoint: c.entrypoint().clone(),
            cmd: c.cmd().clone(),
            env: c.env().clone(),
            working_dir: c.working_dir().clone(),
            user: c.user().clone(),
        }
    }
}

/// An image ready to be used as [`crate::Rootfs::Dir`].
#[derive(Debug, Clone)]
pub struct Image {
    /// The unpacked root filesystem (shared, do not modify).
    pub rootfs: PathBuf,
    /// Its config.
    pub config: ImageConfig,
    /// The manifest digest (`sha256:...`), if it came from a manifest.
    pub digest: Option<String>,
}

/// Progress of [`ImageStore::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The manifest was found.
    Manifest {
        /// Its digest.
        digest: String,
        /// Number of layers.
        layers: usize,
    },
    /// A blob was downloaded (registry pulls).
    Downloaded {
        /// Its digest.
        digest: String,
        /// Its size in bytes.
        bytes: u64,
    },
    /// A layer was verified and applied.
    Unpacked {
        /// Its digest.
        digest: String,
        /// 1-based index.
        index: usize,
        /// Number of layers.
        of: usize,
    },
    /// The image was already in the cache.
    Cached {
        /// The manifest digest.
        digest: String,
    },
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Progress::Manifest { digest, layers } => {
                write!(f, "manifest {digest} ({layers} layers)")
            }
            Progress::Downloaded { digest, bytes } => {
                write!(f, "downloaded {digest} ({bytes} bytes)")
            }
            Progress::Unpacked { digest, index, of } => {
                write!(f, "unpacked layer {index}/{of} {digest}")
            }
            Progress::Cached { digest } => write!(f, "using cached image {digest}"),
        }
    }
}

/// Default cache directory: `$TMPDIR/landscape-images-<uid>`.
pub fn default_cache_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "landscape-images-{}",
        nix::unistd::geteuid().as_raw()
    ))
}

/// Docker's name for an OCI media type (an index is a "manifest list" there).
fn docker_type(t: &MediaType) -> Option<String> {
    t.to_docker_v2s2().ok().map(str::to_string)
}

/// Whether `t` names an image index, OCI or Docker.
fn is_index_type(t: &str) -> bool {
    t == MediaType::ImageIndex.as_ref() || docker_type(&MediaType::ImageIndex).as_deref() == Some(t)
}

/// Whether `t` names a single-image manifest, OCI or Docker.
fn is_manifest_type(t: &str) -> bool {
    t == MediaType::ImageManifest.as_ref()
        || docker_type(&MediaType::ImageManifest).as_deref() == Some(t)
}

/// Whether `t` names an image config, OCI or Docker.
fn is_config_type(t: &MediaType) -> bool {
    *t == MediaType::ImageConfig || t.as_ref() == DOCKER_CONFIG
}

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The `Accept` header for manifests: OCI and Docker v2, single images and indexes.
pub(crate) fn manifest_accept() -> String {
    let mut types = vec![
        MediaType::ImageManifest.to_string(),
        MediaType::ImageIndex.to_string(),
    ];
    types.extend(
        [MediaType::ImageManifest, MediaType::ImageIndex]
            .iter()
            .filter_map(docker_type),
    );
    types.join(", ")
}

/// A manifest document: a single image, or an index of images for several platforms.
#[derive(Debug)]
pub(crate) enum Document {
    /// An image index (OCI) or manifest list (Docker).
    Index(Box<ImageIndex>),
    /// An image manifest (OCI, or Docker v2 schema 2).
    Manifest(Box<ImageManifest>),
}

impl Document {
    /// Parses `bytes` as the manifest or index it says it is: its own `mediaType`, else
    /// `declared` (the descriptor's media type, or the registry's `Content-Type`), else its
    /// shape (a `manifests` array makes an index).
    pub(crate) fn parse(name: &str, bytes: &[u8], declared: Option<&str>) -> Result<Document> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Head {
            #[serde(default)]
            schema_version: Option<u32>,
            #[serde(default)]
            media_type: Option<String>,
            #[serde(default)]
            manifests: Option<serde::de::IgnoredAny>,
        }
        let err = |m: String| ImageStore::err(name, m);
        let head: Head =
            serde_json::from_slice(bytes).map_err(|e| err(format!("manifest: {e}")))?;
        if head.schema_version == Some(1) {
            return Err(err(
                "Docker schema 1 manifests are not supported (deprecated since 2017); push the image again with a current tool".into(),
            ));
        }
        let declared = declared
            .map(|d| d.split(';').next().unwrap_or(d).trim())
            .filter(|d| is_index_type(d) || is_manifest_type(d));
        let index = match head.media_type.as_deref().or(declared) {
            Some(t) if is_index_type(t) => true,
            Some(t) if is_manifest_type(t) => false,
            Some(t) => {
                return Err(err(format!(
                    "manifest of type {t:?} is not a container image (expected one of {})",
                    manifest_accept()
                )))
            }
            None => head.manifests.is_some(),
        };
        if index {
            serde_json::from_slice(bytes)
                .map(|i| Document::Index(Box::new(i)))
                .map_err(|e| err(format!("image index: {e}")))
        } else {
            serde_json::from_slice(bytes)
                .map(|m| Document::Manifest(Box::new(m)))
                .map_err(|e| err(format!("manifest: {e}")))
        }
    }
}

/// The platform this host runs images of: `linux` and the host's architecture (Go's
/// names, as in image indexes) and, where one is customary, its variant.
fn host_platform() -> (Os, Arch, Option<&'static str>) {
    let arch = Arch::default();
    let variant = match arch {
        Arch::ARM64 => Some("v8"),
        _ => None,
    };
    (Os::Linux, arch, variant)
}

fn host_platform_name() -> String {
    let (os, arch, variant) = host_platform();
    match variant {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    }
}

/// The entry of an image index for this host: its OS and architecture, preferring its
/// variant, then an entry without a variant, then any variant; an entry without a platform
/// where none names this one.
pub(crate) fn pick_platform(list: &[Descriptor]) -> Option<&Descriptor> {
    let (os, arch, variant) = host_platform();
    let matching = || {
        list.iter().filter(|d| {
            d.platform()
                .as_ref()
                .is_some_and(|p| *p.os() == os && *p.architecture() == arch)
        })
    };
    let variant_of = |d: &Descriptor| d.platform().as_ref().and_then(|p| p.variant().clone());
    matching()
        .find(|d| variant.is_some() && variant_of(d).as_deref() == variant)
        .or_else(|| matching().find(|d| variant_of(d).is_none()))
        .or_else(|| matching().next())
        .or_else(|| list.iter().find(|d| d.platform().is_none()))
}

/// The sha256 hex of a descriptor's digest (the only algorithm blobs are stored and
/// verified by here).
fn sha256_of<'d>(name: &str, d: &'d Descriptor) -> Result<&'d str> {
    d.as_digest_sha256().ok_or_else(|| {
        ImageStore::err(
            name,
            format!(
                "digest {} uses {}; only sha256 digests are supported",
                d.digest(),
                d.digest().algorithm()
            ),
        )
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The digest of `bytes`, as a descriptor names it.
fn digest_of(bytes: &[u8]) -> Result<OciDigest> {
    sha256_digest(&sha256_hex(bytes))
}

fn sha256_digest(hex: &str) -> Result<OciDigest> {
    Sha256Digest::from_str(hex)
        .map(OciDigest::from)
        .map_err(|e| ImageStore::err(hex, format!("digest: {e}")))
}

/// The content-addressed image cache.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    idmap: IdMap,
    registry: RegistryOptions,
}

impl ImageStore {
    /// A cache at `root` for instances mapped with `idmap` (see [`crate::Runtime::idmap`]).
    pub fn new(root: impl Into<PathBuf>, idmap: IdMap) -> Self {
        ImageStore {
            root: root.into(),
            idmap,
            registry: RegistryOptions::default(),
        }
    }

    /// How registries are reached: extra CAs, credentials, insecure registries.
    pub fn with_registry(mut self, options: RegistryOptions) -> Self {
        self.registry = options;
        self
    }

    /// The error for `image`: what went wrong, in words.
    pub(crate) fn err(image: &str, message: impl Into<String>) -> Error {
        Error::Image {
            image: image.to_string(),
            message: message.into(),
        }
    }

    /// Makes `r` available as an unpacked root filesystem, reporting progress.
    pub fn resolve(&self, r: &ImageRef, progress: &mut dyn FnMut(Progress)) -> Result<Image> {
        match r {
            ImageRef::Rootfs(p) => {
                if !p.is_dir() {
                    return Err(Self::err(&p.display().to_string(), "not a directory"));
                }
                Ok(Image {
                    rootfs: p.clone(),
                    config: ImageConfig::default(),
                    digest: None,
                })
            }
            ImageRef::OciLayout { path, tag } => {
                let name = path.display().to_string();
                let (digest, manifest) = self.layout_manifest(&name, path, tag.as_deref())?;
                self.build(
                    &name,
                    &digest,
                    &manifest,
                    &path.join("blobs/sha256"),
                    progress,
                )
            }
            ImageRef::OciArchive { path, tag } | ImageRef::DockerArchive { path, tag } => {
                let name = path.display().to_string();
                let tmp = self.tmp_dir(&name)?;
                let result = (|| {
                    let f = File::open(path).map_err(|e| Self::err(&name, format!("open: {e}")))?;
                    let mut ar = tar::Archive::new(BufReader::new(f));
                    for entry in ar
                        .entries()
                        .map_err(|e| Self::err(&name, format!("read archive: {e}")))?
                    {
                        let mut entry =
                            entry.map_err(|e| Self::err(&name, format!("read archive: {e}")))?;
                        entry
                            .unpack_in(&tmp)
                            .map_err(|e| Self::err(&name, format!("extract archive: {e}")))?;
                    }
                    // Either kind of archive is read as what it holds.
                    let (digest, manifest) =
                        if !tmp.join("index.json").exists() && tmp.join("manifest.json").exists() {
                            self.docker_manifest(&name, &tmp, tag.as_deref())?
                        } else {
                            self.layout_manifest(&name, &tmp, tag.as_deref())?
                        };
                    self.build(
                        &name,
                        &digest,
                        &manifest,
                        &tmp.join("blobs/sha256"),
                        progress,
                    )
                })();
                let _ = std::fs::remove_dir_all(&tmp);
                result
            }
            ImageRef::Registry {
                registry,
                repository,
                reference,
            } => self.pull(registry, repository, reference, progress),
        }
    }

    fn tmp_dir(&self, name: &str) -> Result<PathBuf> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let p = self.root.join(format!(
            "tmp-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p)
            .map_err(|e| Self::err(name, format!("create {}: {e}", p.display())))?;
        Ok(p)
    }

    fn read_blob(&self, name: &str, blobs: &Path, d: &Descriptor) -> Result<Vec<u8>> {
        let hex = sha256_of(name, d)?;
        let bytes = std::fs::read(blobs.join(hex))
            .map_err(|e| Self::err(name, format!("blob {}: {e}", d.digest())))?;
        if sha256_hex(&bytes) != hex || (d.size() != 0 && d.size() != bytes.len() as u64) {
            return Err(Self::err(
                name,
                format!("blob {} does not match its digest", d.digest()),
            ));
        }
        Ok(bytes)
    }

    /// Turns an unpacked `docker save` archive in `dir` into the blobs of an OCI layout
    /// (`dir/blobs/sha256`) and returns the digest and text of an OCI manifest for the image
    /// tagged `tag` (or the first one).
    fn docker_manifest(
        &self,
        name: &str,
        dir: &Path,
        tag: Option<&str>,
    ) -> Result<(OciDigest, Vec<u8>)> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let text = std::fs::read(dir.join("manifest.json"))
            .map_err(|e| Self::err(name, format!("manifest.json: {e}")))?;
        let entries: Vec<Entry> = serde_json::from_slice(&text)
            .map_err(|e| Self::err(name, format!("manifest.json: {e}")))?;
        let tags_of = |e: &Entry| e.repo_tags.clone().unwrap_or_default();
        let entry = match tag {
            Some(t) => entries.iter().find(|e| {
                tags_of(e)
                    .iter()
                    .any(|rt| rt == t || rt.rsplit_once(':').is_some_and(|(_, x)| x == t))
            }),
            None => entries.first(),
        }
        .ok_or_else(|| {
            let tags: Vec<String> = entries.iter().flat_map(tags_of).collect();
            Self::err(
                name,
                format!("no image tagged {tag:?}; tags here: {tags:?}"),
            )
        })?;
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs)
            .map_err(|e| Self::err(name, format!("create {}: {e}", blobs.display())))?;
        let root = dir
            .canonicalize()
            .map_err(|e| Self::err(name, format!("{}: {e}", dir.display())))?;
        // Each file named by manifest.json (inside the archive only) becomes a blob named by
        // its sha256.
        let blob = |rel: &str| -> Result<(OciDigest, u64)> {
            let rel_path = Path::new(rel);
            if rel_path.is_absolute()
                || rel_path
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(Self::err(
                    name,
                    format!("manifest.json names {rel:?}, outside the archive"),
                ));
            }
            let path = resolve_inside(&root, rel_path)
                .filter(|p| p.is_file())
                .ok_or_else(|| {
                    Self::err(
                        name,
                        format!("manifest.json names {rel:?}, which the archive does not hold"),
                    )
                })?;
            let mut f = File::open(&path).map_err(|e| Self::err(name, format!("{rel}: {e}")))?;
            let mut h = Sha256::new();
            let size = std::io::copy(&mut f, &mut h)
                .map_err(|e| Self::err(name, format!("{rel}: {e}")))?;
            let hex = format!("{:x}", h.finalize());
            let to = blobs.join(&hex);
            if !to.exists() {
                std::fs::rename(&path, &to)
                    .or_else(|_| std::fs::copy(&path, &to).map(|_| ()))
                    .map_err(|e| Self::err(name, format!("{rel}: {e}")))?;
            }
            Ok((sha256_digest(&hex)?, size))
        };
        let (config_digest, config_size) = blob(&entry.config)?;
        let mut layers = Vec::new();
        for l in &entry.layers {
            let (digest, size) = blob(l)?;
            // `docker save` layers are tar files (the content tells the compression).
            layers.push(Descriptor::new(MediaType::ImageLayer, size, digest));
        }
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config_size,
                config_digest,
            ))
            .layers(layers)
            .build()
            .and_then(|m| m.to_string())
            .map_err(|e| Self::err(name, format!("manifest: {e}")))?
            .into_bytes();
        Ok((digest_of(&manifest)?, manifest))
    }

    fn layout_manifest(
        &self,
        name: &str,
        layout: &Path,
        tag: Option<&str>,
    ) -> Result<(OciDigest, Vec<u8>)> {
        let index_text = std::fs::read(layout.join("index.json"))
            .map_err(|e| Self::err(name, format!("not an OCI image layout (index.json: {e})")))?;
        let index: ImageIndex = serde_json::from_slice(&index_text)
            .map_err(|e| Self::err(name, format!("index.json: {e}")))?;
        let tag_of = |d: &Descriptor| {
            d.annotations()
                .as_ref()
                .and_then(|a| a.get(oci_spec::image::ANNOTATION_REF_NAME))
                .cloned()
        };
        let desc = match tag {
            Some(t) => index
                .manifests()
                .iter()
                .find(|d| tag_of(d).as_deref() == Some(t)),
            None => index.manifests().first(),
        }
        .ok_or_else(|| {
            let tags: Vec<String> = index.manifests().iter().filter_map(tag_of).collect();
            Self::err(
                name,
                format!("no manifest tagged {tag:?}; tags here: {tags:?}"),
            )
        })?;
        let blobs = layout.join("blobs/sha256");
        let bytes = self.read_blob(name, &blobs, desc)?;
        match Document::parse(name, &bytes, Some(desc.media_type().as_ref()))? {
            Document::Manifest(_) => Ok((desc.digest().clone(), bytes)),
            // An image index: the manifest of this platform.
            Document::Index(index) => {
                let d = pick_platform(index.manifests()).ok_or_else(|| {
                    Self::err(
                        name,
                        format!(
                            "no manifest for {} in the image index",
                            host_platform_name()
                        ),
                    )
                })?;
                Ok((d.digest().clone(), self.read_blob(name, &blobs, d)?))
            }
        }
    }

    /// Applies the manifest's layers into the cache (once) and returns the image.
    fn build(
        &self,
        name: &str,
        digest: &OciDigest,
        manifest: &[u8],
        blobs: &Path,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Image> {
        let m = match Document::parse(name, manifest, None)? {
            Document::Manifest(m) => m,
            Document::Index(_) => {
                return Err(Self::err(
                    name,
                    format!("{digest} is an image index inside an image index; nested indexes are not supported"),
                ))
            }
        };
        let config_desc = m.config();
        if !is_config_type(config_desc.media_type()) {
            return Err(Self::err(
                name,
                format!(
                    "not a container image: its config is {} (expected {})",
                    config_desc.media_type(),
                    MediaType::ImageConfig
                ),
            ));
        }
        let digest_text = digest.to_string();
        let digest = &digest_text;
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| Self::err(name, format!("digest {digest} is not sha256")))?;
        let key = match self.idmap {
            IdMap::Single { host_uid, .. } => format!("{hex}-u{host_uid}"),
            IdMap::Range { uid_start, .. } => format!("{hex}-r{uid_start}"),
        };
        let final_dir = self.root.join("rootfs").join(&key);
        let config_path = self.root.join("rootfs").join(format!("{key}.json"));
        if final_dir.is_dir() {
            if let Ok(c) = std::fs::read(&config_path) {
                if let Ok(config) = serde_json::from_slice::<ImageConfig>(&c) {
                    progress(Progress::Cached {
                        digest: digest.to_string(),
                    });
                    return Ok(Image {
                        rootfs: final_dir,
                        config,
                        digest: Some(digest.to_string()),
                    });
                }
            }
        }
        progress(Progress::Manifest {
            digest: digest.to_string(),
            layers: m.layers().len(),
        });
        let config_bytes = self.read_blob(name, blobs, config_desc)?;
        let image_config: ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| Self::err(name, format!("config {}: {e}", config_desc.digest())))?;
        let (os, arch, _) = host_platform();
        if *image_config.os() != os || *image_config.architecture() != arch {
            tracing::warn!(
                image = name,
                "the image is for {}/{}, this host runs {}; its programs may not start",
                image_config.os(),
                image_config.architecture(),
                host_platform_name()
            );
        }
        let config = image_config
            .config()
            .as_ref()
            .map(ImageConfig::from)
            .unwrap_or_default();
        std::fs::create_dir_all(self.root.join("rootfs"))
            .map_err(|e| Self::err(name, format!("create cache {}: {e}", self.root.display())))?;
        let tmp = self.tmp_dir(name)?;
        let result = (|| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| Self::err(name, format!("chmod: {e}")))?;
            self.chown(&tmp, 0, 0);
            let of = m.layers().len();
            for (i, layer) in m.layers().iter().enumerate() {
                self.apply_layer(name, blobs, layer, &tmp)?;
                progress(Progress::Unpacked {
                    digest: layer.digest().to_string(),
                    index: i + 1,
                    of,
                });
            }
            let cfg = serde_json::to_vec(&config).map_err(|e| Self::err(name, e.to_string()))?;
            std::fs::write(&config_path, cfg)
                .map_err(|e| Self::err(name, format!("write config: {e}")))?;
            match std::fs::rename(&tmp, &final_dir) {
                Ok(()) => Ok(()),
                // Someone else unpacked the same image meanwhile: use theirs.
                Err(_) if final_dir.is_dir() => Ok(()),
                Err(e) => Err(Self::err(
                    name,
                    format!("store {}: {e}", final_dir.display()),
                )),
            }
        })();
        let _ = std::fs::remove_dir_all(&tmp);
        result?;
        // The cache must be traversable by the mapped ids.
        for d in [&self.root, &self.root.join("rootfs")] {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755));
        }
        Ok(Image {
            rootfs: final_dir,
            config,
            digest: Some(digest.to_string()),
        })
    }

    fn chown(&self, p: &Path, uid: u64, gid: u64) {
        if let IdMap::Range {
            uid_start,
            gid_start,
            count,
        } = self.idmap
        {
            if uid < u64::from(count) && gid < u64::from(count) {
                let _ = std::os::unix::fs::lchown(
                    p,
                    Some(uid_start + uid as u32),
                    Some(gid_start + gid as u32),
                );
            }
        }
    }

    fn apply_layer(&self, name: &str, blobs: &Path, layer: &Descriptor, dst: &Path) -> Result<()> {
        let hex = sha256_of(name, layer)?;
        let path = blobs.join(hex);
        // Verify first (streaming), then unpack.
        let mut f = File::open(&path)
            .map_err(|e| Self::err(name, format!("layer {}: {e}", layer.digest())))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut size = 0u64;
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| Self::err(name, format!("read layer: {e}")))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            h.update(&buf[..n]);
        }
        if format!("{:x}", h.finalize()) != hex || (layer.size() != 0 && layer.size() != size) {
            return Err(Self::err(
                name,
                format!("layer {} does not match its digest", layer.digest()),
            ));
        }
        if let Some(t) = Some(layer.media_type().as_ref()).filter(|t| t.contains("encrypted")) {
            return Err(Self::err(
                name,
                format!(
                    "layer {}: encrypted layers ({t}) are not supported",
                    layer.digest()
                ),
            ));
        }
        let mut f = BufReader::new(File::open(&path).map_err(|e| Self::err(name, e.to_string()))?);
        // The compression is told by the content (gzip, zstd or plain tar), whatever the media
        // type says, and a layer that claims one and holds another still unpacks.
        let magic = {
            use std::io::BufRead;
            let b = f.fill_buf().map_err(|e| Self::err(name, e.to_string()))?;
            b.get(..4)
                .map(|m| [m[0], m[1], m[2], m[3]])
                .unwrap_or_default()
        };
        let reader: Box<dyn Read> = if magic[..2] == [0x1f, 0x8b] {
            Box::new(flate2::read::GzDecoder::new(f))
        } else if magic == ZSTD_MAGIC || u32::from_le_bytes(magic) & 0xFFFF_FFF0 == 0x184D_2A50 {
            Box::new(ZstdFrames::new(f))
        } else {
            Box::new(f)
        };
        let mut ar = tar::Archive::new(reader);
        ar.set_preserve_permissions(true);
        ar.set_unpack_xattrs(false);
        ar.set_overwrite(true);
        let root = dst
            .canonicalize()
            .map_err(|e| Self::err(name, format!("unpack directory {}: {e}", dst.display())))?;
        let mut this_layer: HashSet<PathBuf> = HashSet::new();
        let mut opaque: Vec<PathBuf> = Vec::new();
        let entries = ar
            .entries()
            .map_err(|e| Self::err(name, format!("layer {}: {e}", layer.digest())))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| Self::err(name, format!("layer {}: {e}", layer.digest())))?;
            let rel: PathBuf = entry
                .path()
                .map_err(|e| Self::err(name, format!("layer entry path: {e}")))?
                .components()
                .filter(|c| matches!(c, std::path::Component::Normal(_)))
                .collect();
            if rel.as_os_str().is_empty() {
                continue;
            }
            let file_name = rel
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
            if file_name == ".wh..wh..opq" {
                opaque.push(parent);
                continue;
            }
            if let Some(hidden) = file_name.strip_prefix(".wh.") {
                // Resolved without leaving the rootfs: a symlink from an earlier layer
                // must not redirect the removal to the host.
                if let Some(victim) = resolve_inside(&root, &parent.join(hidden)) {
                    remove_any(&victim);
                }
                continue;
            }
            let kind = entry.header().entry_type();
            if kind.is_block_special() || kind.is_character_special() {
                continue; // device nodes cannot be created here; /dev is the runtime's
            }
            let target = dst.join(&rel);
            if let Some(existing) = resolve_inside(&root, &rel) {
                if let Ok(meta) = std::fs::symlink_metadata(&existing) {
                    if !(meta.is_dir() && kind.is_dir()) {
                        remove_any(&existing);
                    }
                }
            }
            let (uid, gid) = (
                entry.header().uid().unwrap_or(0),
                entry.header().gid().unwrap_or(0),
            );
            let ok = entry.unpack_in(dst).map_err(|e| {
                Self::err(
                    name,
                    format!("layer {}: {}: {e}", layer.digest(), rel.display()),
                )
            })?;
            if ok {
                self.chown(&target, uid, gid);
                this_layer.insert(rel);
            }
        }
        for dir in opaque {
            // The opaque directory itself, fully resolved, must stay inside the rootfs.
            let Some(d) = root
                .join(&dir)
                .canonicalize()
                .ok()
                .filter(|d| d.starts_with(&root))
            else {
                continue;
            };
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    let rel = dir.join(e.file_name());
                    if !this_layer.contains(&rel) {
                        remove_any(&e.path());
                    }
                }
            }
        }
        Ok(())
    }

    #[cfg(not(feature = "registry"))]
    fn pull(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        _progress: &mut dyn FnMut(Progress),
    ) -> Result<Image> {
        Err(Self::err(
            &format!("{registry}/{repository}:{reference}"),
            "pulling from a registry needs the `registry` feature of landscape-runtime (on by default); use an oci-layout:, oci-archive: or docker-archive: image here",
        ))
    }

    #[cfg(feature = "registry")]
    fn pull(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Image> {
        let name = format!("{registry}/{repository}:{reference}");
        let session = Session::open(&self.registry, api_host(registry), repository, &name)?;
        let (mut bytes, content_type) = session.manifest(reference, &name)?;
        let mut digest = digest_of(&bytes)?;
        if reference.contains(':') && digest.as_ref() != reference {
            return Err(Self::err(
                &name,
                format!("the manifest the registry sent is {digest}, not the requested digest"),
            ));
        }
        if let Document::Index(index) = Document::parse(&name, &bytes, content_type.as_deref())? {
            let d = pick_platform(index.manifests()).ok_or_else(|| {
                Self::err(&name, format!("no manifest for {}", host_platform_name()))
            })?;
            let (b, _) = session.manifest(d.digest().as_ref(), &name)?;
            if digest_of(&b)? != *d.digest() {
                return Err(Self::err(
                    &name,
                    format!("manifest {} does not match its digest", d.digest()),
                ));
            }
            bytes = b;
            digest = d.digest().clone();
        }
        let m = match Document::parse(&name, &bytes, None)? {
            Document::Manifest(m) => m,
            Document::Index(_) => {
                return Err(Self::err(
                    &name,
                    format!("{digest} is an image index inside an image index; nested indexes are not supported"),
                ))
            }
        };
        let blobs = self.root.join("blobs/sha256");
        std::fs::create_dir_all(&blobs)
            .map_err(|e| Self::err(&name, format!("create {}: {e}", blobs.display())))?;
        for d in std::iter::once(m.config()).chain(m.layers().iter()) {
            let hex = sha256_of(&name, d)?;
            let path = blobs.join(hex);
            if path.exists() {
                continue;
            }
            let part = blobs.join(format!("{hex}.part-{}", std::process::id()));
            let mut out = File::create(&part)
                .map_err(|e| Self::err(&name, format!("write {}: {e}", part.display())))?;
            let got = session.download(d, &mut out, &name);
            drop(out);
            let total = match got {
                Ok((total, got_hex)) if got_hex == hex && (d.size() == 0 || total == d.size()) => {
                    total
                }
                Ok(_) => {
                    let _ = std::fs::remove_file(&part);
                    return Err(Self::err(
                        &name,
                        format!("blob {} does not match its digest", d.digest()),
                    ));
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&part);
                    return Err(e);
                }
            };
            std::fs::rename(&part, &path)
                .map_err(|e| Self::err(&name, format!("store blob: {e}")))?;
            progress(Progress::Downloaded {
                digest: d.digest().to_string(),
                bytes: total,
            });
        }
        self.build(&name, &digest, &bytes, &blobs, progress)
    }
}

/// The zstd frame magic number, as it appears in the file.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A zstd stream of one or more frames (`zstd:chunked` layers have many, and skippable frames
/// holding their table of contents), decoded with the pure-Rust `ruzstd`.
struct ZstdFrames<R: std::io::BufRead> {
    source: R,
    /// The frame being decoded.
    frame: Option<ruzstd::decoding::FrameDecoder>,
}

impl<R: std::io::BufRead> ZstdFrames<R> {
    fn new(source: R) -> Self {
        ZstdFrames {
            source,
            frame: None,
        }
    }
}

impl<R: std::io::BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
        use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
        use std::io::{Error, ErrorKind};
        let invalid =
            |e: FrameDecoderError| Error::new(ErrorKind::InvalidData, format!("zstd: {e}"));
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(d) = &mut self.frame {
                while d.can_collect() < buf.len() && !d.is_finished() {
                    let want = buf.len() - d.can_collect();
                    d.decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(want))
                        .map_err(invalid)?;
                }
                let n = d.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                // This frame is done; another may follow.
                self.frame = None;
            }
            if self.source.fill_buf()?.is_empty() {
                return Ok(0);
            }
            let mut d = FrameDecoder::new();
            match d.init(&mut self.source) {
                Ok(()) => self.frame = Some(d),
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped = std::io::copy(
                        &mut (&mut self.source).take(u64::from(length)),
                        &mut std::io::sink(),
                    )?;
                    if skipped != u64::from(length) {
                        return Err(Error::new(
                            ErrorKind::UnexpectedEof,
                            "zstd: skippable frame cut short",
                        ));
                    }
                }
                Err(e) => return Err(invalid(e)),
            }
        }
    }
}

/// `rel` inside the (canonical) `root`, with every directory component resolved (symlinks
/// followed) and checked to stay inside `root`; `None` when it would leave it or does not
/// exist. The last component is not followed (it is what gets removed or replaced).
fn resolve_inside(root: &Path, rel: &Path) -> Option<PathBuf> {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let dir = root.join(parent).canonicalize().ok()?;
    if !dir.starts_with(root) {
        return None;
    }
    rel.file_name().map(|f| dir.join(f))
}

fn remove_any(p: &Path) {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(p);
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn references_parse() {
        assert_eq!(
            ImageRef::parse("127.0.0.1:5000/tools/busybox:1.35").unwrap(),
            ImageRef::Registry {
                registry: "127.0.0.1:5000".into(),
                repository: "tools/busybox".into(),
                reference: "1.35".into()
            }
        );
        assert_eq!(
            ImageRef::parse("busybox").unwrap(),
            ImageRef::Registry {
                registry: "registry-1.docker.io".into(),
                repository: "library/busybox".into(),
                reference: "latest".into()
            }
        );
        assert_eq!(
            ImageRef::parse("docker.io/postgres:16").unwrap(),
            ImageRef::Registry {
                registry: "docker.io".into(),
                repository: "library/postgres".into(),
                reference: "16".into()
            }
        );
        assert_eq!(
            ImageRef::parse("ghcr.io/org/app@sha256:abc").unwrap(),
            ImageRef::Registry {
                registry: "ghcr.io".into(),
                repository: "org/app".into(),
                reference: "sha256:abc".into()
            }
        );
        assert_eq!(
            ImageRef::parse("oci-layout:/x/y:v1").unwrap(),
            ImageRef::OciLayout {
                path: "/x/y".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            ImageRef::parse("oci-archive:/x/y.tar").unwrap(),
            ImageRef::OciArchive {
                path: "/x/y.tar".into(),
                tag: None
            }
        );
        assert!(ImageRef::parse("Bad Name").is_err());
        assert!(ImageRef::parse("127.0.0.1:5000/UPPER").is_err());
    }
    #[test]
    fn zstd_frames_skippable_frames_and_truncation() {
        use ruzstd::encoding::{compress_to_vec, CompressionLevel};
        let a: Vec<u8> = (0..70_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let b = b"second frame".repeat(1000);
        let mut stream = compress_to_vec(&a[..], CompressionLevel::Fastest);
        // A skippable frame (as zstd:chunked writes its table of contents in).
        stream.extend_from_slice(&0x184D_2A53u32.to_le_bytes());
        stream.extend_from_slice(&5u32.to_le_bytes());
        stream.extend_from_slice(b"toc!!");
        stream.extend(compress_to_vec(&b[..], CompressionLevel::Fastest));
        let mut want = a.clone();
        want.extend_from_slice(&b);
        for chunk in [1usize, 512, 4096, 1 << 20] {
            let mut r = ZstdFrames::new(std::io::BufReader::new(&stream[..]));
            let mut got = Vec::new();
            let mut buf = vec![0u8; chunk];
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert!(
                got == want,
                "chunk {chunk}: {} of {} bytes",
                got.len(),
                want.len()
            );
        }
        // Cut short or corrupted: an error, never a panic or a silent short read.
        for cut in [stream.len() - 3, stream.len() / 2, 6] {
            let mut out = Vec::new();
            let r = ZstdFrames::new(std::io::BufReader::new(&stream[..cut])).read_to_end(&mut out);
            assert!(
                r.is_err(),
                "cut at {cut}: read {} bytes without an error",
                out.len()
            );
        }
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn manifest_json(media_type: Option<&str>) -> String {
        let mt = media_type.map_or(String::new(), |t| format!(r#""mediaType":"{t}","#));
        format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D2}","size":3}}]}}"#
        )
    }

    #[test]
    fn documents_are_told_apart_by_media_type_then_shape() {
        let is_manifest = |d: Document| matches!(d, Document::Manifest(_));
        let is_index = |d: Document| matches!(d, Document::Index(_));
        // OCI and Docker v2 manifests, with and without their own mediaType.
        for (own, declared) in [
            (Some("application/vnd.oci.image.manifest.v1+json"), None),
            (
                Some("application/vnd.docker.distribution.manifest.v2+json"),
                None,
            ),
            (None, Some("application/vnd.oci.image.manifest.v1+json")),
            (None, None),
        ] {
            let d = Document::parse("t", manifest_json(own).as_bytes(), declared).unwrap();
            assert!(is_manifest(d), "{own:?} {declared:?}");
        }
        let d = Document::parse("t", manifest_json(None).as_bytes(), None).unwrap();
        let Document::Manifest(m) = d else { panic!() };
        assert_eq!(m.layers()[0].as_digest_sha256(), D2.strip_prefix("sha256:"));
        // Indexes: OCI, a Docker manifest list, one told by the Content-Type (with a
        // parameter), one told by its shape.
        let list = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{D1}","size":7,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
        );
        let with_type = |t: &str| list.replacen('{', &format!(r#"{{"mediaType":"{t}","#), 1);
        for text in [
            with_type("application/vnd.oci.image.index.v1+json"),
            with_type("application/vnd.docker.distribution.manifest.list.v2+json"),
        ] {
            assert!(is_index(
                Document::parse("t", text.as_bytes(), None).unwrap()
            ));
        }
        assert!(is_index(
            Document::parse(
                "t",
                list.as_bytes(),
                Some("application/vnd.oci.image.index.v1+json; charset=utf-8")
            )
            .unwrap()
        ));
        assert!(is_index(
            Document::parse("t", list.as_bytes(), None).unwrap()
        ));
        // What is not an image says so.
        let e = Document::parse(
            "t",
            br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("schema 1"), "{e}");
        let e = Document::parse(
            "t",
            manifest_json(Some("application/vnd.oci.artifact.manifest.v1+json")).as_bytes(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not a container image"), "{e}");
        // A bad digest is refused by the standard types, with serde's position.
        let bad = manifest_json(None).replace(D2, "sha256:../../etc/passwd");
        let e = Document::parse("t", bad.as_bytes(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("manifest:") && e.contains("column"), "{e}");
    }

    #[test]
    fn platform_selection_follows_the_host() {
        let (_, arch, _) = host_platform();
        let entry = |digest: &str, platform: Option<(&str, &str, Option<&str>)>| {
            let mut d = Descriptor::new(
                MediaType::ImageManifest,
                1,
                OciDigest::from_str(digest).unwrap(),
            );
            if let Some((os, a, variant)) = platform {
                let mut p = oci_spec::image::PlatformBuilder::default()
                    .os(Os::from(os))
                    .architecture(Arch::from(a))
                    .build()
                    .unwrap();
                p.set_variant(variant.map(str::to_string));
                d.set_platform(Some(p));
            }
            d
        };
        let other = if arch == Arch::Amd64 {
            "arm64"
        } else {
            "amd64"
        };
        let host = arch.to_string();
        let d3 = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
        let list = vec![
            entry(D1, Some(("linux", other, None))),
            // Docker's attestation manifests: platform unknown/unknown.
            entry(D2, Some(("unknown", "unknown", None))),
            entry(d3, Some(("linux", &host, None))),
        ];
        assert_eq!(pick_platform(&list).unwrap().digest().as_ref(), d3);
        // A variant this host may lack (x86-64-v3) loses to the plain entry.
        let d4 = "sha256:4444444444444444444444444444444444444444444444444444444444444444";
        let mut with_variant = vec![entry(d4, Some(("linux", &host, Some("v3"))))];
        with_variant.extend(list.clone());
        if arch == Arch::Amd64 {
            assert_eq!(pick_platform(&with_variant).unwrap().digest().as_ref(), d3);
        }
        // Nothing for this host: none, unless an entry names no platform.
        let foreign = vec![entry(D1, Some(("linux", other, None)))];
        assert!(pick_platform(&foreign).is_none());
        let mut anyplatform = foreign.clone();
        anyplatform.push(entry(D2, None));
        assert_eq!(pick_platform(&anyplatform).unwrap().digest().as_ref(), D2);
    }

    #[test]
    fn accept_header_names_oci_and_docker_types() {
        let a = manifest_accept();
        for t in [
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ] {
            assert!(a.contains(t), "{a}");
        }
    }

    #[test]
    fn image_config_gives_process_and_user() {
        let c: ImageConfig = serde_json::from_str(
            r#"{"Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"],"Env":["A=1","PATH=/bin"],"WorkingDir":"/srv","User":"1000:1000"}"#,
        )
        .unwrap();
        let p = c.process();
        assert_eq!(p.args, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(
            p.env,
            [
                ("A".to_string(), "1".to_string()),
                ("PATH".to_string(), "/bin".to_string())
            ]
        );
        assert_eq!(p.cwd.as_deref(), Some("/srv"));
        assert_eq!(
            c.user(),
            Some(User {
                uid: 1000,
                gid: 1000
            })
        );
    }
}
