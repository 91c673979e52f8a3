//! Typed calls to the controller's REST API, using the request and response types of `shared/`.
//! Every page calls the API through this module only.

use gloo_net::http::{Request, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serverware_shared::api::*;
use serverware_shared::{ErrorBody, ErrorCode, ValidationError};
use std::cell::RefCell;

const BASE: &str = "/api/v1";

/// An API error as the UI shows it: a message, and the field at fault if any.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn message(&self) -> String {
        self.body.message.clone()
    }
    pub fn field(&self) -> Option<&str> {
        self.body.field.as_deref()
    }
    fn network(e: impl std::fmt::Display) -> Self {
        ApiError {
            status: 0,
            body: ErrorBody {
                error: ErrorCode::Unavailable,
                message: format!("cannot reach the controller ({e})"),
                field: None,
            },
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(v: ValidationError) -> Self {
        ApiError {
            status: 422,
            body: ErrorBody {
                error: ErrorCode::Invalid,
                message: v.message,
                field: Some(v.field),
            },
        }
    }
}

thread_local! {
    static ON_UNAUTHORIZED: RefCell<Option<Box<dyn Fn()>>> = const { RefCell::new(None) };
    static ON_STANDBY: RefCell<Option<Box<dyn Fn()>>> = const { RefCell::new(None) };
}

/// Called when a request is answered `standby` (this controller of a pair does not lead): the
/// app shows the standby page, which points to the leader.
pub fn set_on_standby(f: impl Fn() + 'static) {
    ON_STANDBY.with(|c| *c.borrow_mut() = Some(Box::new(f)));
}

/// Called when a request is answered 401 (the session ended): the app returns to the login page.
pub fn set_on_unauthorized(f: impl Fn() + 'static) {
    ON_UNAUTHORIZED.with(|c| *c.borrow_mut() = Some(Box::new(f)));
}

/// An answer that is no success, as an error (the controller's own words when it gave them).
async fn answer_error(r: Response) -> ApiError {
    let status = r.status();
    let body = r.json::<ErrorBody>().await.unwrap_or(ErrorBody {
        error: ErrorCode::Internal,
        message: format!("unexpected answer {status} from the controller"),
        field: None,
    });
    ApiError { status, body }
}

async fn error_of(r: Response) -> ApiError {
    let e = answer_error(r).await;
    let (status, body) = (e.status, e.body);
    if status == 401 {
        ON_UNAUTHORIZED.with(|c| {
            if let Some(f) = c.borrow().as_ref() {
                f()
            }
        });
    }
    if body.error == ErrorCode::Standby {
        ON_STANDBY.with(|c| {
            if let Some(f) = c.borrow().as_ref() {
                f()
            }
        });
    }
    ApiError { status, body }
}

async fn send(req: Result<Request, gloo_net::Error>) -> Result<Response, ApiError> {
    let r = req
        .map_err(ApiError::network)?
        .send()
        .await
        .map_err(ApiError::network)?;
    if r.ok() {
        Ok(r)
    } else {
        Err(error_of(r).await)
    }
}

/// A read from another site's controller (`url`, as validated by `shared::sites`), with a
/// token made there. Its answers never touch this site's session: a 401 there is that token's.
async fn remote_get<T: DeserializeOwned>(
    url: &str,
    path: &str,
    token: Option<&str>,
) -> Result<T, ApiError> {
    let mut b =
        Request::get(&format!("{url}{BASE}{path}")).credentials(web_sys::RequestCredentials::Omit);
    if let Some(t) = token {
        b = b.header("Authorization", &format!("Bearer {t}"));
    }
    let unreachable = |e: gloo_net::Error| {
        let mut err = ApiError::network(&e);
        err.body.message = format!(
            "cannot reach {url}: it does not answer, or does not let other sites' pages read it \
             ({e})"
        );
        err
    };
    let r = b.send().await.map_err(unreachable)?;
    if !r.ok() {
        return Err(answer_error(r).await);
    }
    r.json::<T>().await.map_err(unreachable)
}

/// Another site's health, from its own controller.
pub async fn remote_site(url: &str, token: &str) -> Result<SiteHealth, ApiError> {
    remote_get(url, "/site", Some(token)).await
}

/// Another site's controller's health (public): where a pair's standby says the leader is.
pub async fn remote_health(url: &str) -> Result<HealthResponse, ApiError> {
    remote_get(url, "/health", None).await
}

async fn json<T: DeserializeOwned>(r: Response) -> Result<T, ApiError> {
    r.json::<T>().await.map_err(ApiError::network)
}

fn with_body<B: Serialize>(b: RequestBuilder, body: &B) -> Result<Request, gloo_net::Error> {
    b.json(body)
}

async fn get<T: DeserializeOwned>(path: &str) -> Result<T, ApiError> {
    json(send(Request::get(&format!("{BASE}{path}")).build()).await?).await
}

async fn post<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> Result<T, ApiError> {
    json(send(with_body(Request::post(&format!("{BASE}{path}")), body)).await?).await
}

async fn patch<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> Result<T, ApiError> {
    json(send(with_body(Request::patch(&format!("{BASE}{path}")), body)).await?).await
}

async fn put<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> Result<T, ApiError> {
    json(send(with_body(Request::put(&format!("{BASE}{path}")), body)).await?).await
}

async fn post_empty<B: Serialize>(path: &str, body: &B) -> Result<(), ApiError> {
    send(with_body(Request::post(&format!("{BASE}{path}")), body))
        .await
        .map(|_| ())
}

async fn delete(path: &str) -> Result<(), ApiError> {
    send(Request::delete(&format!("{BASE}{path}")).build())
        .await
        .map(|_| ())
}

pub async fn login(req: &LoginRequest) -> Result<SessionResponse, ApiError> {
    // A wrong password must not bounce the login page through the 401 handler.
    let r = with_body(Request::post(&format!("{BASE}/auth/login")), req)
        .map_err(ApiError::network)?
        .send()
        .await
        .map_err(ApiError::network)?;
    if r.ok() {
        json(r).await
    } else {
        let status = r.status();
        let body = r.json::<ErrorBody>().await.map_err(ApiError::network)?;
        Err(ApiError { status, body })
    }
}

/// The controller's health: whether it is the standby of a pair, and who leads.
pub async fn health() -> Result<HealthResponse, ApiError> {
    get("/health").await
}

pub async fn me() -> Result<SessionResponse, ApiError> {
    get("/auth/me").await
}

pub async fn logout() -> Result<(), ApiError> {
    post_empty("/auth/logout", &serde_json::json!({})).await
}

pub async fn change_password(req: &ChangePasswordRequest) -> Result<(), ApiError> {
    post_empty("/auth/password", req).await
}

pub async fn users() -> Result<Vec<UserResponse>, ApiError> {
    get("/users").await
}

pub async fn create_user(req: &CreateUserRequest) -> Result<UserResponse, ApiError> {
    post("/users", req).await
}

pub async fn update_user(id: i64, req: &UpdateUserRequest) -> Result<UserResponse, ApiError> {
    patch(&format!("/users/{id}"), req).await
}

pub async fn delete_user(id: i64) -> Result<(), ApiError> {
    delete(&format!("/users/{id}")).await
}

pub async fn tokens(all_users: bool) -> Result<Vec<TokenResponse>, ApiError> {
    get(if all_users {
        "/tokens?user=all"
    } else {
        "/tokens"
    })
    .await
}

pub async fn create_token(req: &CreateTokenRequest) -> Result<CreatedTokenResponse, ApiError> {
    post("/tokens", req).await
}

pub async fn revoke_token(id: i64) -> Result<(), ApiError> {
    delete(&format!("/tokens/{id}")).await
}

pub async fn ssh_keys() -> Result<Vec<SshKeyResponse>, ApiError> {
    get("/ssh-keys").await
}

pub async fn add_ssh_key(req: &AddSshKeyRequest) -> Result<SshKeyResponse, ApiError> {
    post("/ssh-keys", req).await
}

pub async fn delete_ssh_key(id: i64) -> Result<(), ApiError> {
    delete(&format!("/ssh-keys/{id}")).await
}

/// A VPS's failovers (netMON), newest first.
pub async fn failovers(vps: i64) -> Result<EventListResponse, ApiError> {
    get(&format!(
        "/events?action=netmon.failover&target_type=vps&target_id={vps}&limit=10"
    ))
    .await
}

pub async fn events(
    kind: Option<EventKind>,
    action: &str,
    limit: u32,
) -> Result<EventListResponse, ApiError> {
    let mut q = format!("/events?limit={limit}");
    if let Some(k) = kind {
        q.push_str(&format!("&kind={}", k.as_str()));
    }
    if !action.trim().is_empty() {
        q.push_str(&format!(
            "&action={}",
            js_sys::encode_uri_component(action.trim())
        ));
    }
    get(&q).await
}

/// The site at a glance: health and incidents.
pub async fn site() -> Result<serverware_shared::api::SiteHealth, ApiError> {
    get("/site").await
}

/// The site's controllers (a pair: who is present, who leads, the etcd members).
pub async fn pair() -> Result<PairResponse, ApiError> {
    get("/pair").await
}

/// A planned switch-over to the partner controller.
pub async fn switchover() -> Result<SwitchoverResponse, ApiError> {
    post("/pair/switchover", &serde_json::json!({})).await
}

pub async fn system_loops() -> Result<Vec<LoopStatus>, ApiError> {
    get("/system/loops").await
}

pub async fn settings() -> Result<SettingsResponse, ApiError> {
    get("/settings").await
}

pub async fn update_settings(req: &UpdateSettingsRequest) -> Result<SettingsResponse, ApiError> {
    patch("/settings", req).await
}

pub async fn probe_host(req: &ProbeHostRequest) -> Result<ProbeHostResponse, ApiError> {
    post("/hosts/probe", req).await
}

pub async fn create_host(req: &CreateHostRequest) -> Result<HostResponse, ApiError> {
    post("/hosts", req).await
}

pub async fn hosts() -> Result<Vec<HostResponse>, ApiError> {
    get("/hosts").await
}

pub async fn delete_host(id: i64) -> Result<(), ApiError> {
    delete(&format!("/hosts/{id}")).await
}

pub async fn host(id: i64) -> Result<HostResponse, ApiError> {
    get(&format!("/hosts/{id}")).await
}

pub async fn update_host(id: i64, req: &UpdateHostRequest) -> Result<HostResponse, ApiError> {
    patch(&format!("/hosts/{id}"), req).await
}

pub async fn host_samples(id: i64) -> Result<Vec<serverware_shared::agent::HostSample>, ApiError> {
    get(&format!("/hosts/{id}/samples")).await
}

/// Rollups of the last `hours` hours.
pub async fn host_history(id: i64, hours: i64) -> Result<Vec<HostRollup>, ApiError> {
    let since = chrono::Utc::now() - chrono::TimeDelta::hours(hours);
    let since =
        js_sys::encode_uri_component(&since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    get(&format!("/hosts/{id}/history?since={since}")).await
}

pub async fn templates() -> Result<Vec<TemplateResponse>, ApiError> {
    get("/templates").await
}

pub async fn delete_template(id: i64) -> Result<(), ApiError> {
    delete(&format!("/templates/{id}")).await
}

pub async fn build_debian(req: &BuildDebianTemplateRequest) -> Result<TaskResponse, ApiError> {
    post("/templates/debian", req).await
}

/// Uploads a root filesystem archive (a browser File) as a template.
pub async fn upload_template(
    name: &str,
    os: &str,
    description: &str,
    file: web_sys::File,
) -> Result<TemplateResponse, ApiError> {
    let enc = |s: &str| String::from(js_sys::encode_uri_component(s));
    let url = format!(
        "{BASE}/templates?name={}&os={}&description={}",
        enc(name),
        enc(os),
        enc(description)
    );
    json(
        send(
            Request::post(&url)
                .header("content-type", "application/octet-stream")
                .body(wasm_bindgen::JsValue::from(file)),
        )
        .await?,
    )
    .await
}

/// A page of the VPS list as the controller filters and orders it, and how many match in all.
pub async fn vps_page(q: &VpsListQuery) -> Result<(Vec<VpsResponse>, usize), ApiError> {
    let mut parts: Vec<String> = Vec::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            parts.push(format!("{k}={}", js_sys::encode_uri_component(&v)));
        }
    };
    put("limit", q.limit.map(|l| l.to_string()));
    put("offset", q.offset.map(|o| o.to_string()));
    put("q", q.q.clone().filter(|f| !f.is_empty()));
    put("host_id", q.host_id.map(|h| h.to_string()));
    put("sort", q.sort.clone());
    put("desc", q.desc.map(|d| d.to_string()));
    let query = parts.join("&");
    let r = send(Request::get(&format!("{BASE}/vpses?{query}")).build()).await?;
    let total = r
        .headers()
        .get("x-total-count")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    Ok((json(r).await?, total))
}

pub async fn vps(id: i64) -> Result<VpsResponse, ApiError> {
    get(&format!("/vpses/{id}")).await
}

pub async fn create_vps(req: &CreateVpsRequest) -> Result<TaskResponse, ApiError> {
    post("/vpses", req).await
}

pub async fn update_vps(id: i64, req: &UpdateVpsRequest) -> Result<UpdateVpsResponse, ApiError> {
    patch(&format!("/vpses/{id}"), req).await
}

/// `start`, `stop` or `restart`.
pub async fn vps_action(id: i64, action: &str) -> Result<TaskResponse, ApiError> {
    post(&format!("/vpses/{id}/{action}"), &serde_json::json!({})).await
}

/// netMON: take an HA VPS (`vpses/{id}`) or every HA VPS of a host (`hosts/{id}`) elsewhere now.
pub async fn fail_over(what: &str) -> Result<FailoverResponse, ApiError> {
    post(&format!("/{what}/failover"), &serde_json::json!({})).await
}

pub async fn copy_vps(id: i64, req: &CopyVpsRequest) -> Result<TaskResponse, ApiError> {
    post(&format!("/vpses/{id}/copy"), req).await
}

pub async fn move_vps(id: i64, req: &MoveVpsRequest) -> Result<TaskResponse, ApiError> {
    post(&format!("/vpses/{id}/move"), req).await
}

pub async fn delete_vps(id: i64) -> Result<TaskResponse, ApiError> {
    json(send(Request::delete(&format!("{BASE}/vpses/{id}")).build()).await?).await
}

pub async fn tasks() -> Result<Vec<TaskResponse>, ApiError> {
    get("/tasks?limit=200").await
}

pub async fn task(id: i64) -> Result<TaskResponse, ApiError> {
    get(&format!("/tasks/{id}")).await
}

pub async fn duplo(id: i64) -> Result<DuploStatus, ApiError> {
    get(&format!("/vpses/{id}/duplo")).await
}

pub async fn update_duplo(id: i64, req: &UpdateDuploRequest) -> Result<DuploStatus, ApiError> {
    patch(&format!("/vpses/{id}/duplo"), req).await
}

pub async fn duplicate_now(id: i64) -> Result<DuploStatus, ApiError> {
    post(&format!("/vpses/{id}/duplo/now"), &serde_json::json!({})).await
}

pub async fn restore_points(id: i64) -> Result<Vec<RestorePoint>, ApiError> {
    get(&format!("/vpses/{id}/points?limit=200")).await
}

pub async fn restore_vps(id: i64, req: &RestoreVpsRequest) -> Result<TaskResponse, ApiError> {
    post(&format!("/vpses/{id}/restore"), req).await
}

pub async fn drills(id: i64) -> Result<Vec<DrillResponse>, ApiError> {
    get(&format!("/vpses/{id}/drills")).await
}

pub async fn drill_vps(id: i64) -> Result<TaskResponse, ApiError> {
    post(&format!("/vpses/{id}/drill"), &serde_json::json!({})).await
}

pub async fn storage() -> Result<StorageReport, ApiError> {
    get("/storage").await
}

pub async fn provision() -> Result<serverware_shared::provision::ProvisionOverview, ApiError> {
    get("/provision").await
}

pub async fn update_provision_settings(
    s: &serverware_shared::provision::ProvisionSettings,
) -> Result<serverware_shared::provision::ProvisionOverview, ApiError> {
    put("/provision/settings", s).await
}

pub async fn add_machine(
    r: &serverware_shared::provision::AddMachineRequest,
) -> Result<serverware_shared::provision::ProvisionMachine, ApiError> {
    post("/provision/machines", r).await
}

pub async fn approve_machine(
    mac: &str,
    r: &serverware_shared::provision::ApproveMachineRequest,
) -> Result<serverware_shared::provision::ProvisionMachine, ApiError> {
    post(&format!("/provision/machines/{mac}/approve"), r).await
}

pub async fn reimage_machine(
    mac: &str,
    r: &serverware_shared::provision::ReimageRequest,
) -> Result<TaskResponse, ApiError> {
    post(&format!("/provision/machines/{mac}/reimage"), r).await
}

pub async fn forget_machine(mac: &str) -> Result<(), ApiError> {
    delete(&format!("/provision/machines/{mac}")).await
}

pub async fn alerts() -> Result<serverware_shared::alerts::AlertsOverview, ApiError> {
    get("/alerts").await
}

pub async fn create_alert_target(
    r: &serverware_shared::alerts::AlertTargetRequest,
) -> Result<serverware_shared::alerts::AlertTarget, ApiError> {
    post("/alerts/targets", r).await
}

pub async fn update_alert_target(
    id: i64,
    r: &serverware_shared::alerts::AlertTargetRequest,
) -> Result<serverware_shared::alerts::AlertTarget, ApiError> {
    put(&format!("/alerts/targets/{id}"), r).await
}

pub async fn delete_alert_target(id: i64) -> Result<(), ApiError> {
    delete(&format!("/alerts/targets/{id}")).await
}

pub async fn test_alert_target(
    id: i64,
) -> Result<serverware_shared::alerts::AlertTestResult, ApiError> {
    post(
        &format!("/alerts/targets/{id}/test"),
        &serde_json::json!({}),
    )
    .await
}

pub async fn update_alert_settings(
    s: &serverware_shared::alerts::AlertSettings,
) -> Result<serverware_shared::alerts::AlertsOverview, ApiError> {
    put("/alerts/settings", s).await
}

pub async fn backups() -> Result<BackupList, ApiError> {
    get("/backups").await
}

pub async fn backup_now() -> Result<BackupInfo, ApiError> {
    post("/backups", &serde_json::json!({})).await
}
