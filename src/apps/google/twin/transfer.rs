//! The Data Transfer API (`/admin/datatransfer/v1`): `applications` list
//! and get, `transfers` insert, get and list. A transfer is `inProgress`
//! when inserted and `completed` once its delay has passed
//! ([`State::transfer_delay`], default the sandbox's consistency delay);
//! [`State::hold_transfers`] keeps every transfer `inProgress` for as long
//! as it is set. Shapes, paging (`maxResults` 1..500, `pageToken` →
//! `nextPageToken`) and errors as Google's discovery document and error
//! bodies describe them.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{CUSTOMER_ID, State, bad_request, etag, guard, list_body, not_found};
use crate::sandbox::{SandboxState, Shared};

/// Path prefix of the API.
pub const T: &str = "/admin/datatransfer/v1";

/// An application whose data can be transferred.
pub struct Application {
    pub id: &'static str,
    pub name: &'static str,
    /// Parameter key and its allowed values.
    pub params: &'static [(&'static str, &'static [&'static str])],
}

/// The applications Google lists for a Workspace customer (ids as Google's
/// own: Drive and Docs, Calendar, Looker Studio).
pub const APPLICATIONS: &[Application] = &[
    Application {
        id: "55656082996",
        name: "Drive and Docs",
        params: &[("PRIVACY_LEVEL", &["PRIVATE", "SHARED"])],
    },
    Application {
        id: "435070579839",
        name: "Calendar",
        params: &[("RELEASE_RESOURCES", &["TRUE"])],
    },
    Application {
        id: "810260081642",
        name: "Looker Studio",
        params: &[],
    },
];

/// Application id and its parameters (key, values), per application.
pub type AppTransfers = Vec<(String, Vec<(String, Vec<String>)>)>;

/// One transfer request.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub id: String,
    pub old_owner: String,
    pub new_owner: String,
    /// Application id and its parameters (key, values).
    pub apps: AppTransfers,
    pub requested: chrono::DateTime<chrono::Utc>,
    pub at: Instant,
}

impl State {
    fn transfer_status(&self, s: &SandboxState, t: &Transfer) -> &'static str {
        let delay = self.transfer_delay.unwrap_or_else(|| s.consistency());
        if self.hold_transfers || t.at.elapsed() < delay {
            "inProgress"
        } else {
            "completed"
        }
    }

    fn transfer_json(&self, s: &SandboxState, t: &Transfer) -> Value {
        let status = self.transfer_status(s, t);
        json!({
            "kind": "admin#datatransfer#DataTransfer",
            "etag": etag(&[&t.id, status]),
            "id": t.id,
            "oldOwnerUserId": t.old_owner,
            "newOwnerUserId": t.new_owner,
            "overallTransferStatusCode": status,
            "requestTime": t.requested.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "applicationDataTransfers": t.apps.iter().map(|(id, params)| json!({
                "applicationId": id,
                "applicationTransferStatus": if status == "completed" { "completed" } else { "inProgress" },
                "applicationTransferParams": params.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}

fn application_json(a: &Application) -> Value {
    json!({
        "kind": "admin#datatransfer#ApplicationResource",
        "etag": etag(&[a.id]),
        "id": a.id,
        "name": a.name,
        "transferParams": a.params.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Params {
    customer_id: Option<String>,
    max_results: Option<String>,
    page_token: Option<String>,
    new_owner_user_id: Option<String>,
    old_owner_user_id: Option<String>,
    status: Option<String>,
}

impl Params {
    fn max(&self) -> Result<usize, Response> {
        match &self.max_results {
            None => Ok(100),
            Some(m) => match m.parse::<usize>() {
                Ok(n) if (1..=500).contains(&n) => Ok(n),
                _ => Err(bad_request(
                    "Invalid value for maxResults: must be between 1 and 500",
                )),
            },
        }
    }

    fn customer(&self) -> Result<(), Response> {
        match self.customer_id.as_deref() {
            None | Some("") | Some(CUSTOMER_ID) | Some("my_customer") => Ok(()),
            Some(_) => Err(bad_request("Invalid customerId")),
        }
    }
}

pub fn add(r: Router<Shared>) -> Router<Shared> {
    r.route(&format!("{T}/applications"), get(list_applications))
        .route(
            &format!("{T}/applications/{{applicationId}}"),
            get(get_application),
        )
        .route(
            &format!("{T}/transfers"),
            get(list_transfers).post(insert_transfer),
        )
        .route(
            &format!("{T}/transfers/{{dataTransferId}}"),
            get(get_transfer),
        )
}

async fn list_applications(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Response {
    let mut g = guard!(s, headers, q.page_token.is_some());
    if let Err(r) = q.customer() {
        return r;
    }
    let max = match q.max() {
        Ok(m) => m,
        Err(r) => return r,
    };
    let (range, next) = match g.page(
        "datatransfer.applications",
        APPLICATIONS.len(),
        max,
        q.page_token.as_deref(),
    ) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let items: Vec<Value> = APPLICATIONS[range].iter().map(application_json).collect();
    let mut v = json!({"kind": "admin#datatransfer#applicationsList", "etag": etag(&["apps"]), "applications": items});
    if let Some(t) = next {
        v["nextPageToken"] = json!(t);
    }
    Json(v).into_response()
}

async fn get_application(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let _g = guard!(s, headers);
    match APPLICATIONS.iter().find(|a| a.id == id) {
        Some(a) => Json(application_json(a)).into_response(),
        None => not_found("applicationId"),
    }
}

async fn get_transfer(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let g = guard!(s, headers);
    match g.transfers.iter().find(|t| t.id == id) {
        Some(t) => Json(g.transfer_json(&s, t)).into_response(),
        None => not_found("dataTransferId"),
    }
}

async fn list_transfers(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Response {
    let mut g = guard!(s, headers, q.page_token.is_some());
    if let Err(r) = q.customer() {
        return r;
    }
    let max = match q.max() {
        Ok(m) => m,
        Err(r) => return r,
    };
    let hits: Vec<Value> = g
        .transfers
        .iter()
        .filter(|t| {
            q.old_owner_user_id
                .as_ref()
                .is_none_or(|o| &t.old_owner == o)
        })
        .filter(|t| {
            q.new_owner_user_id
                .as_ref()
                .is_none_or(|n| &t.new_owner == n)
        })
        .filter(|t| {
            q.status
                .as_ref()
                .is_none_or(|st| g.transfer_status(&s, t) == st.as_str())
        })
        .map(|t| g.transfer_json(&s, t))
        .collect();
    let listing = format!(
        "datatransfer.transfers:{}:{}:{}",
        q.old_owner_user_id.as_deref().unwrap_or(""),
        q.new_owner_user_id.as_deref().unwrap_or(""),
        q.status.as_deref().unwrap_or("")
    );
    let (range, next) = match g.page(&listing, hits.len(), max, q.page_token.as_deref()) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mut v = list_body(
        "admin#datatransfer#dataTransfersList",
        etag(&[&listing, &hits.len().to_string()]),
        "dataTransfers",
        hits[range].to_vec(),
    );
    if let Some(t) = next {
        v["nextPageToken"] = json!(t);
    }
    Json(v).into_response()
}

/// Reads `applicationDataTransfers` of an insert: each application known,
/// each parameter one the application takes, with values it allows.
fn read_apps(body: &Value) -> Result<AppTransfers, String> {
    let list = body
        .get("applicationDataTransfers")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or("Missing required field: applicationDataTransfers")?;
    let mut out = Vec::new();
    for item in list {
        let id = item
            .get("applicationId")
            .and_then(|v| {
                v.as_str()
                    .map(str::to_string)
                    .or_else(|| v.as_i64().map(|n| n.to_string()))
            })
            .ok_or("Missing required field: applicationDataTransfers.applicationId")?;
        let app = APPLICATIONS
            .iter()
            .find(|a| a.id == id)
            .ok_or_else(|| format!("Invalid application id: {id}"))?;
        let mut params = Vec::new();
        for p in item
            .get("applicationTransferParams")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let key = p.get("key").and_then(Value::as_str).unwrap_or_default();
            let (_, allowed) = app
                .params
                .iter()
                .find(|(k, _)| *k == key)
                .ok_or_else(|| format!("Invalid transfer parameter for {}: {key}", app.name))?;
            let values: Vec<String> = p
                .get("value")
                .and_then(Value::as_array)
                .map(|v| {
                    v.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if let Some(bad) = values.iter().find(|v| !allowed.contains(&v.as_str())) {
                return Err(format!("Invalid value for {key}: {bad}"));
            }
            params.push((key.to_string(), values));
        }
        out.push((id, params));
    }
    Ok(out)
}

async fn insert_transfer(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let mut g = guard!(s, headers);
    let Some(Json(body)) = body else {
        return bad_request("Invalid JSON payload received.");
    };
    let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
    let (Some(old), Some(new)) = (field("oldOwnerUserId"), field("newOwnerUserId")) else {
        return bad_request("Missing required field: oldOwnerUserId and newOwnerUserId");
    };
    // Owners are named by their profile (user) id, not by address.
    let known = |id: &str| g.users.iter().any(|u| u.id == id);
    if !known(&old) {
        return bad_request(&format!("Invalid oldOwnerUserId: {old}"));
    }
    if !known(&new) {
        return bad_request(&format!("Invalid newOwnerUserId: {new}"));
    }
    if old == new {
        return bad_request("The source and destination users must be different");
    }
    let apps = match read_apps(&body) {
        Ok(a) => a,
        Err(m) => return bad_request(&m),
    };
    g.transfer_seq += 1;
    let t = Transfer {
        id: format!("AKrEtIZ{:010}", g.transfer_seq),
        old_owner: old,
        new_owner: new,
        apps,
        requested: chrono::Utc::now(),
        at: Instant::now(),
    };
    let v = g.transfer_json(&s, &t);
    g.transfers.push(t);
    (StatusCode::OK, Json(v)).into_response()
}
