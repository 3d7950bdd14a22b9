#!/usr/bin/env bash
# start-openstack.sh BASE_DIR [BASE_PORT]
#
# Brings up a minimal, real OpenStack image service on loopback (Debian 12 packages):
#   Keystone (identity v3, fernet tokens) under uWSGI  -> http://127.0.0.1:BASE_PORT/v3
#   Glance   (image API v2, keystone auth, fs store)   -> http://127.0.0.1:BASE_PORT+1
#   [optional, OS_PEER_DB=postgresql] a private PostgreSQL on a unix socket in BASE_DIR/run/pg
#
# Idempotent: re-running with the same BASE_DIR reuses state (databases, keys, images) and
# does not restart processes that are already up and healthy; it re-checks/creates the
# keystone resources and prints the environment again.
#
# stdout: shell-evaluable OS_* variables (admin as OS_*, demo as OS_DEMO_*).  Progress -> stderr.
# Files written: BASE_DIR/{admin-openrc.sh,demo-openrc.sh,clouds.yaml,env.json}
#
# Env overrides: OS_PEER_DB=sqlite|postgresql (default sqlite)
#                OS_PEER_ADMIN_PASSWORD / OS_PEER_DEMO_PASSWORD / OS_PEER_GLANCE_PASSWORD
#                OS_PEER_NO_INSTALL=1 (never call apt-get)   OS_PEER_TIMEOUT (readiness, s; default 120)
set -euo pipefail

usage() { echo "usage: $0 BASE_DIR [BASE_PORT(default 25000)]" >&2; exit 2; }
[ $# -ge 1 ] || usage
BASE_PORT=${2:-25000}
[[ "$BASE_PORT" =~ ^[0-9]+$ ]] && [ "$BASE_PORT" -ge 1024 ] && [ "$BASE_PORT" -le 65530 ] || usage
mkdir -p "$1"
BASE=$(cd "$1" && pwd -P)

KS_PORT=$BASE_PORT
GL_PORT=$((BASE_PORT + 1))
PG_PORT=$((BASE_PORT + 2))          # only names the unix socket; postgres listens on no TCP port
KS_URL="http://127.0.0.1:${KS_PORT}"
GL_URL="http://127.0.0.1:${GL_PORT}"
REGION=RegionOne
TIMEOUT=${OS_PEER_TIMEOUT:-120}
PY=/usr/bin/python3                 # Debian's python (has the OpenStack libraries), not a pyenv shim
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
T_START=$(now_ms)

log() {
  local ms=$(( $(now_ms) - T_START ))
  printf '[start-openstack %4d.%01ds] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*" >&2
}
die() { log "ERROR: $*"; exit 1; }

ETC=$BASE/etc; LOG=$BASE/log; RUN=$BASE/run
mkdir -p "$ETC" "$LOG" "$RUN" "$BASE/keystone" "$BASE/glance"/{images,staging,tasks,lock} \
         "$ETC/keystone-policy.d" "$ETC/glance-policy.d"
exec 9>"$RUN/start.lock"
flock -w 300 9 || die "another start-openstack.sh is running on $BASE"

# ---------------------------------------------------------------- settings that persist
STATE=$BASE/settings.env
if [ -f "$STATE" ]; then
  # shellcheck disable=SC1090
  . "$STATE"
  [ "${SAVED_BASE_PORT:-$BASE_PORT}" = "$BASE_PORT" ] \
    || die "$BASE was created with base port $SAVED_BASE_PORT (got $BASE_PORT); the catalog would be wrong." \
      "Use the same port or a new directory."
  [ -z "${OS_PEER_DB:-}" ] || [ "$OS_PEER_DB" = "$SAVED_DB" ] || die "$BASE uses OS_PEER_DB=$SAVED_DB"
else
  SAVED_BASE_PORT=$BASE_PORT
  SAVED_DB=${OS_PEER_DB:-sqlite}
  ADMIN_PASSWORD=${OS_PEER_ADMIN_PASSWORD:-admin-secret}
  DEMO_PASSWORD=${OS_PEER_DEMO_PASSWORD:-demo-secret}
  GLANCE_PASSWORD=${OS_PEER_GLANCE_PASSWORD:-glance-secret}
  umask 077
  cat > "$STATE" <<EOF
SAVED_BASE_PORT=$SAVED_BASE_PORT
SAVED_DB=$SAVED_DB
ADMIN_PASSWORD='$ADMIN_PASSWORD'
DEMO_PASSWORD='$DEMO_PASSWORD'
GLANCE_PASSWORD='$GLANCE_PASSWORD'
EOF
  umask 022
fi
DB=$SAVED_DB
case "$DB" in sqlite|postgresql) ;; *) die "OS_PEER_DB must be sqlite or postgresql";; esac

# ---------------------------------------------------------------- packages
PKGS="keystone glance-api python3-openstackclient uwsgi-core uwsgi-plugin-python3 curl"
[ "$DB" = postgresql ] && PKGS="$PKGS postgresql python3-psycopg2"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  [ "${OS_PEER_NO_INSTALL:-0}" = 1 ] && die "missing packages:$missing"
  log "installing:$missing (takes a few minutes)"
  export DEBIAN_FRONTEND=noninteractive
  # keep the packages' own daemons (keystone/glance on 5000/9292, postgresql on 5432) from starting
  policy_rc_created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    policy_rc_created=1
  fi
  # shellcheck disable=SC2086
  # Lock timeout: other test harnesses on this machine may be running apt at the same time.
  APT_LOCK="-o DPkg::Lock::Timeout=600"
  { apt-get install $APT_LOCK -y --no-install-recommends $missing >"$LOG/apt.log" 2>&1 \
    || { apt-get update $APT_LOCK >>"$LOG/apt.log" 2>&1 \
      && apt-get install $APT_LOCK -y --no-install-recommends $missing >>"$LOG/apt.log" 2>&1; }; } \
    || { [ $policy_rc_created = 1 ] && rm -f /usr/sbin/policy-rc.d; die "apt-get failed, see $LOG/apt.log"; }
  [ $policy_rc_created = 1 ] && rm -f /usr/sbin/policy-rc.d
  log "packages installed"
fi

# ---------------------------------------------------------------- helpers
# pid files hold the PID of a process started with setsid, so PID == process group id.
pid_alive() {  # pidfile marker -> 0 if the recorded pid is alive and its cmdline contains marker
  local pid; pid=$(cat "$1" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$2"
}
# Zombies count as gone.
running() { [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
http_code() { curl -s -o /dev/null -m 10 -w '%{http_code}' "$@" || true; }
wait_for() {  # description timeout command...
  local what=$1 t=$2; shift 2
  local end=$(( $(date +%s) + t ))
  until "$@"; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.2
  done
}
start_daemon() {  # pidfile logfile cmd... ; records the real PID (sh execs into cmd)
  local pidfile=$1 logfile=$2; shift 2
  rm -f "$pidfile"
  # 9>&- : the daemon must not inherit the start.lock descriptor (it would hold the lock forever)
  setsid sh -c 'echo $$ > "$0"; exec "$@"' "$pidfile" "$@" >>"$logfile" 2>&1 </dev/null 9>&- &
  wait_for pidfile 10 test -s "$pidfile" || die "could not start $1"
}
kill_group() {  # pidfile marker: stop a daemon we started (only if the pid still is ours)
  local pid; pid=$(cat "$1" 2>/dev/null) || return 0
  if pid_alive "$1" "$2"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do running "$pid" || break; sleep 0.2; done
    running "$pid" && kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

# ---------------------------------------------------------------- postgresql (optional)
PGDATA=$BASE/pgdata; PGSOCK=$RUN/pg
if [ "$DB" = postgresql ]; then
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  chmod 755 "$BASE"   # the postgres user must reach its data dir
  mkdir -p "$PGSOCK"; chown postgres:postgres "$PGSOCK"; chmod 700 "$PGSOCK"
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    log "postgresql: initdb"
    rm -rf "$PGDATA"; mkdir -p "$PGDATA"; chown postgres:postgres "$PGDATA"
    runuser -u postgres -- "$PGBIN/initdb" -D "$PGDATA" -A trust -U postgres -E UTF8 --locale=C.UTF-8 --no-sync \
      >"$LOG/initdb.log" 2>&1 \
      || die "initdb failed, see $LOG/initdb.log"
  fi
  if pid_alive "$RUN/postgres.pid" "$PGDATA" && [ -S "$PGSOCK/.s.PGSQL.$PG_PORT" ]; then
    log "postgresql already running (pid $(cat "$RUN/postgres.pid"))"
  else
    rm -f "$PGDATA/postmaster.pid"   # stale after a crash / reboot
    touch "$LOG/postgres.log"; chown postgres:postgres "$LOG/postgres.log"   # written by the postgres user
    pg_options="-c listen_addresses='' -c unix_socket_directories='$PGSOCK' -p $PG_PORT -c fsync=off"
    pg_options+=" -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=64MB"
    setsid runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -l "$LOG/postgres.log" -w -t 60 -o "$pg_options" \
      start >>"$LOG/pg_ctl.log" 2>&1 </dev/null 9>&- \
      || die "postgres did not start, see $LOG/pg_ctl.log and $LOG/postgres.log"
    head -1 "$PGDATA/postmaster.pid" > "$RUN/postgres.pid"
    log "postgresql started (pid $(cat "$RUN/postgres.pid"))"
  fi
  for d in keystone glance; do
    "$PGBIN/psql" -h "$PGSOCK" -p "$PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$d'" \
      | grep -q 1 \
      || "$PGBIN/psql" -h "$PGSOCK" -p "$PG_PORT" -U postgres -qc "CREATE DATABASE $d" >/dev/null
  done
  KS_DB="postgresql+psycopg2://postgres@/keystone?host=$PGSOCK&port=$PG_PORT"
  GL_DB="postgresql+psycopg2://postgres@/glance?host=$PGSOCK&port=$PG_PORT"
  KS_THREADS=4
else
  KS_DB="sqlite:///$BASE/keystone/keystone.db"
  GL_DB="sqlite:///$BASE/glance/glance.db"
  # SQLite: exactly one single-threaded keystone worker (see README: concurrent writers in
  # SQLite's deferred transactions fail with "database is locked"; pysqlite objects cannot be
  # closed from another thread).
  KS_THREADS=1
fi

# ---------------------------------------------------------------- configs (always rewritten)
cat > "$ETC/keystone.conf" <<EOF
[DEFAULT]
log_dir = $LOG
log_file = keystone.log
[database]
connection = $KS_DB
[token]
provider = fernet
[fernet_tokens]
key_repository = $BASE/keystone/fernet-keys
[fernet_receipts]
key_repository = $BASE/keystone/fernet-keys
[credential]
key_repository = $BASE/keystone/credential-keys
[identity]
# bcrypt cost 4 instead of 12: token issue ~0.1 s instead of ~0.4 s (test rig only)
password_hash_rounds = 4
[cache]
# one keystone process -> an in-process cache is coherent (and ~5x faster than no cache)
enabled = true
backend = dogpile.cache.memory
[oslo_policy]
policy_dirs = $ETC/keystone-policy.d
EOF

cp /etc/glance/glance-api-paste.ini "$ETC/glance-api-paste.ini"
cat > "$ETC/glance-policy.yaml" <<'EOF'
# Only admins may make images public (this is also Glance's default); members may not.
"publicize_image": "role:admin"
EOF
cat > "$ETC/glance-api.conf" <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = $GL_PORT
workers = 1
log_file = $LOG/glance-api.log
enabled_backends = fs:file
enabled_import_methods = [glance-direct,web-download,copy-image]
node_staging_uri = file://$BASE/glance/staging
[database]
connection = $GL_DB
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $BASE/glance/images/
[os_glance_staging_store]
filesystem_store_datadir = $BASE/glance/staging/
[os_glance_tasks_store]
filesystem_store_datadir = $BASE/glance/tasks/
[image_import_opts]
image_import_plugins = []
[import_filtering_opts]
# Test rig only (visor): let web-download fetch from a test's HTTP server on 127.0.0.1 and any
# port. Glance's defaults refuse loopback and link-local hosts and ports other than 80/443.
allowed_hosts = [127.0.0.1]
allowed_ports = []
[paste_deploy]
flavor = keystone
config_file = $ETC/glance-api-paste.ini
[keystone_authtoken]
www_authenticate_uri = $KS_URL/v3
auth_url = $KS_URL/v3
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = glance
password = $GLANCE_PASSWORD
region_name = $REGION
interface = public
[oslo_policy]
policy_file = $ETC/glance-policy.yaml
policy_dirs = $ETC/glance-policy.d
[oslo_concurrency]
lock_path = $BASE/glance/lock
EOF
chmod 600 "$ETC/glance-api.conf"

set_wal() {
  "$PY" - "$1" >/dev/null <<'EOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute("pragma journal_mode=wal").fetchone()[0])
c.close()
EOF
}

# ---------------------------------------------------------------- keystone + glance
# Both daemons are launched first and waited for afterwards (glance needs keystone only when the
# first request arrives), which saves a few seconds on a 2-CPU machine.
KS_MARK="$ETC/keystone.conf"    # appears in the uwsgi cmdline (--env OS_KEYSTONE_CONFIG_FILES=...)
GL_MARK="$ETC/glance-api.conf"  # appears in the glance-api cmdline (--config-file ...)
KS_RUNNING=0; GL_RUNNING=0
pid_alive "$RUN/keystone.pid" "$KS_MARK" && [ "$(http_code "$KS_URL/v3")" = 200 ] && KS_RUNNING=1
pid_alive "$RUN/glance.pid" "$GL_MARK" && [ "$(http_code "$GL_URL/healthcheck")" = 200 ] && GL_RUNNING=1
if [ $KS_RUNNING = 0 ]; then
  kill_group "$RUN/keystone.pid" "$KS_MARK"
  port_open "$KS_PORT" && die "port $KS_PORT is in use by another process"
fi
if [ $GL_RUNNING = 0 ]; then
  kill_group "$RUN/glance.pid" "$GL_MARK"
  port_open "$GL_PORT" && die "port $GL_PORT is in use by another process"
fi

if [ $KS_RUNNING = 1 ]; then
  log "keystone already running (pid $(cat "$RUN/keystone.pid"))"
else
  if [ ! -f "$BASE/keystone/.db_synced" ]; then
    log "keystone: db_sync"
    keystone-manage --config-file "$ETC/keystone.conf" db_sync >"$LOG/keystone-manage.log" 2>&1 \
      || die "keystone db_sync failed, see $LOG/keystone-manage.log and $LOG/keystone.log"
    [ "$DB" = sqlite ] && set_wal "$BASE/keystone/keystone.db"
    touch "$BASE/keystone/.db_synced"
  fi
  # fernet + credential keys (same format as keystone-manage fernet_setup/credential_setup: 0=staged, 1=primary)
  "$PY" - "$BASE/keystone/fernet-keys" "$BASE/keystone/credential-keys" <<'EOF'
import os, sys
from cryptography.fernet import Fernet
for d in sys.argv[1:]:
    os.makedirs(d, mode=0o700, exist_ok=True); os.chmod(d, 0o700)
    if not any(f.isdigit() for f in os.listdir(d)):
        for i in (0, 1):
            fd = os.open(os.path.join(d, str(i)), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, Fernet.generate_key()); os.close(fd)
EOF
  if [ ! -f "$BASE/keystone/.bootstrapped" ]; then
    log "keystone: bootstrap (admin user/project, roles admin>member>reader, identity endpoints)"
    keystone-manage --config-file "$ETC/keystone.conf" bootstrap --bootstrap-password "$ADMIN_PASSWORD" \
      --bootstrap-username admin --bootstrap-project-name admin --bootstrap-role-name admin \
      --bootstrap-admin-url "$KS_URL/v3/" --bootstrap-internal-url "$KS_URL/v3/" --bootstrap-public-url "$KS_URL/v3/" \
      --bootstrap-region-id "$REGION" >>"$LOG/keystone-manage.log" 2>&1 \
      || die "keystone bootstrap failed, see $LOG/keystone-manage.log"
    touch "$BASE/keystone/.bootstrapped"
  fi
  log "keystone: starting uwsgi on $KS_URL (1 process x $KS_THREADS thread(s))"
  start_daemon "$RUN/keystone.pid" "$LOG/keystone-stdout.log" \
    uwsgi --plugins python3 --http-socket "127.0.0.1:$KS_PORT" --wsgi-file /usr/bin/keystone-wsgi-public \
      --master --processes 1 --threads "$KS_THREADS" --enable-threads --lazy-apps --need-app \
      --die-on-term --no-orphans --buffer-size 65535 --listen 100 --harakiri 120 \
      --add-header "Connection: close" \
      --chdir "$BASE" --env "OS_KEYSTONE_CONFIG_FILES=$KS_MARK" --logto "$LOG/keystone-uwsgi.log"
fi

if [ $GL_RUNNING = 1 ]; then
  log "glance already running (pid $(cat "$RUN/glance.pid"))"
else
  if [ ! -f "$BASE/glance/.db_synced" ]; then
    log "glance: db_sync"
    glance-manage --config-file "$ETC/glance-api.conf" db_sync >"$LOG/glance-manage.log" 2>&1 \
      || die "glance db_sync failed, see $LOG/glance-manage.log"
    [ "$DB" = sqlite ] && set_wal "$BASE/glance/glance.db"
    touch "$BASE/glance/.db_synced"
  fi
  log "glance: starting glance-api on $GL_URL"
  start_daemon "$RUN/glance.pid" "$LOG/glance-stdout.log" glance-api --config-file "$GL_MARK"
fi

if [ $KS_RUNNING = 0 ]; then
  ks_ready() {
    pid_alive "$RUN/keystone.pid" "$KS_MARK" || die "keystone exited, see $LOG/keystone-uwsgi.log / keystone.log"
    [ "$(http_code "$KS_URL/v3")" = 200 ]
  }
  wait_for keystone "$TIMEOUT" ks_ready || {
    tail -20 "$LOG/keystone-uwsgi.log" >&2
    kill_group "$RUN/keystone.pid" "$KS_MARK"
    die "keystone not ready in ${TIMEOUT}s"
  }
  log "keystone ready (pid $(cat "$RUN/keystone.pid"))"
fi

# ---------------------------------------------------------------- keystone resources (idempotent)
log "keystone: ensuring project service + user glance(admin), image service/endpoints, project/user demo(member)"
ADMIN_PASSWORD=$ADMIN_PASSWORD DEMO_PASSWORD=$DEMO_PASSWORD GLANCE_PASSWORD=$GLANCE_PASSWORD \
"$PY" - "$KS_URL" "$GL_URL" "$REGION" >"$LOG/setup-resources.log" 2>&1 <<'EOF' \
  || { cat "$LOG/setup-resources.log" >&2; die "keystone resource setup failed"; }
import os, sys, time
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
ks, gl, region = sys.argv[1:4]
auth = v3.Password(auth_url=ks + '/v3', username='admin', password=os.environ['ADMIN_PASSWORD'],
                   project_name='admin', user_domain_id='default', project_domain_id='default')
s = ks_session.Session(auth=auth)
def call(method, path, **kw):
    for attempt in range(5):
        r = s.request(ks + '/v3' + path, method, raise_exc=False, **kw)
        if r.status_code < 500: break
        print('retrying after', r.status_code, method, path, r.text[:200]); time.sleep(1)
    if r.status_code >= 400:
        raise SystemExit('%s %s -> %s %s' % (method, path, r.status_code, r.text[:500]))
    return r.json() if r.content else None
def find(coll, **q):
    items = call('GET', '/%s' % coll, params=q)[coll]
    return items[0] if items else None
def ensure_project(name):
    p = find('projects', name=name, domain_id='default')
    project = {'name': name, 'domain_id': 'default', 'description': name}
    return p or call('POST', '/projects', json={'project': project})['project']
def password_ok(name, pw):
    user = {'name': name, 'domain': {'id': 'default'}, 'password': pw}
    body = {'auth': {'identity': {'methods': ['password'], 'password': {'user': user}}}}
    r = s.request(ks + '/v3/auth/tokens', 'POST', json=body, authenticated=False, raise_exc=False)
    return r.status_code == 201
def ensure_user(name, pw, project):
    u = find('users', name=name, domain_id='default')
    if u:
        # only touch the password when it is wrong: a password change revokes the user's tokens
        if not u.get('enabled', True) or not password_ok(name, pw):
            call('PATCH', '/users/' + u['id'], json={'user': {'password': pw, 'enabled': True}})
        return u
    user = {'name': name, 'password': pw, 'domain_id': 'default', 'default_project_id': project['id']}
    return call('POST', '/users', json={'user': user})['user']
def grant(role_name, user, project):
    role = find('roles', name=role_name)
    call('PUT', '/projects/%s/users/%s/roles/%s' % (project['id'], user['id'], role['id']))
service_p = ensure_project('service')
glance_u = ensure_user('glance', os.environ['GLANCE_PASSWORD'], service_p)
grant('admin', glance_u, service_p)
image_service = {'type': 'image', 'name': 'glance', 'description': 'OpenStack Image', 'enabled': True}
svc = find('services', type='image') or call('POST', '/services', json={'service': image_service})['service']
eps = call('GET', '/endpoints', params={'service_id': svc['id']})['endpoints']
for iface in ('public', 'internal', 'admin'):
    mine = [e for e in eps if e['interface'] == iface]
    if mine and mine[0]['url'] == gl and mine[0].get('region_id') == region:
        for extra in mine[1:]: call('DELETE', '/endpoints/' + extra['id'])
        continue
    for e in mine: call('DELETE', '/endpoints/' + e['id'])
    endpoint = {'service_id': svc['id'], 'interface': iface, 'url': gl, 'region_id': region, 'enabled': True}
    call('POST', '/endpoints', json={'endpoint': endpoint})
demo_p = ensure_project('demo')
demo_u = ensure_user('demo', os.environ['DEMO_PASSWORD'], demo_p)
grant('member', demo_u, demo_p)
print('ok')
EOF

# ---------------------------------------------------------------- glance readiness
admin_token() {
  local user="{\"name\":\"admin\",\"domain\":{\"id\":\"default\"},\"password\":\"$ADMIN_PASSWORD\"}"
  local scope="{\"project\":{\"name\":\"admin\",\"domain\":{\"id\":\"default\"}}}"
  curl -si -m 30 -X POST -H 'Content-Type: application/json' "$KS_URL/v3/auth/tokens" -d \
    "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":$user}},\"scope\":$scope}}" \
    | awk -F': ' 'tolower($1)=="x-subject-token"{print $2}' | tr -d '\r'
}
if [ $GL_RUNNING = 0 ]; then
  gl_ready() {
    pid_alive "$RUN/glance.pid" "$GL_MARK" || die "glance-api exited, see $LOG/glance-api.log"
    [ "$(http_code "$GL_URL/healthcheck")" = 200 ]
  }
  wait_for glance "$TIMEOUT" gl_ready || {
    tail -20 "$LOG/glance-api.log" >&2
    kill_group "$RUN/glance.pid" "$GL_MARK"
    die "glance not ready in ${TIMEOUT}s"
  }
  log "glance ready (pid $(cat "$RUN/glance.pid"))"
fi
TOKEN=$(admin_token); [ -n "$TOKEN" ] || die "cannot get an admin token from keystone"
code=$(http_code -H "X-Auth-Token: $TOKEN" "$GL_URL/v2/images?limit=1")
[ "$code" = 200 ] || die "authenticated GET $GL_URL/v2/images returned $code (see $LOG/glance-api.log)"
log "glance accepts keystone tokens (GET /v2/images -> 200)"

# ---------------------------------------------------------------- client environment
write_rc() {  # file user password project
  cat > "$1" <<EOF
export OS_AUTH_URL=$KS_URL/v3
export OS_IDENTITY_API_VERSION=3
export OS_AUTH_TYPE=password
export OS_USERNAME=$2
export OS_PASSWORD='$3'
export OS_PROJECT_NAME=$4
export OS_USER_DOMAIN_NAME=Default
export OS_PROJECT_DOMAIN_NAME=Default
export OS_REGION_NAME=$REGION
export OS_INTERFACE=public
export OS_IMAGE_API_VERSION=2
EOF
}
write_rc "$BASE/admin-openrc.sh" admin "$ADMIN_PASSWORD" admin
write_rc "$BASE/demo-openrc.sh" demo "$DEMO_PASSWORD" demo
cat > "$BASE/clouds.yaml" <<EOF
clouds:
  peer-admin:
    auth:
      auth_url: "$KS_URL/v3"
      username: admin
      password: "$ADMIN_PASSWORD"
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: $REGION
    interface: public
    identity_api_version: 3
  peer-demo:
    auth:
      auth_url: "$KS_URL/v3"
      username: demo
      password: "$DEMO_PASSWORD"
      project_name: demo
      user_domain_name: Default
      project_domain_name: Default
    region_name: $REGION
    interface: public
    identity_api_version: 3
EOF
cat > "$BASE/env.json" <<EOF
{"auth_url": "$KS_URL/v3", "image_url": "$GL_URL", "region": "$REGION", "db": "$DB",
 "admin": {"username": "admin", "password": "$ADMIN_PASSWORD", "project_name": "admin",
  "user_domain_name": "Default", "project_domain_name": "Default"},
 "demo": {"username": "demo", "password": "$DEMO_PASSWORD", "project_name": "demo",
  "user_domain_name": "Default", "project_domain_name": "Default"},
 "pids": {"keystone": $(cat "$RUN/keystone.pid"), "glance": $(cat "$RUN/glance.pid")$(
   [ "$DB" = postgresql ] && echo ", \"postgres\": $(cat "$RUN/postgres.pid")")}}
EOF
chmod 600 "$BASE/admin-openrc.sh" "$BASE/demo-openrc.sh" "$BASE/clouds.yaml" "$BASE/env.json"
log "ready: keystone $KS_URL/v3, glance $GL_URL, db=$DB (stop: stop-openstack.sh $BASE)"

cat <<EOF
# --- admin (also: source $BASE/admin-openrc.sh) ---
$(cat "$BASE/admin-openrc.sh")
# --- demo: project 'demo', role 'member' (also: source $BASE/demo-openrc.sh) ---
export OS_DEMO_USERNAME=demo
export OS_DEMO_PASSWORD='$DEMO_PASSWORD'
export OS_DEMO_PROJECT_NAME=demo
# --- service endpoints (tests should discover image from the catalog) ---
export OS_PEER_KEYSTONE_URL=$KS_URL/v3
export OS_PEER_GLANCE_URL=$GL_URL
export OS_PEER_BASE_DIR=$BASE
EOF
