//! Carrying out a command: requests to the API, and what the operator sees. Everything here
//! goes through [`Api`] (the controller does the work and the checking) and a [`Term`] (the
//! operator's terminal, or the SSH channel of the controller's command line).

use crate::api::{Api, Exit, Failure, Result};
use crate::args::*;
use crate::show;
use serde_json::{json, Value};
use serverware_shared::api::{
    EventListResponse, HostResponse, TaskResponse, TemplateResponse, TokenResponse, UserResponse,
    VpsResponse,
};
use std::future::Future;
use std::time::Duration;

/// Where a command writes and asks.
pub trait Term {
    /// Lines for standard output.
    fn out(&mut self, text: &str);
    /// Lines for standard error (notes, progress that is not a bar).
    fn err(&mut self, text: &str);
    /// Whether a person is at the other end (progress bars, questions).
    fn interactive(&self) -> bool;
    /// Redraws a progress line in place (only called when interactive).
    fn progress(&mut self, text: &str);
    /// A line of input (a password without echo when `secret`); None at its end.
    fn read_line(&mut self, prompt: &str, secret: bool) -> impl Future<Output = Option<String>>;
}

pub struct Ctx<'a, T: Term> {
    pub api: &'a Api,
    pub json: bool,
    pub yes: bool,
    pub term: &'a mut T,
    /// Files named on the command line may be read (false in the controller's SSH command
    /// line: they would be the controller's files, read as the controller).
    pub files: bool,
}

fn parse<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T> {
    serde_json::from_value(v.clone()).map_err(|e| {
        Failure::new(
            Exit::Failed,
            format!("the controller's answer was not understood ({e}); is it another version?"),
        )
    })
}

fn usage(m: impl Into<String>) -> Failure {
    Failure::new(Exit::Usage, m)
}

/// A size in bytes, as `shared/` reads one (512M, 2G).
fn size(field: &str, text: &str) -> Result<u64> {
    serverware_shared::validate::size_text(field, text)
        .map_err(|e| Failure::new(Exit::Invalid, e.to_string()))
}

fn millis(field: &str, cpus: f64) -> Result<u32> {
    if !(0.0..=4096.0).contains(&cpus) {
        return Err(Failure::new(
            Exit::Invalid,
            format!("{field}: {cpus} is not a number of CPUs"),
        ));
    }
    Ok((cpus * 1000.0).round() as u32)
}

impl<T: Term> Ctx<'_, T> {
    fn print_json(&mut self, v: &Value) {
        let s = serde_json::to_string_pretty(v).unwrap_or_default();
        self.term.out(&s);
    }

    /// The API's answer with --json, else `line` for people.
    fn say(&mut self, v: &Value, line: impl FnOnce() -> String) {
        if self.json {
            self.print_json(v);
        } else {
            let l = line();
            self.term.out(&l);
        }
    }

    /// A listing: the API's JSON with --json, else a table of one row per item.
    async fn listing<R: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        head: &[&str],
        row: impl Fn(&R) -> Option<Vec<String>>,
    ) -> Result<()> {
        let v = self.api.get(path).await?;
        if self.json {
            self.print_json(&v);
            return Ok(());
        }
        let all: Vec<R> = parse(&v)?;
        let rows: Vec<Vec<String>> = all.iter().filter_map(row).collect();
        self.term.out(&show::table(head, &rows));
        Ok(())
    }

    async fn host_opt(&mut self, given: Option<&str>) -> Result<Option<i64>> {
        match given {
            Some(h) => Ok(Some(self.host(h).await?)),
            None => Ok(None),
        }
    }

    /// An object of `list` (its path) by id or name.
    async fn resolve(&mut self, list: &str, key: &str, what: &str, given: &str) -> Result<i64> {
        if let Ok(id) = given.parse::<i64>() {
            return Ok(id);
        }
        let all = self.api.get(list).await?;
        all.as_array()
            .into_iter()
            .flatten()
            .find(|o| o[key] == given)
            .and_then(|o| o["id"].as_i64())
            .ok_or_else(|| Failure::new(Exit::NotFound, format!("no {what} named '{given}'")))
    }

    async fn vps(&mut self, given: &str) -> Result<i64> {
        self.resolve("/vpses", "name", "VPS", given).await
    }

    async fn host(&mut self, given: &str) -> Result<i64> {
        self.resolve("/hosts", "name", "host", given).await
    }

    async fn confirm(&mut self, question: &str) -> Result<()> {
        if self.yes {
            return Ok(());
        }
        if !self.term.interactive() {
            return Err(usage(format!("{question} Say yes with --yes.")));
        }
        match self
            .term
            .read_line(&format!("{question} [y/N] "), false)
            .await
        {
            Some(a) if matches!(a.trim(), "y" | "Y" | "yes") => Ok(()),
            _ => Err(Failure::new(
                Exit::Failed,
                "not confirmed: nothing was done",
            )),
        }
    }

    async fn secret(&mut self, prompt: &str) -> Result<String> {
        match self.term.read_line(prompt, true).await {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(usage("no password was given")),
        }
    }

    /// A task's answer: followed with `wait`, else its number is said.
    async fn task(&mut self, v: Value, wait: bool) -> Result<()> {
        let t: TaskResponse = parse(&v)?;
        if wait {
            return self.follow(t.id).await;
        }
        if self.json {
            self.print_json(&v);
        } else {
            self.term.out(&format!(
                "task {} started: {} (follow it: sw task follow {})",
                t.id, t.kind, t.id
            ));
        }
        Ok(())
    }

    /// Follows task `id` to its end: its progress and new log lines; fails if it failed.
    pub async fn follow(&mut self, id: i64) -> Result<()> {
        let mut shown = 0usize;
        let mut drawn = false;
        loop {
            let v = self.api.get(&format!("/tasks/{id}")).await?;
            let t: TaskResponse = parse(&v)?;
            let log = t.log.clone().unwrap_or_default();
            for l in log.iter().skip(shown) {
                if drawn {
                    self.term.progress("");
                    drawn = false;
                }
                if !self.json {
                    self.term.err(&format!("  {}", l.line));
                }
            }
            shown = shown.max(log.len());
            if t.status != "running" {
                if drawn {
                    self.term.progress("");
                }
                if self.json {
                    self.print_json(&v);
                }
                return match t.status.as_str() {
                    "succeeded" => {
                        if !self.json {
                            self.term.out(&format!("task {id} ({}) succeeded", t.kind));
                        }
                        Ok(())
                    }
                    _ => Err(Failure::new(
                        Exit::Failed,
                        format!(
                            "task {id} ({}) failed: {}",
                            t.kind,
                            t.error.unwrap_or_else(|| "no reason given".into())
                        ),
                    )),
                };
            }
            if self.term.interactive() && !self.json {
                let bytes = match (t.bytes_done, t.bytes_total) {
                    (d, Some(total)) if total > 0 => format!(
                        " {} of {}",
                        show::bytes(d as f64),
                        show::bytes(total as f64)
                    ),
                    (d, _) if d > 0 => format!(" {}", show::bytes(d as f64)),
                    _ => String::new(),
                };
                self.term.progress(&format!(
                    "{} {:>3}% {}{bytes}",
                    show::bar(t.progress_pct, 30),
                    t.progress_pct,
                    t.kind
                ));
                drawn = true;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }
}

/// Runs one API command (everything but login, logout and completions).
pub async fn execute<T: Term>(ctx: &mut Ctx<'_, T>, command: Command) -> Result<()> {
    match command {
        Command::Whoami => {
            let v = ctx.api.get("/auth/me").await?;
            ctx.say(&v, || {
                format!(
                    "{} ({}, by {})",
                    v["user"]["username"].as_str().unwrap_or("?"),
                    v["effective_role"].as_str().unwrap_or("?"),
                    v["auth_method"].as_str().unwrap_or("?")
                )
            });
            Ok(())
        }
        Command::Status => {
            let v = ctx.api.get("/site").await?;
            ctx.say(&v, || site_text(&v));
            Ok(())
        }
        Command::Host(c) => host(ctx, c).await,
        Command::Vps(c) => vps(ctx, c).await,
        Command::Template(c) => template(ctx, c).await,
        Command::Task(c) => task(ctx, c).await,
        Command::Event(c) => event(ctx, c).await,
        Command::User(c) => user(ctx, c).await,
        Command::Token(c) => token(ctx, c).await,
        Command::SshKey(c) => ssh_key(ctx, c).await,
        Command::Login { .. } | Command::Logout | Command::Completions { .. } => {
            Err(usage("this command is not available here"))
        }
    }
}

async fn host<T: Term>(ctx: &mut Ctx<'_, T>, c: HostCmd) -> Result<()> {
    match c {
        HostCmd::List => {
            let v = ctx.api.get("/hosts").await?;
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
                    ]
                })
                .collect::<Vec<_>>();
            ctx.term.out(&show::table(
                &[
                    "ID", "NAME", "ADDRESS", "STATUS", "LOAD", "CPU", "MEMORY", "VPSES",
                ],
                &rows,
            ));
            Ok(())
        }
        HostCmd::Show { host } => {
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
        HostCmd::Add {
            name,
            address,
            fingerprint,
            password_stdin,
            private_key,
            description,
            duplo_interval,
        } => {
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
            let (password, key) =
                match (password_stdin, private_key) {
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
                    (false, None) => return Err(usage(
                        "give the host's SSH password (--password-stdin) or a key (--private-key)",
                    )),
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
        HostCmd::Edit {
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
        } => {
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
    }
}

fn vps_row(v: &VpsResponse) -> Vec<String> {
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

async fn vps<T: Term>(ctx: &mut Ctx<'_, T>, c: VpsCmd) -> Result<()> {
    match c {
        VpsCmd::List => {
            ctx.listing(
                "/vpses",
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
                |v: &VpsResponse| Some(vps_row(v)),
            )
            .await
        }
        VpsCmd::Show { vps } => {
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
        VpsCmd::Edit(e) => {
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
        VpsCmd::Duplo { vps, now, enable } => {
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
        VpsCmd::Points { vps } => {
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
        VpsCmd::Restore {
            vps,
            cycle,
            host,
            clone_name,
            ipv4,
            wait,
        } => {
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
    }
}

async fn template<T: Term>(ctx: &mut Ctx<'_, T>, c: TemplateCmd) -> Result<()> {
    match c {
        TemplateCmd::List => {
            ctx.listing(
                "/templates",
                &["ID", "NAME", "OS", "SIZE", "STATUS", "ADDED"],
                |t: &TemplateResponse| {
                    Some(vec![
                        t.id.to_string(),
                        t.name.clone(),
                        t.os.clone(),
                        show::bytes(t.size_bytes as f64),
                        t.status.clone(),
                        show::time(&t.created_at),
                    ])
                },
            )
            .await
        }
        TemplateCmd::Upload {
            name,
            file,
            os,
            description,
        } => {
            if !ctx.files {
                return Err(usage(
                    "over SSH no file is read on the controller: upload with sw on your own machine, or on the Templates page",
                ));
            }
            let v = ctx
                .api
                .post_file(
                    "/templates",
                    &[("name", &name), ("os", &os), ("description", &description)],
                    &file,
                )
                .await?;
            ctx.say(&v, || {
                format!(
                    "template {} uploaded ({})",
                    v["name"].as_str().unwrap_or("?"),
                    show::bytes(v["size_bytes"].as_f64().unwrap_or(0.0))
                )
            });
            Ok(())
        }
        TemplateCmd::Build {
            name,
            suite,
            mirror,
            description,
            wait,
        } => {
            let body = json!({
                "name": name, "suite": suite, "mirror": mirror, "description": description
            });
            let v = ctx
                .api
                .call("POST", "/templates/debian", Some(&body))
                .await?;
            ctx.task(v, wait.wait).await
        }
        TemplateCmd::Delete { template } => {
            let id = ctx
                .resolve("/templates", "name", "template", &template)
                .await?;
            ctx.confirm(&format!("Delete template {template}?")).await?;
            let v = ctx
                .api
                .call("DELETE", &format!("/templates/{id}"), None)
                .await?;
            ctx.say(&v, || format!("template {template} deleted"));
            Ok(())
        }
    }
}

async fn task<T: Term>(ctx: &mut Ctx<'_, T>, c: TaskCmd) -> Result<()> {
    match c {
        TaskCmd::List { status, limit } => {
            let mut path = format!("/tasks?limit={limit}");
            if let Some(s) = status {
                path.push_str(&format!("&status={s}"));
            }
            ctx.listing(
                &path,
                &[
                    "ID", "KIND", "TARGET", "STATUS", "PROGRESS", "BY", "STARTED",
                ],
                |t: &TaskResponse| {
                    Some(vec![
                        t.id.to_string(),
                        t.kind.clone(),
                        format!(
                            "{} {}",
                            t.target_type.clone().unwrap_or_default(),
                            t.target_id.clone().unwrap_or_default()
                        ),
                        t.status.clone(),
                        format!("{} %", t.progress_pct),
                        t.created_by.clone(),
                        show::time(&t.created_at),
                    ])
                },
            )
            .await
        }
        TaskCmd::Show { id } => {
            let v = ctx.api.get(&format!("/tasks/{id}")).await?;
            if ctx.json {
                ctx.print_json(&v);
                return Ok(());
            }
            let t: TaskResponse = parse(&v)?;
            let mut out = show::pairs(&[
                ("Task", format!("{} ({})", t.id, t.kind)),
                ("Status", t.status.clone()),
                ("Progress", format!("{} %", t.progress_pct)),
                ("By", t.created_by.clone()),
                ("Started", show::time(&t.created_at)),
                (
                    "Finished",
                    show::opt(t.finished_at.as_ref().map(show::time)),
                ),
                ("Error", show::opt(t.error.clone())),
            ]);
            for l in t.log.unwrap_or_default() {
                out.push_str(&format!("\n  {} {}", show::time(&l.at), l.line));
            }
            ctx.term.out(&out);
            Ok(())
        }
        TaskCmd::Follow { id } => ctx.follow(id).await,
    }
}

async fn event<T: Term>(ctx: &mut Ctx<'_, T>, c: EventCmd) -> Result<()> {
    let EventCmd::List {
        action,
        actor,
        limit,
        follow,
    } = c;
    let mut query = String::new();
    if let Some(a) = &action {
        query.push_str(&format!("&action={a}"));
    }
    if let Some(a) = &actor {
        query.push_str(&format!("&actor={a}"));
    }
    let v = ctx
        .api
        .get(&format!("/events?limit={}{query}", limit.clamp(1, 500)))
        .await?;
    let page: EventListResponse = parse(&v)?;
    let line = |e: &serverware_shared::api::EventResponse| {
        format!(
            "{}  {:<7}  {:<12}  {:<22}  {}",
            show::time(&e.created_at),
            format!("{:?}", e.severity).to_lowercase(),
            e.actor,
            e.action,
            e.message
        )
    };
    let mut newest = page.events.first().map(|e| e.id).unwrap_or(0);
    if ctx.json && !follow {
        ctx.print_json(&v);
        return Ok(());
    }
    for e in page.events.iter().rev() {
        if ctx.json {
            ctx.term.out(&serde_json::to_string(e).unwrap_or_default());
        } else {
            ctx.term.out(&line(e));
        }
    }
    if !follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let v = ctx.api.get(&format!("/events?limit=500{query}")).await?;
        let page: EventListResponse = parse(&v)?;
        for e in page.events.iter().rev().filter(|e| e.id > newest) {
            if ctx.json {
                ctx.term.out(&serde_json::to_string(e).unwrap_or_default());
            } else {
                ctx.term.out(&line(e));
            }
        }
        newest = newest.max(page.events.first().map(|e| e.id).unwrap_or(0));
    }
}

async fn user<T: Term>(ctx: &mut Ctx<'_, T>, c: UserCmd) -> Result<()> {
    match c {
        UserCmd::List => {
            ctx.listing(
                "/users",
                &["ID", "USER", "ROLE", "DISABLED", "LAST LOGIN"],
                |u: &UserResponse| {
                    Some(vec![
                        u.id.to_string(),
                        u.username.clone(),
                        u.role.as_str().to_string(),
                        if u.disabled { "yes" } else { "" }.into(),
                        show::opt(u.last_login_at.as_ref().map(show::time)),
                    ])
                },
            )
            .await
        }
        UserCmd::Create { username, role } => {
            let password = ctx.secret(&format!("Password for {username}: ")).await?;
            let body = json!({ "username": username, "password": password, "role": role });
            let v = ctx.api.call("POST", "/users", Some(&body)).await?;
            if ctx.json {
                ctx.print_json(&v);
            } else {
                ctx.term
                    .out(&format!("user {username} added (id {})", v["id"]));
            }
            Ok(())
        }
        UserCmd::Edit {
            user,
            role,
            disabled,
            password_stdin,
        } => {
            let id = ctx.resolve("/users", "username", "user", &user).await?;
            let mut body = serde_json::Map::new();
            if let Some(r) = role {
                body.insert("role".into(), json!(r));
            }
            if let Some(d) = disabled {
                body.insert("disabled".into(), json!(d));
            }
            if password_stdin {
                body.insert(
                    "password".into(),
                    json!(ctx.secret(&format!("New password for {user}: ")).await?),
                );
            }
            if body.is_empty() {
                return Err(usage("nothing to change: give at least one setting"));
            }
            let v = ctx
                .api
                .call("PATCH", &format!("/users/{id}"), Some(&Value::Object(body)))
                .await?;
            ctx.say(&v, || format!("user {user} changed"));
            Ok(())
        }
        UserCmd::Delete { user } => {
            let id = ctx.resolve("/users", "username", "user", &user).await?;
            ctx.confirm(&format!("Delete user {user}?")).await?;
            ctx.api
                .call("DELETE", &format!("/users/{id}"), None)
                .await?;
            if !ctx.json {
                ctx.term.out(&format!("user {user} deleted"));
            }
            Ok(())
        }
    }
}

async fn token<T: Term>(ctx: &mut Ctx<'_, T>, c: TokenCmd) -> Result<()> {
    match c {
        TokenCmd::List => {
            ctx.listing(
                "/tokens",
                &[
                    "ID",
                    "NAME",
                    "STARTS WITH",
                    "ROLE",
                    "USER",
                    "LAST USED",
                    "EXPIRES",
                ],
                |t: &TokenResponse| {
                    (t.revoked_at.is_none()).then(|| {
                        vec![
                            t.id.to_string(),
                            t.name.clone(),
                            t.prefix.clone(),
                            t.role.as_str().to_string(),
                            t.username.clone(),
                            show::opt(t.last_used_at.as_ref().map(show::time)),
                            show::opt(t.expires_at.as_ref().map(show::time)),
                        ]
                    })
                },
            )
            .await
        }
        TokenCmd::Create {
            name,
            role,
            expires_in_days,
        } => {
            let body = json!({ "name": name, "role": role, "expires_in_days": expires_in_days });
            let v = ctx.api.call("POST", "/tokens", Some(&body)).await?;
            ctx.say(&v, || {
                format!(
                    "token {} (id {}): {}\nKeep it now: it is not shown again.",
                    name,
                    v["token"]["id"],
                    v["secret"].as_str().unwrap_or("?")
                )
            });
            Ok(())
        }
        TokenCmd::Revoke { id } => {
            ctx.api
                .call("DELETE", &format!("/tokens/{id}"), None)
                .await?;
            if !ctx.json {
                ctx.term.out(&format!("token {id} revoked"));
            }
            Ok(())
        }
    }
}

async fn ssh_key<T: Term>(ctx: &mut Ctx<'_, T>, c: SshKeyCmd) -> Result<()> {
    match c {
        SshKeyCmd::List => {
            ctx.listing(
                "/ssh-keys",
                &["ID", "NAME", "TYPE", "FINGERPRINT", "LAST USED"],
                |k: &serverware_shared::api::SshKeyResponse| {
                    Some(vec![
                        k.id.to_string(),
                        k.name.clone(),
                        k.key_type.clone(),
                        k.fingerprint.clone(),
                        show::opt(k.last_used_at.as_ref().map(show::time)),
                    ])
                },
            )
            .await
        }
        SshKeyCmd::Add { name, file } => {
            let text = if file == "-" {
                ctx.term.read_line("", false).await.unwrap_or_default()
            } else if !ctx.files {
                return Err(usage(
                    "here the key comes on standard input: ssh … ssh-key add NAME - < key.pub",
                ));
            } else {
                std::fs::read_to_string(&file)
                    .map_err(|e| usage(format!("cannot read {file}: {e}")))?
            };
            let v = ctx
                .api
                .call(
                    "POST",
                    "/ssh-keys",
                    Some(&json!({ "name": name, "public_key": text.trim() })),
                )
                .await?;
            ctx.say(&v, || {
                format!(
                    "SSH key '{}' added: {}",
                    v["name"].as_str().unwrap_or("?"),
                    v["fingerprint"].as_str().unwrap_or("?")
                )
            });
            Ok(())
        }
        SshKeyCmd::Delete { id } => {
            ctx.api
                .call("DELETE", &format!("/ssh-keys/{id}"), None)
                .await?;
            if !ctx.json {
                ctx.term.out(&format!("SSH key {id} removed"));
            }
            Ok(())
        }
    }
}

/// `sw status` for people.
fn site_text(v: &Value) -> String {
    let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let incidents = v["incidents"].as_array().cloned().unwrap_or_default();
    let state = if v["healthy"] == true {
        "healthy".to_string()
    } else {
        format!("{} incident(s)", incidents.len())
    };
    let risk: Vec<String> = v["ha"]["at_risk"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{} ({})",
                r["name"].as_str().unwrap_or("?"),
                r["why"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let lag = match v["duplication"]["max_lag_ms"].as_i64() {
        Some(ms) => format!(
            "worst lag {:.1} s ({})",
            ms as f64 / 1000.0,
            v["duplication"]["max_lag_vps"].as_str().unwrap_or("?")
        ),
        None => "no restore point yet".into(),
    };
    let storage = match (
        v["storage"]["filesystem_bytes"].as_f64(),
        v["storage"]["filesystem_free_bytes"].as_f64(),
    ) {
        (Some(t), Some(f)) => format!("{} free of {}", show::bytes(f), show::bytes(t)),
        _ => "-".into(),
    };
    let mut out = show::pairs(&[
        (
            "Site",
            format!("{state}, {} failover(s) in 24 h", n("/failovers_24h")),
        ),
        (
            "Hosts",
            format!(
                "{} of {} online ({} down, {} in maintenance)",
                n("/hosts/online"),
                n("/hosts/total"),
                n("/hosts/down"),
                n("/hosts/maintenance")
            ),
        ),
        (
            "HA VPSes",
            format!(
                "{} of {} protected{}",
                n("/ha/protected"),
                n("/ha/total"),
                if risk.is_empty() {
                    String::new()
                } else {
                    format!("; at risk: {}", risk.join(", "))
                }
            ),
        ),
        (
            "Duplication",
            format!(
                "{lag}; {} of {} failing",
                n("/duplication/failing"),
                n("/duplication/vpses")
            ),
        ),
        ("Storage", storage),
    ]);
    for i in &incidents {
        let since = i["since"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| format!(" (since {})", show::time(&t.with_timezone(&chrono::Utc))))
            .unwrap_or_default();
        out.push_str(&format!(
            "\n\n{:<8}{}{since}\n        {}\n        {}",
            i["severity"].as_str().unwrap_or("?").to_uppercase(),
            i["title"].as_str().unwrap_or("?"),
            i["detail"].as_str().unwrap_or(""),
            format!("dashboard: {}", i["link"].as_str().unwrap_or(""))
        ));
    }
    out
}

/// The names of the VPSes on host `id` that should run (only the HA ones if `ha`).
async fn vpses_on<T: Term>(ctx: &mut Ctx<'_, T>, id: i64, ha: bool) -> Result<Vec<String>> {
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
