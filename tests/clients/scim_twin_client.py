"""The SCIM twin against an independent SCIM client, unmodified:
scim2-client and scim2-models (`pip install scim2-client httpx2`).

Usage: python tests/clients/scim_twin_client.py http://127.0.0.1:8700 [app]
(against `offboard sandbox`; app defaults to the demo's Zoom).

The client discovers the service (/ResourceTypes, /Schemas,
/ServiceProviderConfig) and builds its models from what the server
publishes; then it finds Lena Kowalski by a filter (in another case than
stored), pages through every user with startIndex/count, lists her groups
by a members value path, removes her from one with a PatchOp sent with the
If-Match of the group it read, sees a stale If-Match refused with 412,
deactivates her, runs a bulk job (a user and a group referencing it by
bulkId, then a patch and a delete of both), sees /Me answered 501 and a
filter on /Schemas refused, and confirms each change with a fresh read.
"""

import sys

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import (
    BulkOperation,
    BulkRequest,
    Error,
    PatchOp,
    PatchOperation,
    SearchRequest,
)


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


base = sys.argv[1].rstrip("/")
app = sys.argv[2] if len(sys.argv) > 2 else "zoom"
http = httpx2.Client(
    base_url=f"{base}/scim2/{app}/v2",
    headers={"Authorization": f"Bearer scim2-{app}-sandbox-demo-token"},
)
client = SyncSCIMClient(http, raise_scim_errors=False)

# Discovery: the models come from the server's own schemas.
client.discover()
User = client.get_resource_model("User")
Group = client.get_resource_model("Group")
check(User is not None and Group is not None, "User and Group discovered")
config = client.provider.config
check(config.patch.supported and config.etag.supported, f"config: {config}")
check(config.bulk.supported and config.bulk.max_operations > 0, f"bulk: {config.bulk}")

# Filter: `eq` on userName compares without regard to case (RFC 7643 §2.2).
found = client.query(User, query_parameters=SearchRequest(filter='userName eq "LENA.KOWALSKI@example.com"'))
check(found.total_results == 1, f"filter found {found.total_results}")
lena = found.resources[0]
uid = lena.id

# Paging: every user once, page by page, until totalResults.
seen, start = [], 1
while True:
    page = client.query(User, query_parameters=SearchRequest(start_index=start, count=7))
    check(not isinstance(page, Error), f"page at {start}: {page}")
    seen += [u.id for u in page.resources or []]
    if not page.resources or len(seen) >= page.total_results:
        break
    start += len(page.resources)
check(len(seen) == len(set(seen)) == page.total_results, f"paged {len(seen)} of {page.total_results}")
check(uid in seen, "Lena is listed")

# Her groups, by a value path on members.
groups = client.query(Group, query_parameters=SearchRequest(filter=f'members[value eq "{uid}"]'))
check(groups.total_results >= 1, f"groups: {groups}")
group = client.query(Group, groups.resources[0].id)
check(group.meta.version, "the group carries meta.version")

# PATCH with If-Match (the client sends the version of what it read).
remove = PatchOp[Group](operations=[PatchOperation(op="remove", path=f'members[value eq "{uid}"]')])
patched = client.modify(group, remove)
check(not isinstance(patched, Error), f"membership removal: {patched}")
again = client.query(Group, group.id)
check(all(m.value != uid for m in again.members or []), "membership gone on a fresh read")
check(again.meta.version != group.meta.version, "the version moved on")

# A stale If-Match is refused with 412 and changes nothing.
rename = PatchOp[Group](operations=[PatchOperation(op="replace", path="displayName", value="stale")])
stale = client.modify(group, rename)
check(isinstance(stale, Error) and int(stale.status) == 412, f"stale write: {stale}")
check(client.query(Group, group.id).display_name == again.display_name, "nothing changed")

# Deactivate: active as a JSON boolean.
off = PatchOp[User](operations=[PatchOperation(op="replace", path="active", value=False)])
result = client.modify(User, uid, off)
check(not isinstance(result, Error), f"deactivation: {result}")
check(client.query(User, uid).active is False, "inactive on a fresh read")

# Bulk: create a user and a group that references it by bulkId, then
# remove the member and delete both.
job = client.bulk(
    BulkRequest[User | Group](
        fail_on_errors=1,
        operations=[
            BulkOperation[User](method="POST", path="/Users", bulk_id="u1", data=User(user_name="bulk.tester@example.com")),
            BulkOperation[Group](
                method="POST",
                path="/Groups",
                bulk_id="g1",
                data=Group(display_name="Bulk testers", members=[{"value": "bulkId:u1"}]),
            ),
        ],
    )
)
check(not isinstance(job, Error), f"bulk: {job}")
check([int(o.status) for o in job.operations] == [201, 201], f"bulk statuses: {job.operations}")
new_user = job.operations[0].location.rsplit("/", 1)[-1]
new_group = job.operations[1].location.rsplit("/", 1)[-1]
created = client.query(Group, new_group)
check([m.value for m in created.members] == [new_user], f"bulkId resolved: {created.members}")
job = client.bulk(
    BulkRequest[User | Group](
        operations=[
            BulkOperation[Group](method="DELETE", path=f"/Groups/{new_group}"),
            BulkOperation[User](method="DELETE", path=f"/Users/{new_user}"),
        ]
    )
)
check([int(o.status) for o in job.operations] == [204, 204], f"bulk deletes: {job.operations}")
gone = client.query(User, new_user)
check(isinstance(gone, Error) and int(gone.status) == 404, f"deleted user: {gone}")

# /Me: the token is a provisioning client's, not a user's.
me = client.request("GET", "/Me")
check(me.status_code == 501, f"/Me: {me.status_code}")
# RFC 7644 §4: a filter on a discovery endpoint is refused.
refused = client.request("GET", "/Schemas?filter=id%20eq%20%22x%22")
check(refused.status_code == 403, f"filtered /Schemas: {refused.status_code}")

print(f"ok: {uid} found, {len(seen)} users paged, removed from {group.display_name}, deactivated; bulk and discovery checked")
