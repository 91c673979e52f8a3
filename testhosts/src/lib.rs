//! Test hosts: real machines on this one. Each host is a network namespace with its own address
//! on a test bridge (10.77.0.0/16), its own mount and PID namespace whose init is `tini` running
//! OpenSSH `sshd`, its own host key, `/etc/shadow`, `/var/lib/lxc` and `/var/lib/serverware`.
//!
//! A host can be powered off (every process, containers included, and its link), booted again,
//! or have only its link cut. A [`Cluster`] removes everything it made when dropped; clusters left
//! behind by a killed run are swept by the next one (and by `sw-testhosts sweep`).
//!
//! Every command runs with an argument vector. The one shell script is the host's fixed start-up
//! script, which receives the host's paths as positional parameters, never spliced into its text.

mod etcd;
pub use etcd::{EtcdCluster, EtcdMember};
mod garage;
pub use garage::{garage_bin, GarageCluster, GarageNode};
mod vm;
pub use vm::Vm;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where clusters record themselves, so a later run can sweep what a killed one left.
pub const STATE_DIR: &str = "/run/serverware-testhosts";

/// The start-up of a host, run inside its new mount and PID namespaces.
/// $1 host dir, $2 address, $3 password hash file (shadow copy).
const BOOT_SCRIPT: &str = r#"
set -e
d="$1"; addr="$2"
# `ip netns exec` mounted a fresh /sys that hides the cgroup hierarchies LXC needs: mount them again.
if [ -d /sys/fs/cgroup ] && ! mountpoint -q /sys/fs/cgroup; then
  mount -t tmpfs cgroup_root /sys/fs/cgroup
  for c in cpu cpuacct cpuset memory devices freezer blkio pids; do
    mkdir -p /sys/fs/cgroup/$c; mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c 2>/dev/null || rmdir /sys/fs/cgroup/$c
  done
  mkdir -p /sys/fs/cgroup/systemd; mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd 2>/dev/null || true
  mkdir -p /sys/fs/cgroup/unified; mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified 2>/dev/null || true
fi
mount --bind "$d/lxc" /var/lib/lxc
mount --bind "$d/data" /var/lib/serverware
# Named network namespaces (`ip netns`) are the host's own, as /run is on a machine of its own.
mkdir -p "$d/run_netns" /run/netns
mount --bind "$d/run_netns" /run/netns
# /etc is the host's own: a copy-on-write layer over this machine's, so what is written there on
# this host (root's subordinate ids, say) stays on it, as on a machine of its own.
mkdir -p "$d/etc_rw"
mount -t tmpfs -o size=16m,mode=0755 hostetc "$d/etc_rw"
mkdir -p "$d/etc_rw/upper" "$d/etc_rw/work"
mount -t overlay -o lowerdir=/etc,upperdir="$d/etc_rw/upper",workdir="$d/etc_rw/work" hostetc /etc
mount --bind "$d/shadow" /etc/shadow
# root's home is the host's own, empty as on a new machine (this machine's shell start-up files,
# such as a pyenv hook that waits on a lock, stay out), and so is its ~/.ssh: keys installed
# there stay on this host.
mkdir -p "$d/root_home/.ssh"
mount --bind "$d/root_home" /root
mount --bind "$d/root_ssh" /root/.ssh
mount -t tmpfs -o size="$3" hostdisk /srv
mkdir -p /run/sshd
# Where sshd reads keys; a test may set another value (a host that ignores ~/.ssh).
akf="$(cat "$d/authorized_keys_files" 2>/dev/null || echo "$d/authorized_keys .ssh/authorized_keys")"
exec /usr/bin/tini -s -- /usr/sbin/sshd -D -e \
  -o HostKey="$d/ssh_host_ed25519_key" -o ListenAddress="$addr" \
  -o AuthorizedKeysFile="$akf" -o StrictModes=no \
  -o PermitRootLogin=yes -o PasswordAuthentication=yes -o UsePAM=no \
  -o PidFile=none -o MaxStartups=100
"#;

pub(crate) fn run(cmd: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd}"))?;
    if !out.status.success() {
        bail!(
            "{cmd} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Like [`run`], for clean-up: failures are ignored (the thing may already be gone).
fn try_run(cmd: &str, args: &[&str]) {
    let _ = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    owner_pid: u32,
    subnet: u8,
    bridge: String,
    namespaces: Vec<String>,
    dir: PathBuf,
    init_pids: Vec<u32>,
}

/// This machine's /etc/shadow with root's password replaced, for a host's private copy.
fn shadow_with_root_password(password: &str) -> Result<String> {
    let shadow = std::fs::read_to_string("/etc/shadow").context("cannot read /etc/shadow")?;
    let hash = hash_password(password)?;
    Ok(shadow
        .lines()
        .map(|l| match l.split_once(':') {
            Some(("root", rest)) => {
                let tail = rest.split_once(':').map(|(_, t)| t).unwrap_or("");
                format!("root:{hash}:{tail}")
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n")
}

/// The start-up of a loopback host: this machine's network, its own mount and PID namespace.
/// $1 host dir, $2 port.
const LOOPBACK_SCRIPT: &str = r#"
set -e
d="$1"; port="$2"
mount --bind "$d/data" /var/lib/serverware
# /etc is the host's own: a copy-on-write layer over this machine's, so what is written there on
# this host (root's subordinate ids, say) stays on it, as on a machine of its own.
mkdir -p "$d/etc_rw"
mount -t tmpfs -o size=16m,mode=0755 hostetc "$d/etc_rw"
mkdir -p "$d/etc_rw/upper" "$d/etc_rw/work"
mount -t overlay -o lowerdir=/etc,upperdir="$d/etc_rw/upper",workdir="$d/etc_rw/work" hostetc /etc
mount --bind "$d/shadow" /etc/shadow
mkdir -p "$d/root_home/.ssh"
mount --bind "$d/root_home" /root
mount --bind "$d/root_ssh" /root/.ssh
mkdir -p /run/sshd
exec /usr/bin/tini -s -- /usr/sbin/sshd -D -e \
  -o HostKey="$d/ssh_host_ed25519_key" -o ListenAddress="127.0.0.1:$port" \
  -o AuthorizedKeysFile=".ssh/authorized_keys" -o StrictModes=no \
  -o PermitRootLogin=yes -o PasswordAuthentication=yes -o UsePAM=no \
  -o PidFile=none -o MaxStartups=100
"#;

/// The controller's own machine as a host: an OpenSSH `sshd` on 127.0.0.1 in this machine's
/// network namespace, so samples read through it are this machine's. Root's `~/.ssh`,
/// `/etc/shadow` and `/var/lib/serverware` are private to it, so adding it changes nothing on
/// the real machine. Stopped and removed when dropped.
pub struct LoopbackHost {
    pub port: u16,
    pub password: String,
    pub dir: PathBuf,
    init: Option<Child>,
    state_file: PathBuf,
}

impl LoopbackHost {
    pub fn start(password: &str) -> Result<LoopbackHost> {
        sweep_stale();
        std::fs::create_dir_all(STATE_DIR)?;
        for d in ["/var/lib/serverware", "/root/.ssh"] {
            std::fs::create_dir_all(d)?;
        }
        let port = free_port()?;
        let dir =
            std::env::temp_dir().join(format!("serverware-loopback-{port}-{}", std::process::id()));
        for d in ["data", "root_ssh"] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        std::fs::write(dir.join("shadow"), shadow_with_root_password(password)?)?;
        let key = dir.join("ssh_host_ed25519_key");
        run(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "loopback",
                "-f",
                &key.to_string_lossy(),
            ],
        )?;
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--pid",
                "--fork",
                "--mount-proc",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", LOOPBACK_SCRIPT, "loopback"])
            .arg(&dir)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.join("sshd.log"))?))
            .spawn()
            .context("cannot start the loopback host")?;
        let state_file = Path::new(STATE_DIR).join(format!("loopback-{port}.json"));
        let host = LoopbackHost {
            port,
            password: password.to_string(),
            dir,
            init: Some(child),
            state_file,
        };
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(30),
        )
        .with_context(|| {
            format!(
                "the loopback host did not start sshd: {}",
                std::fs::read_to_string(host.dir.join("sshd.log")).unwrap_or_default()
            )
        })?;
        let state = State {
            owner_pid: std::process::id(),
            subnet: 0,
            bridge: String::new(),
            namespaces: Vec::new(),
            dir: host.dir.clone(),
            init_pids: host.init_pid().into_iter().collect(),
        };
        std::fs::write(&host.state_file, serde_json::to_vec(&state)?)?;
        Ok(host)
    }

    pub fn ssh_url(&self) -> String {
        format!("ssh://root@127.0.0.1:{}", self.port)
    }

    fn init_pid(&self) -> Option<u32> {
        let unshare = self.init.as_ref()?.id();
        let children =
            std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }
}

impl Drop for LoopbackHost {
    fn drop(&mut self) {
        if let Some(pid) = self.init_pid() {
            try_run("kill", &["-KILL", &pid.to_string()]);
        }
        if let Some(c) = self.init.take() {
            reap(c);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.state_file);
    }
}

/// One test host.
pub struct TestHost {
    pub name: String,
    pub addr: Ipv4Addr,
    pub ssh_port: u16,
    /// Root's password on this host (password logins work; keys go in `authorized_keys`).
    pub password: String,
    /// Size of the host's own disk, mounted at `/srv`, in MiB (each host gets a distinct one).
    pub disk_mib: u64,
    pub dir: PathBuf,
    netns: String,
    veth_root: String,
    init: Option<Child>,
}

impl TestHost {
    /// Sets sshd's `AuthorizedKeysFile` for the host's next boot (a host whose sshd does not
    /// read root's `~/.ssh/authorized_keys`, say).
    pub fn set_authorized_keys_files(&self, value: &str) -> Result<()> {
        std::fs::write(self.dir.join("authorized_keys_files"), value)?;
        Ok(())
    }

    pub fn ssh_url(&self) -> String {
        format!("ssh://root@{}:{}", self.addr, self.ssh_port)
    }

    /// The network namespace's name, for `ip netns exec`.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Adds a public key line to root's authorized keys on this host.
    pub fn authorize_key(&self, public_key_line: &str) -> Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join("authorized_keys"))?;
        writeln!(f, "{}", public_key_line.trim())?;
        Ok(())
    }

    /// The host's SSH host public key (`ssh-ed25519 AAAA…`).
    pub fn host_public_key(&self) -> Result<String> {
        Ok(
            std::fs::read_to_string(self.dir.join("ssh_host_ed25519_key.pub"))?
                .trim()
                .to_string(),
        )
    }

    /// The PID (in this machine's namespace) of the host's init, while it runs.
    pub fn init_pid(&self) -> Option<u32> {
        let unshare = self.init.as_ref()?.id();
        // `unshare --fork` waits for its child, which is PID 1 inside the host.
        let children =
            std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }

    fn boot(&mut self) -> Result<()> {
        let script_args = [
            "netns",
            "exec",
            &self.netns,
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--mount-proc",
            "--propagation",
            "private",
            "sh",
            "-c",
            BOOT_SCRIPT,
            "boot",
        ];
        let dir = self.dir.to_string_lossy().to_string();
        let addr = self.addr.to_string();
        let size = format!("{}m", self.disk_mib);
        let child = Command::new("ip")
            .args(script_args)
            .args([&dir, &addr, &size])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(
                self.dir.join("sshd.log"),
            )?))
            .spawn()
            .context("cannot start the host's init")?;
        self.init = Some(child);
        wait_for_port(
            SocketAddr::from((self.addr, self.ssh_port)),
            Duration::from_secs(30),
        )
        .with_context(|| {
            format!(
                "host {} did not start sshd: {}",
                self.name,
                std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
            )
        })
    }

    fn kill_init(&mut self) {
        if let Some(pid) = self.init_pid() {
            thaw_all(pid);
            // PID 1 of a PID namespace dying takes every process of the host with it.
            try_run("kill", &["-KILL", &pid.to_string()]);
        }
        if let Some(c) = self.init.take() {
            reap(c);
        }
    }
}

/// Lets `unshare` reap the host's init and exit by itself (killing it first would leave the
/// init a zombie nobody reaps); kills it only if it hangs.
fn reap(mut c: Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
}

/// Waits until something accepts TCP connections at `addr`.
/// A loopback TCP port for a test's own listener, free when this returns and below the kernel's
/// ephemeral range (`ip_local_port_range` starts at 32768), so that no outgoing connection of
/// this or any other process can take it as its source port between now and the listener's bind,
/// nor while a killed controller is started again on it. Ports are handed out from a counter
/// that starts at a place drawn from the process id, so two test processes rarely try the same.
pub fn free_port() -> Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let seed = (std::process::id().wrapping_mul(2_654_435_761)) % SPAN;
    let _ = NEXT.compare_exchange(u32::MAX, seed, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free loopback port between {FIRST} and {}", FIRST + SPAN)
}

pub fn wait_for_port(addr: SocketAddr, deadline: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
            return Ok(());
        }
        if start.elapsed() > deadline {
            bail!("nothing answers at {addr} after {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True when nothing answers TCP at `addr` within `timeout`.
pub fn is_unreachable(addr: SocketAddr, timeout: Duration) -> bool {
    TcpStream::connect_timeout(&addr, timeout).is_err()
}

/// A set of test hosts on one bridge `10.77.<subnet>.0/24`, the bridge itself at `.1`.
pub struct Cluster {
    pub hosts: Vec<TestHost>,
    pub subnet: u8,
    pub bridge: String,
    pub gateway: Ipv4Addr,
    state_file: PathBuf,
    dir: PathBuf,
    keep_dir: bool,
}

/// Options of a new cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub hosts: usize,
    /// Where host directories go; a temporary directory when `None`.
    pub dir: Option<PathBuf>,
    pub password: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            hosts: 2,
            dir: None,
            password: "testhost-password".into(),
        }
    }
}

fn hash_password(password: &str) -> Result<String> {
    let out = Command::new("openssl")
        .args(["passwd", "-6", "-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .map(|mut s| s.write_all(format!("{password}\n").as_bytes()));
            c.wait_with_output()
        })
        .context("openssl passwd failed")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl Cluster {
    /// Creates `opts.hosts` hosts and waits until each answers SSH.
    pub fn create(opts: ClusterOptions) -> Result<Cluster> {
        if opts.hosts == 0 || opts.hosts > 200 {
            bail!("a cluster has 1 to 200 hosts");
        }
        sweep_stale();
        std::fs::create_dir_all(STATE_DIR)?;
        for d in ["/var/lib/lxc", "/var/lib/serverware", "/srv", "/root/.ssh"] {
            std::fs::create_dir_all(d)?;
        }
        // Claim a free /24: the state file is the lock. It is linked into place with its owner
        // already written, so a sweep running at the same time never takes it for a dead claim.
        let mut claimed = None;
        let seed = Path::new(STATE_DIR).join(format!(
            "claim-{}-{:?}.tmp",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(
            &seed,
            serde_json::to_vec(&State {
                owner_pid: std::process::id(),
                subnet: 0,
                bridge: String::new(),
                namespaces: Vec::new(),
                dir: PathBuf::new(),
                init_pids: Vec::new(),
            })?,
        )?;
        for subnet in 1u8..=250 {
            let f = Path::new(STATE_DIR).join(format!("{subnet}.json"));
            if std::fs::hard_link(&seed, &f).is_ok() {
                claimed = Some((subnet, f));
                break;
            }
        }
        let _ = std::fs::remove_file(&seed);
        let (subnet, state_file) = claimed.context("no free test subnet in 10.77.0.0/16")?;
        let (dir, keep_dir) = match &opts.dir {
            Some(d) => (d.clone(), true),
            None => (
                std::env::temp_dir().join(format!(
                    "serverware-testhosts-{subnet}-{}",
                    std::process::id()
                )),
                false,
            ),
        };
        std::fs::create_dir_all(&dir)?;
        let bridge = format!("swtb{subnet}");
        let gateway = Ipv4Addr::new(10, 77, subnet, 1);
        let mut cluster = Cluster {
            hosts: Vec::new(),
            subnet,
            bridge,
            gateway,
            state_file,
            dir,
            keep_dir,
        };
        cluster.save_state()?;
        cluster
            .setup(&opts)
            .inspect_err(|_| drop_now(&mut cluster))?;
        Ok(cluster)
    }

    fn setup(&mut self, opts: &ClusterOptions) -> Result<()> {
        run("ip", &["link", "add", &self.bridge, "type", "bridge"])?;
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", self.gateway),
                "dev",
                &self.bridge,
            ],
        )?;
        run("ip", &["link", "set", &self.bridge, "up"])?;
        let host_shadow = shadow_with_root_password(&opts.password)?;
        for i in 0..opts.hosts {
            let name = format!("h{}-{}", self.subnet, i + 1);
            let netns = format!("swt{}h{}", self.subnet, i + 1);
            let veth_root = format!("swt{}h{}r", self.subnet, i + 1);
            let veth_ns = format!("swt{}h{}n", self.subnet, i + 1);
            let addr = Ipv4Addr::new(10, 77, self.subnet, 10 + i as u8);
            let dir = self.dir.join(&name);
            for d in ["lxc", "data", "root_ssh"] {
                std::fs::create_dir_all(dir.join(d))?;
            }
            std::fs::write(dir.join("shadow"), &host_shadow)?;
            std::fs::write(dir.join("authorized_keys"), "")?;
            let key = dir.join("ssh_host_ed25519_key");
            if !key.exists() {
                run(
                    "ssh-keygen",
                    &[
                        "-q",
                        "-t",
                        "ed25519",
                        "-N",
                        "",
                        "-C",
                        &name,
                        "-f",
                        &key.to_string_lossy(),
                    ],
                )?;
            }
            run("ip", &["netns", "add", &netns])?;
            self.hosts.push(TestHost {
                name,
                addr,
                ssh_port: 22,
                password: opts.password.clone(),
                disk_mib: 64 + 32 * i as u64,
                dir,
                netns: netns.clone(),
                veth_root: veth_root.clone(),
                init: None,
            });
            self.save_state()?;
            run(
                "ip",
                &[
                    "link", "add", &veth_root, "type", "veth", "peer", "name", &veth_ns,
                ],
            )?;
            run(
                "ip",
                &["link", "set", &veth_root, "master", &self.bridge, "up"],
            )?;
            run("ip", &["link", "set", &veth_ns, "netns", &netns])?;
            let ns = |args: &[&str]| {
                let mut v = vec!["netns", "exec", netns.as_str(), "ip"];
                v.extend_from_slice(args);
                run("ip", &v)
            };
            // Inside: a bridge that holds the uplink and carries the host's address, so
            // containers on it are reachable as on a LAN.
            ns(&["link", "set", "lo", "up"])?;
            ns(&["link", "set", &veth_ns, "name", "eth0"])?;
            ns(&["link", "add", "br0", "type", "bridge"])?;
            ns(&["link", "set", "eth0", "master", "br0", "up"])?;
            ns(&["addr", "add", &format!("{addr}/24"), "dev", "br0"])?;
            ns(&["link", "set", "br0", "up"])?;
            ns(&["route", "add", "default", "via", &self.gateway.to_string()])?;
        }
        for i in 0..self.hosts.len() {
            self.hosts[i].boot()?;
        }
        self.save_state()
    }

    fn save_state(&self) -> Result<()> {
        let state = State {
            owner_pid: std::process::id(),
            subnet: self.subnet,
            bridge: self.bridge.clone(),
            namespaces: self.hosts.iter().map(|h| h.netns.clone()).collect(),
            dir: self.dir.clone(),
            init_pids: self.hosts.iter().filter_map(|h| h.init_pid()).collect(),
        };
        // Written beside and renamed: a sweep never reads half a state.
        let tmp = self.state_file.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&state)?)?;
        std::fs::rename(&tmp, &self.state_file)?;
        Ok(())
    }

    /// Powers host `i` off: every process on it dies (containers included) and its link goes down.
    pub fn power_off(&mut self, i: usize) -> Result<()> {
        let h = &mut self.hosts[i];
        run("ip", &["link", "set", &h.veth_root, "down"])?;
        h.kill_init();
        self.save_state()
    }

    /// Boots host `i` again (after [`Cluster::power_off`]) and waits for its sshd.
    pub fn boot(&mut self, i: usize) -> Result<()> {
        let h = &mut self.hosts[i];
        run("ip", &["link", "set", &h.veth_root, "up"])?;
        h.boot()?;
        self.save_state()
    }

    /// Gives host `i` a new SSH host key, as a reinstall would: it is powered off, its key is
    /// replaced and it boots again.
    pub fn replace_host_key(&mut self, i: usize) -> Result<()> {
        self.power_off(i)?;
        let h = &self.hosts[i];
        let key = h.dir.join("ssh_host_ed25519_key");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(key.with_extension("pub"));
        run(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                &h.name,
                "-f",
                &key.to_string_lossy(),
            ],
        )?;
        self.boot(i)
    }

    /// Cuts only host `i`'s link: its processes keep running but nothing reaches it.
    pub fn cut_link(&self, i: usize) -> Result<()> {
        run("ip", &["link", "set", &self.hosts[i].veth_root, "down"])
    }

    pub fn restore_link(&self, i: usize) -> Result<()> {
        run("ip", &["link", "set", &self.hosts[i].veth_root, "up"])
    }

    /// Runs a program inside host `i`'s network namespace (argument vector, no shell).
    pub fn exec_in_netns(
        &self,
        i: usize,
        program: &str,
        args: &[&str],
    ) -> Result<std::process::Output> {
        let mut v = vec!["netns", "exec", self.hosts[i].netns.as_str(), program];
        v.extend_from_slice(args);
        Ok(Command::new("ip").args(&v).stdin(Stdio::null()).output()?)
    }
}

fn drop_now(c: &mut Cluster) {
    for h in &mut c.hosts {
        h.kill_init();
        try_run("ip", &["netns", "del", &h.netns]);
        try_run("ip", &["link", "del", &h.veth_root]);
    }
    try_run("ip", &["link", "del", &c.bridge]);
    if !c.keep_dir {
        let _ = std::fs::remove_dir_all(&c.dir);
    }
    let _ = std::fs::remove_file(&c.state_file);
}

impl Drop for Cluster {
    fn drop(&mut self) {
        drop_now(self);
    }
}

/// Every process below `root` in the process tree (containers' processes included).
fn descendants(root: u32) -> Vec<u32> {
    let mut children: std::collections::HashMap<u32, Vec<u32>> = Default::default();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(pp) = ppid {
                children.entry(pp).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for c in children.get(&p).cloned().unwrap_or_default() {
            out.push(c);
            stack.push(c);
        }
    }
    out
}

/// A frozen process cannot die: thaw the freezer cgroups of a host's processes before it is
/// powered off, as cutting the power would end them all the same.
fn thaw_all(init: u32) {
    for pid in descendants(init) {
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        for line in cg.lines() {
            let mut f = line.splitn(3, ':');
            let (_, ctrl, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
            let rel = path.trim_start_matches('/');
            if ctrl.split(',').any(|c| c == "freezer") && !rel.is_empty() {
                let state = Path::new("/sys/fs/cgroup/freezer")
                    .join(rel)
                    .join("freezer.state");
                if std::fs::read_to_string(&state).is_ok_and(|s| s.trim() != "THAWED") {
                    let _ = std::fs::write(&state, "THAWED");
                }
            }
            if ctrl.is_empty() && !rel.is_empty() {
                for base in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                    let f = Path::new(base).join(rel).join("cgroup.freeze");
                    if std::fs::read_to_string(&f).is_ok_and(|s| s.trim() == "1") {
                        let _ = std::fs::write(&f, "0");
                    }
                }
            }
        }
    }
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes what clusters of dead owners left behind. With `all`, removes every cluster.
pub fn sweep(all: bool) -> usize {
    let Ok(entries) = std::fs::read_dir(STATE_DIR) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "tmp") {
            // A claim or state being written; left over only if its writer died.
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(300));
            if old {
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Ok(state) = serde_json::from_slice::<State>(&bytes) else {
            // Written by an older version: nothing in it to clean.
            let _ = std::fs::remove_file(&path);
            continue;
        };
        if !all && process_alive(state.owner_pid) {
            continue;
        }
        for pid in &state.init_pids {
            // Only a host's init (tini) is ours to end; a reused PID is left alone.
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "tini" {
                thaw_all(*pid);
                try_run("kill", &["-KILL", &pid.to_string()]);
            }
        }
        for ns in &state.namespaces {
            try_run("ip", &["netns", "del", ns]);
        }
        if !state.bridge.is_empty() {
            try_run("ip", &["link", "del", &state.bridge]);
        }
        if state.dir.starts_with(std::env::temp_dir()) {
            let _ = std::fs::remove_dir_all(&state.dir);
        }
        let _ = std::fs::remove_file(&path);
        n += 1;
    }
    n
}

fn sweep_stale() {
    sweep(false);
}
