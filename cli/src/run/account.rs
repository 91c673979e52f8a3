//! `sw user …`, `sw token …`, `sw ssh-key …`: people and their credentials.

use super::{usage, Ctx, Term};
use crate::api::Result;
use crate::args::*;
use crate::show;
use serde_json::{json, Value};
use serverware_shared::api::{TokenResponse, UserResponse};

pub(super) async fn user<T: Term>(ctx: &mut Ctx<'_, T>, c: UserCmd) -> Result<()> {
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

pub(super) async fn token<T: Term>(ctx: &mut Ctx<'_, T>, c: TokenCmd) -> Result<()> {
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

pub(super) async fn ssh_key<T: Term>(ctx: &mut Ctx<'_, T>, c: SshKeyCmd) -> Result<()> {
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
