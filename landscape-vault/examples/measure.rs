//! Prints the numbers quoted in landscape-vault's README. Run it optimised:
//! `cargo run --release -p landscape-vault --example measure`.

use landscape_vault::{AuditLog, FileBackend, MasterKey, Redactor, SecretValue};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;

    // Argon2id with the default parameters: the cost of the first unlock of a passphrase store.
    let t = Instant::now();
    let pb = FileBackend::new(
        dir.path().join("p"),
        MasterKey::passphrase("a passphrase".into()),
    )?;
    pb.put_sync("s", "x", &SecretValue::from("value-123456"), None)?;
    println!(
        "passphrase store, first write incl. Argon2id (19 MiB, t=2): {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    let b = FileBackend::new(
        dir.path().join("k"),
        MasterKey::Key(zeroize::Zeroizing::new([7; 32])),
    )?;
    for i in 0..100 {
        b.put_sync(
            "s",
            &format!("secret-{i:03}"),
            &SecretValue::from(format!("value-{i:026}").as_str()),
            None,
        )?;
    }
    println!(
        "store file with 100 secrets (32 B values, 1 version): {} bytes",
        std::fs::metadata(b.store_path("s"))?.len()
    );

    let n = 200;
    let t = Instant::now();
    for i in 0..n {
        b.put_sync(
            "s",
            "secret-000",
            &SecretValue::from(format!("new-value-{i:020}").as_str()),
            None,
        )?;
    }
    println!(
        "put (100-secret store, fsync + rename + dir fsync): {:.2} ms each",
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
    let t = Instant::now();
    for i in 0..n {
        b.get_sync("s", &format!("secret-{:03}", i % 100), None)?;
    }
    println!(
        "get (read, MAC check, decrypt): {:.3} ms each",
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
    let t = Instant::now();
    b.rotate_data_key_sync("s")?;
    println!(
        "data-key rotation of 100 secrets (110 versions): {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    let log = AuditLog::for_scope(&b, "s")?;
    let ev = landscape_vault::AuditEvent {
        actor: "bench".into(),
        action: landscape_vault::AuditAction::Get,
        name: "secret-001".into(),
        version: Some(1),
        result: "ok".into(),
    };
    let t = Instant::now();
    for _ in 0..n {
        log.append(&ev)?;
    }
    println!(
        "audit append (with fdatasync): {:.2} ms each",
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
    let t = Instant::now();
    let r = log.verify()?;
    println!(
        "audit verify: {:.1} µs per line ({} lines)",
        t.elapsed().as_secs_f64() * 1e6 / r.lines as f64,
        r.lines
    );

    for secrets in [10usize, 100] {
        let values: Vec<SecretValue> = (0..secrets)
            .map(|i| SecretValue::from(format!("Secret-Value-{i:04}-abcdefgh").as_str()))
            .collect();
        let red = Redactor::new(values.iter());
        let line = b"2026-11-23T05:00:00Z INFO request GET /api/items?page=3 status=200 took=12ms user=42\n";
        let mut input = line.repeat(64 * 1024 * 1024 / line.len());
        let mid = input.len() / 2;
        input[mid..mid + 26].copy_from_slice(b"Secret-Value-0003-abcdefgh");
        let mut s = red.stream();
        let mut out = Vec::with_capacity(input.len());
        let t = Instant::now();
        for chunk in input.chunks(8192) {
            s.feed(chunk, &mut out);
        }
        s.finish(&mut out);
        let secs = t.elapsed().as_secs_f64();
        assert!(out.windows(3).any(|w| w == b"***"));
        println!(
            "redaction, {secrets} secrets ({} patterns), 8 KiB chunks: {:.0} MB/s",
            red.pattern_count(),
            input.len() as f64 / secs / 1e6
        );
    }
    Ok(())
}
