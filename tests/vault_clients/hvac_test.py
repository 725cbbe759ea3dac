#!/usr/bin/env python3
"""hvac (HashiCorp's Python client, from PyPI) against pgvault serve's /v1/ (tests/vault_api_cluster.sh).

Environment: VAULT_ADDR, VAULT_CACERT, ADMIN_TOKEN (acts as vault_admin), READER_TOKEN
(vault_reader), REVOKED_TOKEN. Prints one "ok - ..." or "not ok - ..." line per check; the
client library is used exactly as an application uses it.
"""
import os
import sys
import warnings

import hvac
from hvac import exceptions

warnings.simplefilter("ignore", DeprecationWarning)
ADDR = os.environ["VAULT_ADDR"]
CA = os.environ["VAULT_CACERT"]
failed = 0


def check(name, expected, actual):
    global failed
    if expected == actual:
        print(f"ok - hvac: {name}")
    else:
        failed += 1
        print(f"not ok - hvac: {name}\n    expected: {expected!r}\n    actual:   {actual!r}")


def raises(fn, exc):
    """The exception class name fn raised, or 'no error'."""
    try:
        fn()
    except exc as e:
        return type(e).__name__
    except Exception as e:  # a different error: named, so the check shows it
        return f"{type(e).__name__}: {e}"
    return "no error"


admin = hvac.Client(url=ADDR, token=os.environ["ADMIN_TOKEN"], verify=CA)
kv = admin.secrets.kv.v2

check("is_authenticated with an admin token", True, admin.is_authenticated())

obj = {"user": "app", "port": 5432, "tls": True, "ratio": 0.5, "hosts": ["a", "b"], "none": None}
r = kv.create_or_update_secret(path="hvac/app", secret=obj)
check("create_or_update_secret: version 1", 1, r["data"]["version"])
check("... with Vault's write metadata", ("", False), (r["data"]["deletion_time"], r["data"]["destroyed"]))
r = kv.read_secret_version(path="hvac/app", raise_on_deleted_version=True)
check("read_secret_version: the object unchanged (keys and JSON types)", obj, r["data"]["data"])
check("... at version 1", 1, r["data"]["metadata"]["version"])

obj2 = dict(obj, user="app2")
r = kv.create_or_update_secret(path="hvac/app", secret=obj2, cas=1)
check("create_or_update_secret with cas=1 (current): version 2", 2, r["data"]["version"])
r = kv.read_secret_version(path="hvac/app", version=1, raise_on_deleted_version=True)
check("read_secret_version(version=1): the first object", (obj, 1), (r["data"]["data"], r["data"]["metadata"]["version"]))
r = kv.read_secret(path="hvac/app", raise_on_deleted_version=True)
check("read_secret: the latest object", (obj2, 2), (r["data"]["data"], r["data"]["metadata"]["version"]))

try:
    kv.create_or_update_secret(path="hvac/app", secret={"user": "late"}, cas=1)
    check("a cas conflict raises InvalidRequest", "InvalidRequest", "no error")
except exceptions.InvalidRequest as e:
    check("a cas conflict raises InvalidRequest", "InvalidRequest", type(e).__name__)
    check("... saying check-and-set", True, "check-and-set parameter did not match the current version" in str(e))
r = kv.read_secret(path="hvac/app", raise_on_deleted_version=True)
check("... and nothing changed", (obj2, 2), (r["data"]["data"], r["data"]["metadata"]["version"]))
check(
    "cas=0 on an existing path: InvalidRequest",
    "InvalidRequest",
    raises(lambda: kv.create_or_update_secret(path="hvac/app", secret={"a": "b"}, cas=0), exceptions.InvalidRequest),
)
r = kv.create_or_update_secret(path="hvac/new", secret={"a": "b"}, cas=0)
check("cas=0 on a new path: created at version 1", 1, r["data"]["version"])

r = kv.patch(path="hvac/app", secret={"port": 6432})
check("patch: version 3", 3, r["data"]["version"])
r = kv.read_secret(path="hvac/app", raise_on_deleted_version=True)
check("... merged into the current object", dict(obj2, port=6432), r["data"]["data"])

kv.create_or_update_secret(path="hvac/plain", secret={"value": "plain-from-hvac"})
kv.create_or_update_secret(path="hvac/deep/er/x", secret={"value": "deep"})
r = kv.list_secrets(path="hvac")
check("list_secrets('hvac'): the next segments, folders with /", ["app", "deep/", "new", "plain"], r["data"]["keys"])
check("list_secrets('hvac/') is the same folder", r["data"]["keys"], kv.list_secrets(path="hvac/")["data"]["keys"])
check("list_secrets('hvac/deep'): one folder", ["er/"], kv.list_secrets(path="hvac/deep")["data"]["keys"])
root = kv.list_secrets(path="")["data"]["keys"]
check("list_secrets at the mount root has the folder hvac/ and the SQL secret", True, "hvac/" in root and "sql_made" in root)
check("list_secrets of an empty folder: InvalidPath (404)", "InvalidPath", raises(lambda: kv.list_secrets(path="nothing/here"), exceptions.InvalidPath))

m = kv.read_secret_metadata(path="hvac/app")["data"]
check("read_secret_metadata: current_version 3", 3, m["current_version"])
check("... versions 1, 2, 3", ["1", "2", "3"], sorted(m["versions"].keys()))
check("... max_versions, cas_required, delete_version_after", (10, False, "0s"), (m["max_versions"], m["cas_required"], m["delete_version_after"]))

r = kv.read_secret(path="sql_made", raise_on_deleted_version=True)
check("a secret made in SQL reads as {'value': ...}", {"value": "made-in-sql"}, r["data"]["data"])

kv.create_or_update_secret(path="hvac/gone", secret={"value": "to-delete"})
kv.delete_metadata_and_all_versions(path="hvac/gone")
check(
    "delete_metadata_and_all_versions: then read raises InvalidPath",
    "InvalidPath",
    raises(lambda: kv.read_secret(path="hvac/gone", raise_on_deleted_version=True), exceptions.InvalidPath),
)
kv.create_or_update_secret(path="hvac/gone2", secret={"value": "to-delete"})
kv.delete_latest_version_of_secret(path="hvac/gone2")
check(
    "delete_latest_version_of_secret: then read raises InvalidPath",
    "InvalidPath",
    raises(lambda: kv.read_secret(path="hvac/gone2", raise_on_deleted_version=True), exceptions.InvalidPath),
)
check("reading a path that never existed: InvalidPath", "InvalidPath", raises(lambda: kv.read_secret(path="no/such", raise_on_deleted_version=True), exceptions.InvalidPath))

reader = hvac.Client(url=ADDR, token=os.environ["READER_TOKEN"], verify=CA)
check("is_authenticated with a reader token", True, reader.is_authenticated())
r = reader.secrets.kv.v2.read_secret(path="hvac/plain", raise_on_deleted_version=True)
check("a reader token reads", {"value": "plain-from-hvac"}, r["data"]["data"])
check(
    "a reader token cannot write: Forbidden",
    "Forbidden",
    raises(lambda: reader.secrets.kv.v2.create_or_update_secret(path="hvac/reader", secret={"value": "x"}), exceptions.Forbidden),
)
check(
    "a secret granted to another role: Forbidden",
    "Forbidden",
    raises(lambda: reader.secrets.kv.v2.read_secret(path="billing_key", raise_on_deleted_version=True), exceptions.Forbidden),
)

revoked = hvac.Client(url=ADDR, token=os.environ["REVOKED_TOKEN"], verify=CA)
check("is_authenticated with a revoked token: False", False, revoked.is_authenticated())
check(
    "a revoked token reads nothing: Forbidden",
    "Forbidden",
    raises(lambda: revoked.secrets.kv.v2.read_secret(path="hvac/plain", raise_on_deleted_version=True), exceptions.Forbidden),
)
unknown = hvac.Client(url=ADDR, token="pgv_" + "A" * 43, verify=CA)
check("is_authenticated with an unknown token: False", False, unknown.is_authenticated())

sys.exit(1 if failed else 0)
