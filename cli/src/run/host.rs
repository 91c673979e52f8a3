//! `sw host …`: hosts.

use super::{parse, size, usage, Ctx, Term};
use crate::api::{Exit, Failure, Result};
use crate::args::*;
use crate::show;
use serde_json::{json, Value};
use serverware_shared::api::HostResponse;

pub(super) async fn host<T: Term>(ctx: &mut Ctx<'_, T>, c: HostCmd) -> Result<()> {
    match c {
        HostCmd::List => list(ctx).await,
        HostCmd::Show { host } => show_host(ctx, host).await,
        HostCmd::Add(a) => add(ctx, a).await,
        HostCmd::Edit(e) => edit(ctx, e).await,
        HostCmd::Delete { host } => {
            let id = ctx.host(&host).await?;
            ctx.confirm(&format!("Remove host {host}?")).await?;
            let v = ctx
                .api
                .call("DELETE", &format!("/hosts/{id}"), None)
                .await?;
            ctx.say(&v, || format!("host {host} removed"));
            Ok(())
        }
        HostCmd::Failover { host } => {
            let id = ctx.host(&host).await?;
            let ha = vpses_on(ctx, id, true).await?;
            ctx.confirm(&format!(
                "Fail over the HA VPSes of host {host} now ({})? Each is stopped there, down until it answers on another host.",
                if ha.is_empty() { "none".to_string() } else { ha.join(", ") }
            ))
            .await?;
            let v = ctx
                .api
                .call("POST", &format!("/hosts/{id}/failover"), Some(&json!({})))
                .await?;
            if ctx.json {
                ctx.print_json(&v);
            } else {
                ctx.term
                    .out(&format!("failover of host {host}'s HA VPSes: {v}"));
            }
            Ok(())
        }
        HostCmd::Drill { host } => {
            let id = ctx.host(&host).await?;
            let v = ctx
                .api
                .call("POST", &format!("/hosts/{id}/drill"), Some(&json!({})))
                .await?;
            let r: serverware_shared::api::HostDrillResponse = parse(&v)?;
            ctx.say(&v, || {
                let mut lines: Vec<String> = r
                    .tasks
                    .iter()
                    .map(|t| {
                        format!(
                            "drill of VPS {} begun: task {} (sw task follow {})",
                            t.target_id.as_deref().unwrap_or("?"),
                            t.id,
                            t.id
                        )
                    })
                    .collect();
                lines.extend(r.refused.iter().map(|m| format!("not drilled: {m}")));
                lines.join("\n")
            });
            Ok(())
        }
    }
}

async fn list<T: Term>(ctx: &mut Ctx<'_, T>) -> Result<()> {
    let v = Value::Array(ctx.every_page("/hosts", &[]).await?);
    if ctx.json {
        ctx.print_json(&v);
        return Ok(());
    }
    let hosts: Vec<HostResponse> = parse(&v)?;
    let rows = hosts
        .iter()
        .map(|h| {
            let s = h.sample.as_ref();
            vec![
                h.id.to_string(),
                h.name.clone(),
                h.address.clone(),
                if h.maintenance {
                    format!("{} (maintenance)", h.status)
                } else {
                    h.status.clone()
                },
                s.map(|s| format!("{:.2}", s.load[0])).unwrap_or("–".into()),
                s.map(|s| {
                    let n = s.cpus.len().max(1) as f64;
                    format!("{:.0} %", s.cpus.iter().map(|c| c.busy()).sum::<f64>() / n)
                })
                .unwrap_or("–".into()),
                s.map(|s| {
                    format!(
                        "{} / {}",
                        show::bytes(s.memory.used as f64),
                        show::bytes(s.memory.total as f64)
                    )
                })
                .unwrap_or("–".into()),
                h.vps_count.to_string(),
                h.agent_version.clone().unwrap_or("–".into()),
            ]
        })
        .collect::<Vec<_>>();
    ctx.term.out(&show::table(
        &[
            "ID", "NAME", "ADDRESS", "STATUS", "LOAD", "CPU", "MEMORY", "VPSES", "AGENT",
        ],
        &rows,
    ));
    Ok(())
}

async fn show_host<T: Term>(ctx: &mut Ctx<'_, T>, host: String) -> Result<()> {
    let id = ctx.host(&host).await?;
    let v = ctx.api.get(&format!("/hosts/{id}")).await?;
    if ctx.json {
        ctx.print_json(&v);
        return Ok(());
    }
    let h: HostResponse = parse(&v)?;
    let mut rows = vec![
        ("Name", h.name.clone()),
        ("Address", h.address.clone()),
        ("Status", h.status.clone()),
        (
            "Maintenance",
            if h.maintenance { "yes" } else { "no" }.into(),
        ),
        ("Key", show::opt(h.fingerprint.clone())),
        ("Host name", show::opt(h.hostname.clone())),
        ("Kernel", show::opt(h.kernel.clone())),
        ("CPU model", show::opt(h.cpu_model.clone())),
        ("Agent", show::opt(h.agent_version.clone())),
        ("VPSes", h.vps_count.to_string()),
        (
            "Free for VPSes",
            format!(
                "{} memory, {:.1} CPUs, {} disk",
                show::bytes(h.free.memory_bytes as f64),
                h.free.cpu_millis as f64 / 1000.0,
                show::bytes(h.free.disk_bytes as f64)
            ),
        ),
        ("Sampling", format!("every {} ms", h.sample_interval_ms)),
        ("netDUPLO interval", format!("{} s", h.duplo_interval_secs)),
    ];
    if let Some(s) = &h.sample {
        let n = s.cpus.len().max(1) as f64;
        rows.push(("Uptime", show::uptime(s.uptime_secs)));
        rows.push((
            "Load",
            format!("{:.2} {:.2} {:.2}", s.load[0], s.load[1], s.load[2]),
        ));
        rows.push((
            "CPU",
            format!(
                "{:.1} % busy over {} CPUs",
                s.cpus.iter().map(|c| c.busy()).sum::<f64>() / n,
                s.cpus.len()
            ),
        ));
        rows.push((
            "Memory",
            format!(
                "{} used of {}, swap {} of {}",
                show::bytes(s.memory.used as f64),
                show::bytes(s.memory.total as f64),
                show::bytes(s.memory.swap_used as f64),
                show::bytes(s.memory.swap_total as f64)
            ),
        ));
        for f in &s.filesystems {
            rows.push((
                "Filesystem",
                format!(
                    "{} {} used of {} ({:.0} %)",
                    f.mount_point,
                    show::bytes(f.used_bytes as f64),
                    show::bytes(f.size_bytes as f64),
                    f.use_pct
                ),
            ));
        }
        for d in &s.disks {
            rows.push((
                "Disk",
                format!(
                    "{} {}/s read, {}/s written",
                    d.device,
                    show::bytes(d.read_bytes_per_sec),
                    show::bytes(d.written_bytes_per_sec)
                ),
            ));
        }
        for i in &s.interfaces {
            rows.push((
                "Interface",
                format!(
                    "{} {}/s in, {}/s out",
                    i.name,
                    show::bytes(i.rx_bytes_per_sec),
                    show::bytes(i.tx_bytes_per_sec)
                ),
            ));
        }
    }
    if !h.unknown_vpses.is_empty() {
        rows.push(("Not ours", h.unknown_vpses.join(", ")));
    }
    ctx.term.out(&show::pairs(&rows));
    Ok(())
}

async fn add<T: Term>(ctx: &mut Ctx<'_, T>, a: AddHost) -> Result<()> {
    let AddHost {
        name,
        address,
        fingerprint,
        password_stdin,
        private_key,
        description,
        duplo_interval,
    } = a;
    if private_key.is_some() && !ctx.files {
        return Err(usage(
            "a key file is read on your own machine: use sw there, or --password-stdin here",
        ));
    }
    let probe = ctx
        .api
        .call("POST", "/hosts/probe", Some(&json!({ "address": address })))
        .await?;
    let seen = probe["fingerprint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match &fingerprint {
        Some(f) if f.trim() == seen => {}
        Some(f) => {
            return Err(Failure::new(
                Exit::Conflict,
                format!(
                    "the host presents key {seen}, not {}: it was not added",
                    f.trim()
                ),
            ))
        }
        None => {
            ctx.term
                .err(&format!("The host's SSH key fingerprint is {seen}."));
            ctx.confirm("Is that the host's key?").await?;
        }
    }
    let (password, key) = match (password_stdin, private_key) {
        (_, Some(path)) => {
            let k = std::fs::read_to_string(&path)
                .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
            (None, Some(k))
        }
        (true, None) => (Some(ctx.secret("").await?), None),
        (false, None) if ctx.term.interactive() => (
            Some(ctx.secret(&format!("SSH password for {address}: ")).await?),
            None,
        ),
        (false, None) => {
            return Err(usage(
                "give the host's SSH password (--password-stdin) or a key (--private-key)",
            ))
        }
    };
    let body = json!({
        "name": name, "description": description, "address": address,
        "host_key": probe["host_key"], "password": password, "private_key": key,
        "duplo_interval_secs": duplo_interval,
    });
    let v = ctx.api.call("POST", "/hosts", Some(&body)).await?;
    ctx.say(&v, || {
        format!(
            "host {} added (id {}): {}",
            v["name"].as_str().unwrap_or(&name),
            v["id"],
            v["status"].as_str().unwrap_or("connecting")
        )
    });
    Ok(())
}

async fn edit<T: Term>(ctx: &mut Ctx<'_, T>, e: EditHost) -> Result<()> {
    let EditHost {
        host,
        name,
        description,
        interval_ms,
        max_transfers,
        duplo_interval,
        maintenance,
        capacity_memory,
        capacity_cpus,
        capacity_disk,
        vps_bridge,
        vps_prefix_len,
        vps_gateway,
    } = e;
    let id = ctx.host(&host).await?;
    if maintenance == Some(true) {
        let on = vpses_on(ctx, id, false).await?;
        ctx.confirm(&format!(
            "Put host {host} in maintenance? {}",
            if on.is_empty() {
                "No VPS is on it.".to_string()
            } else {
                format!(
                    "Its VPSes are moved to other hosts one at a time, each stopped while it moves: {}.",
                    on.join(", ")
                )
            }
        ))
        .await?;
    }
    let capacity_memory = capacity_memory
        .map(|t| size("capacity_memory_bytes", &t))
        .transpose()?;
    let capacity_disk = capacity_disk
        .map(|t| size("capacity_disk_bytes", &t))
        .transpose()?;
    let mut body = serde_json::Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            body.insert(k.into(), v);
        }
    };
    put("name", json!(name));
    put("description", json!(description));
    put("sample_interval_ms", json!(interval_ms));
    put("max_transfers", json!(max_transfers));
    put("duplo_interval_secs", json!(duplo_interval));
    put("maintenance", json!(maintenance));
    put("capacity_memory_bytes", json!(capacity_memory));
    put("capacity_cpus", json!(capacity_cpus));
    put("capacity_disk_bytes", json!(capacity_disk));
    put("vps_bridge", json!(vps_bridge));
    put("vps_prefix_len", json!(vps_prefix_len));
    put("vps_gateway", json!(vps_gateway));
    if body.is_empty() {
        return Err(usage("nothing to change: give at least one setting"));
    }
    let v = ctx
        .api
        .call("PATCH", &format!("/hosts/{id}"), Some(&Value::Object(body)))
        .await?;
    ctx.say(&v, || {
        format!("host {} changed", v["name"].as_str().unwrap_or("?"))
    });
    Ok(())
}

/// The names of the VPSes on host `id` that should run (only the HA ones if `ha`).
pub(super) async fn vpses_on<T: Term>(
    ctx: &mut Ctx<'_, T>,
    id: i64,
    ha: bool,
) -> Result<Vec<String>> {
    let all = ctx.api.get("/vpses").await?;
    Ok(all
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["host_id"] == id && v["desired_state"] == "running")
        .filter(|v| !ha || v["ha_enabled"] == true)
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect())
}
