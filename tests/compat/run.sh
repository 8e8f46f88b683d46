#!/usr/bin/env bash
# Vault-API compatibility suite runner.
#   tests/compat/run.sh openbao [pytest args...]   # reference run against OpenBao
#   COFFER_BIN=target/release/coffer tests/compat/run.sh coffer [pytest args...]
#   COMPAT_TLS=1 COFFER_BIN=... tests/compat/run.sh coffer    # the same suite over HTTPS
# Env: COMPAT_VENV (default <repo>/target/compat-venv), BAO_BIN (optional bao binary override),
#      COMPAT_TLS=1 (coffer only): the dev server runs with --dev-tls, the non-dev server with a
#      CA and certificate made here with openssl; hvac and requests trust both CAs through
#      VAULT_CACERT / REQUESTS_CA_BUNDLE.
set -euo pipefail

usage() { echo "usage: $0 openbao|coffer [pytest args...]" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
TARGET=$1; shift
case "$TARGET" in openbao|coffer) ;; *) usage ;; esac
TLS=${COMPAT_TLS:-0}
if [[ $TLS == 1 && $TARGET != coffer ]]; then echo "COMPAT_TLS=1 is for the coffer target" >&2; exit 2; fi
SCHEME=http
[[ $TLS == 1 ]] && SCHEME=https

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VENV=${COMPAT_VENV:-$REPO/target/compat-venv}
PY=${PYTHON:-python3}

# ---------------------------------------------------------------- venv
reqs=("$HERE/requirements.txt")
[[ $TARGET == openbao && -z ${BAO_BIN:-} ]] && reqs+=("$HERE/requirements-openbao.txt")
if [[ ! -x $VENV/bin/python ]]; then
  echo "== creating venv $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.compat-$TARGET-$(cat "${reqs[@]}" | sha256sum | cut -c1-16)"
if [[ ! -e $stamp ]]; then
  echo "== installing ${reqs[*]##*/}"
  req_args=()
  for r in "${reqs[@]}"; do req_args+=(-r "$r"); done
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${req_args[@]}"
  touch "$stamp"
fi

# ---------------------------------------------------------------- binaries
if [[ $TARGET == openbao ]]; then
  BAO=${BAO_BIN:-$("$REPO/scripts/bao-bin" "$VENV/bin/python")}
  "$BAO" version
else
  : "${COFFER_BIN:?set COFFER_BIN to the coffer binary}"
  [[ -x $COFFER_BIN ]] || { echo "COFFER_BIN=$COFFER_BIN is not executable" >&2; exit 2; }
fi

# ---------------------------------------------------------------- ports, work dir
WORK=$(mktemp -d "${TMPDIR:-/tmp}/coffer-compat.XXXXXX")
# Four free loopback ports, each with port+1 free too (Vault-style servers put a cluster
# listener on api port + 1 unless told otherwise).
read -r DEV_PORT NONDEV_PORT NONDEV_CLUSTER_PORT _SPARE < <("$VENV/bin/python" - <<'EOF'
import socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
out = []
while len(out) < 4:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    if p < 65000 and all(abs(p - q) > 1 for q in out) and free(p) and free(p + 1):
        out.append(p)
print(*out)
EOF
)
DEV_ADDR="$SCHEME://127.0.0.1:$DEV_PORT"
NONDEV_ADDR="$SCHEME://127.0.0.1:$NONDEV_PORT"
DEV_LOG=$WORK/dev-server.log
NONDEV_LOG=$WORK/nondev-server.log
NONDEV_PIDFILE=$WORK/nondev-server.pid
mkdir -p "$WORK/nondev-data"

DEV_PID=
cleanup() {
  local rc=$?
  if [[ -n $DEV_PID ]] && kill -0 "$DEV_PID" 2>/dev/null; then
    kill "$DEV_PID" 2>/dev/null || true
    wait "$DEV_PID" 2>/dev/null || true
  fi
  # the tests start the non-dev server themselves; kill it if pytest died before teardown
  if [[ -s $NONDEV_PIDFILE ]]; then
    local p; p=$(cat "$NONDEV_PIDFILE")
    kill "$p" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 ]]; then
    for f in "$DEV_LOG" "$NONDEV_LOG"; do
      [[ -s $f ]] && { echo "===== tail of $f"; tail -n 40 "$f"; }
    done
    echo "(logs kept in $WORK)"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- start the dev server
if [[ $TARGET == openbao ]]; then
  "$BAO" server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$DEV_PORT" >"$DEV_LOG" 2>&1 &
  DEV_PID=$!
  cat >"$WORK/nondev.hcl" <<EOF
# OpenBao 2.x has no "file" storage backend any more: raft is the persistent one.
storage "raft" {
  path    = "$WORK/nondev-data"
  node_id = "compat-node"
  # default raft timeouts (x5) make the single node wait ~10s to elect itself at init
  performance_multiplier = 1
}
listener "tcp" {
  address         = "127.0.0.1:$NONDEV_PORT"
  cluster_address = "127.0.0.1:$NONDEV_CLUSTER_PORT"
  tls_disable     = true
}
api_addr     = "$NONDEV_ADDR"
cluster_addr = "http://127.0.0.1:$NONDEV_CLUSTER_PORT"
EOF
  SERVER_CMD="$(printf '%q ' "$BAO" server -config "$WORK/nondev.hcl")"
else
  DEV_TLS_ARGS=()
  LISTENER_TLS="tls_disable = true"
  if [[ $TLS == 1 ]]; then
    command -v openssl >/dev/null || { echo "COMPAT_TLS=1 needs openssl" >&2; exit 2; }
    T=$WORK/tls
    mkdir -p "$T"
    # A throwaway CA and a server certificate for 127.0.0.1, for the non-dev server.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -subj "/CN=Coffer compat CA" -keyout "$T/ca.key" -out "$T/ca.pem" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
      -keyout "$T/server.key" -out "$T/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >"$T/ext.cnf"
    openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial -days 2 \
      -extfile "$T/ext.cnf" -out "$T/server.pem" 2>/dev/null
    LISTENER_TLS="tls_cert_file = \"$T/server.pem\"
tls_key_file = \"$T/server.key\""
    # The dev server makes its own CA (--dev-tls), written to $WORK/devtls.
    DEV_TLS_ARGS=(--dev-tls --dev-tls-cert-dir "$WORK/devtls")
  fi
  "$COFFER_BIN" server --dev --dev-root-token-id=root --dev-listen-address="127.0.0.1:$DEV_PORT" \
    "${DEV_TLS_ARGS[@]}" >"$DEV_LOG" 2>&1 &
  DEV_PID=$!
  cat >"$WORK/nondev.toml" <<EOF
[storage]
path = "$WORK/nondev-data"

[listener]
address = "127.0.0.1:$NONDEV_PORT"
$LISTENER_TLS
EOF
  SERVER_CMD="$(printf '%q ' "$COFFER_BIN" server --config "$WORK/nondev.toml")"
fi

if [[ $TLS == 1 ]]; then
  # The dev server prints its root token once its CA is written and it listens.
  for _ in $(seq 300); do
    grep -q '^Root Token:' "$DEV_LOG" 2>/dev/null && break
    kill -0 "$DEV_PID" 2>/dev/null || { echo "dev server exited during start-up" >&2; exit 1; }
    sleep 0.2
  done
  cat "$WORK/tls/ca.pem" "$WORK/devtls/coffer-ca.pem" >"$WORK/ca-bundle.pem"
  export REQUESTS_CA_BUNDLE=$WORK/ca-bundle.pem
fi

echo "== waiting for $TARGET dev server on $DEV_ADDR"
"$VENV/bin/python" - "$DEV_ADDR" "$DEV_PID" <<'EOF'
import os, sys, time, requests
addr, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("dev server exited during start-up")
    try:
        if requests.get(addr + "/v1/sys/health", timeout=2).status_code == 200:
            sys.exit(0)
    except requests.RequestException:
        pass
    time.sleep(0.2)
sys.exit("dev server not healthy after 60s")
EOF

# ---------------------------------------------------------------- run the suite
export VAULT_ADDR=$DEV_ADDR VAULT_TOKEN=root COMPAT_TARGET=$TARGET
export COMPAT_UNINIT_ADDR=$NONDEV_ADDR COMPAT_SERVER_CMD=$SERVER_CMD
export COMPAT_SERVER_LOG=$NONDEV_LOG COMPAT_SERVER_PIDFILE=$NONDEV_PIDFILE
export PYTHONDONTWRITEBYTECODE=1
unset VAULT_NAMESPACE VAULT_CACERT VAULT_CLIENT_CERT VAULT_CLIENT_KEY || true
if [[ $TLS == 1 ]]; then
  export VAULT_CACERT=$WORK/ca-bundle.pem REQUESTS_CA_BUNDLE=$WORK/ca-bundle.pem
fi

set +e
(cd "$HERE" && "$VENV/bin/python" -m pytest -v -p no:cacheprovider "$@" .)
rc=$?
set -e
exit "$rc"
