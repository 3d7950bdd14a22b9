#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs (npm packages, and the Debian
# packages of the real peers the integration tests start), builds, and runs vitest.
# Usage: npm test [-- vitest args]
set -euo pipefail
cd "$(dirname "$0")/.."
# The run's summary (test/setup/run-reporter.ts) reports the time from here.
export VISOR_TEST_RUN_STARTED_MS="${VISOR_TEST_RUN_STARTED_MS:-$(date +%s%3N)}"

# Native addons (better-sqlite3) build against the local Node headers: no download needed.
if [ -z "${npm_config_nodedir:-}" ] && [ -f /usr/include/node/node_version.h ]; then export npm_config_nodedir=/usr; fi
[ -d node_modules ] && [ -f node_modules/.package-lock.json ] || npm ci --no-audit --no-fund

# Debian packages of the real peers (Swift s3api, Keystone + Glance, qemu-img, ...), in one apt run;
# each peer's harness would also install what it misses, one package set at a time.
debian_packages="qemu-utils genisoimage python3-swift keystone glance-api python3-openstackclient"
debian_packages+=" uwsgi-core uwsgi-plugin-python3 curl openssl gpg gpgv postgresql chromium docker-registry skopeo"
export VISOR_TEST_DEBIAN_PACKAGES="${VISOR_TEST_DEBIAN_PACKAGES:-$debian_packages}"
# A failed install is not the end: each peer then says what it misses, skipping its tests on a
# laptop, failing them (with its start log) under VISOR_TEST_REQUIRE_PEERS=1, as in CI.
bash test/setup/install-peers.sh || echo "install-peers: apt-get failed; the peers will report what they miss" >&2
npm run build --silent
VISOR_TEST_SKIP_BUILD=1 exec npx vitest run "$@"
