//! Images for Managed Containers: an OCI image layout directory, an OCI archive (a tar of
//! a layout), or a pull from a registry (OCI distribution API; HTTPS with the `registry-tls`
//! feature, plain HTTP for loopback and insecure registries; Basic and Bearer-token
//! authentication, see [`RegistryOptions`]). Every blob is verified against its sha256 digest,
//! layers are applied in order with whiteouts (`.wh.NAME`, `.wh..wh..opq`), and the result
//! is unpacked once into a content-addressed cache (`<cache>/rootfs/<manifest digest>`)
//! that all instances share read-only as their lower layer.
//!
//! When the runtime runs as root, file owners are shifted into the subordinate id range
//! (so that image files owned by root are owned by container root); unprivileged, every
//! file belongs to the runtime's user, which is the container user.

use crate::registry::{api_host, Session};
pub use crate::registry::{Credentials, RegistryOptions};
use crate::{Error, IdMap, Process, Result, User};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    annotations: Option<std::collections::HashMap<String, String>>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct ConfigBlob {
    #[serde(default)]
    config: Option<ImageConfig>,
}

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn hex_of(digest: &str) -> Option<&str> {
    let h = digest.strip_prefix("sha256:")?;
    (h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())).then_some(h)
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
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
        let hex = hex_of(&d.digest)
            .ok_or_else(|| Self::err(name, format!("unsupported digest {:?}", d.digest)))?;
        let bytes = std::fs::read(blobs.join(hex))
            .map_err(|e| Self::err(name, format!("blob {}: {e}", d.digest)))?;
        if sha256_hex(&bytes) != hex {
            return Err(Self::err(
                name,
                format!("blob {} does not match its digest", d.digest),
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
    ) -> Result<(String, Vec<u8>)> {
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
        let blob = |rel: &str| -> Result<(String, u64)> {
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
            Ok((format!("sha256:{hex}"), size))
        };
        let (config_digest, config_size) = blob(&entry.config)?;
        let mut layers = Vec::new();
        for l in &entry.layers {
            let (digest, size) = blob(l)?;
            layers.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": digest,
                "size": size,
            }));
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": layers,
        }))
        .map_err(|e| Self::err(name, format!("manifest: {e}")))?;
        Ok((format!("sha256:{}", sha256_hex(&manifest)), manifest))
    }

    fn layout_manifest(
        &self,
        name: &str,
        layout: &Path,
        tag: Option<&str>,
    ) -> Result<(String, Vec<u8>)> {
        let index_text = std::fs::read_to_string(layout.join("index.json"))
            .map_err(|e| Self::err(name, format!("not an OCI image layout (index.json: {e})")))?;
        let index: Index = serde_json::from_str(&index_text)
            .map_err(|e| Self::err(name, format!("index.json: {e}")))?;
        let tag_of = |d: &Descriptor| {
            d.annotations
                .as_ref()
                .and_then(|a| a.get("org.opencontainers.image.ref.name"))
                .cloned()
        };
        let desc = match tag {
            Some(t) => index
                .manifests
                .iter()
                .find(|d| tag_of(d).as_deref() == Some(t)),
            None => index.manifests.first(),
        }
        .ok_or_else(|| {
            let tags: Vec<String> = index.manifests.iter().filter_map(tag_of).collect();
            Self::err(
                name,
                format!("no manifest tagged {tag:?}; tags here: {tags:?}"),
            )
        })?;
        let blobs = layout.join("blobs/sha256");
        let mut bytes = self.read_blob(name, &blobs, desc)?;
        let mut digest = desc.digest.clone();
        // An image index: pick the manifest of this platform.
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| Self::err(name, format!("manifest: {e}")))?;
        if let Some(list) = m.manifests {
            let d = pick_platform(&list).ok_or_else(|| {
                Self::err(
                    name,
                    format!("no manifest for linux/{} in the image index", host_arch()),
                )
            })?;
            bytes = self.read_blob(name, &blobs, d)?;
            digest = d.digest.clone();
        }
        Ok((digest, bytes))
    }

    /// Applies the manifest's layers into the cache (once) and returns the image.
    fn build(
        &self,
        name: &str,
        digest: &str,
        manifest: &[u8],
        blobs: &Path,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Image> {
        let m: Manifest = serde_json::from_slice(manifest)
            .map_err(|e| Self::err(name, format!("manifest: {e}")))?;
        let _ = m.media_type;
        let config_desc = m
            .config
            .ok_or_else(|| Self::err(name, "manifest has no config"))?;
        let hex = hex_of(digest)
            .ok_or_else(|| Self::err(name, format!("unsupported digest {digest:?}")))?;
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
            layers: m.layers.len(),
        });
        let config_bytes = self.read_blob(name, blobs, &config_desc)?;
        let config: ConfigBlob = serde_json::from_slice(&config_bytes)
            .map_err(|e| Self::err(name, format!("config: {e}")))?;
        let config = config.config.unwrap_or_default();
        std::fs::create_dir_all(self.root.join("rootfs"))
            .map_err(|e| Self::err(name, format!("create cache {}: {e}", self.root.display())))?;
        let tmp = self.tmp_dir(name)?;
        let result = (|| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| Self::err(name, format!("chmod: {e}")))?;
            self.chown(&tmp, 0, 0);
            let of = m.layers.len();
            for (i, layer) in m.layers.iter().enumerate() {
                self.apply_layer(name, blobs, layer, &tmp)?;
                progress(Progress::Unpacked {
                    digest: layer.digest.clone(),
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
        let hex = hex_of(&layer.digest)
            .ok_or_else(|| Self::err(name, format!("unsupported digest {:?}", layer.digest)))?;
        let path = blobs.join(hex);
        // Verify first (streaming), then unpack.
        let mut f = File::open(&path)
            .map_err(|e| Self::err(name, format!("layer {}: {e}", layer.digest)))?;
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
        if format!("{:x}", h.finalize()) != hex || (layer.size != 0 && layer.size != size) {
            return Err(Self::err(
                name,
                format!("layer {} does not match its digest", layer.digest),
            ));
        }
        if let Some(t) = layer
            .media_type
            .as_deref()
            .filter(|t| t.contains("encrypted"))
        {
            return Err(Self::err(
                name,
                format!(
                    "layer {}: encrypted layers ({t}) are not supported",
                    layer.digest
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
            .map_err(|e| Self::err(name, format!("layer {}: {e}", layer.digest)))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| Self::err(name, format!("layer {}: {e}", layer.digest)))?;
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
                    format!("layer {}: {}: {e}", layer.digest, rel.display()),
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

    fn pull(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Image> {
        let name = format!("{registry}/{repository}:{reference}");
        let session = Session::open(&self.registry, api_host(registry), repository, &name)?;
        let get_manifest = |r: &str| -> Result<(Vec<u8>, Option<String>)> {
            let resp = session
                .get(&format!("manifests/{r}"), Some(MANIFEST_TYPES))
                .map_err(|e| match *e {
                    ureq::Error::Status(404, _) => Self::err(
                        &name,
                        format!("manifest {r} not found in {registry}/{repository}"),
                    ),
                    ureq::Error::Status(401 | 403, _) => Self::err(
                        &name,
                        format!("access to {registry}/{repository} denied (private image? give credentials)"),
                    ),
                    other => Self::err(&name, format!("fetch manifest {r}: {other}")),
                })?;
            let header = resp.header("Docker-Content-Digest").map(str::to_string);
            let mut bytes = Vec::new();
            resp.into_reader()
                .take(16 << 20)
                .read_to_end(&mut bytes)
                .map_err(|e| Self::err(&name, format!("read manifest: {e}")))?;
            Ok((bytes, header))
        };
        let (mut bytes, _) = get_manifest(reference)?;
        let mut digest = format!("sha256:{}", sha256_hex(&bytes));
        if reference.starts_with("sha256:") && digest != reference {
            return Err(Self::err(
                &name,
                "the manifest does not match the requested digest",
            ));
        }
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| Self::err(&name, format!("manifest: {e}")))?;
        if let Some(list) = m.manifests {
            let d = pick_platform(&list).ok_or_else(|| {
                Self::err(&name, format!("no manifest for linux/{}", host_arch()))
            })?;
            let (b, _) = get_manifest(&d.digest)?;
            if format!("sha256:{}", sha256_hex(&b)) != d.digest {
                return Err(Self::err(
                    &name,
                    format!("manifest {} does not match its digest", d.digest),
                ));
            }
            bytes = b;
            digest = d.digest.clone();
        }
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| Self::err(&name, format!("manifest: {e}")))?;
        let blobs = self.root.join("blobs/sha256");
        std::fs::create_dir_all(&blobs)
            .map_err(|e| Self::err(&name, format!("create {}: {e}", blobs.display())))?;
        let config = m
            .config
            .as_ref()
            .ok_or_else(|| Self::err(&name, "manifest has no config"))?;
        for d in std::iter::once(config).chain(m.layers.iter()) {
            let hex = hex_of(&d.digest)
                .ok_or_else(|| Self::err(&name, format!("unsupported digest {:?}", d.digest)))?;
            let path = blobs.join(hex);
            if path.exists() {
                continue;
            }
            let resp = session
                .get(&format!("blobs/{}", d.digest), None)
                .map_err(|e| Self::err(&name, format!("fetch blob {}: {e}", d.digest)))?;
            let part = blobs.join(format!("{hex}.part-{}", std::process::id()));
            let mut out = File::create(&part)
                .map_err(|e| Self::err(&name, format!("write {}: {e}", part.display())))?;
            let mut h = Sha256::new();
            // Never read more than the manifest announced.
            let limit = if d.size > 0 { d.size + 1 } else { u64::MAX };
            let mut r = resp.into_reader().take(limit);
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0u64;
            loop {
                let n = r
                    .read(&mut buf)
                    .map_err(|e| Self::err(&name, format!("download {}: {e}", d.digest)))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                total += n as u64;
                out.write_all(&buf[..n])
                    .map_err(|e| Self::err(&name, format!("write blob: {e}")))?;
            }
            drop(out);
            if (d.size > 0 && total != d.size) || format!("{:x}", h.finalize()) != hex {
                let _ = std::fs::remove_file(&part);
                return Err(Self::err(
                    &name,
                    format!("blob {} does not match its digest", d.digest),
                ));
            }
            std::fs::rename(&part, &path)
                .map_err(|e| Self::err(&name, format!("store blob: {e}")))?;
            progress(Progress::Downloaded {
                digest: d.digest.clone(),
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

fn pick_platform(list: &[Descriptor]) -> Option<&Descriptor> {
    list.iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == host_arch())
        })
        .or_else(|| list.iter().find(|d| d.platform.is_none()))
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
