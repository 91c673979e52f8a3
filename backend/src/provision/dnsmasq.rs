//! The boot service: Debian's `dnsmasq` as proxy DHCP (it answers only with boot information,
//! so it works beside the site's own DHCP server and never hands out an address) and TFTP for
//! iPXE (Debian's `ipxe`: `undionly.kpxe` for BIOS firmware, `ipxe.efi` for UEFI). A machine
//! already running iPXE (option 175) gets a script by TFTP that asks the controller over HTTP.
//! Started, restarted and stopped as the site's settings say; run with an argument vector and a
//! configuration file written here from checked settings.

use serverware_shared::provision::ProvisionSettings;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokio::io::AsyncBufReadExt;

/// The script iPXE gets by TFTP once it runs: it asks the controller for the machine's own over
/// HTTP (proxy DHCP offers only PXE menu entries, each a TFTP file).
pub const ENTRY: &str = "serverware.ipxe";

/// Where Debian's `ipxe` package puts its boot files.
pub const IPXE_DIR: &str = "/usr/lib/ipxe";

/// The configuration for checked, enabled settings.
pub fn config_text(s: &ProvisionSettings, tftp_root: &Path, leases: &Path) -> String {
    let (net, len) = s.network.split_once('/').unwrap_or((&s.network, "24"));
    let len: u32 = len.parse().unwrap_or(24);
    let mask = Ipv4Addr::from(u32::MAX.checked_shl(32 - len).unwrap_or(0));
    format!(
        "# Written by the SERVERware controller from its provisioning settings; do not edit.\n\
         port=0\n\
         interface={iface}\n\
         bind-interfaces\n\
         dhcp-range={net},proxy,{mask}\n\
         dhcp-leasefile={leases}\n\
         log-dhcp\n\
         enable-tftp\n\
         tftp-root={tftp}\n\
         dhcp-match=set:ipxe,175\n\
         pxe-service=tag:!ipxe,x86PC,\"SERVERware\",undionly.kpxe\n\
         pxe-service=tag:!ipxe,X86-64_EFI,\"SERVERware\",ipxe.efi\n\
         pxe-service=tag:ipxe,x86PC,\"SERVERware\",{ENTRY}\n\
         pxe-service=tag:ipxe,X86-64_EFI,\"SERVERware\",{ENTRY}\n",
        iface = s.interface,
        leases = leases.display(),
        tftp = tftp_root.display(),
    )
}

/// A run directory of its own for each boot service this process starts
/// (`serverware-boot-<pid>-<n>` in the temporary directory, readable by dnsmasq's own user):
/// two controllers in one process (the tests) never share one, so one stopping never takes the
/// other's files.
pub fn run_dir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("serverware-boot-{}-{n}", std::process::id()))
}

/// Where the boot service's PID is kept, in the data directory.
pub fn pid_file(data_dir: &Path) -> PathBuf {
    data_dir.join("boot-dnsmasq.pid")
}

/// The running `dnsmasq`, if any, and what the service says of itself.
pub struct Service {
    run_dir: PathBuf,
    /// Where dnsmasq writes its PID (in the data directory): one left by a controller that was
    /// killed outright is ended when the service starts again.
    pid_file: PathBuf,
    child: Mutex<Option<tokio::process::Child>>,
    status: Mutex<String>,
}

impl Service {
    pub fn new(run_dir: PathBuf, pid_file: PathBuf) -> Service {
        Service {
            run_dir,
            pid_file,
            child: Mutex::new(None),
            status: Mutex::new("off".into()),
        }
    }

    pub fn status(&self) -> String {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_status(&self, s: String) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    /// Stops the running service, if any, and removes its run directory once dnsmasq is gone
    /// (a dnsmasq still dying could write its lease file into a directory being removed).
    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = c.start_kill();
            for _ in 0..100 {
                if !matches!(c.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }

    /// Runs the service as `s` says (stopped when off); `seen` is told each MAC it answered.
    pub async fn apply(&self, s: &ProvisionSettings, seen: impl Fn(String) + Send + 'static) {
        self.stop();
        let pid_file = self.pid_file.clone();
        let _ = tokio::task::spawn_blocking(move || end_stale(&pid_file)).await;
        if !s.enabled {
            self.set_status("off".into());
            return;
        }
        match self.start(s, seen).await {
            Ok(()) => self.set_status(format!("answering on {} for {}", s.interface, s.network)),
            Err(e) => {
                tracing::warn!("the boot service did not start: {e:#}");
                self.set_status(format!("not running: {e:#}"));
            }
        }
    }

    async fn start(
        &self,
        s: &ProvisionSettings,
        seen: impl Fn(String) + Send + 'static,
    ) -> anyhow::Result<()> {
        use anyhow::Context;
        // TFTP is served by dnsmasq's own unprivileged user: its files live where it can read.
        let tftp = self.run_dir.join("tftp");
        std::fs::create_dir_all(&tftp)?;
        use std::os::unix::fs::PermissionsExt;
        for d in [&self.run_dir, &tftp] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
        }
        for f in ["undionly.kpxe", "ipxe.efi"] {
            let from = Path::new(IPXE_DIR).join(f);
            std::fs::copy(&from, tftp.join(f))
                .with_context(|| format!("{} (apt install ipxe)", from.display()))?;
        }
        std::fs::write(
            tftp.join(ENTRY),
            super::boot::entry_script(&s.controller_url),
        )?;
        let conf = self.run_dir.join("dnsmasq.conf");
        std::fs::write(&conf, config_text(s, &tftp, &self.run_dir.join("leases")))?;
        let mut cmd = tokio::process::Command::new("dnsmasq");
        cmd.arg("--keep-in-foreground")
            .arg("--log-facility=-")
            .arg(format!("--conf-file={}", conf.display()))
            .arg(format!("--pid-file={}", self.pid_file.display()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .context("cannot run dnsmasq (apt install dnsmasq)")?;
        let stderr = child.stderr.take();
        // dnsmasq refuses a bad interface or a taken port at once: give it a moment to say so.
        let exited =
            tokio::time::timeout(std::time::Duration::from_millis(700), child.wait()).await;
        if let Ok(status) = exited {
            let mut why = String::new();
            if let Some(mut e) = stderr {
                use tokio::io::AsyncReadExt;
                let _ = e.read_to_string(&mut why).await;
            }
            anyhow::bail!("dnsmasq exited ({}): {}", status?, why.trim());
        }
        if let Some(e) = stderr {
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(e).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    tracing::debug!("dnsmasq: {l}");
                    if l.contains("PXE") || l.contains("proxy") {
                        if let Some(mac) = mac_in(&l) {
                            seen(mac);
                        }
                    }
                }
            });
        }
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        Ok(())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Removes the run directories (`serverware-boot-<pid>-<n>`) of processes that are gone: a
/// controller killed outright never removed its own. A directory of a live process is kept.
pub fn sweep_run_dirs() {
    let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix("serverware-boot-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Ends the boot service a killed controller left running (its PID file names a dnsmasq started
/// with one of our configurations), so the DHCP port is free and nothing answers for it.
pub fn end_stale(pid_file: &Path) {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .filter(|p| *p > 1)
    else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    if cmdline.starts_with("dnsmasq") && cmdline.contains("serverware-boot-") {
        tracing::warn!("ending the boot service (dnsmasq, PID {pid}) an earlier run left");
        // SAFETY: a signal to the process the PID file names, checked to be ours just above.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        for _ in 0..50 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    let _ = std::fs::remove_file(pid_file);
}

/// The first MAC address in a log line.
fn mac_in(line: &str) -> Option<String> {
    line.split(|c: char| c.is_whitespace() || c == ',')
        .find_map(|w| {
            serverware_shared::validate::mac_address("mac", w)
                .ok()
                .filter(|_| w.len() == 17)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_directories_of_gone_processes_are_swept_and_live_ones_kept() {
        let tmp = std::env::temp_dir();
        // A PID that cannot be running (above the kernel's maximum), and this process.
        let gone = tmp.join("serverware-boot-4194399-0");
        let live = tmp.join(format!("serverware-boot-{}-999", std::process::id()));
        std::fs::create_dir_all(gone.join("tftp")).unwrap();
        std::fs::create_dir_all(&live).unwrap();
        sweep_run_dirs();
        assert!(!gone.exists());
        assert!(live.exists());
        std::fs::remove_dir_all(&live).unwrap();
    }

    #[test]
    fn proxy_dhcp_never_hands_out_addresses_and_sends_ipxe_to_the_controller() {
        let s = ProvisionSettings {
            enabled: true,
            interface: "eth1".into(),
            network: "10.77.5.0/24".into(),
            controller_url: "http://10.77.5.1:8080".into(),
            allow_unapproved: false,
            dhcp_pool: "10.77.5.100-10.77.5.150".into(),
        };
        let t = config_text(&s, Path::new("/run/sw/tftp"), Path::new("/run/sw/leases"));
        assert!(t.contains("dhcp-range=10.77.5.0,proxy,255.255.255.0\n"));
        assert!(t.contains("port=0\n") && t.contains("interface=eth1\n"));
        assert!(t.contains("pxe-service=tag:ipxe,x86PC,\"SERVERware\",serverware.ipxe\n"));
        assert!(t.contains("undionly.kpxe"));
        assert_eq!(
            mac_in("dnsmasq-dhcp: 3843 PXE(swbr5) 52:54:00:77:05:10 proxy"),
            Some("52:54:00:77:05:10".into())
        );
        assert_eq!(mac_in("nothing here"), None);
    }
}
