//! A JSON Schema (draft-07) of `ci.yml`, for editors such as the VS Code YAML extension.
//! It describes types and keys; the semantic rules live in [`crate::validate()`].

use serde_json::{json, Value};

/// The JSON Schema document.
pub fn json_schema() -> Value {
    let step = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["command"],
        "properties": {
            "name": {"type": "string", "description": "Display name of the step."},
            "command": {"type": ["string", "number", "boolean"], "description": "Shell command, run with /bin/sh -c."}
        }
    });
    let steps = json!({"type": ["array", "null"], "items": {"$ref": "#/definitions/step"}});
    let stage = json!({
        "type": ["object", "null"],
        "additionalProperties": false,
        "properties": {"steps": {"$ref": "#/definitions/steps"}}
    });
    let port = json!({"type": "integer", "minimum": 1, "maximum": 65535});
    let scalar = json!({"type": ["string", "number", "boolean"]});
    let service = json!({
        "type": ["object", "null"],
        "additionalProperties": false,
        "properties": {
            "steps": {"$ref": "#/definitions/steps"},
            "image": {"type": "string", "description": "Container image (Managed Container)."},
            "baseImage": {"type": "string", "description": "Deprecated spelling of image."},
            "command": {"type": "array", "items": {"type": "string"}, "description": "The container's argv."},
            "provider": {
                "type": "object", "additionalProperties": false,
                "properties": {"name": {"type": "string"}, "version": {"type": "string"}, "schemaVersion": {"type": "string"}}
            },
            "plan": {
                "oneOf": [
                    {"type": "integer", "minimum": 0, "description": "Plan id from the plan catalogue."},
                    {"type": "object", "additionalProperties": false,
                     "properties": {"id": {"type": "integer", "minimum": 0}, "parameters": {"type": ["object", "null"]}}}
                ]
            },
            "config": {"type": ["object", "null"]},
            "secrets": {"type": ["object", "null"], "additionalProperties": scalar},
            "backups": {},
            "replicas": {"type": "integer", "minimum": 1},
            "isPublic": {"type": "boolean"},
            "healthEndpoint": {"type": "string", "pattern": "^(https?|tcp)://"},
            "env": {"type": ["object", "null"], "additionalProperties": scalar},
            "network": {
                "type": ["object", "null"], "additionalProperties": false,
                "properties": {
                    "ports": {"type": ["array", "null"], "items": {
                        "type": "object", "additionalProperties": false, "required": ["port"],
                        "properties": {"port": port, "isPublic": {"type": "boolean"}}
                    }},
                    "paths": {"type": ["array", "null"], "items": {
                        "type": "object", "additionalProperties": false, "required": ["path"],
                        "properties": {
                            "port": port, "path": {"type": "string", "pattern": "^/"},
                            "stripPath": {"type": "boolean"}, "target": {"type": "string"}
                        }
                    }},
                    "path": {"type": "string", "pattern": "^/", "description": "Legacy single route on port 3000."},
                    "stripPath": {"type": "boolean"}
                }
            },
            "runAsUser": {"type": "integer", "minimum": 0},
            "runAsGroup": {"type": "integer", "minimum": 0},
            "volumeMounts": {"type": ["array", "null"], "items": {
                "type": "object", "additionalProperties": false, "required": ["name", "mountPath"],
                "properties": {
                    "name": {"const": "_workspace"},
                    "mountPath": {"type": "string", "pattern": "^/"},
                    "workspacePath": {"type": ["string", "null"]}
                }
            }},
            "mountSubPath": {"type": "string"}
        }
    });
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://landscape.invalid/schema/ci.json",
        "title": "Codesphere-style ci.yml (landscape)",
        "type": "object",
        "additionalProperties": false,
        "definitions": {"step": step, "steps": steps, "stage": stage, "service": service},
        "properties": {
            "schemaVersion": {"enum": ["v0.1", "v0.2", "v0.3", "v0.4"]},
            "prepare": {"$ref": "#/definitions/stage"},
            "test": {"$ref": "#/definitions/stage"},
            "run": {
                "type": ["object", "null"],
                "description": "v0.1: {steps: [...]}; v0.2+: services by name.",
                "properties": {"steps": {"$ref": "#/definitions/steps"}},
                "propertyNames": {"pattern": "^(?:[a-z]|[a-z][-a-z0-9]{0,30}[a-z0-9])$"},
                "additionalProperties": {"$ref": "#/definitions/service"}
            }
        }
    })
}
