# landscape-runtime: subordinate ids for root (instances started by root map to these
# unprivileged host ids) and the unprivileged user the runtime tests also run as.
if ! grep -qE '^(root|0):' /etc/subuid 2>/dev/null; then
  echo "root:1000000:65536" | $SUDO tee -a /etc/subuid >/dev/null
fi
if ! grep -qE '^(root|0):' /etc/subgid 2>/dev/null; then
  echo "root:1000000:65536" | $SUDO tee -a /etc/subgid >/dev/null
fi
if ! id -u landscape-test >/dev/null 2>&1; then
  $SUDO useradd --system --create-home --home-dir /var/lib/landscape-test --shell /bin/sh landscape-test
fi
# Egress of the landscape network (slirp4netns, from runtime.apt) opens /dev/net/tun as the
# unprivileged user: udev makes it 0666 on a desktop Debian; a bare machine may have 0600.
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
  $SUDO chmod 0666 /dev/net/tun
fi
