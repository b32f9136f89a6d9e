//! Images: an OCI layout built here from Debian's busybox-static (two layers, whiteouts),
//! the same as an OCI archive, and pulled from a real `docker-registry` on 127.0.0.1
//! (pushed there with skopeo).

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
    if !busybox_available() {
        return;
    }
    for tool in ["/usr/bin/docker-registry", "/usr/bin/skopeo"] {
        if !Path::new(tool).exists() {
            println!("skipped: {tool} missing (Debian packages docker-registry and skopeo, installed by scripts/setup.sh)");
            return;
        }
    }
    let rt = runtime();
    let dir = TempDir::new("layout");
    let cache = TempDir::new("cache");
    let storage = TempDir::new("registry");
    build_layout(dir.path());
    let port = free_port();
    let config = storage.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.path().join("data").display()
        ),
    )
    .unwrap();
    let _registry = Registry(
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
    let tmpdir = TempDir::new("skopeo");
    let out = std::process::Command::new("/usr/bin/skopeo")
        .env("TMPDIR", tmpdir.path())
        .env("HOME", tmpdir.path())
        .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", dir.path().display()))
        .arg(format!("docker://127.0.0.1:{port}/test/busybox:v1"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = ImageStore::new(cache.path(), rt.idmap());
    let mut events = Vec::new();
    let r = ImageRef::parse(&format!("127.0.0.1:{port}/test/busybox:v1")).unwrap();
    let img = store.resolve(&r, &mut |p| events.push(p)).unwrap();
    let downloads = events
        .iter()
        .filter(|e| matches!(e, Progress::Downloaded { .. }))
        .count();
    assert_eq!(downloads, 3, "config + 2 layers: {events:?}");
    check_image(&rt, &img);
    let err = store
        .resolve(
            &ImageRef::parse(&format!("127.0.0.1:{port}/test/missing:v1")).unwrap(),
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("not found"), "{err}");
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
