#!/usr/bin/env bash
# Installs the Debian packages of the real peers the integration tests run against, when they
# are missing. Needs root (or passwordless sudo); otherwise says what is missing and the tests
# that need those peers report themselves as skipped with that reason.
set -euo pipefail
packages=(${VISOR_TEST_DEBIAN_PACKAGES:-})
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] && ! sudo -n true 2>/dev/null; then
  echo "install-peers: not root, cannot install: ${missing[*]}" >&2
  exit 0
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
echo "install-peers: installing ${missing[*]}" >&2
# Keep package post-install scripts from starting system-wide daemons on their default ports.
policy=/usr/sbin/policy-rc.d
had_policy=0; [ -e "$policy" ] && had_policy=1
[ "$had_policy" = 1 ] || { printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null; $SUDO chmod +x "$policy"; }
trap '[ "$had_policy" = 1 ] || $SUDO rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt_install() { $SUDO apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}"; }
apt_install >/dev/null || { $SUDO apt-get update -q -o DPkg::Lock::Timeout=600 >/dev/null && apt_install >/dev/null; }
