//! A host that embeds landscape: two branch previews of one app side by side, each its own
//! landscape (own network, names, router port), secrets from the host's own source.
//!
//! `cargo run --example previews -- examples/sample` copies the app twice ("main" and
//! "feature"), brings both up and prints their URLs; Ctrl-C stops both.
use landscape::compose::{Landscape, UpOptions};
use landscape::runtime::Runtime;
use landscape::spec::{self, Reference};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Every service's env, with `${{ vault.X }}` taken from the host's own secrets (here a
/// per-preview value; a platform would ask its secret manager).
fn env_of(model: &spec::Landscape, branch: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut env = BTreeMap::new();
    for s in model.services() {
        let vars = s.env().map(|(k, v)| {
            let text = v.value.value.render(|r| match r {
                Reference::Vault(name) => Ok::<_, ()>(format!("{branch}-{name}-secret")),
                _ => Ok(String::new()),
            });
            (k.clone(), text.unwrap_or_default())
        });
        env.insert(s.name.value.clone(), vars.collect());
    }
    env
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()))?;
        } else {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    landscape::runtime::init(); // first: the runtime's helper processes re-enter here
    let app = PathBuf::from(std::env::args().nth(1).unwrap_or("examples/sample".into()));
    let src = std::fs::read_to_string(app.join("ci.yml"))?;
    let parsed = spec::parse_str("ci.yml", &src);
    let ok = !parsed.has_errors();
    let Some(model) = parsed.landscape.filter(|_| ok) else {
        return Err(spec::diag::render_human("ci.yml", &src, &parsed.diagnostics).into());
    };
    let runtime = Arc::new(Runtime::with_defaults()?);
    let work = std::env::temp_dir().join(format!("previews-{}", std::process::id()));
    let tokio = tokio::runtime::Runtime::new()?;
    tokio.block_on(async {
        let mut running = Vec::new();
        for (i, branch) in ["main", "feature"].into_iter().enumerate() {
            let dir = work.join(branch);
            copy_dir(&app, &dir)?;
            let mut opts = UpOptions::new(
                format!("preview-{branch}"),
                dir,
                work.join(format!("{branch}.state")),
            );
            opts.listen = ([127, 0, 0, 1], 3100 + i as u16).into();
            let land = Landscape::up(runtime.clone(), &model, env_of(&model, branch), opts).await?;
            land.wait_ready(std::time::Duration::from_secs(60)).await?;
            println!("{branch}: http://{}/", land.local_addr());
            running.push(land);
        }
        tokio::signal::ctrl_c().await?;
        for land in running {
            land.down().await;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    std::fs::remove_dir_all(&work)?;
    Ok(())
}
