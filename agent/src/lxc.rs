//! The LXC driver: containers under /var/lib/lxc, driven by the `lxc-*` programs with argument
//! vectors (never a shell), and their figures read from cgroups and /proc.

use crate::rootfs::Root;
use serverware_shared::agent::{VpsSample, VpsSpec, VpsState};
use serverware_shared::validate;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const LXC_PATH: &str = "/var/lib/lxc";

/// A container name the controller may use: a resource name (letters, digits, '-'), exactly.
fn checked(name: &str) -> Result<&str, String> {
    validate::exact("name", name, validate::resource_name).map_err(|e| e.to_string())?;
    Ok(name)
}

fn dir(name: &str) -> PathBuf {
    Path::new(LXC_PATH).join(name)
}

/// Runs a program; its exit status and what it wrote to stderr.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Which cgroup keys LXC takes on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cgroups {
    V1,
    V2,
}

pub fn cgroups() -> Cgroups {
    // A pure v2 host has cgroup.controllers at the root; a hybrid one keeps memory on v1.
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        Cgroups::V2
    } else {
        Cgroups::V1
    }
}

/// The container configuration for a spec.
pub fn config_text(spec: &VpsSpec, cg: Cgroups, halt: &str) -> String {
    let mut c = format!(
        "{MARK}; changes are overwritten by the controller.\n\
         lxc.include = /usr/share/lxc/config/common.conf\n\
         lxc.uts.name = {host}\n\
         lxc.rootfs.path = dir:{path}/{name}/rootfs\n\
         lxc.net.0.type = veth\n\
         lxc.net.0.link = {bridge}\n\
         lxc.net.0.flags = up\n\
         lxc.net.0.veth.pair = {veth}\n\
         lxc.net.0.hwaddr = {mac}\n\
         lxc.net.0.ipv4.address = {ip}/{prefix}\n",
        host = spec.hostname,
        path = LXC_PATH,
        name = spec.name,
        bridge = spec.bridge,
        veth = spec.veth,
        mac = spec.mac,
        ip = spec.ipv4,
        prefix = spec.prefix_len,
    );
    if let Some(gw) = &spec.gateway {
        c.push_str(&format!("lxc.net.0.ipv4.gateway = {gw}\n"));
    }
    c.push_str(
        "lxc.mount.auto = proc:mixed sys:mixed cgroup:mixed\n\
         lxc.autodev = 1\n",
    );
    if let Some(base) = spec.id_base {
        // Root in the VPS is `base` on the host, and so on for the whole range.
        c.push_str(&format!(
            "lxc.idmap = u 0 {base} {n}\nlxc.idmap = g 0 {base} {n}\n",
            n = serverware_shared::agent::ID_RANGE
        ));
    }
    c.push_str(&format!("lxc.signal.halt = {halt}\n"));
    c.push_str(&format!(
        "lxc.start.auto = {}\n",
        if spec.autostart { 1 } else { 0 }
    ));
    for (k, v) in limits(spec, cg) {
        let prefix = match cg {
            Cgroups::V1 => "lxc.cgroup",
            Cgroups::V2 => "lxc.cgroup2",
        };
        c.push_str(&format!("{prefix}.{k} = {v}\n"));
    }
    c
}

/// cgroup settings for the spec's limits, as (key, value).
fn limits(spec: &VpsSpec, cg: Cgroups) -> Vec<(&'static str, String)> {
    let mut v = Vec::new();
    match cg {
        Cgroups::V1 => {
            v.push(("memory.limit_in_bytes", spec.memory_limit_bytes.to_string()));
            if let Some(s) = spec.cpu_shares {
                v.push(("cpu.shares", s.to_string()));
            }
            if let Some(m) = spec.cpu_limit_millis {
                v.push(("cpu.cfs_period_us", "100000".into()));
                v.push(("cpu.cfs_quota_us", (u64::from(m) * 100).to_string()));
            }
        }
        Cgroups::V2 => {
            v.push(("memory.max", spec.memory_limit_bytes.to_string()));
            if let Some(s) = spec.cpu_shares {
                // cpu.shares 1024 ≈ cpu.weight 100.
                v.push((
                    "cpu.weight",
                    (u64::from(s) * 100 / 1024).clamp(1, 10000).to_string(),
                ));
            }
            if let Some(m) = spec.cpu_limit_millis {
                v.push(("cpu.max", format!("{} 100000", u64::from(m) * 100)));
            }
        }
    }
    v
}

/// The first line of every configuration this agent writes.
const MARK: &str = "# Written by serverware-agent";

/// Containers SERVERware did not make are never changed or removed.
fn ours(name: &str) -> Result<(), String> {
    match std::fs::read_to_string(dir(name).join("config")) {
        Ok(c) if !c.starts_with(MARK) => Err(format!(
            "this host already has a container named '{name}' that SERVERware did not make; it is left alone"
        )),
        _ => Ok(()),
    }
}

pub fn define(spec: &VpsSpec) -> Result<(), String> {
    // Every field reaches the configuration file: checked here, whatever the controller checked.
    spec.check().map_err(|e| e.to_string())?;
    let name = checked(&spec.name)?;
    ours(name)?;
    if !Path::new("/sys/class/net")
        .join(&spec.bridge)
        .join("bridge")
        .is_dir()
    {
        return Err(format!(
            "this host has no bridge '{}' for VPS interfaces: create it, or set the host's VPS bridge",
            spec.bridge
        ));
    }
    if let Some(base) = spec.id_base {
        // Where Debian's `uidmap` is installed (lxc recommends it), LXC maps ids through
        // newuidmap, which takes only ranges root was given.
        crate::subids::ensure(Path::new("/etc"), base, serverware_shared::agent::ID_RANGE)?;
    }
    let d = container_dir(name)?;
    let rootfs = Root::open(&d.join("rootfs")).ok();
    let halt = rootfs
        .as_ref()
        .map(halt_signal)
        .unwrap_or_else(|| "SIGPWR".into());
    let tmp = d.join("config.part");
    std::fs::write(&tmp, config_text(spec, cgroups(), &halt))
        .and_then(|_| std::fs::rename(&tmp, d.join("config")))
        .map_err(|e| format!("cannot write the configuration: {e}"))?;
    // The VPS's own /etc/hostname, for programs that read it rather than the kernel's name
    // (which lxc.uts.name sets). Written inside the VPS's root only; a VPS that replaced the
    // file with anything but a plain file keeps what it made.
    if let Some(root) = &rootfs {
        let _ = root.replace_file("etc/hostname", format!("{}\n", spec.hostname).as_bytes());
    }
    sync_fs(&d)
}

/// Writes everything of the filesystem holding `path` to its disk (`syncfs`).
pub fn sync_fs(path: &Path) -> Result<(), String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs on a descriptor this function owns.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(format!(
            "cannot sync {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The signal that asks the VPS's init to shut down: busybox halts on SIGUSR1, systemd on
/// SIGRTMIN+3; others get LXC's default, SIGPWR. The link is read inside the VPS's root.
pub fn halt_signal(root: &Root) -> String {
    let init = root
        .read_link("sbin/init")
        .ok()
        .flatten()
        .unwrap_or_default();
    if init.contains("busybox") {
        "SIGUSR1".into()
    } else if init.contains("systemd") {
        "SIGRTMIN+3".into()
    } else {
        "SIGPWR".into()
    }
}

pub fn apply_limits(spec: &VpsSpec) -> Result<(), String> {
    spec.check().map_err(|e| e.to_string())?;
    let name = checked(&spec.name)?;
    if state(name).state != "running" {
        return Ok(());
    }
    for (k, v) in limits(spec, cgroups()) {
        run("lxc-cgroup", &["-n", name, k, &v])?;
    }
    Ok(())
}

/// `console NAME`: a root shell inside the running VPS, on this process's terminal (the pty of
/// the controller's SSH channel). `lxc-attach` enters the VPS's namespaces with a clean
/// environment and runs the VPS's own shell there (bash when it has one); the host's files are
/// never opened by a path inside the VPS.
pub fn console(name: &str) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let name = checked(name)?;
    if state(name).state != "running" {
        return Err(format!("VPS {name} is not running"));
    }
    let err = std::process::Command::new("lxc-attach")
        .args([
            "-n",
            name,
            "--clear-env",
            "--set-var",
            "TERM=xterm-256color",
            "--set-var",
            "HOME=/root",
            "--set-var",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--",
            "/bin/sh",
            "-c",
            "cd /root 2>/dev/null || cd /; if command -v bash >/dev/null 2>&1; then exec bash -l; fi; exec sh -l",
        ])
        .exec();
    Err(format!("cannot run lxc-attach: {err}"))
}

pub fn state(name: &str) -> VpsState {
    let out = run("lxc-info", &["-n", name, "-s", "-p", "-H"]).unwrap_or_default();
    parse_info(name, &out)
}

/// `lxc-info -s -p -H` prints `State: RUNNING` and `PID: 123` lines (or bare values).
pub fn parse_info(name: &str, out: &str) -> VpsState {
    let mut state = None;
    let mut init_pid = None;
    for (i, line) in out.lines().enumerate() {
        let (key, value) = match line.split_once(':') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim()),
            None => (
                if i == 0 { "state" } else { "pid" }.to_string(),
                line.trim(),
            ),
        };
        match key.as_str() {
            "state" => state = Some(value.to_ascii_lowercase()),
            "pid" => init_pid = value.parse().ok(),
            _ => {}
        }
    }
    VpsState {
        name: name.to_string(),
        state: state.unwrap_or_else(|| "unknown".into()),
        init_pid,
    }
}

/// Every container that has a configuration under the LXC path.
pub fn names() -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(LXC_PATH) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .flatten()
        .filter(|e| e.path().join("config").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort();
    v
}

pub fn list() -> Vec<VpsState> {
    names().iter().map(|n| state(n)).collect()
}

pub fn start(name: &str) -> Result<(), String> {
    let name = checked(name)?;
    if !dir(name).join("rootfs").is_dir() {
        return Err(format!("{name} has no root filesystem on this host"));
    }
    // Starting what runs is done already (an operation taken up after its controller died
    // between the start and its record).
    if state(name).state == "running" {
        return Ok(());
    }
    // LXC's own log says why a start failed ("ABORTING" alone on stderr says nothing); it is
    // kept in the agent's directory, which no VPS reaches.
    let log = start_log(name);
    let _ = std::fs::remove_file(&log);
    let log_s = log.to_string_lossy().into_owned();
    let started = run(
        "lxc-start",
        &["-n", name, "--logpriority", "ERROR", "--logfile", &log_s],
    )
    .and_then(|_| run("lxc-wait", &["-n", name, "-s", "RUNNING", "-t", "30"]).map(|_| ()));
    started.map_err(|e| match why_not_started(&log) {
        Some(why) => format!("{e}; LXC says: {why}"),
        None => e,
    })
}

fn start_log(name: &str) -> PathBuf {
    let d = Path::new("/var/lib/serverware/lxc-logs");
    let _ = std::fs::create_dir_all(d);
    d.join(format!("{name}.start.log"))
}

/// The last few error lines of a failed start, each without LXC's time stamp and source prefix.
fn why_not_started(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let lines: Vec<String> = text
        .lines()
        .filter(|l| l.contains("ERROR"))
        .map(|l| match l.rsplit_once(" - ") {
            Some((_, msg)) => msg.trim().to_string(),
            None => l.trim().to_string(),
        })
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return None;
    }
    let tail = &lines[lines.len().saturating_sub(4)..];
    Some(tail.join("; "))
}

/// Stops cleanly, or by force after `timeout` seconds; returns whether force was needed.
pub fn stop(name: &str, timeout: u32) -> Result<bool, String> {
    let name = checked(name)?;
    validate::stop_timeout_secs("timeout_secs", timeout).map_err(|e| e.to_string())?;
    if state(name).state == "stopped" {
        return Ok(false);
    }
    let t = timeout.to_string();
    if run("lxc-stop", &["-n", name, "--nokill", "-t", &t]).is_ok()
        && state(name).state == "stopped"
    {
        return Ok(false);
    }
    run("lxc-stop", &["-n", name, "-k"])?;
    Ok(true)
}

/// Stops at once, by force (the guard fencing a host).
pub fn kill(name: &str) -> Result<(), String> {
    let name = checked(name)?;
    run("lxc-stop", &["-n", name, "-k"])?;
    Ok(())
}

pub fn destroy(name: &str) -> Result<(), String> {
    let name = checked(name)?;
    if !dir(name).exists() {
        return Ok(());
    }
    ours(name)?;
    if state(name).state != "stopped" {
        let _ = run("lxc-stop", &["-n", name, "-k"]);
    }
    if run("lxc-destroy", &["-n", name]).is_err() {
        // A container whose configuration never got written: remove what is there.
        std::fs::remove_dir_all(dir(name)).map_err(|e| format!("cannot remove {name}: {e}"))?;
    }
    Ok(())
}

/// Where a VPS's root filesystem is on this host.
pub fn rootfs_of(name: &str) -> Result<PathBuf, String> {
    Ok(dir(checked(name)?).join("rootfs"))
}

/// The freezer of a running VPS's cgroup, found through its init's PID (unambiguous, unlike a
/// container name).
pub struct Freezer {
    /// v1 `freezer.state`, or v2 `cgroup.freeze`.
    file: PathBuf,
    v1: bool,
}

impl Freezer {
    pub fn of(name: &str) -> Result<Freezer, String> {
        let name = checked(name)?;
        let Some(pid) = state(name).init_pid else {
            return Err(format!("{name} is not running"));
        };
        let cg = cgroup_paths(pid);
        if let Some(file) = cg_file(&cg, "freezer", "freezer.state") {
            return Ok(Freezer { file, v1: true });
        }
        if let Some(file) = cg_file(&cg, "", "cgroup.freeze") {
            return Ok(Freezer { file, v1: false });
        }
        Err(format!("no freezer cgroup found for {name}"))
    }

    /// Pauses or resumes every process; a pause returns once every one has stopped.
    pub fn set(&self, frozen: bool) -> Result<(), String> {
        let f = &self.file;
        let value = match (self.v1, frozen) {
            (true, true) => "FROZEN",
            (true, false) => "THAWED",
            (false, true) => "1",
            (false, false) => "0",
        };
        std::fs::write(f, value).map_err(|e| format!("cannot write {}: {e}", f.display()))?;
        if !frozen {
            return Ok(());
        }
        // The kernel reports FREEZING (v1), or `frozen 0` in cgroup.events (v2), until every
        // task stopped.
        let events = f.with_file_name("cgroup.events");
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let done = if self.v1 {
                std::fs::read_to_string(f).is_ok_and(|s| s.trim() == "FROZEN")
            } else {
                std::fs::read_to_string(&events).is_ok_and(|s| s.lines().any(|l| l == "frozen 1"))
            };
            if done {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = self.set(false);
        Err("the VPS did not freeze within 2 s".into())
    }
}

/// Pauses or resumes every process of a running VPS (resuming one that is not running is done).
pub fn freeze(name: &str, frozen: bool) -> Result<(), String> {
    match Freezer::of(name) {
        Ok(f) => f.set(frozen),
        Err(_) if !frozen => Ok(()),
        Err(e) => Err(e),
    }
}

/// The container's directory: root's, but passable (not readable) by others, since an
/// unprivileged VPS's root reaches its root filesystem through it.
fn container_dir(name: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let d = dir(name);
    std::fs::create_dir_all(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o711))
        .map_err(|e| format!("cannot set the mode of {}: {e}", d.display()))?;
    // LXC's own directory must be passable too.
    let top = Path::new(LXC_PATH);
    let mode = std::fs::metadata(top)
        .map(|m| m.permissions().mode())
        .unwrap_or(0o755);
    if mode & 0o001 == 0 {
        std::fs::set_permissions(
            top,
            std::fs::Permissions::from_mode((mode | 0o111) & 0o7777),
        )
        .map_err(|e| format!("cannot make {LXC_PATH} passable: {e}"))?;
    }
    Ok(d)
}

/// `serverware-agent rootfs-import NAME [--gzip] [--ids FROM:TO]`: a tar stream on stdin becomes
/// the VPS's root filesystem, its ids shifted from the source's range to the VPS's. It is
/// unpacked beside it first, so a broken stream leaves nothing behind. Returns a summary line.
/// Imports a root filesystem from a tar stream on stdin. `resume`: an operation taken up after
/// its controller died; a root filesystem already there is the one it imported before (an
/// import lands whole, by a rename, or not at all), so the stream is read and dropped.
pub fn import(
    name: &str,
    gzip: bool,
    shift: crate::idmap::Shift,
    resume: bool,
) -> Result<String, String> {
    let name = checked(name)?;
    ours(name)?;
    let d = container_dir(name)?;
    let root = d.join("rootfs");
    if root.exists() && resume {
        std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink())
            .map_err(|e| format!("cannot read the stream: {e}"))?;
        return Ok("the root filesystem was imported before".into());
    }
    if root.exists() {
        return Err(format!("{name} already has a root filesystem here"));
    }
    let part = d.join("rootfs.part");
    let _ = std::fs::remove_dir_all(&part);
    std::fs::create_dir_all(&part).map_err(|e| format!("cannot create {}: {e}", part.display()))?;
    let mut args = vec!["-x", "-p", "--numeric-owner", "-C"];
    let p = part.to_string_lossy().to_string();
    args.push(&p);
    if gzip {
        args.push("-z");
    }
    args.extend(["-f", "-"]);
    let status = Command::new("tar")
        .args(&args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&part);
        return Err("the root filesystem stream was incomplete or not a tar archive".into());
    }
    // The tree is not yet the VPS's: nothing can change under the walk.
    let t0 = Instant::now();
    let entries = shift.apply(&part).map_err(|e| {
        let _ = std::fs::remove_dir_all(&part);
        format!("cannot shift the ids of the root filesystem: {e}")
    })?;
    let took = t0.elapsed();
    // On the disk before it is the VPS's and the controller is told: a host whose power is cut
    // a moment later boots with the whole tree, not files the page cache never wrote.
    sync_fs(&part)?;
    std::fs::rename(&part, &root).map_err(|e| format!("cannot finish the import: {e}"))?;
    sync_fs(&root)?;
    Ok(if shift.from == shift.to {
        "ids kept".to_string()
    } else {
        format!(
            "ids of {entries} files shifted from {} to {} in {} ms",
            shift.from,
            shift.to,
            took.as_millis()
        )
    })
}

/// `serverware-agent rootfs-export NAME`: the VPS's root filesystem as a tar stream on stdout.
pub fn export(name: &str) -> Result<(), String> {
    let name = checked(name)?;
    let root = dir(name).join("rootfs");
    if !root.is_dir() {
        return Err(format!("{name} has no root filesystem here"));
    }
    let r = root.to_string_lossy().to_string();
    let status = Command::new("tar")
        .args(["-c", "--numeric-owner", "-C", &r, "-f", "-", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .status()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err("tar failed".into())
    }
}

/// `serverware-agent rootfs-scan NAME [--ids BASE]`: the VPS's whole tree as a netDUPLO stream
/// on stdout (`serverware_shared::duplo::stream`): each distinct chunk once, as it is read, then
/// the entries with owners as the VPS sees them, then the end.
/// A scan may hold its VPS frozen this long for a consistent point; a longer one thaws it and
/// goes on reading each file as it is at that moment.
const FREEZE_BUDGET: Duration = Duration::from_millis(100);
/// How much of what a frozen VPS's read finds waits in memory until it is thawed.
const FREEZE_BUFFER: usize = 64 << 20;

/// `rootfs-scan NAME [--ids BASE] [--request] [--freeze]`: the netDUPLO stream of a VPS's tree on
/// stdout. With `--request` a [`ScanRequest`](serverware_shared::duplo::ScanRequest) comes on
/// stdin: only the changed paths (a delta), and the previous point's files (not read again when
/// unchanged; their chunks never sent again). With `--freeze` a running VPS is frozen while it is
/// read, within [`FREEZE_BUDGET`].
pub fn scan(name: &str, base: u32, request: bool, freeze: bool) -> Result<(), String> {
    use serverware_shared::duplo::{stream, Delta, ScanRequest, ScanStats};
    use std::io::{Read, Write};
    let name = checked(name)?;
    let root = dir(name).join("rootfs");
    let req: ScanRequest = if request {
        let mut buf = Vec::new();
        std::io::stdin()
            .take(256 << 20)
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read the scan request: {e}"))?;
        serde_json::from_slice(&buf)
            .map_err(|e| format!("the scan request is not understood: {e}"))?
    } else {
        ScanRequest::default()
    };
    let held: std::collections::HashSet<serverware_shared::duplo::ChunkId> = req
        .known
        .iter()
        .flat_map(|k| k.chunks.iter().copied())
        .collect();
    let known: HashMap<Vec<u8>, serverware_shared::duplo::KnownFile> = req
        .known
        .into_iter()
        .map(|k| (k.path.0.clone(), k))
        .collect();
    let changed = req.paths;
    let out = std::io::stdout();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, out.lock());
    let mut sent = std::collections::HashSet::new();
    // How long the VPS is held, and whether the whole read was inside the hold.
    struct Hold {
        freezer: Option<Freezer>,
        since: Option<Instant>,
        ms: u64,
        early: bool,
    }
    impl Hold {
        fn release(&mut self, early: bool) {
            if let (Some(t), Some(f)) = (self.since.take(), &self.freezer) {
                let _ = f.set(false);
                self.ms = t.elapsed().as_millis() as u64;
                self.early = early;
            }
        }
    }
    let mut hold = Hold {
        freezer: if freeze { Freezer::of(name).ok() } else { None },
        since: None,
        ms: 0,
        early: false,
    };
    if let Some(f) = &hold.freezer {
        let t = Instant::now();
        if f.set(true).is_ok() {
            hold.since = Some(t);
        }
    }
    let was_frozen = hold.since.is_some();
    // While the VPS is held, what is read waits in memory (up to FREEZE_BUFFER): the hold
    // covers reading the disk, never the network the chunks then cross.
    let mut waiting: Vec<(serverware_shared::duplo::ChunkId, Vec<u8>)> = Vec::new();
    let mut waiting_bytes = 0usize;
    let result = {
        let mut sink = |id: &serverware_shared::duplo::ChunkId, data: &[u8]| {
            if hold.since.is_some_and(|t| t.elapsed() > FREEZE_BUDGET)
                || waiting_bytes + data.len() > FREEZE_BUFFER
            {
                hold.release(true);
            }
            // What the previous point holds never travels again.
            if !held.contains(id) && sent.insert(*id) {
                if hold.since.is_some() {
                    waiting_bytes += data.len();
                    waiting.push((*id, data.to_vec()));
                } else {
                    for (wid, wdata) in waiting.drain(..) {
                        stream::write_chunk(&mut w, &wid, &wdata)?;
                    }
                    waiting_bytes = 0;
                    stream::write_chunk(&mut w, id, data)?;
                }
            }
            Ok(())
        };
        crate::scan::scan_paths(&root, base, changed.as_deref(), &known, &mut sink)
    };
    hold.release(false);
    for (wid, wdata) in waiting.drain(..) {
        stream::write_chunk(&mut w, &wid, &wdata)
            .map_err(|e| format!("cannot send the tree of {name}: {e}"))?;
    }
    let (freeze_ms, thawed_early) = (hold.ms, hold.early);
    let scanned = result.map_err(|e| format!("cannot read the tree of {name}: {e}"))?;
    let stats = ScanStats {
        files_read: scanned.files_read,
        bytes_read: scanned.bytes_read,
        freeze_ms,
        consistent: was_frozen && !thawed_early,
    };
    match changed {
        None => stream::write_entries(&mut w, &scanned.entries),
        Some(roots) => stream::write_delta(
            &mut w,
            &Delta {
                roots,
                entries: scanned.entries,
            },
        ),
    }
    .and_then(|_| stream::write_stats(&mut w, &stats))
    .and_then(|_| stream::write_end(&mut w))
    .and_then(|_| w.flush())
    .map_err(|e| format!("cannot send the tree of {name}: {e}"))
}

/// `rootfs-restore NAME [--ids BASE] [--seed ID]`: a restore point becomes the VPS's root
/// filesystem (see [`crate::restore`]); the VPS must not be running. With `--seed`, the standby
/// copy of VPS ID this host holds, if any, supplies what it can (and is used up). Frames on
/// stdin and stdout.
pub fn restore(name: &str, base: u32, seed: Option<i64>) -> Result<(), String> {
    use std::io::Write;
    let name = checked(name)?;
    ours(name)?;
    if state(name).init_pid.is_some() {
        return Err(format!(
            "{name} is running: stop it before its files are replaced"
        ));
    }
    let d = container_dir(name)?;
    let stdin = std::io::stdin();
    let mut input = std::io::BufReader::with_capacity(1 << 20, stdin.lock());
    let stdout = std::io::stdout();
    let mut output = stdout.lock();
    let taken = seed.and_then(crate::standby::take);
    let result = crate::restore::restore(
        &d,
        base,
        taken.as_ref().map(|(_, s)| s),
        &mut input,
        &mut output,
    );
    if let Some(id) = seed.filter(|_| taken.is_some()) {
        crate::standby::finish_used(id);
    }
    let (mut summary, _) = result.map_err(|e| format!("cannot restore {name}: {e}"))?;
    summary.seeded = taken.is_some();
    serverware_shared::duplo::stream::write_summary(&mut output, &summary)
        .and_then(|_| output.flush())
        .map_err(|e| format!("cannot report the restore of {name}: {e}"))
}

/// A process's cgroup paths: controller → path (v2's unified hierarchy under "").
fn cgroup_paths(pid: u32) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for line in std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
    {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        for c in ctrls.split(',') {
            m.insert(c.to_string(), path.to_string());
        }
    }
    m
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Where a v1 controller or the v2 hierarchy is mounted.
fn cg_file(paths: &HashMap<String, String>, ctrl: &str, file: &str) -> Option<PathBuf> {
    if let Some(p) = paths.get(ctrl) {
        let f = Path::new("/sys/fs/cgroup")
            .join(ctrl)
            .join(p.trim_start_matches('/'))
            .join(file);
        if f.exists() {
            return Some(f);
        }
    }
    let p = paths.get("")?;
    for base in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let f = Path::new(base).join(p.trim_start_matches('/')).join(file);
        if f.exists() {
            return Some(f);
        }
    }
    None
}

struct Prev {
    cpu_ns: u64,
    rx: u64,
    tx: u64,
    at: Instant,
}

/// Per-VPS figures between samples.
#[derive(Default)]
pub struct VpsSampler {
    prev: HashMap<String, Prev>,
    /// Disk usage per VPS, kept up to date by [`disk_walker`].
    disk: DiskUsage,
}

/// Disk usage of each VPS's root filesystem, as last walked.
pub type DiskUsage = std::sync::Arc<std::sync::Mutex<HashMap<String, u64>>>;

/// How long the disk walker rests between two passes over every VPS.
const DISK_PASS_EVERY: Duration = Duration::from_secs(60);

/// Walks each VPS's root filesystem in turn, on its own thread and at low priority, so that
/// large trees never delay a sample: a pass over all VPSes, then a rest.
pub fn disk_walker(usage: DiskUsage) {
    std::thread::spawn(move || {
        // SAFETY: nice has no preconditions; a failure leaves the priority as it was.
        unsafe {
            libc::nice(10);
        }
        let mut last_pass: Option<Instant> = None;
        loop {
            let list = names();
            let pass = last_pass.is_none_or(|t| t.elapsed() >= DISK_PASS_EVERY);
            // Every VPS once a pass; one not measured yet (new) at once.
            let due: Vec<&String> = {
                let known = usage.lock().unwrap_or_else(|p| p.into_inner());
                list.iter()
                    .filter(|n| pass || !known.contains_key(*n))
                    .collect()
            };
            for name in due {
                if let Ok(used) = crate::journal::disk_usage(&dir(name).join("rootfs")) {
                    usage
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name.clone(), used);
                }
            }
            if pass {
                last_pass = Some(Instant::now());
            }
            usage
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|n, _| list.contains(n));
            std::thread::sleep(Duration::from_secs(2));
        }
    });
}

/// Gathers per-VPS figures on a thread of its own, every `interval_ms`, and keeps the newest
/// batch where the sample loop takes it without waiting: the heartbeat goes out on time
/// whatever the figures cost.
pub fn figures(
    interval_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> std::sync::Arc<std::sync::Mutex<Vec<VpsSample>>> {
    let latest = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = latest.clone();
    std::thread::spawn(move || {
        let disk = DiskUsage::default();
        disk_walker(disk.clone());
        let mut sampler = VpsSampler {
            disk,
            ..Default::default()
        };
        loop {
            let t0 = Instant::now();
            let batch = sampler.sample();
            *out.lock().unwrap_or_else(|p| p.into_inner()) = batch;
            let iv = Duration::from_millis(
                interval_ms
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .max(100),
            );
            std::thread::sleep(iv.saturating_sub(t0.elapsed()));
        }
    });
    latest
}

/// The state and init of every container in one `lxc-ls` run (not one `lxc-info` each).
pub fn states() -> HashMap<String, VpsState> {
    let out = run("lxc-ls", &["-f", "-F", "NAME,STATE,PID"]).unwrap_or_default();
    parse_ls(&out)
}

/// `lxc-ls -f -F NAME,STATE,PID`: a header, then one row per container (`-` for no PID).
pub fn parse_ls(out: &str) -> HashMap<String, VpsState> {
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?.to_string();
            let state = f.next()?.to_ascii_lowercase();
            let init_pid = f.next().and_then(|p| p.parse().ok());
            Some((
                name.clone(),
                VpsState {
                    name,
                    state,
                    init_pid,
                },
            ))
        })
        .collect()
}

fn veth_of(name: &str) -> Option<String> {
    std::fs::read_to_string(dir(name).join("config"))
        .ok()?
        .lines()
        .find_map(|l| {
            l.split_once('=')
                .filter(|(k, _)| k.trim() == "lxc.net.0.veth.pair")
                .map(|(_, v)| v.trim().to_string())
        })
}

fn uptime_of(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, after)) = stat.rsplit_once(')') else {
        return 0;
    };
    // Field 22 overall is the 20th after the command.
    let start: f64 = after
        .split_whitespace()
        .nth(19)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let up: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|u| u.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0);
    (up - start / hz).max(0.0) as u64
}

impl VpsSampler {
    pub fn sample(&mut self) -> Vec<VpsSample> {
        let now = Instant::now();
        let mut out = Vec::new();
        let names = names();
        self.prev.retain(|n, _| names.contains(n));
        let mut listed = states();
        let disk = self.disk.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for name in names {
            // A container made after the listing began is asked for on its own.
            let st = listed.remove(&name).unwrap_or_else(|| state(&name));
            let mut s = VpsSample {
                name: name.clone(),
                state: st.state.clone(),
                init_pid: st.init_pid,
                ..Default::default()
            };
            s.disk_used_bytes = disk.get(&name).copied().unwrap_or(0);
            let Some(pid) = st
                .init_pid
                .filter(|_| st.state == "running" || st.state == "frozen")
            else {
                self.prev.remove(&name);
                out.push(s);
                continue;
            };
            s.uptime_secs = uptime_of(pid);
            let cg = cgroup_paths(pid);
            let cpu_ns = cg_file(&cg, "cpuacct", "cpuacct.usage")
                .and_then(|f| read_u64(&f))
                .or_else(|| {
                    let f = cg_file(&cg, "cpu", "cpu.stat")?;
                    std::fs::read_to_string(f).ok()?.lines().find_map(|l| {
                        l.strip_prefix("usage_usec ")
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map(|us| us * 1000)
                    })
                })
                .unwrap_or(0);
            s.memory_used = cg_file(&cg, "memory", "memory.usage_in_bytes")
                .or_else(|| cg_file(&cg, "memory", "memory.current"))
                .and_then(|f| read_u64(&f))
                .unwrap_or(0);
            s.memory_limit = cg_file(&cg, "memory", "memory.limit_in_bytes")
                .or_else(|| cg_file(&cg, "memory", "memory.max"))
                .and_then(|f| read_u64(&f))
                // "max", or v1's "no limit" (a huge number), read as unlimited.
                .filter(|v| *v < (1 << 60))
                .unwrap_or(0);
            s.processes = cg_file(&cg, "pids", "pids.current")
                .and_then(|f| read_u64(&f))
                .map(|v| v as u32)
                .unwrap_or(0);
            // The host side of the VPS's veth: what it receives, the VPS sent.
            let (rx, tx) = veth_of(&name)
                .map(|v| {
                    let base = Path::new("/sys/class/net").join(v).join("statistics");
                    (
                        read_u64(&base.join("tx_bytes")).unwrap_or(0),
                        read_u64(&base.join("rx_bytes")).unwrap_or(0),
                    )
                })
                .unwrap_or((0, 0));
            s.rx_bytes_total = rx;
            s.tx_bytes_total = tx;
            if let Some(p) = self.prev.get(&name) {
                let secs = now.duration_since(p.at).as_secs_f64().max(1e-3);
                s.cpu_pct = cpu_ns.saturating_sub(p.cpu_ns) as f64 / 1e9 / secs * 100.0;
                s.rx_bytes_per_sec = rx.saturating_sub(p.rx) as f64 / secs;
                s.tx_bytes_per_sec = tx.saturating_sub(p.tx) as f64 / secs;
            }
            self.prev.insert(
                name,
                Prev {
                    cpu_ns,
                    rx,
                    tx,
                    at: now,
                },
            );
            out.push(s);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_listing_gives_every_state() {
        let out = "NAME   STATE   PID\nweb-1  RUNNING 4242\ndb-2   STOPPED -\ncopy-3 FROZEN  77\n";
        let m = parse_ls(out);
        assert_eq!(m.len(), 3);
        assert_eq!(
            (m["web-1"].state.as_str(), m["web-1"].init_pid),
            ("running", Some(4242))
        );
        assert_eq!(
            (m["db-2"].state.as_str(), m["db-2"].init_pid),
            ("stopped", None)
        );
        assert_eq!(m["copy-3"].state, "frozen");
        assert!(parse_ls("NAME STATE PID\n").is_empty());
    }

    fn spec() -> VpsSpec {
        VpsSpec {
            name: "web-1".into(),
            hostname: "web-1".into(),
            ipv4: "10.77.1.50".into(),
            prefix_len: 24,
            gateway: Some("10.77.1.1".into()),
            bridge: "br0".into(),
            mac: "02:53:57:00:00:01".into(),
            veth: "swv1".into(),
            memory_limit_bytes: 64 << 20,
            cpu_shares: Some(512),
            cpu_limit_millis: Some(1500),
            autostart: true,
            id_base: Some(16 << 16),
        }
    }

    #[test]
    fn configuration_uses_the_hosts_cgroup_keys() {
        let v1 = config_text(&spec(), Cgroups::V1, "SIGUSR1");
        assert!(v1.starts_with(MARK));
        assert!(
            v1.contains("lxc.cgroup.memory.limit_in_bytes = 67108864\n"),
            "{v1}"
        );
        assert!(v1.contains("lxc.cgroup.cpu.shares = 512\n"));
        assert!(v1.contains("lxc.cgroup.cpu.cfs_quota_us = 150000\n"));
        assert!(v1.contains("lxc.net.0.ipv4.address = 10.77.1.50/24\n"));
        assert!(v1.contains("lxc.net.0.ipv4.gateway = 10.77.1.1\n"));
        let v2 = config_text(&spec(), Cgroups::V2, "SIGRTMIN+3");
        assert!(v2.contains("lxc.cgroup2.memory.max = 67108864\n"), "{v2}");
        assert!(v2.contains("lxc.cgroup2.cpu.weight = 50\n"));
        assert!(v2.contains("lxc.cgroup2.cpu.max = 150000 100000\n"));
        assert!(!v2.contains("lxc.cgroup."));
        assert!(v2.contains("lxc.idmap = u 0 1048576 65536\nlxc.idmap = g 0 1048576 65536\n"));
        let privileged = config_text(
            &VpsSpec {
                id_base: None,
                ..spec()
            },
            Cgroups::V2,
            "SIGPWR",
        );
        assert!(!privileged.contains("lxc.idmap"));
    }

    #[test]
    fn lxc_info_output_is_read_with_or_without_labels() {
        let s = parse_info("a", "State:          RUNNING\nPID:            35\n");
        assert_eq!((s.state.as_str(), s.init_pid), ("running", Some(35)));
        let s = parse_info("a", "STOPPED\n");
        assert_eq!((s.state.as_str(), s.init_pid), ("stopped", None));
    }

    #[test]
    fn names_that_are_not_resource_names_are_refused() {
        for bad in ["../etc", "a b", "", "-x", " web", "Web", "web\n"] {
            assert!(checked(bad).is_err(), "{bad}");
        }
    }
}
