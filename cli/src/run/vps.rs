//! `sw vps …`: VPSes, their duplication and restore points.

use super::{millis, parse, size, usage, Ctx, Term};
use crate::api::{Exit, Failure, Result};
use crate::args::*;
use crate::show;
use serde_json::{json, Value};
use serverware_shared::api::VpsResponse;

pub(super) fn vps_row(v: &VpsResponse) -> Vec<String> {
    let s = v.live.as_ref().filter(|s| s.state == "running");
    vec![
        v.id.to_string(),
        v.name.clone(),
        v.ipv4.clone(),
        v.live
            .as_ref()
            .map(|s| s.state.clone())
            .unwrap_or_else(|| v.status.clone()),
        s.map(|s| show::uptime(s.uptime_secs)).unwrap_or("–".into()),
        s.and_then(|s| s.init_pid)
            .map(|p| p.to_string())
            .unwrap_or("–".into()),
        s.map(|s| s.processes.to_string()).unwrap_or("–".into()),
        v.host_name.clone().unwrap_or("–".into()),
        s.map(|s| format!("{:.1} %", s.cpu_pct))
            .unwrap_or("–".into()),
        s.map(|s| {
            format!(
                "{} / {}",
                show::bytes(s.memory_used as f64),
                show::bytes(v.memory_limit_bytes as f64)
            )
        })
        .unwrap_or_else(|| show::bytes(v.memory_limit_bytes as f64)),
    ]
}

/// `sw vps console NAME` on this machine's terminal.
async fn console<T: Term>(ctx: &mut Ctx<'_, T>, vps: String) -> Result<()> {
    if !ctx.files {
        // The controller's SSH command line takes `vps console NAME` itself (sshd.rs), with its
        // channel as the terminal; with other words it has none to hand over.
        return Err(usage(
            "over the SSH command line, type the console as: vps console NAME (with a terminal: ssh -t)",
        ));
    }
    let id = ctx.vps(&vps).await?;
    crate::console::run(ctx.api, id, &vps).await
}

pub(super) async fn vps<T: Term>(ctx: &mut Ctx<'_, T>, c: VpsCmd) -> Result<()> {
    match c {
        VpsCmd::List { filter, host } => list(ctx, filter, host).await,
        VpsCmd::Show { vps } => show_vps(ctx, vps).await,
        VpsCmd::Console { vps } => console(ctx, vps).await,
        VpsCmd::Create(c) => {
            let template = ctx
                .resolve("/templates", "name", "template", &c.template)
                .await?;
            let host = ctx.host_opt(c.host.as_deref()).await?;
            let mut body = json!({
                "name": c.name, "description": c.description, "template_id": template,
                "host_id": host, "ipv4": c.ipv4, "hostname": c.hostname,
                "memory_limit_bytes": size("memory", &c.memory)?,
                "cpu_shares": c.cpu_shares, "start": c.start, "privileged": c.privileged,
                "ha_enabled": c.ha, "check_ports": c.check_ports,
            });
            if let Some(cpus) = c.cpus {
                body["cpu_limit_millis"] = json!(millis("cpus", cpus)?);
            }
            if let Some(p) = c.ha_priority {
                body["ha_priority"] = json!(p);
            }
            let v = ctx.api.call("POST", "/vpses", Some(&body)).await?;
            ctx.task(v, c.wait.wait).await
        }
        VpsCmd::Start { vps, wait } => {
            let id = ctx.vps(&vps).await?;
            let v = ctx
                .api
                .call("POST", &format!("/vpses/{id}/start"), Some(&json!({})))
                .await?;
            ctx.task(v, wait.wait).await
        }
        VpsCmd::Stop { vps, timeout, wait } => {
            let id = ctx.vps(&vps).await?;
            let v = ctx
                .api
                .call(
                    "POST",
                    &format!("/vpses/{id}/stop"),
                    Some(&json!({ "timeout_secs": timeout })),
                )
                .await?;
            ctx.task(v, wait.wait).await
        }
        VpsCmd::Restart { vps, timeout, wait } => {
            let id = ctx.vps(&vps).await?;
            let v = ctx
                .api
                .call(
                    "POST",
                    &format!("/vpses/{id}/restart"),
                    Some(&json!({ "timeout_secs": timeout })),
                )
                .await?;
            ctx.task(v, wait.wait).await
        }
        VpsCmd::Edit(e) => edit(ctx, e).await,
        VpsCmd::Delete { vps, wait } => {
            let id = ctx.vps(&vps).await?;
            ctx.confirm(&format!("Delete VPS {vps} and its files?"))
                .await?;
            let v = ctx
                .api
                .call("DELETE", &format!("/vpses/{id}"), None)
                .await?;
            ctx.task(v, wait.wait).await
        }
        VpsCmd::Copy {
            vps,
            name,
            ipv4,
            ipv4_flag,
            host,
            start,
            wait,
        } => {
            let ipv4 = ipv4.or(ipv4_flag);
            let id = ctx.vps(&vps).await?;
            let host = ctx.host_opt(host.as_deref()).await?;
            let body = json!({ "name": name, "ipv4": ipv4, "host_id": host, "start": start });
            let v = ctx
                .api
                .call("POST", &format!("/vpses/{id}/copy"), Some(&body))
                .await?;
            ctx.task(v, wait.wait).await
        }
        VpsCmd::Move { vps, host, wait } => {
            let id = ctx.vps(&vps).await?;
            let h = ctx.host(&host).await?;
            let v = ctx
                .api
                .call(
                    "POST",
                    &format!("/vpses/{id}/move"),
                    Some(&json!({ "host_id": h })),
                )
                .await?;
            ctx.task(v, wait.wait).await
        }
        VpsCmd::Failover { vps } => {
            let id = ctx.vps(&vps).await?;
            ctx.confirm(&format!(
                "Fail over VPS {vps}? It is stopped where it runs, down until it answers on another host."
            ))
            .await?;
            let v = ctx
                .api
                .call("POST", &format!("/vpses/{id}/failover"), Some(&json!({})))
                .await?;
            ctx.say(&v, || format!("failover of VPS {vps}: {v}"));
            Ok(())
        }
        VpsCmd::Duplo { vps, now, enable } => duplo(ctx, vps, now, enable).await,
        VpsCmd::Points { vps } => points(ctx, vps).await,
        VpsCmd::Drill { vps, wait } => drill(ctx, vps, wait.wait).await,
        VpsCmd::Drills { vps } => drills(ctx, vps).await,
        VpsCmd::Restore {
            vps,
            cycle,
            host,
            clone_name,
            ipv4,
            wait,
        } => restore(ctx, vps, cycle, host, clone_name, ipv4, wait).await,
    }
}

async fn points<T: Term>(ctx: &mut Ctx<'_, T>, vps: String) -> Result<()> {
    let id = ctx.vps(&vps).await?;
    ctx.listing(
        &format!("/vpses/{id}/points"),
        &["CYCLE", "TAKEN", "FILES", "BYTES", "FULL"],
        |p: &serverware_shared::api::RestorePoint| {
            Some(vec![
                p.cycle.to_string(),
                show::time(&p.taken_at),
                p.files.to_string(),
                show::bytes(p.bytes as f64),
                if p.full { "yes" } else { "" }.into(),
            ])
        },
    )
    .await
}

/// `sw vps drill NAME`: a failover drill begun (followed with --wait).
async fn drill<T: Term>(ctx: &mut Ctx<'_, T>, vps: String, wait: bool) -> Result<()> {
    let id = ctx.vps(&vps).await?;
    let v = ctx
        .api
        .call("POST", &format!("/vpses/{id}/drill"), Some(&json!({})))
        .await?;
    ctx.task(v, wait).await
}

async fn drills<T: Term>(ctx: &mut Ctx<'_, T>, vps: String) -> Result<()> {
    let id = ctx.vps(&vps).await?;
    ctx.listing(
        &format!("/vpses/{id}/drills"),
        &[
            "ID", "STARTED", "HOST", "POINT", "RESULT", "RTO", "RPO", "BY",
        ],
        |d: &serverware_shared::api::DrillResponse| Some(drill_row(d)),
    )
    .await
}

/// A drill as `sw vps drills` lists it.
fn drill_row(d: &serverware_shared::api::DrillResponse) -> Vec<String> {
    let secs = |ms: Option<i64>| {
        ms.map(|m| format!("{:.1} s", m as f64 / 1000.0))
            .unwrap_or("–".into())
    };
    let result = match (d.state.as_str(), &d.message) {
        ("failed", Some(m)) => format!("failed: {m}"),
        (s, _) if !d.cleaned && s != "running" => format!("{s} (its copy is still on its host)"),
        (s, _) => s.to_string(),
    };
    vec![
        d.id.to_string(),
        show::time(&d.started_at),
        d.host_name.clone(),
        d.cycle.to_string(),
        result,
        secs(d.rto_ms),
        secs(d.rpo_ms),
        d.started_by.clone(),
    ]
}

async fn list<T: Term>(
    ctx: &mut Ctx<'_, T>,
    filter: Option<String>,
    host: Option<String>,
) -> Result<()> {
    let host = ctx.host_opt(host.as_deref()).await?;
    let host = host.map(|h| h.to_string());
    let mut filters = Vec::new();
    if let Some(f) = &filter {
        filters.push(("q", f.as_str()));
    }
    if let Some(h) = &host {
        filters.push(("host_id", h.as_str()));
    }
    let all = Value::Array(ctx.every_page("/vpses", &filters).await?);
    if ctx.json {
        ctx.print_json(&all);
        return Ok(());
    }
    let vpses: Vec<VpsResponse> = parse(&all)?;
    let rows: Vec<Vec<String>> = vpses.iter().map(vps_row).collect();
    ctx.term.out(&show::table(
        &[
            "ID",
            "NAME",
            "IP",
            "STATUS",
            "UPTIME",
            "CONTEXT",
            "PROCESSES",
            "HOST",
            "CPU",
            "MEMORY",
        ],
        &rows,
    ));
    Ok(())
}

async fn show_vps<T: Term>(ctx: &mut Ctx<'_, T>, vps: String) -> Result<()> {
    let id = ctx.vps(&vps).await?;
    let v = ctx.api.get(&format!("/vpses/{id}")).await?;
    if ctx.json {
        ctx.print_json(&v);
        return Ok(());
    }
    let x: VpsResponse = parse(&v)?;
    let r = vps_row(&x);
    let mut rows = vec![
        ("Name", x.name.clone()),
        ("Description", x.description.clone()),
        ("Address", x.ipv4.clone()),
        ("Host name", x.hostname.clone()),
        ("Status", r[3].clone()),
        ("Host", r[7].clone()),
        ("Uptime", r[4].clone()),
        ("Context (init PID)", r[5].clone()),
        ("Processes", r[6].clone()),
        ("CPU", r[8].clone()),
        ("Memory", r[9].clone()),
        (
            "CPU settings",
            format!(
                "shares {}, limit {}",
                show::opt(x.cpu_shares),
                x.cpu_limit_millis
                    .map(|m| format!("{:.2} CPUs", f64::from(m) / 1000.0))
                    .unwrap_or("none".into())
            ),
        ),
        ("Autostart", if x.autostart { "yes" } else { "no" }.into()),
        (
            "Isolation",
            if x.privileged {
                "privileged: root in it is root on its host".into()
            } else {
                "unprivileged".to_string()
            },
        ),
        (
            "High availability",
            if x.ha_enabled {
                format!(
                    "on, priority {}; checks: ICMP{}",
                    x.ha_priority,
                    x.check_ports
                        .iter()
                        .map(|p| format!(", TCP {p}"))
                        .collect::<String>()
                )
            } else {
                "off".into()
            },
        ),
    ];
    if let Some(s) = &x.services {
        rows.push((
            "Services",
            if s.up {
                format!("answering since {}", show::time(&s.since))
            } else {
                format!(
                    "not answering since {}: {}",
                    show::time(&s.since),
                    s.detail.clone().unwrap_or_default()
                )
            },
        ));
    }
    if let Some(s) = &x.standby {
        rows.push((
            "Standby copy",
            format!(
                "on host {}, {}",
                s.host_id,
                s.cycle
                    .map(|c| format!("at restore point {c}"))
                    .unwrap_or("being made".into())
            ),
        ));
    }
    if let Some(t) = x.busy_task {
        rows.push(("Busy with", format!("task {t}")));
    }
    ctx.term.out(&show::pairs(&rows));
    Ok(())
}

async fn edit<T: Term>(ctx: &mut Ctx<'_, T>, e: EditVps) -> Result<()> {
    let id = ctx.vps(&e.vps).await?;
    let mut body = serde_json::Map::new();
    if let Some(x) = e.description {
        body.insert("description".into(), json!(x));
    }
    if let Some(x) = e.ipv4 {
        body.insert("ipv4".into(), json!(x));
    }
    if let Some(x) = e.hostname {
        body.insert("hostname".into(), json!(x));
    }
    if let Some(x) = e.memory {
        body.insert("memory_limit_bytes".into(), json!(size("memory", &x)?));
    }
    if let Some(x) = e.cpu_shares {
        body.insert("cpu_shares".into(), json!(x));
    }
    if let Some(x) = e.cpus {
        body.insert("cpu_limit_millis".into(), json!(millis("cpus", x)?));
    }
    if let Some(x) = e.autostart {
        body.insert("autostart".into(), json!(x));
    }
    if let Some(x) = e.ha {
        body.insert("ha_enabled".into(), json!(x));
    }
    if let Some(x) = e.ha_priority {
        body.insert("ha_priority".into(), json!(x));
    }
    if let Some(x) = e.check_ports {
        let ports = serverware_shared::validate::check_ports_text("check_ports", &x)
            .map_err(|e| Failure::new(Exit::Invalid, e.to_string()))?;
        body.insert("check_ports".into(), json!(ports));
    }
    if body.is_empty() {
        return Err(usage("nothing to change: give at least one setting"));
    }
    let v = ctx
        .api
        .call("PATCH", &format!("/vpses/{id}"), Some(&Value::Object(body)))
        .await?;
    ctx.say(&v, || {
        format!(
            "VPS {} changed{}",
            v["vps"]["name"].as_str().unwrap_or("?"),
            if v["restart_required"] == true {
                " (takes effect at its next start)"
            } else {
                ""
            }
        )
    });
    Ok(())
}

async fn duplo<T: Term>(
    ctx: &mut Ctx<'_, T>,
    vps: String,
    now: bool,
    enable: Option<bool>,
) -> Result<()> {
    let id = ctx.vps(&vps).await?;
    if let Some(on) = enable {
        ctx.api
            .call(
                "PATCH",
                &format!("/vpses/{id}/duplo"),
                Some(&json!({ "enabled": on })),
            )
            .await?;
    }
    if now {
        ctx.api
            .call("POST", &format!("/vpses/{id}/duplo/now"), Some(&json!({})))
            .await?;
    }
    let v = ctx.api.get(&format!("/vpses/{id}/duplo")).await?;
    if ctx.json {
        ctx.print_json(&v);
    } else {
        let mut rows = vec![
            (
                "Duplication",
                if v["enabled"] == true { "on" } else { "off" }.to_string(),
            ),
            ("Last cycle", v["last_cycle"].to_string()),
            ("Restore points", v["points"].to_string()),
        ];
        if let Some(e) = v["last_error"].as_str() {
            rows.push(("Last error", e.to_string()));
        }
        if now {
            rows.push(("", "a cycle was asked for now".into()));
        }
        ctx.term.out(&show::pairs(&rows));
    }
    Ok(())
}

async fn restore<T: Term>(
    ctx: &mut Ctx<'_, T>,
    vps: String,
    cycle: u64,
    host: Option<String>,
    clone_name: Option<String>,
    ipv4: Option<String>,
    wait: Wait,
) -> Result<()> {
    let id = ctx.vps(&vps).await?;
    let host = ctx.host_opt(host.as_deref()).await?;
    if clone_name.is_none() {
        ctx.confirm(&format!(
            "Replace the files of VPS {vps} with restore point {cycle}?"
        ))
        .await?;
    }
    let body = json!({ "cycle": cycle, "name": clone_name, "ipv4": ipv4, "host_id": host });
    let v = ctx
        .api
        .call("POST", &format!("/vpses/{id}/restore"), Some(&body))
        .await?;
    ctx.task(v, wait.wait).await
}
