//! Carrying out a command: requests to the API, and what the operator sees. Everything here
//! goes through [`Api`] (the controller does the work and the checking) and a [`Term`] (the
//! operator's terminal, or the SSH channel of the controller's command line).

use crate::api::{Api, Exit, Failure, Result};
use crate::args::*;
use crate::show;
use serde_json::Value;
use serverware_shared::api::TaskResponse;
use std::future::Future;
use std::time::Duration;

mod account;
mod alert;
mod event;
mod host;
mod machine;
mod site;
mod task;
mod template;
mod vps;

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

    /// Every item of a paged list (`/vpses`, `/hosts`) matching `filters`, read a page at a
    /// time: a large site's list never comes in one answer.
    async fn every_page(&mut self, path: &str, filters: &[(&str, &str)]) -> Result<Vec<Value>> {
        const PAGE: usize = 500;
        let mut all: Vec<Value> = Vec::new();
        loop {
            let mut url = reqwest::Url::parse("http://sw/").expect("a fixed URL");
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("limit", &PAGE.to_string());
                for (k, v) in filters {
                    q.append_pair(k, v);
                }
                if let Some(last) = all.last().and_then(|v| v["name"].as_str()) {
                    q.append_pair("after", last);
                }
            }
            let page = self
                .api
                .get(&format!("{path}?{}", url.query().unwrap_or_default()))
                .await?;
            let page = page.as_array().cloned().unwrap_or_default();
            let n = page.len();
            all.extend(page);
            if n < PAGE {
                return Ok(all);
            }
        }
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

    /// A VPS by id or name (asked for by its name: a site's whole list is never read for it).
    async fn vps(&mut self, given: &str) -> Result<i64> {
        if let Ok(id) = given.parse::<i64>() {
            return Ok(id);
        }
        let mut url = reqwest::Url::parse("http://sw/vpses").expect("a fixed URL");
        url.query_pairs_mut().append_pair("name", given);
        let found = self
            .api
            .get(&format!("/vpses?{}", url.query().unwrap_or_default()))
            .await;
        match found {
            Ok(v) => v
                .as_array()
                .and_then(|l| l.first())
                .and_then(|o| o["id"].as_i64()),
            // A name that cannot be one (refused as such) names no VPS.
            Err(f) if f.exit == Exit::Invalid => None,
            Err(f) => return Err(f),
        }
        .ok_or_else(|| Failure::new(Exit::NotFound, format!("no VPS named '{given}'")))
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
            ctx.say(&v, || site::site_text(&v));
            Ok(())
        }
        Command::Host(c) => host::host(ctx, c).await,
        Command::Vps(c) => vps::vps(ctx, c).await,
        Command::Template(c) => template::template(ctx, c).await,
        Command::Machine(c) => machine::machine(ctx, c).await,
        Command::Alert(c) => alert::alert(ctx, c).await,
        Command::Task(c) => task::task(ctx, c).await,
        Command::Event(c) => event::event(ctx, c).await,
        Command::User(c) => account::user(ctx, c).await,
        Command::Token(c) => account::token(ctx, c).await,
        Command::SshKey(c) => account::ssh_key(ctx, c).await,
        Command::Login { .. }
        | Command::Logout
        | Command::Site(_)
        | Command::Completions { .. } => Err(usage("this command is not available here")),
    }
}
