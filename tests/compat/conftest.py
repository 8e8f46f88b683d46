"""Fixtures for the Vault-API compatibility suite.

Environment (set by run.sh):
  VAULT_ADDR, VAULT_TOKEN   dev server (already initialised and unsealed), root token
  COMPAT_TARGET             "openbao" or "coffer" (informational only)
  COMPAT_UNINIT_ADDR        address of the non-dev server used by the seal/init tests
  COMPAT_SERVER_CMD         command line (shlex syntax) that runs that non-dev server in the
                            foreground; the tests start, stop and restart it themselves
  COMPAT_SERVER_LOG         file the non-dev server's output is appended to
  COMPAT_SERVER_PIDFILE     where the running non-dev server's pid is kept (so that run.sh
                            can kill it if pytest dies before its teardown)
Without COMPAT_SERVER_CMD but with COMPAT_UNINIT_ADDR, an externally managed server is used
and the restart test is skipped; without either, the seal tests are skipped.
"""

import os
import shlex
import signal
import subprocess
import time

import hvac
import pytest
import requests

from compat_util import unique

DEV_ADDR = os.environ.get("VAULT_ADDR", "http://127.0.0.1:8200")
ROOT_TOKEN = os.environ.get("VAULT_TOKEN", "root")


def _new_client(token=ROOT_TOKEN, addr=DEV_ADDR):
    return hvac.Client(url=addr, token=token, timeout=10)


@pytest.fixture(scope="session")
def dev_addr():
    return DEV_ADDR


@pytest.fixture(scope="session")
def root_token():
    return ROOT_TOKEN


@pytest.fixture(scope="session", autouse=True)
def transit_mounted():
    """Dev servers do not necessarily mount transit (OpenBao's dev mode does not):
    make sure `transit/` exists, using the documented sys/mounts API."""
    c = _new_client()
    mounts = c.sys.list_mounted_secrets_engines()["data"]
    if "transit/" not in mounts:
        c.sys.enable_secrets_engine(backend_type="transit", path="transit")
    yield


@pytest.fixture
def client():
    """hvac client on the dev server with the root token."""
    return _new_client()


@pytest.fixture
def new_client():
    """Factory: hvac client on the dev server with the given token (None = no token)."""
    return _new_client


@pytest.fixture
def key_name():
    """A fresh, unique transit key name (not created)."""
    return unique("key")


@pytest.fixture
def new_key(client):
    """Factory creating an aes256-gcm96 transit key with a unique name; returns the name."""

    def make(prefix="key", **kwargs):
        name = unique(prefix)
        client.secrets.transit.create_key(name=name, **kwargs)
        return name

    return make


@pytest.fixture
def limited_token(client):
    """Factory: writes an ACL policy (HCL text) under a unique name and creates a token
    carrying it (plus `default` unless no_default_policy=True).
    Returns (hvac client using that token, token string, policy name).
    Tokens are revoked and policies deleted at teardown."""
    created = []

    def make(policy_hcl, no_default_policy=False, ttl="10m", **kw):
        pname = unique("pol")
        client.sys.create_or_update_acl_policy(name=pname, policy=policy_hcl)
        resp = client.auth.token.create(
            policies=[pname], ttl=ttl, no_default_policy=no_default_policy, **kw
        )
        token = resp["auth"]["client_token"]
        created.append((token, pname))
        return _new_client(token), token, pname

    yield make
    for token, pname in created:
        try:
            client.auth.token.revoke(token)
        except hvac.exceptions.VaultError:
            pass
        try:
            client.sys.delete_acl_policy(pname)
        except hvac.exceptions.VaultError:
            pass


class ServerProcess:
    """The non-dev (sealed/uninitialised) server, launched from COMPAT_SERVER_CMD."""

    def __init__(self, addr, cmd, log_path, pid_file=None):
        self.addr = addr.rstrip("/")
        self.cmd = cmd
        self.log_path = log_path
        self.pid_file = pid_file
        self.proc = None
        self._log = None

    @property
    def managed(self):
        return self.cmd is not None

    def log_tail(self, n=40):
        if not self.log_path or not os.path.exists(self.log_path):
            return "(no log)"
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def health_code(self):
        try:
            return requests.get(f"{self.addr}/v1/sys/health", timeout=5).status_code
        except requests.RequestException:
            return None

    def start(self, timeout=60):
        if not self.managed:
            return
        self._log = open(self.log_path or os.devnull, "ab")
        self._log.write(f"\n===== starting: {self.cmd}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            shlex.split(self.cmd),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        if self.pid_file:
            with open(self.pid_file, "w") as f:
                f.write(str(self.proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"non-dev server exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            if self.health_code() is not None:
                return
            time.sleep(0.1)
        pytest.fail(f"non-dev server did not answer within {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout=20):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # The process group was created by start() (start_new_session), so it is ours.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None
        if self.pid_file and os.path.exists(self.pid_file):
            os.unlink(self.pid_file)
        if self._log:
            self._log.close()
            self._log = None

    def restart(self):
        self.stop()
        self.start()

    def wait_active(self, timeout=30):
        """After unsealing, wait until /sys/health says active (200). A node that is still
        taking leadership answers 429 (standby) for a moment."""
        deadline = time.monotonic() + timeout
        code = None
        while time.monotonic() < deadline:
            code = self.health_code()
            if code == 200:
                return
            time.sleep(0.1)
        pytest.fail(f"server not active after unseal (last health {code}):\n{self.log_tail()}")

    def client(self, token=None):
        # generous timeout: init/unseal of a persistent server may wait for storage
        # (e.g. a raft leader election)
        return hvac.Client(url=self.addr, token=token, timeout=60)


@pytest.fixture(scope="module")
def sealed_server():
    addr = os.environ.get("COMPAT_UNINIT_ADDR")
    if not addr:
        pytest.skip("COMPAT_UNINIT_ADDR not set: no non-dev server for the seal tests")
    srv = ServerProcess(
        addr,
        os.environ.get("COMPAT_SERVER_CMD"),
        os.environ.get("COMPAT_SERVER_LOG"),
        os.environ.get("COMPAT_SERVER_PIDFILE"),
    )
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
