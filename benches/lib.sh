# Shared by the bench scripts (sourced, not run).

# podman_conf DIR: writes DIR/containers.conf for podman on this machine and exports
# CONTAINERS_CONF. runc as the runtime (crun refuses the hybrid cgroup layout); explicit
# ulimits, since podman's defaults exceed this machine's hard limits (runc then fails with
# "error setting rlimits"): nofile = the hard limit here.
podman_conf() {
  local nofile
  nofile=$(ulimit -Hn)
  cat > "$1/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
  export CONTAINERS_CONF=$1/containers.conf
}

# landscape_cli: sets L to the `landscape` CLI to time: $LANDSCAPE_BIN when set (a CLI built
# beforehand), else the release example, built here.
landscape_cli() {
  if [ -n "${LANDSCAPE_BIN:-}" ]; then
    L=$LANDSCAPE_BIN
  else
    cargo build -q --release --example landscape
    L=$PWD/target/release/examples/landscape
  fi
}
