//! Images: an OCI layout built here from Debian's busybox-static (two layers, whiteouts),
//! the same as an OCI archive, and pulled from a real `docker-registry` on 127.0.0.1
//! (pushed there with skopeo): plain HTTP, and with the `registry-tls` feature over HTTPS
//! with Basic auth (htpasswd) and with Bearer tokens (the registry's `token` auth, tokens
//! signed here with openssl and handed out by a small token service in the test).

mod common;
use common::*;
use landscape_runtime::image::{ImageRef, ImageStore, Progress};
use landscape_runtime::{InstanceSpec, Process, Rootfs};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn main() {
    run(&[
        (
            "oci_layout_image_runs_with_whiteouts_applied",
            oci_layout_image_runs_with_whiteouts_applied,
        ),
        ("oci_archive_image_runs", oci_archive_image_runs),
        (
            "hostile_layers_cannot_touch_the_host",
            hostile_layers_cannot_touch_the_host,
        ),
        ("unpacked_once_and_shared", unpacked_once_and_shared),
        ("corrupt_layer_is_rejected", corrupt_layer_is_rejected),
        (
            "registry_pull_from_real_docker_registry",
            registry_pull_from_real_docker_registry,
        ),
        (
            "multi_platform_index_gives_this_hosts_image_from_layout_and_registry",
            multi_platform_index_gives_this_hosts_image_from_layout_and_registry,
        ),
        (
            "blob_redirects_are_followed_without_the_password",
            blob_redirects_are_followed_without_the_password,
        ),
        (
            "zstd_layers_made_by_skopeo_run",
            zstd_layers_made_by_skopeo_run,
        ),
        (
            "docker_save_archive_made_by_skopeo_runs",
            docker_save_archive_made_by_skopeo_runs,
        ),
        #[cfg(feature = "registry-tls")]
        (
            "registry_pull_over_https_with_basic_auth",
            registry_pull_over_https_with_basic_auth,
        ),
        #[cfg(feature = "registry-tls")]
        (
            "registry_pull_with_bearer_token",
            registry_pull_with_bearer_token,
        ),
        #[cfg(feature = "registry-tls")]
        (
            "a_silent_server_fails_at_the_connect_deadline",
            a_silent_server_fails_at_the_connect_deadline,
        ),
        #[cfg(not(feature = "registry-tls"))]
        (
            "https_registry_without_the_feature_names_it",
            https_registry_without_the_feature_names_it,
        ),
    ]);
}

const BUSYBOX: &str = "/bin/busybox";

fn busybox_available() -> bool {
    if Path::new(BUSYBOX).exists() {
        return true;
    }
    println!(
        "skipped: {BUSYBOX} missing (Debian package busybox-static, installed by scripts/setup.sh)"
    );
    false
}

struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Layer {
        Layer(tar::Builder::new(Vec::new()))
    }
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(size);
        h
    }
    fn dir(&mut self, path: &str) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.0.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }
    fn file(&mut self, path: &str, data: &[u8], mode: u32) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }
    fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }
    fn gzip(self) -> Vec<u8> {
        let tar = self.0.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }
}

fn put_blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let hex = format!("{:x}", Sha256::digest(bytes));
    std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
    (format!("sha256:{hex}"), bytes.len())
}

/// Builds a two-layer busybox image as an OCI layout in `layout`, tagged `latest`.
fn build_layout(layout: &Path) -> Vec<String> {
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let busybox = std::fs::read(BUSYBOX).unwrap();
    let mut l1 = Layer::new();
    l1.dir("bin")
        .dir("etc")
        .dir("opt")
        .dir("opt/old")
        .dir("tmp");
    l1.file("bin/busybox", &busybox, 0o755);
    for applet in [
        "sh", "echo", "cat", "ls", "id", "hostname", "true", "touch", "wc", "head", "sleep",
    ] {
        l1.symlink(&format!("bin/{applet}"), "busybox");
    }
    l1.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644);
    l1.file("etc/removed", b"must be whited out\n", 0o644);
    l1.file("opt/old/stale", b"hidden by an opaque dir\n", 0o644);
    let mut l2 = Layer::new();
    l2.dir("etc").dir("opt").dir("opt/old");
    l2.file("etc/.wh.removed", b"", 0o644);
    l2.file("opt/old/.wh..wh..opq", b"", 0o644);
    l2.file("opt/old/fresh", b"from layer 2\n", 0o644);
    l2.file("etc/motd", b"hello from the image\n", 0o644);
    write_image(layout, vec![l1.gzip(), l2.gzip()])
}

/// Writes `layers` (gzipped tars) with a busybox-shell config as the `latest` image of the
/// OCI layout `layout`; returns the layer digests.
fn write_image(layout: &Path, layer_blobs: Vec<Vec<u8>>) -> Vec<String> {
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let layers: Vec<(String, usize)> = layer_blobs.iter().map(|b| put_blob(layout, b)).collect();
    let config = serde_json::json!({
        "architecture": match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a },
        "os": "linux",
        "config": {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo image-default; cat /etc/motd"], "Env": ["PATH=/bin", "FROM_IMAGE=yes"], "WorkingDir": "/opt"},
        "rootfs": {"type": "layers", "diff_ids": []},
    });
    let (cd, cs) = put_blob(layout, config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": layers.iter().map(|(d, s)| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s})).collect::<Vec<_>>(),
    });
    let (md, ms) = put_blob(layout, manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
                       "annotations": {"org.opencontainers.image.ref.name": "latest"}}],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    layers.into_iter().map(|(d, _)| d).collect()
}

/// Runs the image's default process and a check script; asserts what the image holds.
fn check_image(rt: &landscape_runtime::Runtime, img: &landscape_runtime::image::Image) {
    let mut spec = InstanceSpec::new("img", img.config.process());
    spec.rootfs = Rootfs::Dir(img.rootfs.clone());
    let (exit, out) = run_spec(rt, &spec);
    assert!(exit.success(), "{exit:?} {out}");
    assert_eq!(out, "image-default\nhello from the image");
    let mut p = Process::argv(["/bin/sh", "-c", "pwd; echo $FROM_IMAGE; ls /opt/old; ls /etc; [ -e /usr/bin/perl ] && echo host-visible; echo scratch > /etc/new && cat /etc/new; id -u"]);
    p.env = img.config.process().env;
    p.cwd = img.config.process().cwd;
    spec.process = p;
    let (exit, out) = run_spec(rt, &spec);
    assert!(exit.success(), "{exit:?} {out}");
    assert_eq!(
        out,
        "/opt\nyes\nfresh\nhostname\nhosts\nmotd\npasswd\nresolv.conf\nscratch\n0"
    );
    // The throwaway layer never reaches the shared image.
    assert!(!img.rootfs.join("etc/new").exists());
}

fn oci_layout_image_runs_with_whiteouts_applied() {
    if !busybox_available() {
        return;
    }
    let rt = runtime();
    let dir = TempDir::new("layout");
    let cache = TempDir::new("cache");
    build_layout(dir.path());
    let store = ImageStore::new(cache.path(), rt.idmap());
    let mut events = Vec::new();
    let r = ImageRef::parse(&format!("oci-layout:{}:latest", dir.path().display())).unwrap();
    let img = store.resolve(&r, &mut |p| events.push(p)).unwrap();
    assert!(
        matches!(events.first(), Some(Progress::Manifest { layers: 2, .. })),
        "{events:?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Progress::Unpacked { .. }))
            .count(),
        2
    );
    assert!(!img.rootfs.join("etc/removed").exists());
    assert!(!img.rootfs.join("opt/old/stale").exists());
    check_image(&rt, &img);
    let err = store
        .resolve(
            &ImageRef::parse(&format!("oci-layout:{}:nope", dir.path().display())).unwrap(),
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no manifest tagged") && err.contains("latest"),
        "{err}"
    );
}

fn oci_archive_image_runs() {
    if !busybox_available() {
        return;
    }
    let rt = runtime();
    let dir = TempDir::new("layout");
    let cache = TempDir::new("cache");
    build_layout(dir.path());
    let archive = dir.path().with_extension("tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&archive).unwrap());
        b.append_dir_all(".", dir.path()).unwrap();
        b.finish().unwrap();
    }
    let store = ImageStore::new(cache.path(), rt.idmap());
    let r = ImageRef::parse(&format!("oci-archive:{}", archive.display())).unwrap();
    let img = store.resolve(&r, &mut |_| {});
    let _ = std::fs::remove_file(&archive);
    check_image(&rt, &img.unwrap());
}

fn unpacked_once_and_shared() {
    if !busybox_available() {
        return;
    }
    let rt = runtime();
    let dir = TempDir::new("layout");
    let cache = TempDir::new("cache");
    build_layout(dir.path());
    let store = ImageStore::new(cache.path(), rt.idmap());
    let r = ImageRef::OciLayout {
        path: dir.path().to_path_buf(),
        tag: None,
    };
    let a = store.resolve(&r, &mut |_| {}).unwrap();
    let mut events = Vec::new();
    let b = store.resolve(&r, &mut |p| events.push(p)).unwrap();
    assert_eq!(a.rootfs, b.rootfs);
    assert!(
        matches!(events.as_slice(), [Progress::Cached { .. }]),
        "{events:?}"
    );
    // Two instances run on the same lower layer at once.
    let mut spec = InstanceSpec::new("shared", Process::argv(["/bin/sleep", "1000"]));
    spec.rootfs = Rootfs::Dir(a.rootfs.clone());
    let mut i1 = rt.spawn(&spec, landscape_runtime::Output::Null).unwrap();
    let mut i2 = rt.spawn(&spec, landscape_runtime::Output::Null).unwrap();
    assert!(i1.try_wait().unwrap().is_none() && i2.try_wait().unwrap().is_none());
    assert_eq!(i1.stop(Duration::from_secs(5)).unwrap().signal, Some(15));
    assert_eq!(i2.stop(Duration::from_secs(5)).unwrap().signal, Some(15));
}

fn corrupt_layer_is_rejected() {
    if !busybox_available() {
        return;
    }
    let rt = runtime();
    let dir = TempDir::new("layout");
    let cache = TempDir::new("cache");
    let layers = build_layout(dir.path());
    let victim = dir
        .path()
        .join("blobs/sha256")
        .join(layers[1].trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&victim).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();
    let store = ImageStore::new(cache.path(), rt.idmap());
    let err = store
        .resolve(
            &ImageRef::OciLayout {
                path: dir.path().to_path_buf(),
                tag: None,
            },
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&layers[1]) && err.contains("does not match its digest"),
        "{err}"
    );
    // Nothing half-unpacked is left in the cache.
    let rootfs: Vec<PathBuf> = std::fs::read_dir(cache.path().join("rootfs"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(rootfs.is_empty(), "{rootfs:?}");
    let tmp: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("tmp-"))
        .collect();
    assert!(tmp.is_empty());
}

struct Registry(std::process::Child);
impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn registry_pull_from_real_docker_registry() {
    if !registry_tools(&[]) {
        return;
    }
    let rt = runtime();
    let dir = TempDir::new("layout");
    let cache = TempDir::new("cache");
    let storage = TempDir::new("registry");
    build_layout(dir.path());
    let (_registry, port) = start_registry(storage.path(), "", "");
    push(
        dir.path(),
        &format!("127.0.0.1:{port}/test/busybox:v1"),
        None,
    );
    let store = ImageStore::new(cache.path(), rt.idmap());
    let mut events = Vec::new();
    let r = ImageRef::parse(&format!("127.0.0.1:{port}/test/busybox:v1")).unwrap();
    let img = store.resolve(&r, &mut |p| events.push(p)).unwrap();
    let downloads = downloads(&events);
    assert_eq!(downloads, 3, "config + 2 layers: {events:?}");
    check_image(&rt, &img);
    let err = pull_error(&store, &format!("127.0.0.1:{port}/test/missing:v1"));
    assert!(err.contains("not found"), "{err}");
}

/// Turns the `latest` image of `layout` into a two-platform image index: an image for
/// another architecture first (its layer says so), then this host's.
fn make_multi_platform(layout: &Path) {
    let host = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let other = if host == "amd64" { "arm64" } else { "amd64" };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut host_entry = index["manifests"][0].clone();
    host_entry.as_object_mut().unwrap().remove("annotations");
    host_entry["platform"] = serde_json::json!({"architecture": host, "os": "linux"});
    let mut layer = Layer::new();
    layer
        .dir("etc")
        .file("etc/motd", b"wrong platform\n", 0o644);
    let (ld, ls) = put_blob(layout, &layer.gzip());
    let config = serde_json::json!({
        "architecture": other, "os": "linux",
        "config": {"Cmd": ["cat", "/etc/motd"]},
        "rootfs": {"type": "layers", "diff_ids": []},
    });
    let (cd, cs) = put_blob(layout, config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": ls}],
    });
    let (md, ms) = put_blob(layout, manifest.to_string().as_bytes());
    let image_index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
             "platform": {"architecture": other, "os": "linux"}},
            host_entry,
        ],
    });
    let (id, is) = put_blob(layout, image_index.to_string().as_bytes());
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": id, "size": is,
                       "annotations": {"org.opencontainers.image.ref.name": "latest"}}],
    });
    std::fs::write(layout.join("index.json"), top.to_string()).unwrap();
}

fn multi_platform_index_gives_this_hosts_image_from_layout_and_registry() {
    if !registry_tools(&[]) {
        return;
    }
    let rt = runtime();
    let dir = TempDir::new("layout");
    build_layout(dir.path());
    make_multi_platform(dir.path());
    let cache = TempDir::new("cache");
    let store = ImageStore::new(cache.path(), rt.idmap());
    let r = ImageRef::parse(&format!("oci-layout:{}:latest", dir.path().display())).unwrap();
    let img = store.resolve(&r, &mut |_| {}).unwrap();
    check_image(&rt, &img);
    // The same index in a registry: only this host's blobs are downloaded.
    let storage = TempDir::new("registry");
    let (_registry, port) = start_registry(storage.path(), "", "");
    let dest = format!("127.0.0.1:{port}/test/multi:v1");
    skopeo_copy(
        &["--all", "--dest-tls-verify=false"],
        &format!("oci:{}:latest", dir.path().display()),
        &format!("docker://{dest}"),
    );
    let cache = TempDir::new("cache");
    let store = ImageStore::new(cache.path(), rt.idmap());
    let mut events = Vec::new();
    let img = store
        .resolve(&ImageRef::parse(&dest).unwrap(), &mut |p| events.push(p))
        .unwrap();
    let downloads = downloads(&events);
    assert_eq!(
        downloads, 3,
        "config + 2 layers of this host's image: {events:?}"
    );
    check_image(&rt, &img);
}

/// One request as a test server saw it: the path and the headers (names lowercased).
struct Seen {
    path: String,
    headers: std::collections::HashMap<String, String>,
}

/// A small HTTP/1.1 server on 127.0.0.1 (one request per connection), answering with
/// `answer(request) -> (status line, extra headers, body)`; records what it was sent.
fn http_server(
    answer: impl Fn(&Seen) -> (&'static str, Vec<String>, Vec<u8>) + Send + 'static,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<Seen>>>) {
    use std::io::{BufRead, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log: std::sync::Arc<std::sync::Mutex<Vec<Seen>>> = Default::default();
    let seen_log = log.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            // A TLS ClientHello (the registry-tls client tries HTTPS first): answer as a
            // plain HTTP server does (400, close) instead of waiting for a line that never
            // comes.
            let mut first = [0u8; 1];
            if c.peek(&mut first).is_ok_and(|n| n == 1) && first[0] == 0x16 {
                let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
                continue;
            }
            let mut r = std::io::BufReader::new(c.try_clone().unwrap());
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let mut headers = std::collections::HashMap::new();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let path = line.split(' ').nth(1).unwrap_or_default().to_string();
            let seen = Seen { path, headers };
            let (status, extra, body) = answer(&seen);
            seen_log.lock().unwrap().push(seen);
            let mut head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for h in extra {
                head.push_str(&h);
                head.push_str("\r\n");
            }
            head.push_str("\r\n");
            let _ = c.write_all(head.as_bytes());
            let _ = c.write_all(&body);
        }
    });
    (port, log)
}

fn blob_redirects_are_followed_without_the_password() {
    use landscape_runtime::image::{Credentials, RegistryOptions};
    if !busybox_available() {
        return;
    }
    let rt = runtime();
    let layout = TempDir::new("layout");
    build_layout(layout.path());
    let blobs = layout.path().join("blobs/sha256");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.path().join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    // The object store: serves blobs by digest, to anyone (signed URLs, as S3's are).
    let store_blobs = blobs.clone();
    let (store_port, store_seen) = http_server(move |req| {
        let hex = req.path.rsplit(':').next().unwrap_or_default();
        match std::fs::read(store_blobs.join(hex)) {
            Ok(b) => ("200 OK", vec![], b),
            Err(_) => ("404 Not Found", vec![], vec![]),
        }
    });
    // The registry: Basic auth, manifests itself, blobs by a redirect to the object store
    // (another origin: `localhost`, another port), first through a relative redirect.
    let want = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice:s3cret")
    );
    let reg_blobs = blobs.clone();
    let (reg_port, reg_seen) = http_server(move |req| {
        if req.headers.get("authorization") != Some(&want) {
            return (
                "401 Unauthorized",
                vec![r#"WWW-Authenticate: Basic realm="test""#.into()],
                vec![],
            );
        }
        let p = req.path.as_str();
        if p == "/v2/" {
            return ("200 OK", vec![], b"{}".to_vec());
        }
        if let Some(r) = p.strip_prefix("/v2/test/app/manifests/") {
            let digest = if r == "v1" {
                manifest_digest.clone()
            } else {
                r.to_string()
            };
            let hex = digest.trim_start_matches("sha256:");
            return match std::fs::read(reg_blobs.join(hex)) {
                Ok(b) => (
                    "200 OK",
                    vec!["Content-Type: application/vnd.oci.image.manifest.v1+json".into()],
                    b,
                ),
                Err(_) => ("404 Not Found", vec![], vec![]),
            };
        }
        if let Some(d) = p.strip_prefix("/v2/test/app/blobs/redirected/") {
            return (
                "302 Found",
                vec![format!("Location: http://localhost:{store_port}/store/{d}")],
                vec![],
            );
        }
        if let Some(d) = p.strip_prefix("/v2/test/app/blobs/") {
            return (
                "307 Temporary Redirect",
                vec![format!("Location: redirected/{d}")],
                vec![],
            );
        }
        ("404 Not Found", vec![], vec![])
    });
    let registry = format!("127.0.0.1:{reg_port}");
    let cache = TempDir::new("cache");
    let store = ImageStore::new(cache.path(), rt.idmap()).with_registry(RegistryOptions {
        credentials: [(registry.clone(), Credentials::new("alice", "s3cret"))].into(),
        ignore_auth_file: true,
        ..RegistryOptions::default()
    });
    let mut events = Vec::new();
    let r = ImageRef::parse(&format!("{registry}/test/app:v1")).unwrap();
    let img = store.resolve(&r, &mut |p| events.push(p)).unwrap();
    let downloads = downloads(&events);
    assert_eq!(downloads, 3, "config + 2 layers: {events:?}");
    check_image(&rt, &img);
    let store_seen = store_seen.lock().unwrap();
    assert_eq!(store_seen.len(), 3);
    for s in store_seen.iter() {
        assert!(
            !s.headers.contains_key("authorization"),
            "the password went to the object store: {}",
            s.path
        );
    }
    // Same origin: the relative redirect was followed with the credentials.
    let reg_seen = reg_seen.lock().unwrap();
    assert!(reg_seen
        .iter()
        .any(|s| s.path.contains("/blobs/redirected/") && s.headers.contains_key("authorization")));
}

fn hostile_layers_cannot_touch_the_host() {
    let rt = runtime();
    let host = TempDir::new("victim");
    std::fs::create_dir_all(host.path().join("dir")).unwrap();
    std::fs::write(host.path().join("keep"), "precious").unwrap();
    std::fs::write(host.path().join("dir/also-keep"), "precious").unwrap();
    let mut l1 = Layer::new();
    l1.symlink("escape", &host.path().display().to_string());
    l1.symlink("escape-dir", &host.path().join("dir").display().to_string());
    let mut l2 = Layer::new();
    l2.file("escape/.wh.keep", b"", 0o644);
    l2.file("escape-dir/.wh..wh..opq", b"", 0o644);
    let dir = TempDir::new("layout");
    let cache = TempDir::new("cache");
    write_image(dir.path(), vec![l1.gzip(), l2.gzip()]);
    let store = ImageStore::new(cache.path(), rt.idmap());
    let r = ImageRef::OciLayout {
        path: dir.path().to_path_buf(),
        tag: None,
    };
    store.resolve(&r, &mut |_| {}).unwrap();
    assert_eq!(
        std::fs::read_to_string(host.path().join("keep")).unwrap(),
        "precious"
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("dir/also-keep")).unwrap(),
        "precious"
    );
    // A file written through the symlink is refused (or skipped), never written outside.
    let mut l3 = Layer::new();
    l3.file("escape/planted", b"x", 0o644);
    let dir2 = TempDir::new("layout");
    let mut l1 = Layer::new();
    l1.symlink("escape", &host.path().display().to_string());
    write_image(dir2.path(), vec![l1.gzip(), l3.gzip()]);
    let _ = store.resolve(
        &ImageRef::OciLayout {
            path: dir2.path().to_path_buf(),
            tag: None,
        },
        &mut |_| {},
    );
    assert!(!host.path().join("planted").exists());
}

/// How many blobs a pull downloaded.
fn downloads(events: &[Progress]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Progress::Downloaded { .. }))
        .count()
}

/// The error of pulling `reference` (which must fail).
fn pull_error(store: &ImageStore, reference: &str) -> String {
    store
        .resolve(&ImageRef::parse(reference).unwrap(), &mut |_| {})
        .unwrap_err()
        .to_string()
}

/// Tools the registry tests need beyond busybox; prints why when one is missing.
fn registry_tools(extra: &[&str]) -> bool {
    if !busybox_available() {
        return false;
    }
    for tool in ["/usr/bin/docker-registry", "/usr/bin/skopeo"]
        .iter()
        .chain(extra)
    {
        if !Path::new(tool).exists() {
            println!("skipped: {tool} missing (installed by scripts/setup.sh)");
            return false;
        }
    }
    true
}

/// Runs `sh -c script` in `dir`; panics with its output when it fails.
fn sh(dir: &Path, script: &str) {
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA and a leaf for 127.0.0.1 signed by it: `ca.pem`, `cert.pem`, `key.pem` in `dir`.
fn make_certs(dir: &Path) {
    sh(
        dir,
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
           -keyout ca-key.pem -out ca.pem -subj '/CN=landscape test CA' \
           -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign' 2>/dev/null && \
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out leaf.csr \
           -subj '/CN=127.0.0.1' 2>/dev/null && \
         printf '%s\\n' 'basicConstraints=critical,CA:FALSE' 'subjectAltName=IP:127.0.0.1' \
           'extendedKeyUsage=serverAuth' > leaf.ext && \
         openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
           -out cert.pem -extfile leaf.ext 2>/dev/null",
    );
}

/// A docker-registry on 127.0.0.1 with `http_extra` under `http:` and `extra` at the top level
/// of its config; returns it and its port once it listens.
fn start_registry(storage: &Path, http_extra: &str, extra: &str) -> (Registry, u16) {
    let port = free_port();
    let config = storage.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{http_extra}{extra}",
            storage.join("data").display()
        ),
    )
    .unwrap();
    let registry = Registry(
        std::process::Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    poll(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .expect("docker-registry did not start listening");
    (registry, port)
}

/// Pushes the test layout to `dest` (`127.0.0.1:PORT/test/busybox:v1`) with skopeo.
fn push(layout: &Path, dest: &str, creds: Option<&str>) {
    let creds = creds.map(|c| format!("--dest-creds={c}"));
    let mut opts = vec!["--dest-tls-verify=false"];
    opts.extend(creds.as_deref());
    skopeo_copy(
        &opts,
        &format!("oci:{}:latest", layout.display()),
        &format!("docker://{dest}"),
    );
}

/// `skopeo copy OPTS SRC DEST` with a private HOME and TMPDIR; panics with its stderr when it
/// fails.
fn skopeo_copy(opts: &[&str], src: &str, dest: &str) {
    let tmpdir = TempDir::new("skopeo");
    let out = std::process::Command::new("/usr/bin/skopeo")
        .env("TMPDIR", tmpdir.path())
        .env("HOME", tmpdir.path())
        // Its own (absent) auth file: skopeo otherwise reads /run/containers/<uid>/auth.json,
        // which fails with "permission denied" for an unprivileged user once root's podman
        // has made /run/containers (0700).
        .env("REGISTRY_AUTH_FILE", tmpdir.path().join("auth.json"))
        .env("XDG_RUNTIME_DIR", tmpdir.path())
        .args(["--insecure-policy", "copy"])
        .args(opts)
        .arg(src)
        .arg(dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(feature = "registry-tls")]
fn registry_pull_over_https_with_basic_auth() {
    use landscape_runtime::image::{Credentials, RegistryOptions};
    if !registry_tools(&["/usr/bin/openssl", "/usr/bin/htpasswd"]) {
        return;
    }
    let rt = runtime();
    let layout = TempDir::new("layout");
    let storage = TempDir::new("registry");
    build_layout(layout.path());
    make_certs(storage.path());
    sh(storage.path(), "htpasswd -Bbn alice s3cret > htpasswd");
    let s = storage.path().display();
    let (_registry, port) = start_registry(
        storage.path(),
        &format!("  tls:\n    certificate: {s}/cert.pem\n    key: {s}/key.pem\n"),
        &format!("auth:\n  htpasswd:\n    realm: test\n    path: {s}/htpasswd\n"),
    );
    let registry = format!("127.0.0.1:{port}");
    let dest = format!("{registry}/test/busybox:v1");
    push(layout.path(), &dest, Some("alice:s3cret"));
    let r = ImageRef::parse(&dest).unwrap();
    let opts = |creds: Option<(&str, &str)>, ca: bool| RegistryOptions {
        ca_files: if ca {
            vec![storage.path().join("ca.pem")]
        } else {
            Vec::new()
        },
        credentials: creds
            .map(|(u, p)| (registry.clone(), Credentials::new(u, p)))
            .into_iter()
            .collect(),
        ignore_auth_file: true,
        ..RegistryOptions::default()
    };
    let pull = |o: RegistryOptions| {
        let cache = TempDir::new("cache");
        let store = ImageStore::new(cache.path(), rt.idmap()).with_registry(o);
        let mut events = Vec::new();
        let r = store.resolve(&r, &mut |p| events.push(p));
        (r, events, cache)
    };
    // The CA trusted and the right password: pulled over HTTPS, verified, runs.
    let (img, events, _cache) = pull(opts(Some(("alice", "s3cret")), true));
    let img = img.unwrap();
    let downloads = downloads(&events);
    assert_eq!(downloads, 3, "config + 2 layers: {events:?}");
    check_image(&rt, &img);
    // No credentials: named as the problem.
    let err = pull(opts(None, true)).0.unwrap_err().to_string();
    assert!(err.contains("requires credentials"), "{err}");
    // A wrong password: access denied.
    let err = pull(opts(Some(("alice", "wrong")), true))
        .0
        .unwrap_err()
        .to_string();
    assert!(err.contains("denied"), "{err}");
    // The CA not trusted: the certificate is named, with how to trust it.
    let err = pull(opts(Some(("alice", "s3cret")), false))
        .0
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("certificate") && err.contains("ca_files"),
        "{err}"
    );
}

/// Base64url without padding (JWT encoding).
#[cfg(feature = "registry-tls")]
fn b64url(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[cfg(feature = "registry-tls")]
fn registry_pull_with_bearer_token() {
    use base64::Engine as _;
    use landscape_runtime::image::RegistryOptions;
    use std::io::{BufRead, BufReader as StdBufReader, Write as _};
    use std::sync::{Arc, Mutex};
    if !registry_tools(&["/usr/bin/openssl"]) {
        return;
    }
    let rt = runtime();
    let layout = TempDir::new("layout");
    let storage = TempDir::new("registry");
    build_layout(layout.path());
    // The token service's signing key and certificate (the registry trusts it).
    sh(
        storage.path(),
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout token-key.pem \
           -out token-cert.pem -subj '/CN=landscape test token issuer' 2>/dev/null && \
         openssl x509 -in token-cert.pem -outform DER -out token-cert.der",
    );
    let der = std::fs::read(storage.path().join("token-cert.der")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({
        "alg": "RS256", "typ": "JWT",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(&der)],
    });
    let claims = serde_json::json!({
        "iss": "landscape-test-issuer", "sub": "", "aud": "landscape-test-registry",
        "exp": now + 3600, "nbf": now - 60, "iat": now - 60, "jti": "1",
        "access": [{"type": "repository", "name": "test/busybox", "actions": ["pull", "push"]}],
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    std::fs::write(storage.path().join("jwt-input"), &signing_input).unwrap();
    sh(
        storage.path(),
        "openssl dgst -sha256 -sign token-key.pem -out jwt-sig jwt-input",
    );
    let sig = std::fs::read(storage.path().join("jwt-sig")).unwrap();
    let token = format!("{signing_input}.{}", b64url(&sig));

    // The token service: answers every GET with the token and records the request lines.
    let service = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tport = service.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = {
        let (seen, stop) = (seen.clone(), stop.clone());
        let body = serde_json::json!({ "token": token }).to_string();
        std::thread::spawn(move || {
            for conn in service.incoming() {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(mut c) = conn else { continue };
                let mut r = StdBufReader::new(c.try_clone().unwrap());
                let mut line = String::new();
                let _ = r.read_line(&mut line);
                let mut authorized = false;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    authorized |= h.to_ascii_lowercase().starts_with("authorization:");
                }
                seen.lock()
                    .unwrap()
                    .push(format!("{} authorized={authorized}", line.trim_end()));
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        })
    };
    let s = storage.path().display();
    let (_registry, port) = start_registry(
        storage.path(),
        "",
        &format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{tport}/token\n    service: landscape-test-registry\n    issuer: landscape-test-issuer\n    rootcertbundle: {s}/token-cert.pem\n"
        ),
    );
    let dest = format!("127.0.0.1:{port}/test/busybox:v1");
    push(layout.path(), &dest, None);
    seen.lock().unwrap().clear();
    let cache = TempDir::new("cache");
    let store = ImageStore::new(cache.path(), rt.idmap()).with_registry(RegistryOptions {
        ignore_auth_file: true,
        ..RegistryOptions::default()
    });
    let img = store
        .resolve(&ImageRef::parse(&dest).unwrap(), &mut |_| {})
        .unwrap();
    check_image(&rt, &img);
    // One anonymous token request, for pulling this repository from this service.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].starts_with("GET /token?")
            && seen[0].contains("service=landscape-test-registry")
            && seen[0].contains("scope=repository%3Atest%2Fbusybox%3Apull")
            && seen[0].ends_with("authorized=false"),
        "{seen:?}"
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = std::net::TcpStream::connect(("127.0.0.1", tport));
    server.join().unwrap();
}

#[cfg(not(feature = "registry-tls"))]
fn https_registry_without_the_feature_names_it() {
    if !registry_tools(&["/usr/bin/openssl"]) {
        return;
    }
    let rt = runtime();
    let storage = TempDir::new("registry");
    make_certs(storage.path());
    let s = storage.path().display();
    let (_registry, port) = start_registry(
        storage.path(),
        &format!("  tls:\n    certificate: {s}/cert.pem\n    key: {s}/key.pem\n"),
        "",
    );
    let cache = TempDir::new("cache");
    let store = ImageStore::new(cache.path(), rt.idmap());
    let err = pull_error(&store, &format!("127.0.0.1:{port}/test/busybox:v1"));
    assert!(err.contains("registry-tls"), "{err}");
    // A remote registry is refused before any connection, naming the feature.
    let err = pull_error(&store, "ghcr.io/org/app:v1");
    assert!(err.contains("registry-tls"), "{err}");
}

/// A server that accepts a connection and never says a word (a plain-HTTP server waiting
/// for a request line that a TLS ClientHello never ends, or a stuck proxy): the HTTPS
/// attempt ends at the connection deadline (`RegistryOptions::connect_timeout`), not at the
/// 300 s read deadline, and the error says so. Its plain-HTTP fallback (loopback) is closed
/// at once.
#[cfg(feature = "registry-tls")]
fn a_silent_server_fails_at_the_connect_deadline() {
    use landscape_runtime::image::RegistryOptions;
    let rt = runtime();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        // The HTTPS attempt: held open, unanswered, until the client gives up on it.
        let (mut first, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        while std::io::Read::read(&mut first, &mut buf).is_ok_and(|n| n > 0) {}
        // The plain-HTTP attempt: closed unanswered.
        drop(listener.accept().unwrap());
    });
    let cache = TempDir::new("cache");
    let store = ImageStore::new(cache.path(), rt.idmap()).with_registry(RegistryOptions {
        connect_timeout: Some(std::time::Duration::from_millis(300)),
        ..Default::default()
    });
    let err = pull_error(&store, &format!("127.0.0.1:{port}/test/busybox:v1"));
    assert!(
        err.contains("no connection and TLS handshake within 0.3 s"),
        "{err}"
    );
    server.join().unwrap();
}

/// The test image recompressed by skopeo with zstd (what `zstd` and `zstd:chunked` images on
/// registries carry): the layers really are zstd, and the image unpacks and runs the same.
fn zstd_layers_made_by_skopeo_run() {
    if !registry_tools(&[]) {
        return;
    }
    let rt = runtime();
    let src = TempDir::new("layout");
    let dst = TempDir::new("layout-zstd");
    let cache = TempDir::new("cache");
    build_layout(src.path());
    skopeo_copy(
        &["--dest-compress", "--dest-compress-format", "zstd"],
        &format!("oci:{}:latest", src.path().display()),
        &format!("oci:{}:latest", dst.path().display()),
    );
    // Every layer blob of the new layout starts with the zstd frame magic.
    let blobs = dst.path().join("blobs/sha256");
    let zstd_blobs = std::fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .filter(|e| {
            let mut head = [0u8; 4];
            std::io::Read::read_exact(&mut std::fs::File::open(e.path()).unwrap(), &mut head)
                .is_ok()
                && head == [0x28, 0xb5, 0x2f, 0xfd]
        })
        .count();
    assert_eq!(zstd_blobs, 2, "both layers recompressed with zstd");
    let store = ImageStore::new(cache.path(), rt.idmap());
    let img = store
        .resolve(
            &ImageRef::parse(&format!("oci-layout:{}:latest", dst.path().display())).unwrap(),
            &mut |_| {},
        )
        .unwrap();
    check_image(&rt, &img);
}

/// A `docker save` archive (written by skopeo's `docker-archive:` transport: manifest.json,
/// the config and uncompressed layer tars) runs as `docker-archive:PATH:TAG`, by repo tag or
/// bare tag, and also when given as `oci-archive:`; an unknown tag lists the tags there; a
/// manifest.json that names files outside the archive is refused.
fn docker_save_archive_made_by_skopeo_runs() {
    if !registry_tools(&[]) {
        return;
    }
    let rt = runtime();
    let src = TempDir::new("layout");
    let work = TempDir::new("docker-archive");
    build_layout(src.path());
    let archive = work.path().join("busybox.tar");
    skopeo_copy(
        &[],
        &format!("oci:{}:latest", src.path().display()),
        &format!("docker-archive:{}:test/busybox:v1", archive.display()),
    );
    // It is the Docker format, not an OCI layout.
    let names: Vec<String> = tar::Archive::new(std::fs::File::open(&archive).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.iter().any(|n| n == "manifest.json"), "{names:?}");
    assert!(!names.iter().any(|n| n == "index.json"), "{names:?}");
    for reference in [
        format!("docker-archive:{}:v1", archive.display()),
        format!("docker-archive:{}", archive.display()),
        format!("oci-archive:{}", archive.display()),
    ] {
        let cache = TempDir::new("cache");
        let store = ImageStore::new(cache.path(), rt.idmap());
        let img = store
            .resolve(&ImageRef::parse(&reference).unwrap(), &mut |_| {})
            .unwrap_or_else(|e| panic!("{reference}: {e}"));
        check_image(&rt, &img);
    }
    let cache = TempDir::new("cache");
    let store = ImageStore::new(cache.path(), rt.idmap());
    let err = pull_error(&store, &format!("docker-archive:{}:v9", archive.display()));
    assert!(err.contains("test/busybox:v1"), "{err}");
    // A hostile manifest.json: layers named outside the archive.
    let hostile = work.path().join("hostile.tar");
    let mut b = Layer::new();
    b.file(
        "manifest.json",
        br#"[{"Config":"c.json","RepoTags":["x:y"],"Layers":["../../../../etc/passwd"]}]"#,
        0o644,
    )
    .file("c.json", b"{}", 0o644);
    std::fs::write(&hostile, b.0.into_inner().unwrap()).unwrap();
    let err = pull_error(&store, &format!("docker-archive:{}", hostile.display()));
    assert!(err.contains("outside the archive"), "{err}");
}
