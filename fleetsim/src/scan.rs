//! `rootfs-scan` on a simulated host: a VPS's tree is five entries whose log file changes
//! every few cuts (`--change-every`), sent in the agent's stream format (`shared::duplo::stream`) with the same
//! rules as the real scan: what the previous point knows unchanged is not read again, and no
//! chunk it holds is sent again.

use crate::SimHost;
use serverware_shared::duplo::{
    stream, ChunkId, Delta, Entry, EntryKind, PathBytes, ScanRequest, ScanStats,
};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};

/// The path of the file that changes.
pub(crate) const LOG: &str = "var/log/messages";

fn dir(path: &str) -> Entry {
    let mut e = Entry::new(path.as_bytes(), EntryKind::Dir);
    e.mode = 0o755;
    e.mtime_ns = 1_700_000_000_000_000_000;
    e
}

pub(crate) fn scan(host: &SimHost, name: &str, request: &[u8]) -> Result<Vec<u8>, String> {
    let req: ScanRequest = if request.iter().all(u8::is_ascii_whitespace) {
        ScanRequest::default()
    } else {
        serde_json::from_slice(request)
            .map_err(|e| format!("the scan request is not understood: {e}"))?
    };
    let (hostname, version, seed) = {
        let mut s = host.lock();
        let c = s
            .containers
            .get_mut(name)
            .ok_or_else(|| format!("{name} is not a container on this host"))?;
        let hostname = c
            .spec
            .as_ref()
            .map_or_else(|| name.to_string(), |sp| sp.hostname.clone());
        (hostname, c.cuts / host.change_every, u64::from(c.ino_seed))
    };
    let files: [(&str, Vec<u8>, u64, i64); 2] = [
        (
            "etc/hostname",
            format!("{hostname}\n").into_bytes(),
            seed * 10 + 1,
            1_700_000_000_000_000_000,
        ),
        (
            LOG,
            format!("{name}: simulated log, version {version}\n").into_bytes(),
            seed * 10 + 2,
            1_700_000_000_000_000_000 + version as i64 * 1_000_000_000,
        ),
    ];
    let held: HashSet<ChunkId> = req
        .known
        .iter()
        .flat_map(|k| k.chunks.iter().copied())
        .collect();
    let known: HashMap<&[u8], _> = req.known.iter().map(|k| (&k.path.0[..], k)).collect();
    let mut out = Vec::new();
    let mut entries = vec![dir(""), dir("etc"), dir("var"), dir("var/log")];
    let (mut files_read, mut bytes_read) = (0, 0);
    for (path, content, ino, time) in files {
        let mut e = Entry::new(path.as_bytes(), EntryKind::File);
        e.mode = 0o644;
        e.size = content.len() as u64;
        e.ino = ino;
        e.mtime_ns = time;
        e.ctime_ns = time;
        match known.get(path.as_bytes()) {
            Some(k) if k.unchanged(e.ino, e.size, e.mtime_ns, e.ctime_ns) => {
                e.chunks = k.chunks.clone();
            }
            _ => {
                files_read += 1;
                bytes_read += content.len() as u64;
                let id = ChunkId(Sha256::digest(&content).into());
                if !held.contains(&id) {
                    stream::write_chunk(&mut out, &id, &content).map_err(|e| e.to_string())?;
                }
                e.chunks = vec![id];
            }
        }
        entries.push(e);
    }
    entries.sort_by(|a, b| a.path.0.cmp(&b.path.0));
    let stats = ScanStats {
        files_read,
        bytes_read,
        freeze_ms: 0,
        consistent: true,
    };
    match req.paths {
        None => stream::write_entries(&mut out, &entries),
        Some(roots) => {
            let under = |p: &PathBytes| {
                roots.iter().any(|r| {
                    p.0 == r.path.0
                        || (r.deep
                            && (r.path.0.is_empty()
                                || (p.0.starts_with(&r.path.0)
                                    && p.0.get(r.path.0.len()) == Some(&b'/'))))
                })
            };
            let entries = entries.into_iter().filter(|e| under(&e.path)).collect();
            stream::write_delta(&mut out, &Delta { roots, entries })
        }
    }
    .and_then(|_| stream::write_stats(&mut out, &stats))
    .and_then(|_| stream::write_end(&mut out))
    .map_err(|e| e.to_string())?;
    Ok(out)
}
