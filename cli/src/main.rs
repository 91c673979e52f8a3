use clap::{CommandFactory, Parser};
use serverware_cli::api::{Api, Exit, Failure};
use serverware_cli::args::{Cli, Command, SiteCmd};
use serverware_cli::run::{self, Ctx, Term};
use serverware_cli::saved::{self, Saved};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

/// The operator's own terminal.
struct Stdio;

/// Echo off on standard input while it lives (a password being typed).
struct NoEcho(Option<libc::termios>);

impl NoEcho {
    fn new() -> NoEcho {
        // SAFETY: termios calls on standard input with a valid struct.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return NoEcho(None);
            }
            let old = t;
            t.c_lflag &= !libc::ECHO;
            libc::tcsetattr(0, libc::TCSANOW, &t);
            NoEcho(Some(old))
        }
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            // SAFETY: restores what tcgetattr gave.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
            eprintln!();
        }
    }
}

impl Term for Stdio {
    fn out(&mut self, text: &str) {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{text}");
    }

    fn err(&mut self, text: &str) {
        eprintln!("{text}");
    }

    fn interactive(&self) -> bool {
        std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
    }

    fn progress(&mut self, text: &str) {
        eprint!("\r\x1b[2K{text}");
        let _ = std::io::stderr().flush();
    }

    async fn read_line(&mut self, prompt: &str, secret: bool) -> Option<String> {
        if !prompt.is_empty() && std::io::stdin().is_terminal() {
            eprint!("{prompt}");
            let _ = std::io::stderr().flush();
        }
        let _echo = (secret && std::io::stdin().is_terminal()).then(NoEcho::new);
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_string()),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sw: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(main_async(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("sw: {}", f.message);
            ExitCode::from(f.exit.code())
        }
    }
}

/// What `sw login` needs to know.
struct LoginAsk {
    /// The name the login is kept under.
    site: String,
    url: String,
    user: String,
    password_stdin: bool,
    insecure: bool,
}

/// Logs in (a token made for this machine by the user's password) and keeps it under its site's
/// name; the site becomes the current one when there was none or it was asked for by name.
async fn login(
    term: &mut Stdio,
    mut sites: saved::Sites,
    a: LoginAsk,
    make_current: bool,
) -> Result<(), Failure> {
    saved::check_name(&a.site).map_err(|m| Failure::new(Exit::Usage, m))?;
    let api = Api::new(&a.url, None, a.insecure)?;
    // Without a terminal the password is the first line of standard input, as with
    // --password-stdin (`echo "$PW" | sw login URL`).
    let asked = !a.password_stdin && term.interactive();
    let user = a.user;
    let password = term
        .read_line(&format!("Password for {user} at {}: ", api.base()), true)
        .await
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            Failure::new(
                Exit::Usage,
                if asked {
                    "no password was given"
                } else {
                    "no password on standard input (and no terminal to ask it on)"
                },
            )
        })?;
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let name = format!(
        "sw@{}",
        if host.is_empty() {
            "cli"
        } else {
            host.as_str()
        }
    );
    let (token_id, token) = api
        .token_by_password(&user, &password, &name, a.insecure)
        .await?;
    let s = Saved {
        url: api.base().to_string(),
        token,
        token_id,
        username: user.clone(),
        insecure: a.insecure,
    };
    let url = s.url.clone();
    sites.sites.insert(a.site.clone(), s);
    if make_current || sites.current.is_none() {
        sites.current = Some(a.site.clone());
    }
    let p = saved::store(&sites)
        .map_err(|e| Failure::new(Exit::Failed, format!("cannot keep the login: {e}")))?;
    term.out(&format!(
        "logged in to {url} as {user} (site '{}'{}; token '{name}', kept in {})",
        a.site,
        if sites.current.as_deref() == Some(a.site.as_str()) {
            ", current"
        } else {
            ""
        },
        p.display()
    ));
    Ok(())
}

/// Revokes the site's token and forgets it; the current site is then none (never another one
/// by surprise).
async fn logout(
    term: &mut Stdio,
    mut sites: saved::Sites,
    name: Option<&str>,
) -> Result<(), Failure> {
    let Some((n, s)) = sites.pick(name).map(|(n, s)| (n, s.clone())) else {
        term.out(&match name {
            Some(n) => format!("not logged in to a site named '{n}'"),
            None => "not logged in".to_string(),
        });
        return Ok(());
    };
    let api = Api::new(&s.url, Some(s.token.clone()), s.insecure)?;
    let r = api
        .call("DELETE", &format!("/tokens/{}", s.token_id), None)
        .await;
    sites.sites.remove(&n);
    if sites.current.as_deref() == Some(n.as_str()) {
        sites.current = None;
    }
    saved::store(&sites)
        .map_err(|e| Failure::new(Exit::Failed, format!("cannot forget the login: {e}")))?;
    match r {
        Ok(_) => term.out(&format!(
            "logged out of {} (site '{n}'; its token revoked)",
            s.url
        )),
        Err(e) => term.err(&format!(
            "the login is forgotten here, but its token could not be revoked: {}",
            e.message
        )),
    }
    Ok(())
}

async fn site(
    term: &mut Stdio,
    mut sites: saved::Sites,
    c: SiteCmd,
    json: bool,
    insecure: bool,
) -> Result<(), Failure> {
    match c {
        SiteCmd::List => {
            if json {
                let list: Vec<serde_json::Value> = sites
                    .sites
                    .iter()
                    .map(|(n, s)| {
                        serde_json::json!({
                            "name": n, "url": s.url, "user": s.username,
                            "current": sites.current.as_deref() == Some(n.as_str()),
                        })
                    })
                    .collect();
                term.out(&serde_json::to_string_pretty(&list).unwrap_or_default());
                return Ok(());
            }
            let rows: Vec<Vec<String>> = sites
                .sites
                .iter()
                .map(|(n, s)| {
                    let cur = sites.current.as_deref() == Some(n.as_str());
                    vec![
                        if cur { "*" } else { "" }.to_string(),
                        n.clone(),
                        s.url.clone(),
                        s.username.clone(),
                    ]
                })
                .collect();
            term.out(&serverware_cli::show::table(
                &["", "SITE", "CONTROLLER", "USER"],
                &rows,
            ));
            Ok(())
        }
        SiteCmd::Add {
            name,
            url,
            user,
            password_stdin,
        } => {
            let ask = LoginAsk {
                site: name,
                url,
                user,
                password_stdin,
                insecure,
            };
            login(term, sites, ask, false).await
        }
        SiteCmd::Use { name } => {
            if !sites.sites.contains_key(&name) {
                return Err(no_site(&sites, &name));
            }
            sites.current = Some(name.clone());
            saved::store(&sites)
                .map_err(|e| Failure::new(Exit::Failed, format!("cannot keep the choice: {e}")))?;
            term.out(&format!("commands now go to site '{name}'"));
            Ok(())
        }
        SiteCmd::Remove { name } => {
            if !sites.sites.contains_key(&name) {
                return Err(no_site(&sites, &name));
            }
            logout(term, sites, Some(&name)).await
        }
    }
}

fn no_site(sites: &saved::Sites, name: &str) -> Failure {
    let known: Vec<&str> = sites.sites.keys().map(String::as_str).collect();
    Failure::new(
        Exit::NotFound,
        format!(
            "no site named '{name}' (known: {})",
            if known.is_empty() {
                "none; sw site add NAME URL".to_string()
            } else {
                known.join(", ")
            }
        ),
    )
}

async fn main_async(cli: Cli) -> Result<(), Failure> {
    let mut term = Stdio;
    let sites = saved::load();
    let chosen = cli.site.clone();
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "sw", &mut std::io::stdout());
            Ok(())
        }
        Command::Login {
            url,
            user,
            password_stdin,
        } => {
            let name = chosen
                .clone()
                .or_else(|| sites.current.clone())
                .unwrap_or_else(|| saved::DEFAULT_SITE.to_string());
            let url = url
                .or(cli.url)
                .or_else(|| sites.sites.get(&name).map(|s| s.url.clone()))
                .ok_or_else(|| {
                    Failure::new(
                        Exit::Usage,
                        "name the controller: sw login https://controller:8080",
                    )
                })?;
            let ask = LoginAsk {
                site: name,
                url,
                user,
                password_stdin,
                insecure: cli.insecure,
            };
            login(&mut term, sites, ask, chosen.is_none()).await
        }
        Command::Logout => logout(&mut term, sites, chosen.as_deref()).await,
        Command::Site(c) => site(&mut term, sites, c, cli.json, cli.insecure).await,
        command => {
            let saved = match chosen.as_deref() {
                Some(n) => Some(
                    sites
                        .pick(Some(n))
                        .ok_or_else(|| no_site(&sites, n))?
                        .1
                        .clone(),
                ),
                None => sites.pick(None).map(|(_, s)| s.clone()),
            };
            let insecure = cli.insecure || saved.as_ref().is_some_and(|s| s.insecure);
            let url = cli
                .url
                .or_else(|| saved.as_ref().map(|s| s.url.clone()))
                .ok_or_else(|| {
                    Failure::new(
                        Exit::Denied,
                        if sites.sites.is_empty() {
                            "not logged in: run `sw login URL`, or set SERVERWARE_URL and SERVERWARE_TOKEN".to_string()
                        } else {
                            format!(
                                "no current site: `sw site use NAME` (one of {}), or --site NAME",
                                sites.sites.keys().cloned().collect::<Vec<_>>().join(", ")
                            )
                        },
                    )
                })?;
            let token = cli.token.or_else(|| saved.map(|s| s.token));
            let api = Api::new(&url, token, insecure)?;
            let mut ctx = Ctx {
                api: &api,
                json: cli.json,
                yes: cli.yes,
                term: &mut term,
                files: true,
            };
            run::execute(&mut ctx, command).await
        }
    }
}
