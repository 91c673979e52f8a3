//! A console to a VPS: a root shell inside it, through its host's agent
//! (`serverware-agent console NAME` under a pseudo-terminal on the host's SSH connection). For
//! operators; each session is audited when it opens (who, how) and when it closes (how long).
//! The front ends (the browser's socket, `sw vps console`, the SSH command line) carry the bytes
//! and end the session when the user's own session ends.

use super::agent::{agent_err, conn};
use super::Vpses;
use crate::audit::{Actor, Change};
use crate::error::{Error, Result};
use crate::ssh::Terminal;
use serverware_shared::state::ObservedState;
use serverware_shared::VpsId;
use std::time::Instant;

/// The widest and tallest terminal a console takes.
pub const MAX_COLS: u16 = 1000;
pub const MAX_ROWS: u16 = 500;

/// An open console; [`Console::close`] ends it and records how long it lasted.
pub struct Console {
    pub terminal: Terminal,
    pub vps: VpsId,
    pub name: String,
    opened: Instant,
    actor: Actor,
    db: crate::db::Db,
}

/// A terminal size within bounds (a zero is taken as the smallest sensible one).
pub fn size(cols: u16, rows: u16) -> (u16, u16) {
    (cols.clamp(20, MAX_COLS), rows.clamp(5, MAX_ROWS))
}

/// Opens a shell in VPS `id`, which must be running on a connected host.
pub async fn open(
    vpses: &Vpses,
    actor: &Actor,
    id: VpsId,
    (cols, rows): (u16, u16),
) -> Result<Console> {
    let v = vpses.db.run(move |c| super::load(c, id)).await?;
    let Some(host_id) = v.host_id else {
        return Err(Error::conflict(
            None,
            format!("VPS {} is on no host", v.name),
        ));
    };
    if v.status != ObservedState::Running {
        return Err(Error::conflict(
            None,
            format!("VPS {} is not running: start it first", v.name),
        ));
    }
    let host = vpses.db.run(move |c| super::load_host(c, host_id)).await?;
    let c = conn(vpses, host_id, &host.name)?;
    let terminal = c
        .session
        .terminal(
            crate::hosts::AGENT_PATH,
            &["console", &v.name],
            size(cols, rows),
        )
        .await
        .map_err(agent_err)?;
    let (actor2, name, how) = (actor.clone(), v.name.clone(), via(actor));
    vpses
        .db
        .run(move |c| {
            crate::audit::record(
                c,
                &actor2,
                Change::new(
                    "vps.console.opened",
                    "vps",
                    id,
                    format!("{} opened a console to {name} ({how})", actor2.name),
                )
                .details(serde_json::json!({ "via": how })),
            )
            .map(|_| ())
        })
        .await?;
    Ok(Console {
        terminal,
        vps: id,
        name: v.name,
        opened: Instant::now(),
        actor: actor.clone(),
        db: vpses.db.clone(),
    })
}

fn via(actor: &Actor) -> &'static str {
    match (actor.via, &actor.via_token) {
        (Some(v), _) => v,
        (None, Some(_)) => "api token",
        (None, None) => "dashboard",
    }
}

impl Console {
    /// Ends the shell and records the session's length and why it ended.
    pub async fn close(self, why: &str) {
        self.terminal.input.close().await;
        let secs = self.opened.elapsed().as_secs();
        let (actor, name, id, why) = (self.actor, self.name, self.vps, why.to_string());
        let r = self
            .db
            .run(move |c| {
                crate::audit::record(
                    c,
                    &actor,
                    Change::new(
                        "vps.console.closed",
                        "vps",
                        id,
                        format!(
                            "{}'s console to {name} closed after {secs} s: {why}",
                            actor.name
                        ),
                    )
                    .details(
                        serde_json::json!({ "seconds": secs, "reason": why, "via": via(&actor) }),
                    ),
                )
                .map(|_| ())
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(
                "cannot record the end of a console session: {}",
                e.message()
            );
        }
    }
}
