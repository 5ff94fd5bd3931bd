"""The SCIM twin against an independent SCIM client (scim2-client and
scim2-models, pip install scim2-client httpx2): look a user up by filter,
list their groups by a members value path, deactivate them with a PatchOp,
and confirm with a fresh read.

Usage: python tests/clients/scim_twin_client.py http://127.0.0.1:8700
(against `offboard sandbox`; it deactivates Lena Kowalski in the demo's Zoom).
"""

import sys

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import Group, PatchOp, PatchOperation, SearchRequest, User

base = sys.argv[1].rstrip("/")
http = httpx2.Client(
    base_url=f"{base}/scim2/zoom/v2",
    headers={"Authorization": "Bearer scim2-zoom-sandbox-demo-token"},
)
client = SyncSCIMClient(http, resource_models=[User, Group])

found = client.query(
    User, query_parameters=SearchRequest(filter='userName eq "Lena.Kowalski@example.com"')
)
assert found.total_results == 1, found
uid = found.resources[0].id

groups = client.query(
    Group, query_parameters=SearchRequest(filter=f'members[value eq "{uid}"]')
)
assert groups.total_results >= 1, groups

patched = client.modify(
    User, uid, PatchOp[User](operations=[PatchOperation(op="replace", path="active", value=False)])
)
assert patched is None or patched.active is False, patched

again = client.query(User, uid)
assert again.active is False, again
print(f"ok: {uid} found, {groups.total_results} group(s), deactivated and re-read")
