//! The dashboard's files: from a build folder (`SERVERWARE_STATIC_DIR`, `./dist` in a checkout),
//! else from the copy compiled into a packaged controller. Every path that is not a file gets
//! `index.html`, so the browser's own routes (/events, /settings …) load the app.

use actix_web::dev::{ServiceFactory, ServiceRequest};
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse};
use std::path::PathBuf;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/dashboard.rs"));
}

/// Where the dashboard comes from.
#[derive(Clone)]
pub enum Dashboard {
    Folder(PathBuf),
    Embedded,
    None,
}

impl Dashboard {
    /// The configured folder when it holds a build, else the embedded copy when this binary has
    /// one.
    pub fn of(config: &crate::config::Config) -> Dashboard {
        let dir = config
            .static_dir
            .clone()
            .filter(|d| d.join("index.html").is_file());
        match dir {
            Some(d) => {
                tracing::info!("serving the dashboard from {}", d.display());
                Dashboard::Folder(d)
            }
            None if embedded_file("index.html").is_some() => Dashboard::Embedded,
            None => {
                tracing::warn!(
                    "no dashboard build found (SERVERWARE_STATIC_DIR); serving the API only"
                );
                Dashboard::None
            }
        }
    }

    /// Adds the dashboard to `app` as its last resort for paths nothing else took.
    pub fn serve<T>(&self, app: App<T>) -> App<T>
    where
        T: ServiceFactory<ServiceRequest, Config = (), Error = actix_web::Error, InitError = ()>,
    {
        match self {
            Dashboard::Folder(dir) => app
                .service(folder(dir))
                .default_service(web::to(super::not_found)),
            Dashboard::Embedded => app.default_service(web::to(from_binary)),
            Dashboard::None => app.default_service(web::to(super::not_found)),
        }
    }
}

fn folder(dir: &std::path::Path) -> actix_files::Files {
    let index = dir.join("index.html");
    actix_files::Files::new("/", dir)
        .index_file("index.html")
        .default_handler(actix_web::dev::fn_service(move |req: ServiceRequest| {
            let index = index.clone();
            async move {
                let (req, _) = req.into_parts();
                let file = actix_files::NamedFile::open_async(index).await?;
                let res = file.into_response(&req);
                Ok(actix_web::dev::ServiceResponse::new(req, res))
            }
        }))
}

fn embedded_file(path: &str) -> Option<&'static [u8]> {
    embedded::FILES
        .iter()
        .find(|(name, _)| *name == path)
        .map(|(_, bytes)| *bytes)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// An embedded file by its path, `index.html` for anything else. The build is the version, so
/// a file's tag is the build's plus its path and length.
async fn from_binary(req: HttpRequest) -> HttpResponse {
    if req.method() != actix_web::http::Method::GET && req.method() != actix_web::http::Method::HEAD
    {
        return super::not_found().await;
    }
    let wanted = req.path().trim_start_matches('/');
    let (path, bytes) = match embedded_file(wanted).filter(|_| !wanted.is_empty()) {
        Some(b) => (wanted, b),
        None => match embedded_file("index.html") {
            Some(b) => ("index.html", b),
            None => return super::not_found().await,
        },
    };
    let tag = format!(
        "\"{}-{}-{}\"",
        serverware_shared::BUILD,
        path.len(),
        bytes.len()
    );
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, tag))
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    if fresh {
        return res.finish();
    }
    res.content_type(content_type(path)).body(bytes)
}
