"""Tenants as namespaces, driven through hvac's namespace calls."""

import time

import hvac
import pytest
from hvac.exceptions import Forbidden, InvalidPath, InvalidRequest

from compat_util import b64, unb64, unique
from conftest import DEV_ADDR, ROOT_TOKEN


def ns_client(ns, token=ROOT_TOKEN):
    return hvac.Client(url=DEV_ADDR, token=token, namespace=ns, timeout=10)


def ensure_transit(c):
    # OpenBao starts a namespace empty; Coffer builds transit/ into every tenant.
    if "transit/" not in c.sys.list_mounted_secrets_engines()["data"]:
        c.sys.enable_secrets_engine(backend_type="transit", path="transit")


@pytest.fixture
def tenant(client):
    made = []

    def make():
        name = unique("t")
        client.sys.create_namespace(name)
        ensure_transit(ns_client(name))
        made.append(name)
        return name

    yield make
    for name in made:
        try:
            client.sys.delete_namespace(name)
        except Exception:  # best-effort cleanup
            pass


def encrypt(c, key, data):
    return c.secrets.transit.encrypt_data(name=key, plaintext=b64(data))["data"]["ciphertext"]


def decrypt(c, key, ct):
    return unb64(c.secrets.transit.decrypt_data(name=key, ciphertext=ct)["data"]["plaintext"])


def test_namespaces_are_created_and_listed(client, tenant):
    a, b = tenant(), tenant()
    listed = client.sys.list_namespaces()["data"]
    for name in (a, b):
        assert f"{name}/" in listed["keys"]
        assert listed["key_info"][f"{name}/"]["path"] == f"{name}/"


def test_same_key_name_in_two_tenants_is_two_keys(tenant):
    a, b = ns_client(tenant()), ns_client(tenant())
    ct = encrypt(a, "orders", b"tenant a only")
    encrypt(b, "orders", b"b")
    assert decrypt(a, "orders", ct) == b"tenant a only"
    with pytest.raises(InvalidRequest):
        decrypt(b, "orders", ct)


def test_a_tenant_ciphertext_does_not_open_at_the_root(client, tenant):
    name = unique("k")
    ct = encrypt(ns_client(tenant()), name, b"scoped")
    encrypt(client, name, b"root key of the same name")
    with pytest.raises(InvalidRequest):
        decrypt(client, name, ct)


def test_tenant_tokens_and_policies_stay_in_their_tenant(client, tenant):
    a, b = tenant(), tenant()
    ca = ns_client(a)
    pol = unique("pol")
    ca.sys.create_or_update_acl_policy(name=pol, policy='path "transit/*" { capabilities = ["create", "update"] }')
    with pytest.raises(InvalidPath):
        client.sys.read_acl_policy(name=pol)
    token = ca.auth.token.create(policies=[pol], ttl="10m")["auth"]["client_token"]
    assert encrypt(ns_client(a, token), "k", b"ok").startswith("vault:v1:")
    with pytest.raises(Forbidden):
        encrypt(ns_client(b, token), "k", b"elsewhere")


def listed_namespaces(client):
    try:
        return client.sys.list_namespaces()["data"]["keys"]
    except InvalidPath:  # no namespace left at all
        return []


def test_deleted_namespace_is_gone(client, tenant):
    name = tenant()
    client.sys.delete_namespace(name)
    # OpenBao deletes a namespace in the background; Coffer at once.
    deadline = time.time() + 10
    while f"{name}/" in listed_namespaces(client) and time.time() < deadline:
        time.sleep(0.2)
    assert f"{name}/" not in listed_namespaces(client)
