use clap::{CommandFactory, Parser};
use serverware_cli::api::{Api, Exit, Failure};
use serverware_cli::args::{Cli, Command};
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

async fn main_async(cli: Cli) -> Result<(), Failure> {
    let mut term = Stdio;
    let saved = saved::load();
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
            let url = url
                .or(cli.url)
                .or_else(|| saved.as_ref().map(|s| s.url.clone()))
                .ok_or_else(|| {
                    Failure::new(
                        Exit::Usage,
                        "name the controller: sw login https://controller:8080",
                    )
                })?;
            let api = Api::new(&url, None, cli.insecure)?;
            // Without a terminal the password is the first line of standard input, as with
            // --password-stdin (`echo "$PW" | sw login URL`).
            let asked = !password_stdin && term.interactive();
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
                .token_by_password(&user, &password, &name, cli.insecure)
                .await?;
            let s = Saved {
                url: api.base().to_string(),
                token,
                token_id,
                username: user.clone(),
                insecure: cli.insecure,
            };
            let p = saved::store(&s)
                .map_err(|e| Failure::new(Exit::Failed, format!("cannot keep the login: {e}")))?;
            term.out(&format!(
                "logged in to {} as {user} (token '{name}', kept in {})",
                s.url,
                p.display()
            ));
            Ok(())
        }
        Command::Logout => {
            let Some(s) = saved else {
                term.out("not logged in");
                return Ok(());
            };
            let api = Api::new(&s.url, Some(s.token.clone()), s.insecure)?;
            let r = api
                .call("DELETE", &format!("/tokens/{}", s.token_id), None)
                .await;
            saved::forget()
                .map_err(|e| Failure::new(Exit::Failed, format!("cannot forget the login: {e}")))?;
            match r {
                Ok(_) => term.out(&format!("logged out of {} (its token revoked)", s.url)),
                Err(e) => term.err(&format!(
                    "the login is forgotten here, but its token could not be revoked: {}",
                    e.message
                )),
            }
            Ok(())
        }
        command => {
            let insecure = cli.insecure || saved.as_ref().is_some_and(|s| s.insecure);
            let url = cli
                .url
                .or_else(|| saved.as_ref().map(|s| s.url.clone()))
                .ok_or_else(|| {
                    Failure::new(
                        Exit::Denied,
                        "not logged in: run `sw login URL`, or set SERVERWARE_URL and SERVERWARE_TOKEN",
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
