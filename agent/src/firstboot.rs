//! `serverware-agent firstboot`: run by systemd on a machine booted from the controller's host
//! image, before `sshd`. It makes the machine a host: its local disk prepared for VPSes (a blank
//! disk is formatted once, a disk of ours is mounted, any other disk is left alone and nothing
//! joins), the NIC it booted from bridged for VPSes with its address (DHCP or the static one on the
//! command line), its SSH host key made once and kept on the disk, and, on its first boot only, a
//! join with the one-time token from its command line; the controller's key from that join is kept
//! on the disk too. A machine that boots again is the same host: same key, same VPSes, no join.
//!
//! Every program runs with an argument vector; the command line's values are checked by
//! `shared::provision` before any is used.

use serverware_shared::provision::{BootParams, ProvisionJoinRequest, ProvisionJoinResponse};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The filesystem label of a disk prepared for VPSes.
pub const DISK_LABEL: &str = "swdata";
/// Where the disk is mounted; `/var/lib/lxc` and `/var/lib/serverware` are bound from it. Longer
/// than `/var/lib/lxc`, so netRES reports the disk under `/var/lib/lxc` (one mount point per
/// device, the shortest), where placement looks for VPS space.
const DISK_MOUNT: &str = "/var/lib/serverware-disk";
/// The bridge VPSes are attached to (the booted NIC is its port).
pub const BRIDGE: &str = "br0";

type R<T> = Result<T, String>;

fn run(cmd: &str, args: &[&str]) -> R<String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn say(m: &str) {
    // To the journal (and the console) through systemd.
    println!("serverware firstboot: {m}");
}

pub fn run_firstboot() -> R<()> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").map_err(|e| e.to_string())?;
    let p = BootParams::parse(&cmdline).map_err(|e| format!("{}: {}", e.field, e.message))?;
    let dev = local_disk()?;
    say(&format!("local disk {}", dev.display()));
    prepare_disk(&dev)?;
    let data = Path::new(DISK_MOUNT);
    for (sub, at) in [
        ("lxc", "/var/lib/lxc"),
        ("serverware", "/var/lib/serverware"),
    ] {
        let d = data.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        run("mount", &["--bind", &d.to_string_lossy(), at])?;
    }
    // This machine is only a host: root is given every VPS id range at once, on every boot (its
    // /etc is in memory), so VPSes autostart before the controller is back.
    let first = serverware_shared::agent::FIRST_ID_BASE;
    let end = (u32::MAX / serverware_shared::agent::ID_RANGE) * serverware_shared::agent::ID_RANGE;
    for f in ["/etc/subuid", "/etc/subgid"] {
        std::fs::write(f, format!("root:{first}:{}\n", end - first))
            .map_err(|e| format!("{f}: {e}"))?;
    }
    run("hostname", &[&p.name])?;
    let _ = std::fs::write("/etc/hostname", format!("{}\n", p.name));
    let address = network(&p)?;
    say(&format!("address {address} on {BRIDGE}"));
    let host_key = ssh_host_key(data)?;
    let keys = data.join("ssh/authorized_keys");
    // A token on the command line means the controller does not count this machine as a host
    // (its first boot, or its host was removed and it was approved again): it joins, with the
    // key and VPSes its disk keeps. Without one it must have joined before.
    if let Some(token) = &p.token {
        if data.join("joined").exists() {
            say("joined before, but the controller gave a join token: joining again with the same key");
        }
        let r = join(&p, token, &host_key, &address)?;
        // On the disk before the join is marked done: a machine whose power is cut at any
        // moment after boots again either not joined or joined with the key in place.
        durable(&keys, format!("{}\n", r.controller_key.trim()).as_bytes())?;
        durable(&data.join("joined"), format!("{}\n", r.name).as_bytes())?;
        say(&format!("joined the site as {}", r.name));
    } else if data.join("joined").exists() {
        say("joined before: booting as the same host");
    } else {
        return Err("this machine has not joined and its command line carries no join token: approve it on the controller's Provisioning page and boot it again".into());
    }
    std::fs::create_dir_all("/root/.ssh").map_err(|e| e.to_string())?;
    std::fs::copy(&keys, "/root/.ssh/authorized_keys")
        .map_err(|e| format!("controller key: {e}"))?;
    Ok(())
}

/// Writes `path` so that it is on the disk when this returns (written beside, synced, renamed).
fn durable(path: &Path, bytes: &[u8]) -> R<()> {
    use std::io::Write;
    let tmp = path.with_extension("new");
    let mut f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())?;
    sync_dir(path.parent().unwrap_or(Path::new("/")))
}

fn sync_dir(dir: &Path) -> R<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// The machine's own disk: the first whole, fixed disk (not a loop, RAM or optical device).
fn local_disk() -> R<PathBuf> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/block")
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            !["loop", "ram", "sr", "zram", "dm-", "md", "fd"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .filter(|n| {
            let b = Path::new("/sys/block").join(n);
            b.join("device").exists()
                && std::fs::read_to_string(b.join("removable"))
                    .map(|r| r.trim() == "0")
                    .unwrap_or(false)
                && std::fs::read_to_string(b.join("size"))
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .is_some_and(|s| s > 0)
        })
        .collect();
    names.sort();
    names
        .first()
        .map(|n| Path::new("/dev").join(n))
        .ok_or_else(|| "no local disk: a host keeps its VPSes on one".into())
}

/// Mounts the disk at `DISK_MOUNT`: ours is mounted as it is, a blank one is formatted first, any
/// other is refused (never wiped).
fn prepare_disk(dev: &Path) -> R<()> {
    let d = dev.to_string_lossy().to_string();
    let probe = Command::new("blkid")
        .args(["-p", "-o", "export", &d])
        .output()
        .map_err(|e| format!("cannot run blkid: {e}"))?;
    let found = String::from_utf8_lossy(&probe.stdout).to_string();
    let partitions =
        std::fs::read_dir(Path::new("/sys/block").join(dev.file_name().unwrap_or_default()))
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .any(|e| e.path().join("partition").exists())
            })
            .unwrap_or(false);
    if found.lines().any(|l| l == format!("LABEL={DISK_LABEL}")) {
        say("the disk is this host's: keeping it");
    } else if probe.status.code() == Some(2) && !partitions {
        say("the disk is blank: making its filesystem");
        run("mkfs.ext4", &["-q", "-F", "-L", DISK_LABEL, &d])?;
    } else {
        return Err(format!(
            "{d} holds something else (partitions or another filesystem): it is not wiped; give the host a blank disk or clear it by hand"
        ));
    }
    std::fs::create_dir_all(DISK_MOUNT).map_err(|e| e.to_string())?;
    run("mount", &["-t", "ext4", &d, DISK_MOUNT])?;
    Ok(())
}

/// The NIC with the booted MAC becomes the port of `BRIDGE`, which carries the address.
fn network(p: &BootParams) -> R<String> {
    let nic = std::fs::read_dir("/sys/class/net")
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| {
            std::fs::read_to_string(format!("/sys/class/net/{n}/address"))
                .is_ok_and(|a| a.trim() == p.mac)
                && n != BRIDGE
        })
        .ok_or_else(|| format!("no network interface has the booted MAC {}", p.mac))?;
    if !Path::new("/sys/class/net").join(BRIDGE).exists() {
        run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
    }
    run("ip", &["link", "set", BRIDGE, "address", &p.mac])?;
    run("ip", &["addr", "flush", "dev", &nic])?;
    run("ip", &["link", "set", &nic, "master", BRIDGE])?;
    run("ip", &["link", "set", &nic, "up"])?;
    run("ip", &["link", "set", BRIDGE, "up"])?;
    match &p.address {
        Some(a) => {
            run("ip", &["addr", "replace", a, "dev", BRIDGE])?;
            if let Some(g) = &p.gateway {
                run("ip", &["route", "replace", "default", "via", g])?;
            }
        }
        None => {
            run("dhclient", &["-1", "-v", BRIDGE])?;
        }
    }
    let out = run("ip", &["-4", "-o", "addr", "show", "dev", BRIDGE])?;
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .map(str::to_string)
        .ok_or_else(|| format!("{BRIDGE} has no address"))
}

/// The SSH host key, made on the first boot and kept on the disk; installed for `sshd`.
fn ssh_host_key(data: &Path) -> R<String> {
    let dir = data.join("ssh");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let key = dir.join("ssh_host_ed25519_key");
    if !PathBuf::from(format!("{}.pub", key.display())).exists() {
        let k = key.to_string_lossy().to_string();
        let tmp = dir.join("new_host_key");
        let t = tmp.to_string_lossy().to_string();
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(format!("{t}.pub"));
        run(
            "ssh-keygen",
            &["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", &t],
        )?;
        // Both halves on the disk, then put in place (the public one last): a power cut
        // leaves no key or the whole key, never half of it.
        for f in [tmp.clone(), PathBuf::from(format!("{t}.pub"))] {
            std::fs::File::open(&f)
                .and_then(|f| f.sync_all())
                .map_err(|e| e.to_string())?;
        }
        std::fs::rename(&tmp, &key).map_err(|e| e.to_string())?;
        std::fs::rename(format!("{t}.pub"), format!("{k}.pub")).map_err(|e| e.to_string())?;
        sync_dir(&dir)?;
        say("made the SSH host key");
    }
    for ext in ["", ".pub"] {
        let from = PathBuf::from(format!("{}{ext}", key.display()));
        let to = format!("/etc/ssh/ssh_host_ed25519_key{ext}");
        std::fs::copy(&from, &to).map_err(|e| format!("{to}: {e}"))?;
    }
    let pubkey =
        std::fs::read_to_string(format!("{}.pub", key.display())).map_err(|e| e.to_string())?;
    let mut w = pubkey.split_whitespace();
    match (w.next(), w.next()) {
        (Some(t), Some(b)) => Ok(format!("{t} {b}")),
        _ => Err("the SSH host key is unreadable".into()),
    }
}

/// Announces the machine with its token; tries again for five minutes while the controller does
/// not answer, never after it refused.
fn join(p: &BootParams, token: &str, host_key: &str, address: &str) -> R<ProvisionJoinResponse> {
    let body = serde_json::to_vec(&ProvisionJoinRequest {
        mac: p.mac.clone(),
        token: token.to_string(),
        host_key: host_key.to_string(),
        address: address.to_string(),
    })
    .map_err(|e| e.to_string())?;
    let url = format!("{}/boot/join", p.controller);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut child = Command::new("curl")
            .args([
                "-sS",
                "-m",
                "30",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                "@-",
                &url,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run curl: {e}"))?;
        if let Some(mut i) = child.stdin.take() {
            use std::io::Write;
            let _ = i.write_all(&body);
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (reply, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        match code.trim() {
            "200" => {
                return serde_json::from_str(reply)
                    .map_err(|e| format!("the controller's answer: {e}"))
            }
            "" | "000" | "502" | "503" | "504" if Instant::now() < deadline => {
                say(&format!(
                    "the controller does not answer yet ({})",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
                std::thread::sleep(Duration::from_secs(2));
            }
            c => {
                return Err(format!(
                    "the controller refused the join ({c}): {}",
                    reply.trim()
                ))
            }
        }
    }
}
