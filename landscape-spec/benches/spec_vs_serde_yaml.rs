//! Side-by-side throughput: landscape-spec (parse + validate into the typed model, positions
//! kept) against serde_yaml 0.9 deserialising the same text into plain serde structs of the
//! same shape. Interleaved rounds, medians. Prints one line per size:
//! `size=<n> landscape_mb_s=<x> serde_yaml_mb_s=<y> ratio=<x/y>`.
//!
//! `cargo bench -p landscape-spec --bench spec_vs_serde_yaml` (or `benches/spec-vs-serde_yaml.sh`).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    schema_version: Option<String>,
    prepare: Option<Stage>,
    test: Option<Stage>,
    run: BTreeMap<String, Service>,
}
#[allow(dead_code)]
#[derive(Deserialize)]
struct Stage {
    steps: Vec<Step>,
}
#[allow(dead_code)]
#[derive(Deserialize)]
struct Step {
    name: Option<String>,
    command: String,
}
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Service {
    plan: Option<u64>,
    replicas: Option<u32>,
    health_endpoint: Option<String>,
    steps: Option<Vec<Step>>,
    env: Option<BTreeMap<String, serde_yaml::Value>>,
    network: Option<Network>,
    volume_mounts: Option<Vec<Mount>>,
}
#[allow(dead_code)]
#[derive(Deserialize)]
struct Network {
    ports: Vec<Port>,
    paths: Vec<Path>,
}
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Port {
    port: u16,
    is_public: Option<bool>,
}
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Path {
    port: Option<u16>,
    path: String,
    strip_path: Option<bool>,
}
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mount {
    name: String,
    mount_path: String,
    workspace_path: Option<String>,
}

/// This thread's CPU time in seconds: unlike wall time, it does not count the time other
/// processes on a shared machine ran instead of this one.
fn cpu_now() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec; the clock id is a constant Linux supports.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn breakdown() {
    for n in [200, 2000] {
        breakdown_one(n);
    }
}

fn breakdown_one(n: usize) {
    let text = landscape_spec::testgen::landscape_yaml(n);
    let mb = text.len() as f64 / 1e6;
    let time = |f: &dyn Fn()| {
        let mut v = Vec::new();
        for _ in 0..9 {
            let t = Instant::now();
            let reps = (4_000_000 / text.len()).max(2);
            for _ in 0..reps {
                f();
            }
            v.push(t.elapsed().as_secs_f64() / reps as f64);
        }
        mb / median(v)
    };
    let events = time(&|| {
        let mut p = saphyr_parser::Parser::new_from_str(&text);
        while let Some(Ok(e)) = p.next_event() {
            black_box(e);
        }
    });
    let limits = landscape_spec::Limits::default();
    let tree = time(&|| {
        let mut d = Vec::new();
        black_box(landscape_spec::yaml::parse_document(&text, &limits, &mut d));
    });
    let nov = landscape_spec::ParseOptions {
        skip_validation: true,
        ..Default::default()
    };
    let decode = time(&|| {
        black_box(landscape_spec::parse_with("b", text.as_bytes(), &nov));
    });
    let full = time(&|| {
        black_box(landscape_spec::parse_str("b", &text));
    });
    let model = landscape_spec::parse_str("b", &text).landscape.unwrap();
    let validate = time(&|| {
        black_box(landscape_spec::validate(&model, None));
    });
    let serde = time(&|| {
        black_box(serde_yaml::from_str::<File>(&text).ok());
    });
    println!("n={n} MB/s: events={events:.1} tree={tree:.1} decode={decode:.1} full={full:.1} validate_only={validate:.1} serde_yaml={serde:.1}");
}

fn main() {
    if std::env::args().any(|a| a == "--breakdown") {
        return breakdown();
    }
    if let Some(n) = std::env::args().skip_while(|a| a != "--only").nth(1) {
        // Profiling aid: parse one size in a loop.
        let text = landscape_spec::testgen::landscape_yaml(n.parse().unwrap_or(2000));
        for _ in 0..(20_000_000 / text.len()).max(1) {
            black_box(landscape_spec::parse_str("bench.yml", black_box(&text)));
        }
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 3 } else { 21 };
    let sizes = [10usize, 200, 2000];
    let texts: Vec<String> = sizes
        .iter()
        .map(|&n| landscape_spec::testgen::landscape_yaml(n))
        .collect();
    for text in &texts {
        let p = landscape_spec::parse_str("bench.yml", text);
        assert!(
            !p.has_errors(),
            "generated file has errors: {:?}",
            p.errors().next()
        );
        serde_yaml::from_str::<File>(text).expect("serde_yaml reads the generated file");
    }
    // Every round times every size, ours then serde_yaml's, so that the ratios and the
    // 2,000/200 scaling compare figures taken side by side, not minutes apart.
    let mut ours = vec![Vec::new(); sizes.len()];
    let mut ours_cpu = vec![Vec::new(); sizes.len()];
    let mut theirs = vec![Vec::new(); sizes.len()];
    let mut scaling = Vec::new();
    let mut parse_only = vec![Vec::new(); sizes.len()];
    let mut scaling_po = Vec::new();
    let mut scaling_cpu = Vec::new();
    for _ in 0..rounds {
        for (i, text) in texts.iter().enumerate() {
            // Repeat small inputs so that each timed batch is about 2 MB.
            let reps = (2_000_000 / text.len()).max(1);
            let (t, c) = (Instant::now(), cpu_now());
            for _ in 0..reps {
                black_box(landscape_spec::parse_str("bench.yml", black_box(text)));
            }
            ours[i].push(t.elapsed().as_secs_f64() / reps as f64);
            ours_cpu[i].push((cpu_now() - c) / reps as f64);
            // The same parses with the model's drop left out of the clock (what criterion's
            // `iter_with_large_drop` measures): shows how much of the growth is freeing memory.
            let mut po = 0.0;
            for _ in 0..reps {
                let t = Instant::now();
                let r = landscape_spec::parse_str("bench.yml", black_box(text));
                po += t.elapsed().as_secs_f64();
                drop(black_box(r));
            }
            parse_only[i].push(po / reps as f64);
            let t = Instant::now();
            for _ in 0..reps {
                black_box(serde_yaml::from_str::<File>(black_box(text)).ok());
            }
            theirs[i].push(t.elapsed().as_secs_f64() / reps as f64);
        }
        scaling.push(ours[2].last().unwrap() / ours[1].last().unwrap());
        scaling_po.push(parse_only[2].last().unwrap() / parse_only[1].last().unwrap());
        scaling_cpu.push(ours_cpu[2].last().unwrap() / ours_cpu[1].last().unwrap());
    }
    for (i, n) in sizes.iter().enumerate() {
        let (o, t) = (median(ours[i].clone()), median(theirs[i].clone()));
        let mb = texts[i].len() as f64 / 1e6;
        println!(
            "size={n} bytes={} landscape_mb_s={:.1} serde_yaml_mb_s={:.1} ratio={:.2}",
            texts[i].len(),
            mb / o,
            mb / t,
            t / o
        );
    }
    // Paired: each round times both files back to back, so the per-round quotient sees the
    // same machine conditions; its median is robust to other load on a shared machine. The
    // quotient of the two medians is printed beside it.
    let serde_scaling: Vec<f64> = theirs[2]
        .iter()
        .zip(&theirs[1])
        .map(|(a, b)| a / b)
        .collect();
    println!(
        "scaling_2000_over_200={:.2} cpu={:.2} without_drop={:.2} ratio_of_medians={:.2} serde_yaml={:.2} (time of the 2,000-service file over the 200-service file: median over rounds of the two measured in the same round, wall clock; cpu: the same on the thread's CPU clock; without_drop: the model's drop not timed; the bytes grow 10.1x; limit 11)",
        median(scaling),
        median(scaling_cpu),
        median(scaling_po),
        median(ours[2].clone()) / median(ours[1].clone()),
        median(serde_scaling),
    );
}
