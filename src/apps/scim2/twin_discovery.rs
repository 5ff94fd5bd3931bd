//! The SCIM twin's discovery and batch endpoints (RFC 7644 §4, §3.7,
//! §3.11): `/Schemas` and `/Schemas/{id}` with the RFC 7643 §8.7
//! representations of User, Group and the EnterpriseUser extension,
//! `/ResourceTypes` and `/ResourceTypes/{id}`, `/Bulk` (as far as the
//! tenant's ServiceProviderConfig says: `maxOperations`, `maxPayloadSize`,
//! `bulkId` references, `failOnErrors`), and `/Me`, which answers 501: a
//! tenant's bearer token belongs to the provisioning client, not to a user.
//!
//! The schema text is the RFC's own JSON (`rfc7643-schemas.json`, the
//! representations of RFC 7643 §8.7.1 as shipped in django-scim2 0.23.0,
//! MIT), with each `meta.location` made absolute for the tenant.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::twin::{self, GROUP_SCHEMA, LIST_SCHEMA, USER_SCHEMA, error, scim, tenant};
use crate::sandbox::Shared;

pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

/// The resource schemas the twin serves, in `/Schemas` order.
const RESOURCE_SCHEMAS: &[&str] = &[USER_SCHEMA, GROUP_SCHEMA, ENTERPRISE_SCHEMA];

fn rfc_schemas() -> &'static Value {
    static PARSED: OnceLock<Value> = OnceLock::new();
    PARSED.get_or_init(|| {
        serde_json::from_str(include_str!("rfc7643-schemas.json"))
            .expect("the RFC 7643 schema file is JSON")
    })
}

fn root(base: &str, app: &str) -> String {
    format!("{base}/scim2/{app}/v2")
}

fn schema(base: &str, app: &str, id: &str) -> Option<Value> {
    let mut v = rfc_schemas()["schemas"].get(id)?.clone();
    v["schemas"] = json!([SCHEMA_SCHEMA]);
    v["meta"] = json!({
        "resourceType": "Schema",
        "location": format!("{}/Schemas/{id}", root(base, app)),
    });
    Some(v)
}

fn resource_types(base: &str, app: &str) -> Vec<Value> {
    let rt = |id: &str, endpoint: &str, description: &str, schema: &str, ext: Value| {
        json!({
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": id,
            "name": id,
            "endpoint": endpoint,
            "description": description,
            "schema": schema,
            "schemaExtensions": ext,
            "meta": {
                "resourceType": "ResourceType",
                "location": format!("{}/ResourceTypes/{id}", root(base, app)),
            },
        })
    };
    vec![
        rt(
            "User",
            "/Users",
            "User Account",
            USER_SCHEMA,
            json!([{"schema": ENTERPRISE_SCHEMA, "required": false}]),
        ),
        rt("Group", "/Groups", "Group", GROUP_SCHEMA, json!([])),
    ]
}

/// RFC 7644 §4: query parameters on the discovery endpoints are ignored,
/// but a `filter` is refused with 403 so that no client takes its
/// conditions as met.
fn refuse_filter(query: Option<&str>) -> Option<Response> {
    let has_filter = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .any(|(k, _)| k == "filter");
    has_filter.then(|| {
        error(
            StatusCode::FORBIDDEN,
            None,
            "filtering is not supported on discovery endpoints",
        )
    })
}

fn list_response(items: Vec<Value>) -> Response {
    scim(
        StatusCode::OK,
        json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": items.len(),
            "itemsPerPage": items.len(),
            "startIndex": 1,
            "Resources": items,
        }),
    )
}

/// Checks the tenant's token; the error answer when it is wrong.
fn authorised(s: &Shared, app: &str, headers: &HeaderMap) -> Result<twin::Quirks, Box<Response>> {
    let mut st = s.scim2.lock().expect("scim2 lock");
    tenant(&mut st, app, headers).map(|t| t.quirks.clone())
}

pub async fn list_schemas(
    AxState(s): AxState<Shared>,
    Path(app): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorised(&s, &app, &headers) {
        return *r;
    }
    if let Some(r) = refuse_filter(query.as_deref()) {
        return r;
    }
    list_response(
        RESOURCE_SCHEMAS
            .iter()
            .filter_map(|id| schema(&s.base_url, &app, id))
            .collect(),
    )
}

pub async fn get_schema(
    AxState(s): AxState<Shared>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorised(&s, &app, &headers) {
        return *r;
    }
    match RESOURCE_SCHEMAS
        .contains(&id.as_str())
        .then(|| schema(&s.base_url, &app, &id))
        .flatten()
    {
        Some(v) => scim(StatusCode::OK, v),
        None => error(
            StatusCode::NOT_FOUND,
            None,
            &format!("Schema {id} not found"),
        ),
    }
}

pub async fn list_resource_types(
    AxState(s): AxState<Shared>,
    Path(app): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorised(&s, &app, &headers) {
        return *r;
    }
    if let Some(r) = refuse_filter(query.as_deref()) {
        return r;
    }
    list_response(resource_types(&s.base_url, &app))
}

pub async fn get_resource_type(
    AxState(s): AxState<Shared>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorised(&s, &app, &headers) {
        return *r;
    }
    match resource_types(&s.base_url, &app)
        .into_iter()
        .find(|r| r["id"] == id.as_str())
    {
        Some(v) => scim(StatusCode::OK, v),
        None => error(
            StatusCode::NOT_FOUND,
            None,
            &format!("ResourceType {id} not found"),
        ),
    }
}

/// RFC 7644 §3.11: a service that does not tie its tokens to a user
/// answers `/Me` with 501.
pub async fn me(
    AxState(s): AxState<Shared>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorised(&s, &app, &headers) {
        return *r;
    }
    error(
        StatusCode::NOT_IMPLEMENTED,
        None,
        "/Me is not supported: this service's bearer tokens belong to a provisioning client, not to a user",
    )
}

/// `text` with each `bulkId:X` in it (a whole value, a path segment
/// `/Groups/bulkId:X`, or inside a value path such as
/// `members[value eq "bulkId:X"]`) replaced by the id `X` was created with;
/// the first `X` not (yet) known when there is one.
fn resolve_text(text: &str, ids: &HashMap<String, String>) -> Result<String, String> {
    const TAG: &str = "bulkId:";
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(TAG) {
        out.push_str(&rest[..i]);
        let after = &rest[i + TAG.len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.~".contains(c)))
            .unwrap_or(after.len());
        let x = &after[..end];
        out.push_str(ids.get(x).ok_or_else(|| x.to_string())?);
        rest = &after[end..];
    }
    out.push_str(rest);
    Ok(out)
}

/// [`resolve_text`] on every string in `v`.
fn resolve(v: &mut Value, ids: &HashMap<String, String>) -> Result<(), String> {
    match v {
        Value::String(s) => *s = resolve_text(s, ids)?,
        Value::Array(a) => {
            for i in a {
                resolve(i, ids)?;
            }
        }
        Value::Object(o) => {
            for (_, i) in o.iter_mut() {
                resolve(i, ids)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn op_error(status: StatusCode, scim_type: Option<&str>, detail: &str) -> Value {
    let mut body = json!({
        "schemas": [twin::ERROR_SCHEMA],
        "status": status.as_u16().to_string(),
        "detail": detail,
    });
    if let Some(t) = scim_type {
        body["scimType"] = json!(t);
    }
    body
}

/// Runs one bulk operation through the same handler a single request
/// reaches; its status, body, and `ETag`.
async fn run_one(
    s: &Shared,
    app: &str,
    method: &str,
    path: &str,
    data: Option<Value>,
    headers: &HeaderMap,
) -> (StatusCode, Option<Value>, Option<String>) {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let body = Bytes::from(data.map(|d| d.to_string()).unwrap_or_default());
    let st = AxState(s.clone());
    let resp = match (method, segs.as_slice()) {
        ("POST", [kind]) => {
            twin::create(
                st,
                Path((app.into(), (*kind).into())),
                headers.clone(),
                body,
            )
            .await
        }
        ("PUT", [kind, id]) => {
            let p = Path((app.into(), (*kind).into(), (*id).into()));
            twin::replace(st, p, headers.clone(), body).await
        }
        ("PATCH", [kind, id]) => {
            let p = Path((app.into(), (*kind).into(), (*id).into()));
            twin::patch(st, p, headers.clone(), body).await
        }
        ("DELETE", [kind, id]) => {
            let p = Path((app.into(), (*kind).into(), (*id).into()));
            twin::delete(st, p, headers.clone()).await
        }
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Some(op_error(
                    StatusCode::BAD_REQUEST,
                    Some("invalidPath"),
                    &format!("{method} {path}: not an operation on a resource endpoint"),
                )),
                None,
            );
        }
    };
    let status = resp.status();
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    (status, serde_json::from_slice(&bytes).ok(), etag)
}

/// `POST /Bulk` (RFC 7644 §3.7): operations in order, each as its own
/// request would be (with `version` as `If-Match`); `bulkId:` references
/// to resources created earlier in the job resolved, one to a resource not
/// (yet) created answered 409; processing stops once `failOnErrors` errors
/// have occurred. 413 past `maxOperations` or `maxPayloadSize`, 501 when
/// the tenant does not support bulk.
pub async fn bulk(
    AxState(s): AxState<Shared>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let quirks = match authorised(&s, &app, &headers) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    if quirks.bulk_max_operations == 0 {
        return error(StatusCode::NOT_IMPLEMENTED, None, "bulk is not supported");
    }
    if body.len() > quirks.bulk_max_payload_size {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            &format!(
                "The size of the bulk operation exceeds the maxPayloadSize ({}).",
                quirks.bulk_max_payload_size
            ),
        );
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "the body is not JSON",
        );
    };
    let schema_ok = req["schemas"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == BULK_REQUEST));
    let Some(ops) = super::filter::get_ci(&req, "Operations")
        .and_then(Value::as_array)
        .filter(|_| schema_ok)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "a BulkRequest message (schemas, Operations) is required",
        );
    };
    if ops.len() > quirks.bulk_max_operations {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            &format!(
                "The number of operations exceeds the maxOperations ({}).",
                quirks.bulk_max_operations
            ),
        );
    }
    let fail_on_errors = super::filter::get_ci(&req, "failOnErrors").and_then(Value::as_u64);
    let root = root(&s.base_url, &app);
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    let mut errors = 0u64;
    for op in ops {
        if fail_on_errors.is_some_and(|n| n > 0 && errors >= n) {
            break;
        }
        let get = |k: &str| super::filter::get_ci(op, k);
        let method = get("method")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_uppercase();
        let bulk_id = get("bulkId").and_then(Value::as_str).map(str::to_string);
        let mut entry = json!({"method": method});
        if let Some(b) = &bulk_id {
            entry["bulkId"] = json!(b);
        }
        let mut path = Value::String(
            get("path")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        );
        let mut data = get("data").cloned();
        let unresolved = resolve(&mut path, &ids)
            .and_then(|()| data.as_mut().map_or(Ok(()), |d| resolve(d, &ids)))
            .err();
        let (status, answer, etag) = if let Some(x) = unresolved {
            let st = StatusCode::CONFLICT;
            let detail =
                format!("bulkId {x} does not name a resource created before this operation");
            (st, Some(op_error(st, None, &detail)), None)
        } else if method == "POST" && bulk_id.is_none() {
            let st = StatusCode::BAD_REQUEST;
            let detail = "a POST operation needs a bulkId";
            (st, Some(op_error(st, Some("invalidValue"), detail)), None)
        } else {
            let mut h = headers.clone();
            h.remove("content-length");
            if let Some(v) = get("version")
                .and_then(Value::as_str)
                .and_then(|v| HeaderValue::from_str(v).ok())
            {
                h.insert("if-match", v);
            }
            let path = path.as_str().unwrap_or_default().to_string();
            run_one(&s, &app, &method, &path, data, &h).await
        };
        entry["status"] = json!(status.as_u16().to_string());
        if status.is_success() {
            let id = answer
                .as_ref()
                .and_then(|a| a["id"].as_str())
                .map(str::to_string);
            if let (Some(b), Some(id)) = (&bulk_id, &id) {
                ids.insert(b.clone(), id.clone());
            }
            let location = answer
                .as_ref()
                .and_then(|a| a["meta"]["location"].as_str())
                .map(str::to_string)
                .or_else(|| {
                    (method != "POST")
                        .then(|| format!("{root}{}", path.as_str().unwrap_or_default()))
                });
            if let Some(l) = location {
                entry["location"] = json!(l);
            }
            if let Some(e) = etag {
                entry["version"] = json!(e);
            }
        } else {
            errors += 1;
            if method != "POST" {
                entry["location"] = json!(format!("{root}{}", path.as_str().unwrap_or_default()));
            }
            entry["response"] = answer.unwrap_or_else(|| op_error(status, None, "failed"));
        }
        out.push(entry);
    }
    scim(
        StatusCode::OK,
        json!({"schemas": [BULK_RESPONSE], "Operations": out}),
    )
}
