//! Generated landscapes for benchmarks and fuzzing (not part of the stable API).

use std::fmt::Write as _;

/// A v0.4 landscape with `n` services, each with env (including templates), ports, paths,
/// three steps and volume mounts. About 350 bytes per service.
pub fn landscape_yaml(n: usize) -> String {
    let mut s = String::with_capacity(n * 400 + 200);
    s.push_str("schemaVersion: v0.4\nprepare:\n  steps:\n    - name: Install\n      command: npm ci\ntest:\n  steps: []\nrun:\n");
    for i in 0..n {
        let _ = write!(
            s,
            "  svc-{i}:
    plan: 8
    replicas: 2
    healthEndpoint: http://localhost:{port}/health
    steps:
      - name: migrate
        command: ./migrate --service {i}
      - command: npm run build:{i}
      - command: node server.js --port {port}
    env:
      NODE_ENV: production
      DB_PASSWORD: ${{{{ vault.db_{i} }}}}
      PUBLIC_URL: https://${{{{ workspace.devDomain }}}}/s{i}
      WORKERS: {w}
    network:
      ports:
        - port: {port}
          isPublic: false
      paths:
        - port: {port}
          path: /s{i}
          stripPath: true
    volumeMounts:
      - name: _workspace
        mountPath: /home/user/app
        workspacePath: services/s{i}
",
            port = 3000 + (i % 60000),
            w = i % 8 + 1
        );
    }
    s
}
