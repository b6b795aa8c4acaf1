#!/usr/bin/env bash
# Install the named Debian packages that are missing. Needs root.
set -euo pipefail
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing packages: ${missing[*]} (run as root, or install them)" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
apt-get update -qq
# The tests run their own fail2ban (and CrowdSec): the host's service must
# not start, nor be enabled, from this install. policy-rc.d refuses starts.
guard=
if [ ! -e /usr/sbin/policy-rc.d ]; then
  guard=/usr/sbin/policy-rc.d
  printf '#!/bin/sh\nexit 101\n' >"$guard" && chmod 755 "$guard"
  trap 'rm -f "$guard"' EXIT
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for p in "${missing[@]}"; do
  if [ "$p" = fail2ban ] && command -v systemctl >/dev/null; then
    systemctl disable fail2ban >/dev/null 2>&1 || true
  fi
done
