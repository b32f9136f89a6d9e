//! Criterion: parse + validate generated landscapes of 10, 200 and 2,000 services, with
//! serde_yaml 0.9 into plain structs beside it as the baseline (see spec_vs_serde_yaml.rs for
//! the ratio printout).

#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_validate");
    for n in [10usize, 200, 2000] {
        let text = landscape_spec::testgen::landscape_yaml(n);
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::new("landscape_spec", n), &text, |b, t| {
            b.iter(|| landscape_spec::parse_str("bench.yml", black_box(t)))
        });
        g.bench_with_input(BenchmarkId::new("serde_yaml_value", n), &text, |b, t| {
            b.iter(|| serde_yaml::from_str::<serde_yaml::Value>(black_box(t)).ok())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
