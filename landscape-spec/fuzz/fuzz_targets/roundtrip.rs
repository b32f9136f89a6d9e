//! Structure-aware: an arbitrary landscape -> YAML -> parse -> the same model.
#![no_main]

use arbitrary::{Arbitrary, Result, Unstructured};
use landscape_spec::*;
use libfuzzer_sys::fuzz_target;

fn text(u: &mut Unstructured) -> Result<String> {
    let s: String = u.arbitrary()?;
    Ok(s.chars().take(24).collect())
}

fn name(u: &mut Unstructured) -> Result<String> {
    let len = u.int_in_range(1..=10)?;
    let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-";
    (0..len).map(|_| Ok(*u.choose(alphabet)? as char)).collect()
}

fn dns(u: &mut Unstructured) -> Result<String> {
    let len = u.int_in_range(1..=12)?;
    let mut s = String::new();
    for i in 0..len {
        let set: &[u8] = if i == 0 || i == len - 1 { b"abcdefghijklmnopqrstuvwxyz" } else { b"abcdefghijklmnopqrstuvwxyz0123456789-" };
        s.push(*u.choose(set)? as char);
    }
    Ok(s)
}

fn sp<T>(v: T) -> Spanned<T> {
    Spanned::unspanned(v)
}

fn opt<T>(u: &mut Unstructured, f: impl FnOnce(&mut Unstructured) -> Result<T>) -> Result<Option<T>> {
    if u.arbitrary()? {
        Ok(Some(f(u)?))
    } else {
        Ok(None)
    }
}

fn template(u: &mut Unstructured) -> Result<Template> {
    let n = u.int_in_range(0..=3)?;
    let mut parts: Vec<Part> = Vec::new();
    for _ in 0..n {
        let p = match u.int_in_range(0..=5)? {
            0 => Part::Ref(Reference::Vault(name(u)?)),
            1 => Part::Ref(Reference::WorkspaceId),
            2 => Part::Ref(Reference::WorkspaceDevDomain),
            3 => Part::Ref(Reference::TeamId),
            4 => Part::Ref(Reference::WorkspaceEnv(name(u)?)),
            _ => Part::Literal(text(u)?),
        };
        parts.push(p);
    }
    // `from_parts` merges adjacent literals and drops empty ones (the normal form).
    Ok(Template::from_parts(parts))
}

fn steps(u: &mut Unstructured) -> Result<Vec<Step>> {
    let n = u.int_in_range(0..=3)?;
    (0..n).map(|_| Ok(Step { name: opt(u, text)?.map(sp), command: sp(text(u)?) })).collect()
}

fn service(u: &mut Unstructured, svc_name: String) -> Result<Service> {
    let mut s = Service { name: sp(svc_name), ..Service::default() };
    s.steps = opt(u, steps)?;
    s.image = opt(u, text)?.map(sp);
    s.command = opt(u, |u| (0..u.int_in_range(0..=3)?).map(|_| text(u)).collect::<Result<Vec<_>>>())?.map(sp);
    s.plan = opt(u, |u| Ok(Plan::Id(u.int_in_range(0..=1000)?)))?.map(sp);
    s.replicas = opt(u, |u| u.int_in_range(1..=20))?.map(sp);
    s.is_public = opt(u, |u| u.arbitrary())?.map(sp);
    s.health_endpoint = opt(u, text)?.map(sp);
    s.env = opt(u, |u| {
        let mut m = indexmap::IndexMap::new();
        for _ in 0..u.int_in_range(0..=4)? {
            m.insert(name(u)?, EnvVar { value: sp(template(u)?), key_span: Span::default() });
        }
        Ok(m)
    })?;
    s.network = opt(u, |u| {
        let mut n = Network::default();
        for _ in 0..u.int_in_range(0..=3)? {
            n.ports.push(PortSpec { port: sp(u.int_in_range(1..=65535)?), is_public: opt(u, |u| u.arbitrary())?.map(sp) });
        }
        for _ in 0..u.int_in_range(0..=3)? {
            n.paths.push(PathSpec {
                port: opt(u, |u| u.int_in_range(1..=65535))?.map(sp),
                path: sp(text(u)?),
                strip_path: opt(u, |u| u.arbitrary())?.map(sp),
                target: opt(u, template)?.map(sp),
            });
        }
        n.legacy_path = opt(u, text)?.map(sp);
        Ok(n)
    })?;
    s.run_as_user = opt(u, |u| u.arbitrary())?.map(sp);
    s.volume_mounts = opt(u, |u| {
        (0..u.int_in_range(0..=2)?)
            .map(|_| Ok(VolumeMount { name: sp(text(u)?), mount_path: sp(text(u)?), workspace_path: opt(u, text)?.map(sp) }))
            .collect()
    })?;
    s.mount_sub_path = opt(u, text)?.map(sp);
    Ok(s)
}

#[derive(Debug)]
struct Input(Landscape);

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let v01: bool = u.arbitrary()?;
        let mut l = Landscape { prepare: Stage { steps: steps(u)? }, test: Stage { steps: steps(u)? }, ..Landscape::default() };
        if v01 {
            l.schema_version = sp(SchemaVersion::V0_1);
            l.run = Run::Steps(Stage { steps: steps(u)? });
        } else {
            l.schema_version = sp(*u.choose(&[SchemaVersion::V0_2, SchemaVersion::V0_3, SchemaVersion::V0_4])?);
            let mut m = indexmap::IndexMap::new();
            for _ in 0..u.int_in_range(0..=4)? {
                let n = dns(u)?;
                let s = service(u, n.clone())?;
                m.insert(n, s);
            }
            l.run = Run::Services(m);
        }
        Ok(Input(l))
    }
}

fuzz_target!(|input: Input| landscape_spec::testgen::check_roundtrip(&input.0));
