//! Streams of root filesystems: a template into a new VPS, a VPS from one host to another.
//! Each stream is an SSH channel of its own, and OpenSSH allows only so many per connection
//! (`MaxSessions`, 10 by default): streams wait for one of their host's transfer slots, and the
//! task says so while it waits.

use super::agent::agent_err;
use super::Vpses;
use crate::error::{Error, Result};
use crate::hosts::Conn;
use crate::repo::vpses::load_host;
use crate::tasks::Task;
use serverware_shared::HostId;

/// Takes a transfer slot on each host named (one per stream end), in host order and all of a
/// host's at once so that two transfers never wait on each other; logs when the task waits.
pub(super) async fn slots(
    state: &Vpses,
    task: &Task,
    host_ids: &[HostId],
) -> Result<Vec<tokio::sync::OwnedSemaphorePermit>> {
    let mut wanted: std::collections::BTreeMap<HostId, u32> = Default::default();
    for h in host_ids {
        *wanted.entry(*h).or_default() += 1;
    }
    let mut permits = Vec::new();
    for (host_id, n) in wanted {
        let host = state.db.run(move |c| load_host(c, host_id)).await?;
        let max = host.max_transfers.max(1) as usize;
        let sem = state.hosts.transfer_slots(host_id, max);
        if let Ok(p) = sem.clone().try_acquire_many_owned(n) {
            permits.push(p);
            continue;
        }
        task.log(format!(
            "waiting: host {} already runs {max} transfers (its limit)",
            host.name
        ))
        .await;
        permits.push(
            sem.acquire_many_owned(n)
                .await
                .map_err(|e| Error::Internal(e.into()))?,
        );
    }
    Ok(permits)
}

/// Streams a template archive from storage into a new VPS's root filesystem on a host.
#[allow(clippy::too_many_arguments)]
pub(super) async fn push_template(
    state: &Vpses,
    task: &Task,
    c: &Conn,
    host_id: HostId,
    name: &str,
    ids: u32,
    path: &std::path::Path,
    resume: bool,
) -> Result<(u64, String)> {
    use tokio::io::AsyncReadExt;
    let _slots = slots(state, task, &[host_id]).await?;
    let total = tokio::fs::metadata(path)
        .await
        .map_err(|e| Error::Internal(e.into()))?
        .len();
    let ids = format!("0:{ids}");
    let mut args = vec!["rootfs-import", name, "--gzip", "--ids", &ids];
    if resume {
        args.push("--resume");
    }
    let ch = c
        .session
        .exec_apart(crate::hosts::AGENT_PATH, &args)
        .await
        .map_err(agent_err)?;
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::Internal(e.into()))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut sent = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .await
            .map_err(|e| Error::Internal(e.into()))?;
        if n == 0 {
            break;
        }
        ch.data(&buf[..n])
            .await
            .map_err(|e| Error::HostUnavailable(format!("sending to the host failed: {e}")))?;
        sent += n as u64;
        crate::fault::transfer(sent);
        task.progress(
            10 + (sent * 70 / total.max(1)) as i32,
            sent as i64,
            Some(total as i64),
        )
        .await;
    }
    let note = finish_stream(ch, "unpacking the template").await?;
    Ok((sent, note))
}

/// Closes a stream's input and waits for the program at its end to succeed; what it printed
/// (its summary line).
pub(super) async fn finish_stream(
    mut ch: russh::Channel<russh::client::Msg>,
    what: &str,
) -> Result<String> {
    ch.eof()
        .await
        .map_err(|e| Error::HostUnavailable(format!("{what}: {e}")))?;
    let (mut code, mut out, mut err) = (None, Vec::new(), Vec::new());
    while let Some(msg) = ch.wait().await {
        match msg {
            russh::ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
            // Both are a line or two; more is cut, never held.
            russh::ChannelMsg::Data { data } if out.len() < 4096 => out.extend_from_slice(&data),
            russh::ChannelMsg::ExtendedData { data, .. } if err.len() < 4096 => {
                err.extend_from_slice(&data)
            }
            _ => {}
        }
    }
    match code {
        Some(0) => Ok(String::from_utf8_lossy(&out).trim().to_string()),
        _ => Err(Error::HostUnavailable(format!(
            "{what} failed on the host: {}",
            String::from_utf8_lossy(&err).trim()
        ))),
    }
}

/// Streams a root filesystem from one host (or VPS) to another through the controller. The
/// caller holds a transfer slot on both hosts ([`slots`]).
#[allow(clippy::too_many_arguments)]
pub(super) async fn transfer(
    state: &Vpses,
    task: &Task,
    (from, from_host): (&Conn, HostId),
    from_name: &str,
    (to, to_host): (&Conn, HostId),
    to_name: &str,
    (ids_from, ids_to): (u32, u32),
    estimate: Option<u64>,
    pct: (i32, i32),
) -> Result<(u64, String)> {
    // The caller holds both hosts' transfer slots (taken before it paused or stopped anything).
    let _ = (state, from_host, to_host);
    let mut src = from
        .session
        .exec_apart(crate::hosts::AGENT_PATH, &["rootfs-export", from_name])
        .await
        .map_err(agent_err)?;
    let dst = to
        .session
        .exec_apart(
            crate::hosts::AGENT_PATH,
            &[
                "rootfs-import",
                to_name,
                "--ids",
                &format!("{ids_from}:{ids_to}"),
            ],
        )
        .await
        .map_err(agent_err)?;
    let (mut n, mut code, mut err) = (0u64, None, Vec::new());
    while let Some(msg) = src.wait().await {
        match msg {
            russh::ChannelMsg::Data { data } => {
                dst.data(&data[..]).await.map_err(|e| {
                    Error::HostUnavailable(format!("sending to the target host failed: {e}"))
                })?;
                n += data.len() as u64;
                crate::fault::transfer(n);
                let done = match estimate {
                    Some(t) if t > 0 => (n * 100 / t).min(99) as i32,
                    _ => 50,
                };
                task.progress(
                    pct.0 + (pct.1 - pct.0) * done / 100,
                    n as i64,
                    estimate.map(|e| e.max(n) as i64),
                )
                .await;
            }
            russh::ChannelMsg::ExtendedData { data, .. } if err.len() < 4096 => {
                err.extend_from_slice(&data)
            }
            russh::ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
            _ => {}
        }
    }
    if code != Some(0) {
        let _ = dst.close().await;
        return Err(Error::HostUnavailable(format!(
            "reading the root filesystem failed: {}",
            String::from_utf8_lossy(&err).trim()
        )));
    }
    let note = finish_stream(dst, "writing the root filesystem").await?;
    Ok((n, note))
}

/// The live figures of a VPS on its host (for sizes and states).
pub(super) fn live_disk(state: &Vpses, host: HostId, name: &str) -> Option<u64> {
    state
        .hosts
        .view(host)?
        .latest?
        .vpses
        .into_iter()
        .find(|v| v.name == name)
        .map(|v| v.disk_used_bytes)
}
