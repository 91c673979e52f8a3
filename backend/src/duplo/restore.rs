//! Sending a restore point to a host (`serverware-agent rootfs-restore`): the point's entries go
//! first, the agent answers with the chunks its host lacks, and only those travel, each read
//! from storage and checked against its name on the way. The VPS operations (in place, as a
//! new VPS, and netMON's restarts elsewhere) call [`send`].

use crate::error::{Error, Result};
use crate::hosts::Conn;
use crate::storage::chunks;
use crate::tasks::Task;
use serverware_shared::duplo::stream::{self, Frame};
use serverware_shared::duplo::{Manifest, RestoreSummary};
use serverware_shared::VpsId;
use std::sync::Arc;

/// Frames out of a channel's bytes as they arrive.
#[derive(Default)]
struct Frames {
    buf: Vec<u8>,
}

impl Frames {
    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame, if it has arrived.
    fn next(&mut self) -> Result<Option<Frame>> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_le_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > stream::MAX_FRAME {
            return Err(Error::HostUnavailable(format!(
                "the host sent a frame of {len} bytes"
            )));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let mut r = &self.buf[..5 + len];
        let f = stream::read(&mut r)
            .map_err(|e| Error::HostUnavailable(format!("the host's answer: {e}")))?;
        self.buf.drain(..5 + len);
        Ok(Some(f))
    }
}

fn host_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::HostUnavailable(format!("{what}: {e}"))
}

/// Restores `point` onto VPS `name` on the host behind `conn` (its files owned from `ids`, 0
/// for a privileged VPS). The VPS must not run there. A standby copy of VPS `seed` the host
/// holds supplies what it can (netMON). Progress goes to `task` within `pct`.
#[allow(clippy::too_many_arguments)]
pub async fn send(
    store: Arc<dyn crate::storage::ObjectStore>,
    task: &Task,
    conn: &Conn,
    name: &str,
    ids: u32,
    seed: Option<VpsId>,
    point: Arc<Manifest>,
    pct: (i32, i32),
) -> Result<RestoreSummary> {
    let ids_s = ids.to_string();
    let seed_s = seed.map(|s| s.to_string());
    let mut args = vec!["rootfs-restore", name, "--ids", &ids_s];
    if let Some(s) = &seed_s {
        args.extend(["--seed", s]);
    }
    stream_point(store, Some(task), conn, &args, point, pct).await
}

/// Brings the standby copy of VPS `vps_id` on the host behind `conn` to `point` (cycle `cycle`).
pub async fn send_standby(
    store: Arc<dyn crate::storage::ObjectStore>,
    conn: &Conn,
    vps_id: VpsId,
    ids: u32,
    cycle: u64,
    point: Arc<Manifest>,
) -> Result<RestoreSummary> {
    let (id_s, ids_s, cycle_s) = (vps_id.to_string(), ids.to_string(), cycle.to_string());
    let args = [
        "rootfs-standby",
        &id_s,
        "--cycle",
        &cycle_s,
        "--ids",
        &ids_s,
    ];
    stream_point(store, None, conn, &args, point, (0, 0)).await
}

/// Runs the agent's `args` (a restore of some kind) and streams `point` to it: its entries, then
/// the chunks it asks for.
async fn stream_point(
    store: Arc<dyn crate::storage::ObjectStore>,
    task: Option<&Task>,
    conn: &Conn,
    args: &[&str],
    point: Arc<Manifest>,
    pct: (i32, i32),
) -> Result<RestoreSummary> {
    let mut ch = conn
        .session
        .exec_apart(crate::hosts::AGENT_PATH, args)
        .await
        .map_err(|e| host_err("cannot start the restore", e))?;
    let mut head = Vec::new();
    stream::write_entries(&mut head, &point.entries).map_err(|e| Error::Internal(e.into()))?;
    for piece in head.chunks(256 << 10) {
        ch.data(piece)
            .await
            .map_err(|e| host_err("sending the restore point failed", e))?;
    }
    drop(head);
    let mut frames = Frames::default();
    let (mut err, mut code) = (Vec::new(), None);
    // Until the agent says what it needs.
    let need = loop {
        if let Some(f) = frames.next()? {
            match f {
                Frame::Need(ids) => break ids,
                other => {
                    return Err(Error::HostUnavailable(format!(
                        "the host answered a restore with {other:?}"
                    )))
                }
            }
        }
        match ch.wait().await {
            Some(russh::ChannelMsg::Data { data }) => frames.push(&data),
            Some(russh::ChannelMsg::ExtendedData { data, .. }) if err.len() < 4096 => {
                err.extend_from_slice(&data)
            }
            Some(russh::ChannelMsg::ExitStatus { exit_status }) => code = Some(exit_status),
            Some(_) => {}
            None => {
                return Err(Error::HostUnavailable(format!(
                    "the restore stopped on the host ({}): {}",
                    code.map_or("no exit status".into(), |c| format!("exit {c}")),
                    String::from_utf8_lossy(&err).trim()
                )))
            }
        }
    };
    if let Some(task) = task {
        task.log(format!(
            "{} of the point's chunks must travel; the rest is on the host already",
            need.len()
        ))
        .await;
    }
    let total = need.len().max(1);
    let mut sent_bytes = 0u64;
    for (i, id) in need.iter().enumerate() {
        let (s, id2) = (store.clone(), *id);
        let data = tokio::task::spawn_blocking(move || chunks::get(&*s, &id2))
            .await
            .map_err(|e| Error::Internal(e.into()))?
            .map_err(|e| Error::Internal(anyhow::anyhow!("storage: {e}")))?;
        let mut frame = Vec::with_capacity(data.len() + 40);
        stream::write_chunk(&mut frame, id, &data).map_err(|e| Error::Internal(e.into()))?;
        ch.data(&frame[..])
            .await
            .map_err(|e| host_err("sending to the host failed", e))?;
        sent_bytes += data.len() as u64;
        if let Some(task) = task.filter(|_| i % 16 == 0 || i + 1 == need.len()) {
            task.progress(
                pct.0 + ((pct.1 - pct.0) as usize * (i + 1) / total) as i32,
                sent_bytes as i64,
                None,
            )
            .await;
        }
    }
    let mut end = Vec::new();
    stream::write_end(&mut end).map_err(|e| Error::Internal(e.into()))?;
    ch.data(&end[..])
        .await
        .map_err(|e| host_err("sending to the host failed", e))?;
    ch.eof()
        .await
        .map_err(|e| host_err("sending to the host failed", e))?;
    let mut summary = None;
    while let Some(msg) = ch.wait().await {
        match msg {
            russh::ChannelMsg::Data { data } => {
                frames.push(&data);
                while let Some(f) = frames.next()? {
                    if let Frame::Summary(s) = f {
                        summary = Some(s);
                    }
                }
            }
            russh::ChannelMsg::ExtendedData { data, .. } if err.len() < 4096 => {
                err.extend_from_slice(&data)
            }
            russh::ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
            _ => {}
        }
    }
    match (code, summary) {
        (Some(0), Some(s)) => Ok(s),
        _ => Err(Error::HostUnavailable(format!(
            "the restore failed on the host: {}",
            String::from_utf8_lossy(&err).trim()
        ))),
    }
}
