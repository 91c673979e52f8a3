//! netRES readings from /proc and statvfs. Everything is read from the agent's own view, so on a
//! host in its own namespaces the figures are that host's (its interfaces, its mounts).

use serverware_shared::agent::*;
use std::collections::HashMap;
use std::time::Instant;

/// Counters between two readings.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    cpus: Vec<[u64; 7]>,
    interrupts: u64,
    /// device → (reads, writes, sectors read, sectors written)
    disks: Vec<(String, [u64; 4])>,
    /// interface → (rx bytes, tx bytes)
    nets: Vec<(String, [u64; 2])>,
}

pub fn parse_stat(text: &str) -> (Vec<[u64; 7]>, u64) {
    let mut cpus = Vec::new();
    let mut intr = 0;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some(name) if name.starts_with("cpu") && name.len() > 3 => {
                let v: Vec<u64> = f.take(7).filter_map(|x| x.parse().ok()).collect();
                if v.len() == 7 {
                    // /proc/stat order: user nice system idle iowait irq softirq
                    cpus.push([v[0], v[1], v[2], v[3], v[4], v[5], v[6]]);
                }
            }
            Some("intr") => intr = f.next().and_then(|x| x.parse().ok()).unwrap_or(0),
            _ => {}
        }
    }
    (cpus, intr)
}

pub fn parse_meminfo(text: &str) -> MemorySample {
    let mut kv: HashMap<&str, u64> = HashMap::new();
    for line in text.lines() {
        if let Some((k, rest)) = line.split_once(':') {
            let n = rest
                .split_whitespace()
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            kv.insert(k, n * 1024);
        }
    }
    let g = |k: &str| kv.get(k).copied().unwrap_or(0);
    let total = g("MemTotal");
    let free = g("MemFree");
    let buffers = g("Buffers");
    // As `free` counts it: page cache plus reclaimable slab.
    let cached = g("Cached") + g("SReclaimable");
    MemorySample {
        total,
        used: total.saturating_sub(free + buffers + cached),
        free,
        shared: g("Shmem"),
        buffers,
        cached,
        swap_total: g("SwapTotal"),
        swap_used: g("SwapTotal").saturating_sub(g("SwapFree")),
    }
}

pub fn parse_diskstats(text: &str, is_disk: impl Fn(&str) -> bool) -> Vec<(String, [u64; 4])> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || !is_disk(f[2]) {
                return None;
            }
            let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
            Some((f[2].to_string(), [n(3), n(7), n(5), n(9)]))
        })
        .collect()
}

pub fn parse_net_dev(text: &str) -> Vec<(String, [u64; 2])> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (f.len() >= 9).then(|| (name.trim().to_string(), [f[0], f[8]]))
        })
        .collect()
}

const PSEUDO_FS: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "mqueue",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "autofs",
    "fusectl",
    "configfs",
    "hugetlbfs",
    "binfmt_misc",
    "nsfs",
    "rpc_pipefs",
    "devtmpfs",
    "efivarfs",
    "ramfs",
];

/// Mounts worth reporting: real filesystems, and tmpfs outside the system's own areas.
pub fn parse_mounts(text: &str) -> Vec<(String, String, String)> {
    let mut seen = std::collections::HashSet::new();
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 3 {
                return None;
            }
            let (dev, mnt, fs) = (f[0], unescape(f[1]), f[2]);
            if PSEUDO_FS.contains(&fs) {
                return None;
            }
            if fs == "tmpfs"
                && ["/dev", "/run", "/sys", "/proc"]
                    .iter()
                    .any(|p| mnt == *p || mnt.starts_with(&format!("{p}/")))
            {
                return None;
            }
            seen.insert(mnt.clone())
                .then(|| (dev.to_string(), mnt, fs.to_string()))
        })
        .collect()
}

/// One entry per filesystem, as `df` shows them: bind mounts of a filesystem already listed are
/// left out, keeping the shortest mount point.
pub fn dedup_by_device(
    mounts: Vec<(String, String, String)>,
    dev_of: impl Fn(&str) -> Option<u64>,
) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    let mut by_dev: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    for m in mounts {
        let Some(dev) = dev_of(&m.1) else { continue };
        match by_dev.get(&dev) {
            Some(&i) => {
                if m.1.len() < out[i].1.len() {
                    out[i] = m;
                }
            }
            None => {
                by_dev.insert(dev, out.len());
                out.push(m);
            }
        }
    }
    out
}

/// /proc/mounts escapes spaces and the like as octal (`\040`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn statvfs(path: &str) -> Option<(u64, u64, u64)> {
    let c = std::ffi::CString::new(path).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` is a plain struct the call fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    let size = st.f_blocks as u64 * frsize;
    let free = st.f_bfree as u64 * frsize;
    let avail = st.f_bavail as u64 * frsize;
    Some((size, size.saturating_sub(free), avail))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn is_whole_disk(name: &str) -> bool {
    !name.starts_with("loop")
        && !name.starts_with("ram")
        && std::path::Path::new(&format!("/sys/block/{name}")).exists()
}

fn read_counters() -> Counters {
    let (cpus, interrupts) = parse_stat(&read("/proc/stat"));
    Counters {
        cpus,
        interrupts,
        disks: parse_diskstats(&read("/proc/diskstats"), is_whole_disk),
        nets: parse_net_dev(&read("/proc/net/dev")),
    }
}

/// Turns counter readings into rates.
pub struct Sampler {
    prev: Counters,
    prev_at: Instant,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampler {
    pub fn new() -> Self {
        Sampler {
            prev: read_counters(),
            prev_at: Instant::now(),
        }
    }

    pub fn sample(&mut self) -> HostSample {
        let now = Instant::now();
        let cur = read_counters();
        let secs = now.duration_since(self.prev_at).as_secs_f64().max(1e-3);
        let s = rates(&self.prev, &cur, secs);
        self.prev = cur;
        self.prev_at = now;
        let load: Vec<f64> = read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .filter_map(|x| x.parse().ok())
            .collect();
        let uptime = read("/proc/uptime")
            .split_whitespace()
            .next()
            .and_then(|x| x.parse::<f64>().ok())
            .unwrap_or(0.0);
        let mounts = dedup_by_device(parse_mounts(&read("/proc/self/mounts")), |m| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(m).ok().map(|md| md.dev())
        });
        let filesystems = mounts
            .into_iter()
            .filter_map(|(device, mount_point, fs_type)| {
                let (size, used, avail) = statvfs(&mount_point)?;
                (size > 0).then(|| FilesystemSample {
                    use_pct: if used + avail > 0 {
                        used as f64 * 100.0 / (used + avail) as f64
                    } else {
                        0.0
                    },
                    mount_point,
                    device,
                    fs_type,
                    size_bytes: size,
                    used_bytes: used,
                    available_bytes: avail,
                })
            })
            .collect();
        HostSample {
            boot_ms: crate::lease::boot_ms(),
            taken_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            uptime_secs: uptime as u64,
            load: [
                load.first().copied().unwrap_or(0.0),
                load.get(1).copied().unwrap_or(0.0),
                load.get(2).copied().unwrap_or(0.0),
            ],
            memory: parse_meminfo(&read("/proc/meminfo")),
            filesystems,
            ..s
        }
    }
}

/// The rate part of a sample, from two counter readings `secs` apart.
pub fn rates(prev: &Counters, cur: &Counters, secs: f64) -> HostSample {
    let cpus = cur
        .cpus
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let p = prev.cpus.get(i).copied().unwrap_or([0; 7]);
            let d: Vec<f64> = (0..7).map(|k| c[k].saturating_sub(p[k]) as f64).collect();
            let total: f64 = d.iter().sum::<f64>().max(1.0);
            let pct = |k: usize| d[k] * 100.0 / total;
            CpuSample {
                user: pct(0),
                nice: pct(1),
                system: pct(2),
                idle: pct(3),
                iowait: pct(4),
                irq: pct(5),
                softirq: pct(6),
            }
        })
        .collect();
    let find = |v: &[(String, [u64; 4])], n: &str| v.iter().find(|(k, _)| k == n).map(|(_, c)| *c);
    let disks = cur
        .disks
        .iter()
        .map(|(name, c)| {
            let p = find(&prev.disks, name).unwrap_or(*c);
            let d = |k: usize| c[k].saturating_sub(p[k]) as f64 / secs;
            DiskSample {
                device: name.clone(),
                transfers_per_sec: d(0) + d(1),
                read_bytes_per_sec: d(2) * 512.0,
                written_bytes_per_sec: d(3) * 512.0,
                read_bytes_total: c[2] * 512,
                written_bytes_total: c[3] * 512,
            }
        })
        .collect();
    let interfaces = cur
        .nets
        .iter()
        .map(|(name, c)| {
            let p = prev
                .nets
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, c)| *c)
                .unwrap_or(*c);
            InterfaceSample {
                name: name.clone(),
                rx_bytes_per_sec: c[0].saturating_sub(p[0]) as f64 / secs,
                tx_bytes_per_sec: c[1].saturating_sub(p[1]) as f64 / secs,
                rx_bytes_total: c[0],
                tx_bytes_total: c[1],
            }
        })
        .collect();
    HostSample {
        cpus,
        interrupts_per_sec: cur.interrupts.saturating_sub(prev.interrupts) as f64 / secs,
        disks,
        interfaces,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 100 5 50 800 20 3 2 0 0 0\ncpu1 10 0 10 80 0 0 0 0 0 0\nintr 12345 1 2 3\nctxt 99\n";

    #[test]
    fn cpu_and_interrupt_rates() {
        let (c0, i0) = parse_stat(STAT);
        assert_eq!(c0.len(), 2);
        assert_eq!(i0, 12345);
        let prev = Counters {
            cpus: c0.clone(),
            interrupts: i0,
            ..Default::default()
        };
        let mut c1 = c0.clone();
        c1[0][0] += 50; // user
        c1[0][3] += 50; // idle
        let cur = Counters {
            cpus: c1,
            interrupts: i0 + 500,
            ..Default::default()
        };
        let s = rates(&prev, &cur, 2.0);
        assert_eq!(s.cpus[0].user, 50.0);
        assert_eq!(s.cpus[0].idle, 50.0);
        assert_eq!(s.cpus[0].busy(), 50.0);
        assert_eq!(s.interrupts_per_sec, 250.0);
    }

    #[test]
    fn memory_as_free_counts_it() {
        let m = parse_meminfo("MemTotal: 1000 kB\nMemFree: 400 kB\nBuffers: 100 kB\nCached: 200 kB\nSReclaimable: 50 kB\nShmem: 10 kB\nSwapTotal: 300 kB\nSwapFree: 200 kB\n");
        assert_eq!(m.total, 1000 * 1024);
        assert_eq!(m.used, 250 * 1024);
        assert_eq!(m.cached, 250 * 1024);
        assert_eq!(m.swap_used, 100 * 1024);
    }

    #[test]
    fn network_and_disk_counters() {
        let net = "Inter-|   Receive\n face |bytes    packets\n    lo: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n  eth0: 5 1 0 0 0 0 0 0 7 1 0 0 0 0 0 0\n";
        assert_eq!(
            parse_net_dev(net),
            vec![("lo".into(), [1000, 2000]), ("eth0".into(), [5, 7])]
        );
        let disk = "   8       0 sda 10 0 800 5 20 0 1600 9 0 0 0\n   8       1 sda1 1 0 8 0 1 0 8 0 0 0 0\n   7       0 loop0 1 0 8 0 0 0 0 0 0 0 0\n";
        let d = parse_diskstats(disk, |n| n == "sda");
        assert_eq!(d, vec![("sda".into(), [10, 20, 800, 1600])]);
        let prev = Counters {
            disks: d.clone(),
            ..Default::default()
        };
        let cur = Counters {
            disks: vec![("sda".into(), [12, 22, 1800, 1600])],
            ..Default::default()
        };
        let s = rates(&prev, &cur, 1.0);
        assert_eq!(s.disks[0].transfers_per_sec, 4.0);
        assert_eq!(s.disks[0].read_bytes_per_sec, 512_000.0);
    }

    #[test]
    fn bind_mounts_of_a_listed_filesystem_are_left_out() {
        let m = |d: &str, p: &str| (d.to_string(), p.to_string(), "ext4".to_string());
        let got = dedup_by_device(
            vec![
                m("/dev/vda", "/var/lib/lxc"),
                m("/dev/vda", "/"),
                m("tmp", "/srv"),
                m("/dev/vda", "/etc/shadow"),
            ],
            |p| Some(if p == "/srv" { 2 } else { 1 }),
        );
        let points: Vec<&str> = got.iter().map(|x| x.1.as_str()).collect();
        assert_eq!(points, ["/", "/srv"]);
    }

    #[test]
    fn mounts_keep_real_and_tmpfs_disks() {
        let m = parse_mounts("/dev/vda / ext4 rw 0 0\nproc /proc proc rw 0 0\ntmpfs /run tmpfs rw 0 0\nhostdisk /srv tmpfs rw 0 0\n/dev/vdb /mnt/my\\040disk xfs rw 0 0\n/dev/vda / ext4 rw 0 0\n");
        let names: Vec<&str> = m.iter().map(|(_, p, _)| p.as_str()).collect();
        assert_eq!(names, vec!["/", "/srv", "/mnt/my disk"]);
    }
}
