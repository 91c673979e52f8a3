//! `rootfs-restore` and `rootfs-standby` on a simulated host: the restore protocol as the real
//! agent speaks it (the point's entries in, the chunks it needs out, the chunks in, a summary
//! out), with nothing written but the record that the container (or standby copy) now exists.

use crate::server::Out;
use crate::SimHost;
use serverware_shared::duplo::stream::{self, Frame};
use serverware_shared::duplo::{ChunkId, EntryKind, RestoreSummary};
use std::collections::BTreeSet;
use tokio::sync::mpsc;

/// The next whole frame at the front of `buf`, taken off it.
fn next_frame(buf: &mut Vec<u8>) -> Option<std::io::Result<Frame>> {
    if buf.len() < 5 {
        return None;
    }
    let len = u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > stream::MAX_FRAME {
        return Some(Err(std::io::Error::other(format!(
            "a frame of {len} bytes"
        ))));
    }
    if buf.len() < 5 + len {
        return None;
    }
    let whole: Vec<u8> = buf.drain(..5 + len).collect();
    Some(stream::read(&mut &whole[..]))
}

async fn frame(
    input: &mut mpsc::UnboundedReceiver<Vec<u8>>,
    buf: &mut Vec<u8>,
) -> Result<Frame, String> {
    loop {
        if let Some(f) = next_frame(buf) {
            return f.map_err(|e| format!("the restore stream is not understood: {e}"));
        }
        match input.recv().await {
            Some(d) => buf.extend_from_slice(&d),
            None => return Err("the restore stream ended early".into()),
        }
    }
}

/// What becomes of the restored tree.
pub(crate) enum Into {
    Container(String),
    Standby { vps_id: i64, cycle: u64 },
}

pub(crate) async fn restore(
    host: &SimHost,
    into: Into,
    mut input: mpsc::UnboundedReceiver<Vec<u8>>,
    out: &Out,
) -> Result<(), String> {
    let mut buf = Vec::new();
    let entries = match frame(&mut input, &mut buf).await? {
        Frame::Entries(e) => e,
        other => return Err(format!("a restore begins with its entries, not {other:?}")),
    };
    let need: BTreeSet<ChunkId> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .flat_map(|e| e.chunks.iter().copied())
        .collect();
    let need: Vec<ChunkId> = need.into_iter().collect();
    let mut head = Vec::new();
    stream::write_need(&mut head, &need).map_err(|e| e.to_string())?;
    let _ = out.send((false, head));
    let mut received = 0u64;
    loop {
        match frame(&mut input, &mut buf).await? {
            Frame::Chunk(_, data) => received += data.len() as u64,
            Frame::End => break,
            other => return Err(format!("a restore sends chunks, not {other:?}")),
        }
    }
    match into {
        Into::Container(name) => crate::agent::import(host, &name)?,
        Into::Standby { vps_id, cycle } => {
            host.lock().standbys.insert(vps_id, cycle);
        }
    }
    let files = entries.iter().filter(|e| e.kind == EntryKind::File).count() as u64;
    let summary = RestoreSummary {
        entries: entries.len() as u64,
        files_written: files,
        bytes_written: received,
        bytes_received: received,
        ..Default::default()
    };
    let mut tail = Vec::new();
    stream::write_summary(&mut tail, &summary)
        .and_then(|_| stream::write_end(&mut tail))
        .map_err(|e| e.to_string())?;
    let _ = out.send((false, tail));
    Ok(())
}
