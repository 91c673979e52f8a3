//! One duplication cycle of one VPS, from the journal's cut to the acknowledged restore point.

use super::Duplication;
use super::{now_ms, VpsDuplo};
use crate::audit::{Actor, Change};
use crate::storage::cycle::{ingest, Landed};
use crate::storage::tree::Tree;
use serverware_shared::agent::{AgentRequest, AgentResponse};
use serverware_shared::api::Severity;
use serverware_shared::duplo::{ChangedPath, Changes, KnownFile, PathBytes, ScanRequest};
use serverware_shared::{HostId, VpsId};
use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A cycle reading at most this many changed paths freezes the VPS while it reads them.
const FREEZE_MAX_PATHS: usize = 1000;

/// How long the agent may take to answer a cut (it sets up the journal's watches on the first).
const CUT_TIMEOUT: Duration = Duration::from_secs(120);

/// What one cycle did.
#[derive(Debug)]
pub enum Outcome {
    /// A new restore point landed.
    Landed(Box<Report>),
    /// The journal vouched that nothing changed since the newest point (of `cycle`), so none
    /// landed: that point still was the VPS's tree at `at_ms` (when the journal was asked).
    Unchanged { cycle: u64, at_ms: i64 },
}

impl Outcome {
    /// The cycle of the newest point after it.
    pub fn cycle(&self) -> u64 {
        match self {
            Outcome::Landed(r) => r.cycle,
            Outcome::Unchanged { cycle, .. } => *cycle,
        }
    }
}

/// What one landed cycle did.
#[derive(Debug, Clone)]
pub struct Report {
    pub cycle: u64,
    pub full_reason: Option<String>,
    pub landed: Landed,
    pub duration_ms: u64,
}

/// The bytes of an SSH channel, handed over to the blocking side that lands them.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.blocking_recv() {
                Some(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// What a cycle of a VPS deleted meanwhile ends with ([`finish`] forgets it quietly).
const GONE: &str = "the VPS is gone";

/// A scan request larger than this runs on a connection of its own.
const APART_FROM: usize = 64 << 10;

/// Runs one cycle of `vps_id` on the host it is on now. Unless `asked` (someone asked for a
/// point), a cycle whose journal saw nothing change since the newest point lands none.
pub async fn run(dup: &Arc<Duplication>, vps_id: VpsId, asked: bool) -> Result<Outcome, String> {
    let t0 = Instant::now();
    // Its term, before its row: a restore or failover begins a new term before it touches
    // anything and again once the VPS is recorded on its new host, so a cycle reading a copy
    // that may be fenced commits nothing after either.
    let term = dup.duplo.terms.current(vps_id);
    let (v, host) = dup
        .db
        .read(move |c| {
            let v = crate::vps::load(c, vps_id)?;
            let host = v.host_id.map(|h| crate::vps::load_host(c, h)).transpose()?;
            Ok((v, host))
        })
        .await
        .map_err(|e| match e {
            // Deleted since the scheduler's list was read: nothing to copy, nothing failed.
            crate::error::Error::NotFound(_) => GONE.to_string(),
            e => e.message(),
        })?;
    let host = host.ok_or("the VPS is on no host")?;
    let host_id = host.id;
    let conn = dup
        .hosts
        .conn(host_id)
        .ok_or_else(|| format!("host {} is not connected", host.name))?;
    // The newest point's tree is the cycle's from here: put back when it lands (or when the
    // cycle fails before its stream began), read again from storage otherwise.
    let duplo = dup.duplo.clone();
    let prev = tokio::task::spawn_blocking(move || duplo.take_for_cycle(vps_id))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("storage cannot be read: {e}"))?;
    let state: VpsDuplo = dup.duplo.state(vps_id);
    let started = begin(dup, &conn, &host, &v, &state, prev.as_ref(), asked).await;
    let Started {
        cut,
        taken_at_ms,
        ch,
        full_reason,
        slot: _slot,
    } = match started {
        Ok(Begun::Scan(s)) => s,
        Ok(Begun::Unchanged { at_ms }) => {
            if let Some(t) = prev {
                dup.duplo.put_tree(vps_id, t);
            }
            // A restore or failover began meanwhile: the copy the journal watched may be
            // fenced, and vouches for nothing.
            if dup.duplo.terms.current(vps_id) != term {
                return Err(format!(
                    "a restore or failover of {} began during the cycle",
                    v.name
                ));
            }
            return Ok(Outcome::Unchanged {
                cycle: state.last_cycle,
                at_ms,
            });
        }
        Err(e) => {
            if let Some(t) = prev {
                dup.duplo.put_tree(vps_id, t);
            }
            return Err(e);
        }
    };
    tracing::debug!(vps = %v.name, "cycle: the scan started");

    let cycle = state.last_cycle + 1;
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let store = dup.duplo.store.clone();
    let gate = dup.duplo.gate.clone();
    let terms = dup.duplo.terms.clone();
    let landing = tokio::task::spawn_blocking(move || {
        let mut r = ChannelReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        };
        ingest(
            &*store,
            &gate,
            &terms,
            term,
            &mut r,
            prev,
            vps_id,
            cycle,
            taken_at_ms,
        )
    });
    let (code, err) = stream(ch, tx).await;
    tracing::debug!(vps = %v.name, ?code, "cycle: the scan's stream ended");
    let landed = landing.await.map_err(|e| e.to_string())?;
    let landed = match landed {
        Ok(l) => l,
        Err(e) => {
            let why = String::from_utf8_lossy(&err).trim().to_string();
            return Err(match (code, why.is_empty()) {
                (Some(c), false) if c != 0 => format!("the scan failed on {}: {why}", host.name),
                _ if e.kind() == io::ErrorKind::UnexpectedEof => {
                    format!("the scan on {} stopped before its end", host.name)
                }
                _ => format!("storage refused the cycle: {e}"),
            });
        }
    };
    // Landed: the journal may forget what this cycle carried.
    let _ = conn
        .agent
        .call(
            AgentRequest::DuploAck {
                name: v.name.clone(),
                cut,
            },
            Duration::from_secs(30),
        )
        .await;
    let report = Report {
        cycle,
        full_reason,
        landed,
        duration_ms: t0.elapsed().as_millis() as u64,
    };
    tracing::debug!(
        vps = %v.name,
        cycle,
        "landed: {} entries read, {} new chunks ({} bytes), {} ms in all, {} ms of it committing",
        report.landed.entries_read,
        report.landed.chunks_new,
        report.landed.bytes_new,
        report.duration_ms,
        report.landed.commit_ms
    );
    record(dup, vps_id, host_id, &report).await;
    Ok(Outcome::Landed(Box::new(report)))
}

/// How a cycle goes on after its cut.
enum Begun {
    Scan(Started),
    /// Nothing changed since the newest point (as of `at_ms`): no scan, no point.
    Unchanged {
        at_ms: i64,
    },
}

/// A cycle whose scan runs.
struct Started {
    /// The journal's cut the cycle carries.
    cut: u64,
    /// When the scan's read began, or a little before: what the point stands for.
    taken_at_ms: i64,
    ch: russh::Channel<russh::client::Msg>,
    /// Why the read is whole, if it is.
    full_reason: Option<String>,
    /// The host's transfer slot, held until the cycle ends.
    slot: tokio::sync::OwnedSemaphorePermit,
}

/// Asks the host's journal for a cut; unless nothing changed since the newest point (and no
/// one asked for a point), waits for a transfer slot on the host and starts the scan.
async fn begin(
    dup: &Duplication,
    conn: &crate::hosts::Conn,
    host: &crate::hosts::HostRow,
    v: &crate::vps::VpsRow,
    state: &VpsDuplo,
    prev: Option<&Tree>,
    asked: bool,
) -> Result<Begun, String> {
    tracing::debug!(vps = %v.name, "cycle: asking the host's journal for a cut");
    // Before the question leaves: whatever the journal answers held at least until then.
    let asked_ms = now_ms();
    let (cut, changes) = take_cut(conn, &v.name, state).await?;
    if unchanged(&changes, prev, asked) {
        return Ok(Begun::Unchanged { at_ms: asked_ms });
    }
    tracing::debug!(vps = %v.name, host = %host.name, "cycle: waiting for a transfer slot");
    // A cycle's stream is an SSH session to the host: it takes a transfer slot.
    let slot = dup
        .hosts
        .transfer_slots(host.id, host.max_transfers.max(1) as usize)
        .acquire_owned()
        .await
        .map_err(|e| e.to_string())?;
    // The point stands for the tree as it was when its read began, no later.
    let taken_at_ms = now_ms();
    let (ch, full_reason) = start_scan(conn, &host.name, v, &changes, prev).await?;
    Ok(Begun::Scan(Started {
        cut,
        taken_at_ms,
        ch,
        full_reason,
        slot,
    }))
}

/// Whether a cycle lands no point: its journal vouches that nothing changed since the newest
/// point (which exists), and no one asked for a point. A full compare (the journal cannot
/// vouch, or the hourly one) always reads.
fn unchanged(changes: &Changes, prev: Option<&Tree>, asked: bool) -> bool {
    !asked && prev.is_some() && matches!(changes, Changes::Paths { paths } if paths.is_empty())
}

/// Asks the host's journal for a cut: what changed since the last acknowledged cycle (or a
/// full compare, at least hourly).
async fn take_cut(
    conn: &crate::hosts::Conn,
    name: &str,
    state: &VpsDuplo,
) -> Result<(u64, Changes), String> {
    let (cut, changes) = match conn
        .agent
        .call(
            AgentRequest::DuploCut {
                name: name.to_string(),
            },
            CUT_TIMEOUT,
        )
        .await
        .map_err(|e| format!("the host's journal did not answer: {e}"))?
    {
        AgentResponse::DuploCut { cut, changes } => (cut, changes),
        other => return Err(format!("the host answered a cut with {other:?}")),
    };
    let changes = match changes {
        Changes::Paths { .. }
            if state
                .last_full_at
                .is_some_and(|t| t.elapsed() >= super::FULL_COMPARE_EVERY) =>
        {
            Changes::Full {
                reason: "the hourly full compare, which also catches what no journal sees (writes through shared memory maps)".into(),
            }
        }
        c => c,
    };
    Ok((cut, changes))
}

/// Starts the agent's read of the VPS's tree (whole, or only the changed paths) and sends it
/// the request; the channel the stream comes back on, and why the read is whole, if it is.
async fn start_scan(
    conn: &crate::hosts::Conn,
    host: &str,
    v: &crate::vps::VpsRow,
    changes: &Changes,
    prev: Option<&Tree>,
) -> Result<(russh::Channel<russh::client::Msg>, Option<String>), String> {
    let ids = v.ids_on_disk().to_string();
    let (request, full_reason) = scan_request(changes, prev);
    let mut args = vec![
        "rootfs-scan",
        v.name.as_str(),
        "--ids",
        ids.as_str(),
        "--request",
    ];
    // Frozen for a consistent point only when the read is small (the agent thaws it anyway
    // past its budget): a full compare never holds a VPS.
    if request
        .paths
        .as_ref()
        .is_some_and(|p| p.len() <= FREEZE_MAX_PATHS)
    {
        args.push("--freeze");
    }
    let input = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
    // A large request (a full compare sends every file the point holds) and the whole tree
    // it reads back go over a connection of their own (see `Session::exec_apart`); a cycle of
    // a few changed paths runs on the host's.
    let ch = if input.len() > APART_FROM {
        conn.session
            .exec_apart(crate::hosts::AGENT_PATH, &args)
            .await
    } else {
        conn.session
            .exec_channel(crate::hosts::AGENT_PATH, &args)
            .await
    }
    .map_err(|e| format!("cannot start the scan on {}: {e}", host))?;
    for piece in input.chunks(256 << 10) {
        ch.data(piece)
            .await
            .map_err(|e| format!("cannot send the scan request: {e}"))?;
    }
    ch.eof().await.map_err(|e| e.to_string())?;
    Ok((ch, full_reason))
}

/// Passes the scan's stream to the landing until it ends; its exit status and what it said
/// on stderr (the first 4 KiB).
async fn stream(
    mut ch: russh::Channel<russh::client::Msg>,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
) -> (Option<u32>, Vec<u8>) {
    let (mut code, mut err) = (None, Vec::new());
    while let Some(msg) = ch.wait().await {
        match msg {
            // The landing gave up: its error says why.
            russh::ChannelMsg::Data { data } if tx.send(data.to_vec()).await.is_err() => break,
            russh::ChannelMsg::ExtendedData { data, .. } if err.len() < 4096 => {
                err.extend_from_slice(&data)
            }
            russh::ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
            _ => {}
        }
    }
    drop(tx);
    let _ = ch.close().await;
    (code, err)
}

/// What the scan is asked: the changed paths (when the journal vouches and there is a point to
/// apply them to), and the previous point's files under them, so that unchanged files are not
/// read again and what storage holds is not sent again. Also why the cycle is a full compare.
pub fn scan_request(changes: &Changes, prev: Option<&Tree>) -> (ScanRequest, Option<String>) {
    let (paths, reason) = match (changes, prev) {
        (Changes::Paths { paths }, Some(t)) => (Some(with_links(paths, t)), None),
        (Changes::Paths { .. }, None) => {
            (None, Some("the VPS has no restore point yet".to_string()))
        }
        (Changes::Full { reason }, _) => (None, Some(reason.clone())),
    };
    let known = match (prev, &paths) {
        (None, _) => Vec::new(),
        (Some(t), None) => t.under(b"").filter_map(KnownFile::of).collect(),
        (Some(t), Some(paths)) => {
            let mut out = Vec::new();
            for c in paths {
                if c.deep {
                    out.extend(t.under(&c.path.0).filter_map(KnownFile::of));
                } else if let Some(k) = t.get(&c.path.0).and_then(KnownFile::of) {
                    out.push(k);
                }
            }
            out
        }
    };
    (ScanRequest { paths, known }, reason)
}

/// The changed paths and every other name of the files among them. A file changed through one
/// name changed for all its hard links, and the name it was changed through may be gone or
/// another file by now (written, then replaced): its other names are looked at again too.
fn with_links(paths: &[ChangedPath], prev: &Tree) -> Vec<ChangedPath> {
    let mut extra: Vec<Vec<u8>> = Vec::new();
    for c in paths {
        if c.deep {
            for e in prev.under(&c.path.0) {
                extra.extend(prev.other_links(&e.path.0).cloned());
            }
        } else {
            extra.extend(prev.other_links(&c.path.0).cloned());
        }
    }
    if extra.is_empty() {
        return paths.to_vec();
    }
    let mut out = paths.to_vec();
    out.extend(extra.into_iter().map(|p| ChangedPath {
        path: PathBytes(p),
        deep: false,
    }));
    out.sort_by(|a, b| a.path.0.cmp(&b.path.0).then(b.deep.cmp(&a.deep)));
    out.dedup_by(|b, a| a.path.0 == b.path.0);
    let deep: Vec<Vec<u8>> = out
        .iter()
        .filter(|c| c.deep)
        .map(|c| c.path.0.clone())
        .collect();
    out.retain(|c| c.deep || !deep.iter().any(|d| within(&c.path.0, d)));
    out
}

/// Whether `path` lies under the directory `top` (not `top` itself).
fn within(path: &[u8], top: &[u8]) -> bool {
    top.is_empty() || (path.starts_with(top) && path.get(top.len()) == Some(&b'/'))
}

/// The row describing a landed point (storage holds the point itself; a lost row is put back
/// from storage by [`super::prune`]).
async fn record(dup: &Arc<Duplication>, vps_id: VpsId, host_id: HostId, r: &Report) {
    let m = &r.landed.header;
    let row = crate::repo::points::PointRow {
        vps_id,
        cycle: r.cycle as i64,
        host_id: Some(host_id),
        taken_at: chrono::DateTime::from_timestamp_millis(m.taken_at_ms)
            .unwrap_or_default()
            .naive_utc(),
        full_compare: r.landed.full,
        full_reason: r.full_reason.clone(),
        files: m.files as i64,
        bytes: m.bytes as i64,
        entries_read: r.landed.stats.files_read as i64,
        chunks_new: r.landed.chunks_new as i64,
        bytes_new: r.landed.bytes_new as i64,
        duration_ms: r.duration_ms as i64,
        freeze_ms: r.landed.stats.freeze_ms as i64,
        consistent: r.landed.stats.consistent,
        unchanged_until: None,
    };
    let res = dup
        .db
        .run(move |c| crate::repo::points::insert(c, &row))
        .await;
    if let Err(e) = res {
        tracing::warn!(
            vps_id = %vps_id,
            cycle = r.cycle,
            "cannot record a restore point: {}",
            e.message()
        );
    }
}

/// After a cycle: the VPS's state, its next cycle, and an event when cycles start or stop
/// failing (not one per failed cycle at a 1 s interval).
pub async fn finish(dup: &Arc<Duplication>, vps_id: VpsId, result: Result<Outcome, String>) {
    if result.as_ref().is_err_and(|e| e == GONE) {
        dup.duplo.forget(vps_id);
        return;
    }
    let now = now_ms();
    // The landed tree is the next cycle's; after a failure it is read again from storage if
    // the cycle took it.
    let result = result.map(|mut o| {
        if let Outcome::Landed(r) = &mut o {
            dup.duplo
                .put_tree(vps_id, std::mem::take(&mut r.landed.tree));
        }
        o
    });
    let lost_tree = result.is_err() && !dup.duplo.has_tree(vps_id);
    match &result {
        Ok(Outcome::Landed(_)) => &dup.duplo.landed,
        Ok(Outcome::Unchanged { cycle, at_ms }) => {
            dup.duplo.mark_unchanged(vps_id, *cycle, *at_ms);
            &dup.duplo.unchanged
        }
        Err(_) => &dup.duplo.failed,
    }
    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (failures_before, failures) = dup.duplo.update(vps_id, |s| {
        let before = s.failures;
        s.running_since_ms = None;
        match &result {
            Ok(Outcome::Unchanged { cycle, at_ms }) => {
                s.failures = 0;
                s.last_error = None;
                if s.last_cycle == *cycle {
                    s.unchanged_ms = s.unchanged_ms.max(Some(*at_ms));
                }
                s.last_done_ms = Some(now);
                // The hourly full compare counts from here when none landed in this run yet:
                // a VPS whose journal never sees a change still gets one (writes through
                // shared memory maps reach no journal).
                s.last_full_at.get_or_insert_with(Instant::now);
            }
            Ok(Outcome::Landed(r)) => {
                // The Storage page's totals follow every point, not only each collection.
                if let Some((_, c)) = dup
                    .duplo
                    .collected
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_mut()
                {
                    let counted = c.through.entry(vps_id).or_default();
                    if *counted < r.cycle {
                        *counted = r.cycle;
                        c.points += 1;
                        c.chunks_used += r.landed.chunks_new;
                        c.bytes_used += r.landed.stored_new;
                        c.bytes_logical += r.landed.header.bytes;
                    }
                }
                s.failures = 0;
                s.last_error = None;
                s.last_cycle = r.cycle;
                s.last_taken_ms = Some(r.landed.header.taken_at_ms);
                s.unchanged_ms = None;
                s.last_done_ms = Some(now);
                s.last_full_reason = r.full_reason.clone();
                if r.landed.full || s.last_full_at.is_none() {
                    s.last_full_at = Some(Instant::now());
                }
            }
            Err(e) => {
                dup.duplo
                    .dirty
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                s.failures += 1;
                s.last_error = Some(e.clone());
                if lost_tree {
                    s.loaded = false;
                }
            }
        }
        s.done_at = Some(Instant::now());
        (before, s.failures)
    });
    let event = match (&result, failures_before, failures) {
        (Err(e), 0, _) => Some((
            "duplo.cycle_failed",
            Severity::Error,
            format!("duplication of VPS {{vps}} failed: {e}"),
        )),
        (Ok(o), n, _) if n > 0 => Some((
            "duplo.cycle_recovered",
            Severity::Info,
            match o {
                Outcome::Landed(r) => format!(
                    "duplication of VPS {{vps}} works again (cycle {} landed after {n} failed)",
                    r.cycle
                ),
                Outcome::Unchanged { cycle, .. } => format!(
                    "duplication of VPS {{vps}} works again (after {n} failed cycles, it found nothing changed since point {cycle})"
                ),
            },
        )),
        _ => None,
    };
    if let Some((action, severity, message)) = event {
        let _ = dup
            .db
            .run(move |c| {
                // Named as people know it.
                let name =
                    crate::repo::vpses::name(c, vps_id)?.unwrap_or_else(|| format!("#{vps_id}"));
                crate::audit::record_system(
                    c,
                    &Actor::system("duplo"),
                    Change::new(action, "vps", vps_id, message.replace("{vps}", &name))
                        .severity(severity),
                )
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serverware_shared::duplo::{Entry, EntryKind};

    fn file(path: &str, ino: u64) -> Entry {
        Entry {
            ino,
            ctime_ns: 1,
            xattrs: Vec::new(),
            data: None,
            ..Entry::new(path.as_bytes(), EntryKind::File)
        }
    }

    fn changed(paths: &[(&str, bool)]) -> Changes {
        Changes::Paths {
            paths: paths
                .iter()
                .map(|(p, deep)| ChangedPath {
                    path: PathBytes(p.as_bytes().to_vec()),
                    deep: *deep,
                })
                .collect(),
        }
    }

    /// A cycle lands no point only when the journal vouches for no change since a point that
    /// exists, and no one asked for one.
    #[test]
    fn only_a_vouched_for_unchanged_tree_skips_its_point() {
        let prev = Tree::from_entries(vec![Entry::new(b"", EntryKind::Dir), file("f", 3)]);
        let none = changed(&[]);
        assert!(unchanged(&none, Some(&prev), false));
        assert!(!unchanged(&none, Some(&prev), true), "asked for");
        assert!(!unchanged(&none, None, false), "no point yet");
        assert!(!unchanged(&changed(&[("f", false)]), Some(&prev), false));
        let full = Changes::Full {
            reason: "the hourly full compare".into(),
        };
        assert!(!unchanged(&full, Some(&prev), false));
    }

    /// A file written through one name and then replaced under it changed for its other
    /// names: they are scanned again, whether the name was changed alone or under a directory.
    #[test]
    fn a_changed_file_brings_its_other_names_into_the_scan() {
        let prev = Tree::from_entries(vec![
            Entry::new(b"", EntryKind::Dir),
            Entry::new(b"a", EntryKind::Dir),
            Entry::new(b"c", EntryKind::Dir),
            file("a/f3", 7),
            file("c/f1", 7),
            file("c/other", 8),
            file("d", 9),
        ]);
        let asked = |c: &Changes| -> Vec<(String, bool)> {
            let (req, reason) = scan_request(c, Some(&prev));
            assert!(reason.is_none());
            req.paths
                .unwrap()
                .iter()
                .map(|p| (String::from_utf8(p.path.0.clone()).unwrap(), p.deep))
                .collect()
        };
        let s = |v: &[(&str, bool)]| -> Vec<(String, bool)> {
            v.iter().map(|(p, d)| (p.to_string(), *d)).collect()
        };
        assert_eq!(
            asked(&changed(&[("a/f3", false)])),
            s(&[("a/f3", false), ("c/f1", false)])
        );
        assert_eq!(
            asked(&changed(&[("a", true)])),
            s(&[("a", true), ("c/f1", false)])
        );
        // A name both changed deep and linked is asked for once, deep.
        assert_eq!(
            asked(&changed(&[("a/f3", false), ("c", true)])),
            s(&[("a/f3", false), ("c", true)])
        );
        assert_eq!(asked(&changed(&[("d", false)])), s(&[("d", false)]));
        // What the controller knows of each is sent along.
        let (req, _) = scan_request(&changed(&[("a/f3", false)]), Some(&prev));
        assert_eq!(req.known.len(), 2);
    }
}
