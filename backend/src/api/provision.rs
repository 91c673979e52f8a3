//! `/api/v1/provision`: the Provisioning page's data (settings, host images, machines that
//! booted from the network), its settings, and approving or forgetting a machine.
//! The machines' own side (`/boot/…`) is in `boot_routes`: it needs no login, a join shows its
//! one-time token instead.

use crate::audit::Actor;
use crate::auth::Principal;
use crate::core::Core;
use crate::error::{Error, Result};
use crate::provision::{self, boot, join, reimage};
use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use serverware_shared::provision::{
    AddMachineRequest, ApproveMachineRequest, ProvisionImage, ProvisionJoinRequest,
    ProvisionMachine, ProvisionOverview, ProvisionSettings, ReimageRequest,
};
use serverware_shared::{ErrorBody, Role};

async fn overview(state: &Core) -> Result<ProvisionOverview> {
    let p = &state.provision;
    let settings = p.settings().await?;
    let machines = state.db.run(crate::repo::provision::all).await?;
    let served = p.served_image().await;
    let images = p
        .images()
        .await
        .into_iter()
        .map(|(id, m)| match m {
            Ok(m) => ProvisionImage {
                served: served.as_deref() == Some(id.as_str()),
                proven: provision::image::proven(&p.images_dir.join(&id)),
                id,
                version: m.version,
                built_at: m.built_at,
                build_secs: m.build_secs,
                size_bytes: m.files.iter().map(|f| f.size).sum(),
                ok: true,
                problem: None,
            },
            Err(e) => ProvisionImage {
                id,
                version: String::new(),
                built_at: 0,
                build_secs: 0.0,
                size_bytes: 0,
                ok: false,
                problem: Some(e),
                served: false,
                proven: None,
            },
        })
        .collect();
    Ok(ProvisionOverview {
        settings,
        images,
        machines: machines.iter().map(provision::response).collect(),
        boot_service: p.dnsmasq.status(),
    })
}

/// Network boot settings, host images and the machines that booted.
#[utoipa::path(tag = "provision", responses((status = 200, body = ProvisionOverview)))]
#[get("/provision")]
pub async fn get_provision(
    state: web::Data<Core>,
    principal: Principal,
) -> Result<web::Json<ProvisionOverview>> {
    principal.require(Role::Viewer)?;
    Ok(web::Json(overview(&state).await?))
}

/// Change the network boot settings (the boot service restarts with them).
#[utoipa::path(tag = "provision", request_body = ProvisionSettings, responses(
    (status = 200, body = ProvisionOverview), (status = 422, body = ErrorBody)))]
#[put("/provision/settings")]
pub async fn update_provision_settings(
    state: web::Data<Core>,
    principal: Principal,
    body: web::Json<ProvisionSettings>,
) -> Result<web::Json<ProvisionOverview>> {
    principal.require(Role::Admin)?;
    state.accepting()?;
    let s = body.into_inner().check()?;
    provision::set_settings(&state.provision, Actor::from(&principal), s).await?;
    Ok(web::Json(overview(&state).await?))
}

/// Add a machine by its MAC before it boots, approved, with the name and static address it gets
/// (optional): its first network boot gets a join token.
#[utoipa::path(tag = "provision", request_body = AddMachineRequest, responses(
    (status = 201, body = ProvisionMachine), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/provision/machines")]
pub async fn add_machine(
    state: web::Data<Core>,
    principal: Principal,
    body: web::Json<AddMachineRequest>,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    state.accepting()?;
    let m = join::add(&state.provision, Actor::from(&principal), body.into_inner()).await?;
    Ok(HttpResponse::Created().json(provision::response(&m)))
}

/// Approve a machine waiting to join, with the name and static address it gets (optional).
#[utoipa::path(tag = "provision", params(("mac" = String, Path)), request_body = ApproveMachineRequest, responses(
    (status = 200, body = ProvisionMachine), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/provision/machines/{mac}/approve")]
pub async fn approve_machine(
    state: web::Data<Core>,
    principal: Principal,
    mac: web::Path<String>,
    body: web::Json<ApproveMachineRequest>,
) -> Result<web::Json<ProvisionMachine>> {
    principal.require(Role::Operator)?;
    state.accepting()?;
    let m = join::approve(
        &state.provision,
        Actor::from(&principal),
        &mac,
        body.into_inner(),
    )
    .await?;
    Ok(web::Json(provision::response(&m)))
}

/// Re-image a provisioned host: it reboots into the image given (the newest when none is).
/// Its host must be in maintenance (or `force`: what still runs there restarts with it).
#[utoipa::path(tag = "provision", params(("mac" = String, Path)), request_body = ReimageRequest, responses(
    (status = 202, body = serverware_shared::api::TaskResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/provision/machines/{mac}/reimage")]
pub async fn reimage_machine(
    state: web::Data<Core>,
    principal: Principal,
    mac: web::Path<String>,
    body: web::Json<ReimageRequest>,
) -> Result<HttpResponse> {
    principal.require(Role::Admin)?;
    state.accepting()?;
    let task = reimage::reimage(
        &state.provision,
        Actor::from(&principal),
        &mac,
        body.into_inner(),
    )
    .await?;
    Ok(HttpResponse::Accepted().json(task))
}

/// Forget a machine that has not joined.
#[utoipa::path(tag = "provision", params(("mac" = String, Path)), responses(
    (status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[delete("/provision/machines/{mac}")]
pub async fn forget_machine(
    state: web::Data<Core>,
    principal: Principal,
    mac: web::Path<String>,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    join::forget(&state.provision, Actor::from(&principal), &mac).await?;
    Ok(HttpResponse::NoContent().finish())
}

fn ipxe(text: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(text)
}

/// The first iPXE script (every machine).
async fn boot_entry(state: web::Data<Core>) -> Result<HttpResponse> {
    let s = state.provision.settings().await?;
    if !s.enabled {
        return Err(Error::NotFound("network boot is off on this site".into()));
    }
    Ok(ipxe(boot::entry_script(&s.controller_url)))
}

/// The iPXE script of one machine.
async fn boot_machine(state: web::Data<Core>, mac: web::Path<String>) -> Result<HttpResponse> {
    state.accepting()?;
    Ok(ipxe(boot::machine_script(&state.provision, &mac).await?))
}

/// A file of a host image that checks whole.
async fn boot_file(
    req: HttpRequest,
    state: web::Data<Core>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse> {
    let (id, mac, name) = path.into_inner();
    let file = boot::image_file(&state.provision, &id, &mac, &name)
        .await
        .ok_or_else(|| Error::NotFound(format!("no served image file {id}/{name}")))?;
    let f = actix_files::NamedFile::open_async(file)
        .await
        .map_err(|e| Error::Internal(e.into()))?;
    Ok(f.into_response(&req))
}

/// A booting machine's join, with its one-time token.
async fn boot_join(
    state: web::Data<Core>,
    body: web::Json<ProvisionJoinRequest>,
) -> Result<HttpResponse> {
    state.accepting()?;
    let r = join::join(&state.provision, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(r))
}

/// The machines' side of network boot, under `/boot`.
pub fn boot_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/boot")
            .route("/ipxe", web::get().to(boot_entry))
            .route("/mac/{mac}", web::get().to(boot_machine))
            .route("/images/{id}/{mac}/{file}", web::get().to(boot_file))
            .route("/join", web::post().to(boot_join)),
    );
}
