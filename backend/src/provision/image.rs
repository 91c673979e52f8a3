//! The site's host image: what a machine booted from the network runs. Built from Debian's
//! packages by `debootstrap` (Debian 12 with its kernel, LXC, OpenSSH, the agent and its first-boot
//! unit, nothing else), as a kernel, an initrd (Debian's, with `live-boot`, which fetches the root
//! filesystem over HTTP into memory) and a squashfs root filesystem, with a manifest recording its
//! inputs, version and each file's checksum.
//!
//! An image is named by a digest of its inputs, so building again with the same inputs finds it
//! (cached); the debootstrapped base is cached by its own inputs, so a new agent costs a repack,
//! not a download. A build goes to a scratch directory renamed into place only when whole: a crash
//! leaves no half image. Every program runs with an argument vector.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The Debian release of the image.
pub const SUITE: &str = "bookworm";
/// What the image holds besides debootstrap's minimal base: the kernel, `live-boot` for a root
/// filesystem fetched over HTTP, systemd, LXC with what Debian recommends for it, OpenSSH, and the
/// tools the first boot uses.
pub const PACKAGES: &[&str] = &[
    "linux-image-amd64",
    "live-boot",
    "systemd-sysv",
    "udev",
    "kmod",
    "lxc",
    "lxcfs",
    "libpam-cgfs",
    "uidmap",
    "apparmor",
    "iptables",
    "rsync",
    "openssh-server",
    "iproute2",
    "isc-dhcp-client",
    "e2fsprogs",
    "curl",
    "ca-certificates",
];
/// Changes when what the build writes into the image changes (bump with the overlay below).
const RECIPE: &str = "2";
/// The image's files, as served.
pub const FILES: [&str; 3] = ["vmlinuz", "initrd.img", "root.squashfs"];

/// An image's record, `manifest.json` beside its files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub id: String,
    /// The controller version that built it.
    pub version: String,
    pub suite: String,
    pub mirror: String,
    pub packages: Vec<String>,
    pub agent_sha256: String,
    /// Unix seconds.
    pub built_at: i64,
    pub build_secs: f64,
    pub files: Vec<ImageFile>,
    /// What the build checked in the image before packing it (see `selftest`); an image with
    /// none is not served.
    #[serde(default)]
    pub tests: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// How a build went.
pub struct Built {
    pub manifest: Manifest,
    /// Found whole in the images directory: nothing was built.
    pub cached: bool,
    /// The debootstrapped base came from its cache.
    pub base_cached: bool,
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())[..16].to_string()
}

fn run(cmd: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd} (apt install it)"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(15).collect();
        bail!(
            "{cmd} failed: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}

/// Reads an image's manifest and checks every file against it: a file missing, of another size
/// or checksum makes the image unusable, with the reason.
pub fn verify(dir: &Path) -> Result<Manifest> {
    let m: Manifest = serde_json::from_slice(
        &std::fs::read(dir.join("manifest.json")).context("no manifest.json")?,
    )
    .context("manifest.json is not an image manifest")?;
    for name in FILES {
        let f = m
            .files
            .iter()
            .find(|f| f.name == name)
            .with_context(|| format!("the manifest lists no {name}"))?;
        let path = dir.join(name);
        let size = std::fs::metadata(&path)
            .with_context(|| format!("{name} is missing"))?
            .len();
        if size != f.size || sha256_file(&path)? != f.sha256 {
            bail!("{name} does not match its checksum in the manifest");
        }
    }
    if m.tests.is_empty() {
        bail!("it was not tested when it was built (an older build): run serverware image build");
    }
    Ok(m)
}

/// The image directories in `images_dir` (each with a manifest).
pub fn dirs(images_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(images_dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect()
}

/// What an image's files look like from outside (size and change time of each): a check is
/// kept while this stays the same.
pub type Stamp = Vec<(u64, Option<std::time::SystemTime>)>;

pub fn stamp(dir: &Path) -> Stamp {
    std::iter::once("manifest.json")
        .chain(FILES)
        .map(|n| {
            std::fs::metadata(dir.join(n))
                .map(|m| (m.len(), m.modified().ok()))
                .unwrap_or((0, None))
        })
        .collect()
}

/// The images in `images_dir`, newest first, each checked (`Err` names what is wrong).
pub fn list(images_dir: &Path) -> Vec<(String, Result<Manifest>)> {
    let mut out: Vec<(String, Result<Manifest>)> = dirs(images_dir)
        .into_iter()
        .map(|d| {
            let id = d
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (id, verify(&d))
        })
        .collect();
    out.sort_by_key(|(_, m)| std::cmp::Reverse(m.as_ref().map(|m| m.built_at).unwrap_or(0)));
    out
}

/// Builds the image for `agent` from `mirror` into `images_dir` (or finds it built), logging
/// each stage through `log`.
pub fn build(images_dir: &Path, mirror: &str, agent: &Path, log: &dyn Fn(&str)) -> Result<Built> {
    let started = Instant::now();
    let agent_sha256 = sha256_file(agent).context("the agent binary")?;
    let packages = PACKAGES.join(",");
    let version = serverware_shared::BUILD;
    let id = digest(&[
        RECIPE,
        version,
        SUITE,
        mirror,
        &packages,
        &agent_sha256,
        FIRSTBOOT_UNIT,
    ]);
    let dir = images_dir.join(&id);
    if dir.join("manifest.json").exists() {
        if let Ok(manifest) = verify(&dir) {
            log(&format!("image {id} is built already (cached)"));
            return Ok(Built {
                manifest,
                cached: true,
                base_cached: true,
            });
        }
        log(&format!(
            "image {id} does not match its manifest: building it again"
        ));
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(images_dir)?;
    sweep_scratch(images_dir);
    let (base, base_cached) = base(images_dir, mirror, &packages, log)?;
    let scratch = images_dir.join(format!(".building-{id}-{}", std::process::id()));
    let root = scratch.join("root");
    std::fs::create_dir_all(&scratch)?;
    log("copying the base");
    run(
        "cp",
        &["-a", "--", &base.to_string_lossy(), &root.to_string_lossy()],
    )?;
    log("adding the agent and its first-boot unit");
    overlay(&root, agent)?;
    log("testing the image's root");
    let tests = selftest(&root)?;
    for t in &tests {
        log(&format!("  ok: {t}"));
    }
    log("packing the root filesystem (squashfs)");
    pack(&root, &scratch)?;
    std::fs::remove_dir_all(&root)?;
    let files = FILES
        .iter()
        .map(|n| {
            let p = scratch.join(n);
            Ok(ImageFile {
                name: n.to_string(),
                size: std::fs::metadata(&p)?.len(),
                sha256: sha256_file(&p)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let manifest = Manifest {
        id: id.clone(),
        version: version.into(),
        suite: SUITE.into(),
        mirror: mirror.into(),
        packages: PACKAGES.iter().map(|p| p.to_string()).collect(),
        agent_sha256,
        built_at: crate::models::now().and_utc().timestamp(),
        build_secs: started.elapsed().as_secs_f64(),
        files,
        tests,
    };
    std::fs::write(
        scratch.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest)?,
    )?;
    verify(&scratch).context("the image just built does not verify")?;
    std::fs::rename(&scratch, &dir)?;
    log(&format!("image {id} built in {:.0} s", manifest.build_secs));
    prune(images_dir, KEEP, log);
    Ok(Built {
        manifest,
        cached: false,
        base_cached,
    })
}

/// How many images a build keeps (the newest; older ones go).
pub const KEEP: usize = 3;

/// The file in an image's directory saying which host first came online on it (not part of the
/// image: its checks do not cover it).
pub const PROVEN_FILE: &str = "proven";

/// Records that a host came online on the image in `dir` (the first one is kept).
pub fn mark_proven(dir: &Path, what: &str) -> Result<()> {
    let f = dir.join(PROVEN_FILE);
    if !f.exists() {
        let tmp = dir.join(format!(".{PROVEN_FILE}.{}", std::process::id()));
        std::fs::write(&tmp, format!("{what}\n"))?;
        std::fs::rename(&tmp, &f)?;
    }
    Ok(())
}

/// Which host first came online on the image in `dir`, if one did.
pub fn proven(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(PROVEN_FILE))
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The file naming the images machines boot (one id a line), written by the controller: a build
/// never removes them.
pub const IN_USE_FILE: &str = "in-use";

/// Records which images machines boot (written beside, then renamed: never half).
pub fn write_in_use(images_dir: &Path, ids: &[String]) -> Result<()> {
    std::fs::create_dir_all(images_dir)?;
    let tmp = images_dir.join(format!(".{IN_USE_FILE}.{}", std::process::id()));
    std::fs::write(&tmp, ids.join("\n") + "\n")?;
    std::fs::rename(&tmp, images_dir.join(IN_USE_FILE))?;
    Ok(())
}

/// The images machines boot, as the controller last wrote them.
pub fn in_use(images_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(images_dir.join(IN_USE_FILE))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Removes all but the newest `keep` images and those machines boot.
fn prune(images_dir: &Path, keep: usize, log: &dyn Fn(&str)) {
    let used = in_use(images_dir);
    for (id, _) in list(images_dir).into_iter().skip(keep) {
        if used.contains(&id) {
            log(&format!("kept the older image {id}: machines boot it"));
            continue;
        }
        if std::fs::remove_dir_all(images_dir.join(&id)).is_ok() {
            log(&format!("removed the older image {id}"));
        }
    }
}

/// Scratch directories of builds that did not finish (a crash, a kill) are removed.
fn sweep_scratch(images_dir: &Path) {
    for e in std::fs::read_dir(images_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(".building-") || n.starts_with(".base-") {
            let pid = n.rsplit('-').next().and_then(|p| p.parse::<i32>().ok());
            // SAFETY: kill with signal 0 only asks whether the process exists.
            let alive = pid.is_some_and(|p| p > 0 && unsafe { libc::kill(p, 0) } == 0);
            if !alive {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// The debootstrapped base for these inputs: from its cache, or made now.
fn base(
    images_dir: &Path,
    mirror: &str,
    packages: &str,
    log: &dyn Fn(&str),
) -> Result<(PathBuf, bool)> {
    let key = digest(&[SUITE, mirror, packages]);
    let done = images_dir.join("base").join(&key);
    if done.join("root/boot").is_dir() {
        log(&format!("debootstrap base {key} (cached)"));
        return Ok((done.join("root"), true));
    }
    let scratch = images_dir.join(format!(".base-{key}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    log(&format!(
        "debootstrap {SUITE} from {mirror} with {packages}"
    ));
    let root = scratch.join("root");
    run(
        "debootstrap",
        &[
            "--variant=minbase",
            &format!("--include={packages}"),
            SUITE,
            &root.to_string_lossy(),
            mirror,
        ],
    )?;
    // Downloaded packages are not part of the image.
    for e in std::fs::read_dir(root.join("var/cache/apt/archives"))?.flatten() {
        if e.path().extension().is_some_and(|x| x == "deb") {
            std::fs::remove_file(e.path())?;
        }
    }
    std::fs::create_dir_all(done.parent().unwrap_or(images_dir))?;
    let _ = std::fs::remove_dir_all(&done);
    std::fs::rename(&scratch, &done)?;
    Ok((done.join("root"), false))
}

/// The first-boot unit: the agent makes the machine a host before `sshd` starts.
pub const FIRSTBOOT_UNIT: &str = "[Unit]
Description=SERVERware: make this machine a host (disk, bridge, SSH key, join)
After=systemd-udevd.service systemd-udev-settle.service local-fs.target
Wants=systemd-udev-settle.service
Before=ssh.service lxc.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/lib/serverware/serverware-agent firstboot
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
";

/// What the build writes into the base: the agent, the unit, SSH and networking as a host has
/// them. No host key is in the image: each host makes its own on its first boot.
fn overlay(root: &Path, agent: &Path) -> Result<()> {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let lib = root.join("usr/lib/serverware");
    std::fs::create_dir_all(&lib)?;
    std::fs::copy(agent, lib.join("serverware-agent"))?;
    std::fs::set_permissions(
        lib.join("serverware-agent"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    let units = root.join("etc/systemd/system");
    std::fs::write(units.join("serverware-firstboot.service"), FIRSTBOOT_UNIT)?;
    let wants = units.join("multi-user.target.wants");
    std::fs::create_dir_all(&wants)?;
    let _ = std::fs::remove_file(wants.join("serverware-firstboot.service"));
    symlink(
        "/etc/systemd/system/serverware-firstboot.service",
        wants.join("serverware-firstboot.service"),
    )?;
    // The first boot owns the network (the booted NIC becomes the bridge's port).
    let _ = std::fs::remove_file(units.join("networking.service"));
    symlink("/dev/null", units.join("networking.service"))?;
    for e in std::fs::read_dir(root.join("etc/ssh"))?.flatten() {
        if e.file_name().to_string_lossy().starts_with("ssh_host_") {
            std::fs::remove_file(e.path())?;
        }
    }
    std::fs::create_dir_all(root.join("etc/ssh/sshd_config.d"))?;
    std::fs::write(
        root.join("etc/ssh/sshd_config.d/serverware.conf"),
        "HostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\nPermitRootLogin prohibit-password\n",
    )?;
    // VPSes use the host's bridge, not LXC's own NAT bridge.
    std::fs::write(
        root.join("etc/default/lxc-net"),
        "USE_LXC_BRIDGE=\"false\"\n",
    )?;
    std::fs::write(root.join("etc/machine-id"), "")?;
    std::fs::write(root.join("etc/hostname"), "serverware-host\n")?;
    Ok(())
}

/// Runs `program` inside the image's root (chroot) and returns what it printed.
fn in_root(root: &Path, program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("chroot")
        .arg(root)
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run chroot")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!(
            "{program} {} failed in the image: {}",
            args.join(" "),
            text.trim()
        );
    }
    Ok(text.trim().to_string())
}

/// Checks the image's root before it is packed: what a host needs at its first boot is there
/// and runs with the image's own libraries. Returns what passed; any failure fails the build.
fn selftest(root: &Path) -> Result<Vec<String>> {
    let mut ok = Vec::new();
    let agent = in_root(root, "/usr/lib/serverware/serverware-agent", &["--version"])?;
    ok.push(format!("the agent runs: {agent}"));
    let lxc = in_root(root, "/usr/bin/lxc-start", &["--version"])?;
    ok.push(format!("LXC {lxc} runs"));
    // sshd accepts its configuration (with a throwaway key: the real one is made on the host).
    let key = "/tmp/.serverware-selftest-key";
    let _ = std::fs::remove_file(root.join(&key[1..]));
    let _ = std::fs::remove_file(root.join(format!("{}.pub", &key[1..])));
    in_root(
        root,
        "/usr/bin/ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", key],
    )?;
    let run_sshd = root.join("run/sshd");
    let made = !run_sshd.exists();
    std::fs::create_dir_all(&run_sshd)?;
    let sshd = in_root(root, "/usr/sbin/sshd", &["-t", "-h", key]);
    let _ = std::fs::remove_file(root.join(&key[1..]));
    let _ = std::fs::remove_file(root.join(format!("{}.pub", &key[1..])));
    if made {
        let _ = std::fs::remove_dir(&run_sshd);
    }
    sshd?;
    ok.push("sshd accepts its configuration".into());
    for tool in ["curl", "dhclient", "mkfs.ext4", "ip", "ssh-keygen", "sshd"] {
        if !["usr/bin", "usr/sbin"]
            .iter()
            .any(|d| root.join(d).join(tool).exists())
        {
            bail!("the first boot needs {tool}, which the image lacks");
        }
    }
    ok.push(
        "the first boot's tools are there (curl, dhclient, mkfs.ext4, ip, ssh-keygen, sshd)".into(),
    );
    let modules = root.join("lib/modules");
    let kernel = std::fs::read_dir(&modules)
        .context("the image has no kernel modules")?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .context("the image has no kernel modules")?;
    let k = modules.join(&kernel).join("kernel");
    for m in [
        "net/bridge/bridge",
        "drivers/net/veth",
        "fs/overlayfs/overlay",
        "fs/squashfs/squashfs",
    ] {
        let found = ["ko", "ko.xz", "ko.zst"]
            .iter()
            .any(|ext| k.join(format!("{m}.{ext}")).exists());
        if !found {
            bail!("kernel {kernel} lacks the module {m} (VPSes and the live root need it)");
        }
    }
    ok.push(format!(
        "kernel {kernel} has bridge, veth, overlay and squashfs"
    ));
    if !root.join("usr/share/initramfs-tools/scripts/live").exists() {
        bail!("live-boot is not in the initramfs: the root could not be fetched at boot");
    }
    ok.push("live-boot is in the initramfs (the root is fetched over HTTP)".into());
    // The link is absolute inside the image: read it, never follow it out of the root.
    let link = root.join("etc/systemd/system/multi-user.target.wants/serverware-firstboot.service");
    let target = std::fs::read_link(&link).ok();
    let unit = target
        .as_deref()
        .and_then(|t| t.strip_prefix("/").ok())
        .map(|t| root.join(t));
    if !unit.is_some_and(|u| u.is_file()) {
        bail!("the first-boot unit is not enabled");
    }
    ok.push("the first-boot unit is enabled".into());
    Ok(ok)
}

/// The kernel and initrd from the root's /boot, the rest as a squashfs.
fn pack(root: &Path, out: &Path) -> Result<()> {
    let boot = root.join("boot");
    let find = |prefix: &str| -> Result<PathBuf> {
        std::fs::read_dir(&boot)?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .with_context(|| format!("no {prefix}* in the base's /boot"))
    };
    std::fs::copy(find("vmlinuz-")?, out.join("vmlinuz"))?;
    std::fs::copy(find("initrd.img-")?, out.join("initrd.img"))?;
    run(
        "mksquashfs",
        &[
            &root.to_string_lossy(),
            &out.join("root.squashfs").to_string_lossy(),
            "-comp",
            "zstd",
            "-noappend",
            "-quiet",
            "-no-progress",
            "-e",
            "boot",
            "usr/share/doc",
            "usr/share/man",
            "usr/share/locale",
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_in(dir: &Path) -> Manifest {
        let mut files = Vec::new();
        for (n, body) in FILES.iter().zip(["kernel", "initrd", "root"]) {
            std::fs::write(dir.join(n), body).unwrap();
            files.push(ImageFile {
                name: n.to_string(),
                size: body.len() as u64,
                sha256: sha256_file(&dir.join(n)).unwrap(),
            });
        }
        let m = Manifest {
            id: "abc".into(),
            version: "0.1.0".into(),
            suite: SUITE.into(),
            mirror: "http://deb.debian.org/debian".into(),
            packages: vec![],
            agent_sha256: "00".into(),
            built_at: 1,
            build_secs: 1.0,
            files,
            tests: vec!["made by the test".into()],
        };
        std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
        m
    }

    #[test]
    fn an_image_whose_files_do_not_match_its_manifest_is_unusable_and_says_which() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("abc");
        std::fs::create_dir_all(&img).unwrap();
        let m = image_in(&img);
        assert_eq!(verify(&img).unwrap(), m);
        let s1 = stamp(&img);
        // Same size, other bytes: the checksum finds it.
        std::fs::write(img.join("root.squashfs"), "ROOT").unwrap();
        let e = format!("{:#}", verify(&img).unwrap_err());
        assert!(
            e.contains("root.squashfs does not match its checksum"),
            "{e}"
        );
        assert_ne!(
            stamp(&img),
            s1,
            "a changed file changes the stamp, so a cached check is redone"
        );
        std::fs::remove_file(img.join("vmlinuz")).unwrap();
        assert!(format!("{:#}", verify(&img).unwrap_err()).contains("vmlinuz is missing"));
        // Listed, with what is wrong; scratch directories are not images.
        std::fs::create_dir_all(d.path().join(".building-x-1")).unwrap();
        let l = list(d.path());
        assert_eq!(l.len(), 1);
        assert!(l[0].1.is_err());
    }
}
