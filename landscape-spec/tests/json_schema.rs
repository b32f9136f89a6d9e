//! The JSON Schema accepts every corpus file and rejects typical mistakes.

mod common;

use landscape_spec::yaml::{check_bytes, parse_document, Limits};

fn to_json(src: &str) -> serde_json::Value {
    let mut d = Vec::new();
    let text = check_bytes(src.as_bytes(), &Limits::default(), &mut d)
        .ok()
        .unwrap();
    parse_document(text, &Limits::default(), &mut d)
        .expect("YAML")
        .to_json()
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft7::new(&landscape_spec::schema::json_schema())
        .expect("the schema itself is valid draft-07")
}

#[test]
fn schema_accepts_every_corpus_file() {
    let v = validator();
    for (name, src) in common::corpus() {
        let inst = to_json(&src);
        let errors: Vec<String> = v
            .iter_errors(&inst)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}");
    }
}

#[test]
fn schema_rejects_typical_mistakes() {
    let v = validator();
    for bad in [
        "schemaVersion: v0.9\n",
        "run:\n  web:\n    replicas: 0\n",
        "run:\n  web:\n    isPublic: yes\n",
        "run:\n  web:\n    healthEndpont: x\n",
        "run:\n  Web:\n    steps: []\n",
        "run:\n  web:\n    network:\n      ports: [{port: 70000}]\n",
        "run:\n  web:\n    volumeMounts: [{name: data, mountPath: /x}]\n",
        "prepare:\n  steps:\n    - name: no command\n",
    ] {
        assert!(!v.is_valid(&to_json(bad)), "schema accepted:\n{bad}");
    }
}
