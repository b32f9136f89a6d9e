//! Managed services with real servers: Debian's PostgreSQL and Redis provisioned into a
//! data directory and run by the supervisor on a real landscape network; clients in other
//! instances of the landscape connect by service name with credentials from env (`psql`,
//! `redis-cli`). Runs as root and as an unprivileged user (scripts/test.d/runtime.sh).
//! Needs the `postgresql` and `redis-server` packages (scripts/setup.d/runtime.apt).

mod common;

use common::{poll, TempDir};
use landscape_runtime::managed::{
    self, codes, list_backups, BackupPolicy, Connection, ManagedContext, Postgres, Provider,
    Providers, ResourceId, Secret,
};
use landscape_runtime::{
    Backoff, Exit, InstanceSpec, LogConfig, Output, ProbeConfig, Process, ReplicaState,
    ReplicaStatus, Runtime, ServiceDef, Supervisor, SupervisorConfig,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn main() {
    common::run(&[
        (
            "bad_config_key_unknown_provider_and_missing_secret_give_one_positioned_error_each",
            bad_config_key_unknown_provider_and_missing_secret_give_one_positioned_error_each,
        ),
        (
            "a_host_registers_its_own_provider",
            a_host_registers_its_own_provider,
        ),
        (
            "postgres_serves_by_name_and_refuses_a_wrong_password",
            postgres_serves_by_name_and_refuses_a_wrong_password,
        ),
        (
            "postgres_data_survives_kill_9_and_down_up_and_deprovision_removes_it",
            postgres_data_survives_kill_9_and_down_up_and_deprovision_removes_it,
        ),
        (
            "postgres_backup_restore_and_scheduled_backups",
            postgres_backup_restore_and_scheduled_backups,
        ),
        (
            "redis_serves_by_name_with_auth_and_data_survives_restart",
            redis_serves_by_name_with_auth_and_data_survives_restart,
        ),
    ]);
}

/// Distinctive, planted: searched for in every log file and every process's command line.
const SUPER_PW: &str = "Sup3r-PLANTED-7f3a9c-superuser";
const USER_PW: &str = "app-PLANTED-41d2-user";
const REDIS_PW: &str = "redis-PLANTED-93be \"quoted\"";

const PG_YML: &str = r#"schemaVersion: v0.4
prepare:
  steps: []
test:
  steps: []
run:
  db:
    provider:
      name: postgres
      schemaVersion: v1
    plan:
      id: 0
      parameters:
        storage: 2048
        cpu: 1
        memory: 512
    config:
      userName: demo_app
      databaseName: demo_app
    secrets:
      userPassword: ${{ vault.PG_PASSWORD }}
      superuserPassword: ${{ vault.PG_SUPERUSER_PASSWORD }}
    backups:
      schedule: "@daily"
      keep: 3
"#;

const REDIS_YML: &str = r#"schemaVersion: v0.4
prepare:
  steps: []
test:
  steps: []
run:
  cache:
    provider:
      name: redis
      schemaVersion: v1
    plan:
      id: 0
      parameters:
        memory: 256
    config:
      persistence: aof
    secrets:
      password: ${{ vault.REDIS_PASSWORD }}
"#;

/// The service `name` of a ci.yml text (parsed with positions).
fn service(yml: &str, name: &str) -> landscape_spec::Service {
    let parsed = landscape_spec::parse_str("ci.yml", yml);
    let landscape = parsed
        .landscape
        .as_ref()
        .unwrap_or_else(|| panic!("ci.yml: {:?}", parsed.diagnostics));
    landscape
        .service(name)
        .unwrap_or_else(|| panic!("no service {name}"))
        .clone()
}

/// Position (line, column, 1-based) of the first `needle` in `text`.
fn position(text: &str, needle: &str) -> (u32, u32) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in text"));
    let before = &text[..at];
    let line = before.matches('\n').count() as u32 + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() as u32 + 1;
    (line, col)
}

fn secrets(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Secret::new(*v)))
        .collect()
}

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("tokio runtime")
}

/// One landscape: a supervisor with its network; the app, log and data directories.
struct Land {
    rt: Arc<Runtime>,
    sup: Supervisor,
    logs: PathBuf,
    _app: TempDir,
}

fn land(tag: &str, logs: &Path) -> Land {
    static N: AtomicU32 = AtomicU32::new(0);
    let rt = Arc::new(common::runtime());
    let app = common::app_dir(&rt);
    let name = format!(
        "m{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let mut cfg = SupervisorConfig::new(name, app.path().into(), logs.into());
    cfg.probes = ProbeConfig {
        startup_period: Duration::from_millis(100),
        startup_timeout: Duration::from_secs(60),
        period: Duration::from_millis(500),
        timeout: Duration::from_secs(1),
        failure_threshold: 3,
    };
    cfg.backoff = Backoff {
        initial: Duration::from_millis(100),
        ..Backoff::default()
    };
    cfg.stop_grace = Duration::from_secs(10);
    let sup = Supervisor::new(rt.clone(), cfg).expect("supervisor");
    Land {
        rt,
        sup,
        logs: logs.into(),
        _app: app,
    }
}

fn replica(sup: &Supervisor, service: &str) -> Option<ReplicaStatus> {
    sup.status()
        .replicas
        .into_iter()
        .find(|r| r.service == service)
}

fn wait_ready(sup: &Supervisor, service: &str) -> ReplicaStatus {
    poll(Duration::from_secs(90), || {
        replica(sup, service).filter(|r| r.state == ReplicaState::Ready)
    })
    .unwrap_or_else(|| panic!("{service} not ready: {:?}", sup.status()))
}

/// Runs `script` in a client instance on the landscape network with `env`; returns its
/// exit and output (stdout and stderr).
fn client(sup: &Supervisor, script: &str, env: &[(String, String)]) -> (Exit, String) {
    let rt = common::runtime();
    let net = sup.network();
    let addr = net.allocate().expect("address");
    let mut spec = InstanceSpec::new("client", Process::shell(script));
    spec.network = Some(net.attachment(addr));
    spec.process.env = env.to_vec();
    let logs = TempDir::new("clientlogs");
    let mut inst = rt
        .spawn(&spec, Output::Logs(LogConfig::new(logs.path())))
        .expect("client");
    let exit = inst.wait().expect("client wait");
    net.release(addr);
    let out = std::fs::read_to_string(inst.log_path().expect("log path"))
        .unwrap_or_default()
        .lines()
        .filter_map(landscape_runtime::logs::parse_line)
        .map(|l| l.text)
        .collect::<Vec<_>>()
        .join("\n");
    (exit, out)
}

fn psql_bin() -> String {
    let major = Postgres::new()
        .installed()
        .pop()
        .expect("postgresql is installed (scripts/setup.d/runtime.apt)");
    format!("/usr/lib/postgresql/{major}/bin/psql")
}

/// libpq's environment from a connection (`password` overrides its password).
fn pg_env(c: &Connection, user: Option<&str>, password: Option<&str>) -> Vec<(String, String)> {
    vec![
        ("PGHOST".into(), c.host.clone()),
        ("PGPORT".into(), c.port.to_string()),
        ("PGUSER".into(), user.unwrap_or(&c.user).to_string()),
        ("PGDATABASE".into(), c.database.clone().unwrap_or_default()),
        (
            "PGPASSWORD".into(),
            password.unwrap_or(c.password.expose()).to_string(),
        ),
        ("PGCONNECT_TIMEOUT".into(), "10".into()),
    ]
}

fn sql(sup: &Supervisor, c: &Connection, query: &str) -> (Exit, String) {
    client(
        sup,
        &format!("{} -v ON_ERROR_STOP=1 -Atc \"{query}\" 2>&1", psql_bin()),
        &pg_env(c, None, None),
    )
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out
}

fn assert_in_no_file(dir: &Path, needles: &[&str]) {
    let files = files_under(dir);
    assert!(!files.is_empty(), "no files under {}", dir.display());
    for f in files {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap_or_default()).into_owned();
        for n in needles {
            assert!(!text.contains(n), "a planted secret is in {}", f.display());
        }
    }
}

/// Samples every process's command line while it runs, collecting those that contain a
/// planted value (a sampler, not a synchronisation: the short pause only paces it).
struct CmdlineWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(Vec<String>, u64)>>,
}

impl CmdlineWatch {
    fn start(needles: &[&str]) -> CmdlineWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let needles: Vec<Vec<u8>> = needles.iter().map(|n| n.as_bytes().to_vec()).collect();
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut hits = Vec::new();
            let mut rounds = 0u64;
            while !s.load(Ordering::Relaxed) {
                for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
                        continue;
                    };
                    if needles
                        .iter()
                        .any(|n| cmd.windows(n.len()).any(|w| w == n.as_slice()))
                    {
                        hits.push(format!("pid {}", e.file_name().to_string_lossy()));
                    }
                }
                rounds += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            (hits, rounds)
        });
        CmdlineWatch {
            stop,
            thread: Some(thread),
        }
    }

    /// The processes seen with a planted value, and the number of scans made.
    fn finish(mut self) -> (Vec<String>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for CmdlineWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A provisioned, started postgres service `db`.
struct Pg {
    provider: Arc<dyn Provider>,
    ctx: ManagedContext,
    id: ResourceId,
    conn: Connection,
}

fn start_pg(tk: &tokio::runtime::Runtime, l: &Land, data_dir: &Path) -> Pg {
    let svc = service(PG_YML, "db");
    let provider = Providers::builtin().for_service(&svc).expect("provider");
    let ctx = ManagedContext::from_service(
        &svc,
        l.rt.clone(),
        data_dir.into(),
        l.logs.clone(),
        secrets(&[("userPassword", USER_PW), ("superuserPassword", SUPER_PW)]),
    );
    let id = tk.block_on(provider.provision(&ctx)).expect("provision");
    let def = tk
        .block_on(provider.service_def(&ctx, &id))
        .expect("service_def")
        .expect("postgres runs in the landscape");
    l.sup.start(vec![def]).expect("start");
    wait_ready(&l.sup, "db");
    let conn = tk.block_on(provider.connection(&ctx)).expect("connection");
    Pg {
        provider,
        ctx,
        id,
        conn,
    }
}

fn initdb_logs(logs: &Path) -> usize {
    std::fs::read_dir(logs)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("db-initdb-"))
        .count()
}

// ---------------------------------------------------------------------------------------

fn bad_config_key_unknown_provider_and_missing_secret_give_one_positioned_error_each() {
    let providers = Providers::builtin();
    assert_eq!(providers.registered(), ["postgres/v1", "redis/v1"]);

    // The sample validates: only the storage parameter is reported (not enforced).
    let diags = providers.validate(&service(PG_YML, "db"));
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    assert!(
        diags
            .iter()
            .any(|d| d.code == codes::NOT_ENFORCED
                && d.span.start.line == position(PG_YML, "2048").0),
        "{diags:?}"
    );

    // An unknown config key: one error, at its value.
    let yml = PG_YML.replace(
        "databaseName: demo_app",
        "databaseName: demo_app\n      colour: blue",
    );
    let diags = providers.validate(&service(&yml, "db"));
    let errors: Vec<_> = diags.iter().filter(|d| d.is_error()).collect();
    assert_eq!(errors.len(), 1, "{diags:?}");
    assert_eq!(errors[0].code, codes::UNKNOWN_KEY);
    let (line, col) = position(&yml, "blue");
    assert_eq!(
        (errors[0].span.start.line, errors[0].span.start.col),
        (line, col)
    );
    assert!(
        errors[0].message.contains("config.colour"),
        "{}",
        errors[0].message
    );
    assert!(
        errors[0].message.contains("userName"),
        "{}",
        errors[0].message
    );

    // A misspelt key gets a suggestion; a wrong type one error at the value.
    let yml = PG_YML.replace(
        "userName: demo_app",
        "userNmae: demo_app\n      version: [15]",
    );
    let diags = providers.validate(&service(&yml, "db"));
    let errors: Vec<_> = diags.iter().filter(|d| d.is_error()).collect();
    assert_eq!(
        errors.len(),
        3,
        "unknown key, wrong type, missing userName: {diags:?}"
    );
    let unknown = errors
        .iter()
        .find(|d| d.code == codes::UNKNOWN_KEY)
        .unwrap();
    assert_eq!(unknown.help.as_deref(), Some("did you mean `userName`?"));
    let typed = errors.iter().find(|d| d.code == codes::BAD_VALUE).unwrap();
    assert_eq!(typed.span.start.line, position(&yml, "[15]").0);
    assert!(
        typed.message.contains("must be a string or a number"),
        "{}",
        typed.message
    );

    // An unknown provider: one error at provider.name listing the registered ones.
    let yml = PG_YML.replace("name: postgres", "name: mysql");
    let svc = service(&yml, "db");
    let diags = providers.validate(&svc);
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0].code, codes::UNKNOWN_PROVIDER);
    let (line, col) = position(&yml, "mysql");
    assert_eq!(
        (diags[0].span.start.line, diags[0].span.start.col),
        (line, col)
    );
    assert!(diags[0]
        .help
        .as_deref()
        .unwrap()
        .contains("postgres/v1, redis/v1"));
    let err = providers.for_service(&svc).err().expect("unknown provider");
    assert!(
        err.to_string()
            .contains("registered: postgres/v1, redis/v1"),
        "{err}"
    );
    // An unknown schema version: at schemaVersion.
    let yml = PG_YML.replace("schemaVersion: v1", "schemaVersion: v9");
    let diags = providers.validate(&service(&yml, "db"));
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0].span.start.line, position(&yml, "v9").0);

    // A secret not declared: one error; not rendered by the host: provisioning refuses
    // before anything is created.
    let yml = PG_YML.replace(
        "      superuserPassword: ${{ vault.PG_SUPERUSER_PASSWORD }}\n",
        "",
    );
    let svc = service(&yml, "db");
    let diags = providers.validate(&svc);
    let errors: Vec<_> = diags.iter().filter(|d| d.is_error()).collect();
    assert_eq!(errors.len(), 1, "{diags:?}");
    assert_eq!(errors[0].code, codes::MISSING_KEY);
    assert!(errors[0].message.contains("secrets.superuserPassword"));
    let rt = Arc::new(common::runtime());
    let data = TempDir::new("nodata");
    let ctx = ManagedContext::from_service(
        &service(PG_YML, "db"),
        rt,
        data.path().join("db"),
        data.path().join("logs"),
        secrets(&[("userPassword", USER_PW)]),
    );
    let err = tokio()
        .block_on(providers.get("postgres", "v1").unwrap().provision(&ctx))
        .expect_err("no superuser password");
    assert!(
        err.to_string()
            .contains("secrets.superuserPassword is missing"),
        "{err}"
    );
    assert!(!data.path().join("db").exists(), "nothing is created");

    // Bad values: a reserved user name, backups without a schedule.
    let yml = PG_YML
        .replace("userName: demo_app", "userName: postgres")
        .replace("schedule: \"@daily\"", "every: daily");
    let diags = providers.validate(&service(&yml, "db"));
    let errors: Vec<_> = diags.iter().filter(|d| d.is_error()).collect();
    assert_eq!(errors.len(), 2, "{diags:?}");
    assert!(errors.iter().any(|d| d.message.contains("reserved")));
    assert!(errors.iter().any(|d| d.message.contains("backups.every")));

    // Redis: its own schema.
    let diags = providers.validate(&service(REDIS_YML, "cache"));
    assert!(diags.is_empty(), "{diags:?}");
    let yml = REDIS_YML.replace("persistence: aof", "persistence: sometimes");
    let diags = providers.validate(&service(&yml, "cache"));
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0].span.start.line, position(&yml, "sometimes").0);
}

/// A host's provider: a database that lives elsewhere (nothing runs in the landscape).
struct TeamDatabase;

#[async_trait::async_trait]
impl Provider for TeamDatabase {
    fn name(&self) -> &str {
        "postgres"
    }
    fn schema_version(&self) -> &str {
        "team"
    }
    fn validate(&self, _service: &landscape_spec::Service) -> Vec<landscape_spec::Diagnostic> {
        Vec::new()
    }
    async fn provision(&self, ctx: &ManagedContext) -> managed::Result<ResourceId> {
        Ok(ResourceId(format!("team-db-{}", ctx.service)))
    }
    async fn service_def(
        &self,
        _ctx: &ManagedContext,
        _resource: &ResourceId,
    ) -> managed::Result<Option<ServiceDef>> {
        Ok(None)
    }
    async fn connection(&self, ctx: &ManagedContext) -> managed::Result<Connection> {
        Ok(Connection {
            scheme: "postgres".into(),
            host: "db.team.example".into(),
            port: 5432,
            user: ctx.service.clone(),
            database: Some(ctx.service.clone()),
            password: ctx.secret("userPassword")?.clone(),
        })
    }
    async fn deprovision(&self, _ctx: &ManagedContext) -> managed::Result<()> {
        Ok(())
    }
}

fn a_host_registers_its_own_provider() {
    let mut providers = Providers::builtin();
    assert!(providers.register(Arc::new(TeamDatabase)).is_none());
    assert_eq!(
        providers.registered(),
        ["postgres/team", "postgres/v1", "redis/v1"]
    );
    let yml = PG_YML.replace("schemaVersion: v1", "schemaVersion: team");
    let svc = service(&yml, "db");
    assert!(providers.validate(&svc).is_empty());
    let p = providers.for_service(&svc).unwrap();
    let data = TempDir::new("team");
    let ctx = ManagedContext::from_service(
        &svc,
        Arc::new(common::runtime()),
        data.path().join("db"),
        data.path().join("logs"),
        secrets(&[("userPassword", USER_PW)]),
    );
    let tk = tokio();
    let id = tk.block_on(p.provision(&ctx)).unwrap();
    assert!(tk.block_on(p.service_def(&ctx, &id)).unwrap().is_none());
    let c = tk.block_on(p.connection(&ctx)).unwrap();
    assert_eq!(c.host, "db.team.example");
    // The defaults of the trait: no backups, saying so.
    let err = tk.block_on(p.backup(&ctx)).unwrap_err();
    assert!(
        err.to_string().contains("does not support backups"),
        "{err}"
    );
    // Two versions of `postgres` now: a service without schemaVersion must name one.
    assert!(providers.get("postgres", "").is_err());
    assert!(providers.get("redis", "").is_ok());
}

fn postgres_serves_by_name_and_refuses_a_wrong_password() {
    let tk = tokio();
    let logs = TempDir::new("pglogs");
    let data = TempDir::new("pgdata");
    let data_dir = data.path().join("landscapes/shop/services/db");
    let l = land("pg", &logs.path().join("l"));
    // The host's own port 5432 is taken (as by the cluster Debian's package starts): the
    // landscape's server listens in the landscape's network, not here.
    let _host_5432 = std::net::TcpListener::bind("0.0.0.0:5432");
    let watch = CmdlineWatch::start(&[SUPER_PW, USER_PW]);
    let pg = start_pg(&tk, &l, &data_dir);
    // Provisioning is idempotent: the same id, no second initdb.
    assert_eq!(initdb_logs(&l.logs), 1);
    let again = tk.block_on(pg.provider.provision(&pg.ctx)).unwrap();
    assert_eq!(again, pg.id);
    assert_eq!(initdb_logs(&l.logs), 1, "provision ran initdb again");
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let m = std::fs::metadata(&data_dir).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o700);
        assert_eq!(m.uid(), nix::unistd::geteuid().as_raw());
    }
    assert_eq!(pg.conn.host, "db");
    assert_eq!(
        (pg.conn.user.as_str(), pg.conn.database.as_deref()),
        ("demo_app", Some("demo_app"))
    );

    // Another instance of the landscape, by service name, credentials from env.
    let (exit, out) = sql(
        &l.sup,
        &pg.conn,
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('first'); SELECT v, current_user FROM t",
    );
    assert!(exit.success(), "{exit:?} {out}");
    assert!(out.contains("first|demo_app"), "{out}");

    // A wrong password is refused.
    let (exit, out) = client(
        &l.sup,
        &format!("{} -Atc 'SELECT 1' 2>&1", psql_bin()),
        &pg_env(&pg.conn, None, Some("wrong-password")),
    );
    assert!(!exit.success(), "{out}");
    assert!(out.contains("password authentication failed"), "{out}");

    // The superuser logs in over the network with the password given to initdb.
    let (exit, out) = client(
        &l.sup,
        &format!("{} -Atc 'SELECT current_user' 2>&1", psql_bin()),
        &pg_env(&pg.conn, Some("postgres"), Some(SUPER_PW)),
    );
    assert!(exit.success(), "{exit:?} {out}");
    assert_eq!(out.trim(), "postgres");

    let (hits, rounds) = watch.finish();
    assert!(rounds > 10, "the command-line sampler ran {rounds} times");
    assert!(
        hits.is_empty(),
        "a password was on a command line: {hits:?}"
    );
    l.sup.shutdown();
    // Neither password in any log file (initdb's, the server's), nor in the record.
    assert_in_no_file(&l.logs, &[SUPER_PW, USER_PW]);
    let rec = std::fs::read_to_string(data_dir.join("resource.json")).unwrap();
    assert!(!rec.contains(SUPER_PW) && !rec.contains(USER_PW), "{rec}");
    assert!(rec.contains(pg.id.as_str()));
    // No secret file is left behind in the state directory.
    for f in [".pwfile", ".provision.sql"] {
        assert!(!data_dir.join("state").join(f).exists(), "{f} left behind");
    }
    tk.block_on(pg.provider.deprovision(&pg.ctx)).unwrap();
}

fn postgres_data_survives_kill_9_and_down_up_and_deprovision_removes_it() {
    let tk = tokio();
    let logs = TempDir::new("pglogs");
    let data = TempDir::new("pgdata");
    let data_dir = data.path().join("db");
    let l = land("pgkill", &logs.path().join("l"));
    let pg = start_pg(&tk, &l, &data_dir);
    let (exit, out) = sql(
        &l.sup,
        &pg.conn,
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('before-kill')",
    );
    assert!(exit.success(), "{exit:?} {out}");

    // kill -9 of the server process (the postmaster, the instance's command): the
    // supervisor restarts it, crash recovery keeps the committed row.
    let before = wait_ready(&l.sup, "db");
    let init = before.pid.expect("running");
    let postmaster = *common::children_of(init).first().expect("postmaster");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(postmaster),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let after = poll(Duration::from_secs(90), || {
        replica(&l.sup, "db")
            .filter(|r| r.restarts == 1 && r.state == ReplicaState::Ready && r.pid != before.pid)
    })
    .unwrap_or_else(|| panic!("not restarted: {:?}", l.sup.status()));
    assert!(after.last_exit.unwrap().contains("signal 9"));
    let (exit, out) = sql(
        &l.sup,
        &pg.conn,
        "INSERT INTO t VALUES ('after-kill'); SELECT string_agg(v, ',' ORDER BY v) FROM t",
    );
    assert!(exit.success(), "{exit:?} {out}");
    assert_eq!(out.lines().last(), Some("after-kill,before-kill"), "{out}");

    // down + up: everything stopped (network included), a new landscape on the same data
    // directory: provision finds the resource, the rows are there.
    l.sup.shutdown();
    drop(l);
    let l = land("pgup", &logs.path().join("l"));
    let again = start_pg(&tk, &l, &data_dir);
    assert_eq!(again.id, pg.id);
    // The names of the first provision are kept; a changed one is refused, naming both.
    let mut renamed = again.ctx.clone();
    renamed
        .config
        .insert("userName".into(), serde_json::json!("other_app"));
    let err = tk
        .block_on(again.provider.service_def(&renamed, &again.id))
        .unwrap_err();
    assert!(
        err.to_string().contains("\"other_app\"") && err.to_string().contains("\"demo_app\""),
        "{err}"
    );
    assert_eq!(initdb_logs(&l.logs), 1, "no second initdb");
    let (exit, out) = sql(
        &l.sup,
        &again.conn,
        "SELECT string_agg(v, ',' ORDER BY v) FROM t",
    );
    assert!(exit.success(), "{exit:?} {out}");
    assert_eq!(out.trim(), "after-kill,before-kill");
    l.sup.shutdown();
    assert_in_no_file(&l.logs, &[SUPER_PW, USER_PW]);

    // down --volumes: the data goes; again is a no-op.
    tk.block_on(again.provider.deprovision(&again.ctx)).unwrap();
    assert!(!data_dir.exists());
    tk.block_on(again.provider.deprovision(&again.ctx)).unwrap();
}

fn postgres_backup_restore_and_scheduled_backups() {
    let tk = tokio();
    let logs = TempDir::new("pglogs");
    let data = TempDir::new("pgdata");
    let data_dir = data.path().join("db");
    let l = land("pgbak", &logs.path().join("l"));
    let pg = start_pg(&tk, &l, &data_dir);
    let (exit, out) = sql(
        &l.sup,
        &pg.conn,
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')",
    );
    assert!(exit.success(), "{exit:?} {out}");
    let backup = tk.block_on(pg.provider.backup(&pg.ctx)).expect("backup");
    assert!(
        backup.starts_with(pg.ctx.backup_dir()),
        "{}",
        backup.display()
    );
    assert!(backup.to_string_lossy().ends_with(".dump"));
    assert!(std::fs::metadata(&backup).unwrap().len() > 0);
    let (exit, out) = sql(
        &l.sup,
        &pg.conn,
        "INSERT INTO t VALUES ('lost'); CREATE TABLE later (x int)",
    );
    assert!(exit.success(), "{exit:?} {out}");
    tk.block_on(pg.provider.restore(&pg.ctx, &backup))
        .expect("restore");
    let (exit, out) = sql(&l.sup, &pg.conn, "SELECT string_agg(v, ',') FROM t");
    assert!(exit.success(), "{exit:?} {out}");
    assert_eq!(out.trim(), "kept");
    // Restoring something that is not a backup fails, naming the job.
    let junk = data.path().join("junk.dump");
    std::fs::write(&junk, b"not a dump").unwrap();
    let err = tk
        .block_on(pg.provider.restore(&pg.ctx, &junk))
        .unwrap_err();
    assert!(err.to_string().contains("pg_restore failed"), "{err}");

    // On a schedule: every second, two kept; the first backup is pruned.
    let mut ctx = pg.ctx.clone();
    ctx.backups = Some(serde_json::json!({"schedule": "1s", "keep": 2}));
    let policy = BackupPolicy::from_context(&ctx).unwrap().unwrap();
    assert_eq!(policy.keep, 2);
    let task = tk.spawn(managed::run_backups(pg.provider.clone(), ctx, policy));
    let dir = pg.ctx.backup_dir();
    let kept = poll(Duration::from_secs(60), || {
        let all = list_backups(&dir).ok()?;
        (!backup.exists() && all.len() == 2).then_some(all)
    })
    .unwrap_or_else(|| panic!("scheduled backups: {:?}", list_backups(&dir)));
    task.abort();
    assert!(kept.iter().all(|p| p != &backup));
    l.sup.shutdown();
    assert_in_no_file(&l.logs, &[SUPER_PW, USER_PW]);
    tk.block_on(pg.provider.deprovision(&pg.ctx)).unwrap();
}

fn redis_serves_by_name_with_auth_and_data_survives_restart() {
    let tk = tokio();
    let logs = TempDir::new("redislogs");
    let data = TempDir::new("redisdata");
    let data_dir = data.path().join("cache");
    let svc = service(REDIS_YML, "cache");
    let provider = Providers::builtin().for_service(&svc).unwrap();
    let watch = CmdlineWatch::start(&[REDIS_PW]);
    let start = |l: &Land| {
        let ctx = ManagedContext::from_service(
            &svc,
            l.rt.clone(),
            data_dir.clone(),
            l.logs.clone(),
            secrets(&[("password", REDIS_PW)]),
        );
        let id = tk.block_on(provider.provision(&ctx)).expect("provision");
        let def = tk
            .block_on(provider.service_def(&ctx, &id))
            .unwrap()
            .unwrap();
        l.sup.start(vec![def]).unwrap();
        wait_ready(&l.sup, "cache");
        let conn = tk.block_on(provider.connection(&ctx)).unwrap();
        (ctx, id, conn)
    };
    let cli = |l: &Land, conn: &Connection, password: Option<&str>, args: &str| {
        let mut env = vec![
            ("H".to_string(), conn.host.clone()),
            ("P".to_string(), conn.port.to_string()),
        ];
        if let Some(p) = password {
            env.push(("REDISCLI_AUTH".to_string(), p.to_string()));
        }
        client(
            &l.sup,
            &format!("redis-cli -h \"$H\" -p \"$P\" {args} 2>&1"),
            &env,
        )
    };
    let l = land("redis", &logs.path().join("l"));
    let (ctx, id, conn) = start(&l);
    assert_eq!((conn.host.as_str(), conn.port), ("cache", 6379));
    let (_, out) = cli(&l, &conn, Some(conn.password.expose()), "SET k first-value");
    assert_eq!(out.trim(), "OK");
    let (_, out) = cli(&l, &conn, Some("wrong"), "GET k");
    assert!(out.contains("WRONGPASS"), "{out}");
    let (_, out) = cli(&l, &conn, None, "GET k");
    assert!(out.contains("NOAUTH"), "{out}");
    // down + up: the append-only file in the data directory brings the key back.
    l.sup.shutdown();
    drop(l);
    let l = land("redisup", &logs.path().join("l"));
    let (_, id2, conn) = start(&l);
    assert_eq!(id2, id);
    let (_, out) = cli(&l, &conn, Some(conn.password.expose()), "GET k");
    assert_eq!(out.trim(), "first-value");
    let (hits, _) = watch.finish();
    assert!(
        hits.is_empty(),
        "the password was on a command line: {hits:?}"
    );
    l.sup.shutdown();
    assert_in_no_file(&l.logs, &[REDIS_PW]);
    assert!(data_dir.join("state/data").is_dir());
    tk.block_on(provider.deprovision(&ctx)).unwrap();
    assert!(!data_dir.exists());
}
