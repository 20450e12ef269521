#!/usr/bin/env bash
# Debian/Ubuntu packages ivr needs: espeak-ng (pyttsx3's voice), sox (audio conversion).
# With --test also Chromium and its driver for the dashboard browser test, and the scale-out tests'
# HAProxy, redis-server, redis-sentinel and redis-tools (tests/test_scale_out.py, tests/test_redis_ha.py),
# and the TLS front doors Caddy and nginx (tests/test_front_door.py; systemd-analyze comes with systemd).
# Installs only what is missing, so a second run costs nothing.
set -euo pipefail
pkgs=(espeak-ng sox)
[ "${1:-}" = "--test" ] && pkgs+=(chromium chromium-driver haproxy redis-server redis-sentinel redis-tools caddy nginx)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "please install: ${missing[*]} (apt-get not found)" >&2; exit 1
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing system packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
