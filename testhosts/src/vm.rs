//! A virtual machine on a test bridge: QEMU (Debian `qemu-system-x86`) with an empty disk, set to
//! boot from the network through its NIC's iPXE ROM (Debian `ipxe-qemu`), its serial console in a
//! file. It can be powered off (QEMU killed, by PID) and on again with the same disk and MAC.
//! Dropping it ends QEMU and removes its tap device and disk.
//!
//! The accelerator is TCG unless `SERVERWARE_TEST_QEMU_ACCEL` says `kvm` (on the machines these
//! tests run on, `/dev/kvm` is there but a guest kernel hangs under it).

use super::run;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Vm {
    pub mac: String,
    pub tap: String,
    dir: PathBuf,
    disk: PathBuf,
    console: PathBuf,
    memory_mib: u32,
    qemu: Option<Child>,
    boots: u32,
}

impl Vm {
    /// A machine with a blank `disk_gib` disk and MAC `mac`, its NIC a tap `tap` on `bridge`; not
    /// powered on yet.
    pub fn new(dir: &Path, bridge: &str, tap: &str, mac: &str, disk_gib: u32) -> Result<Vm> {
        std::fs::create_dir_all(dir)?;
        let disk = dir.join(format!("{tap}.qcow2"));
        let _ = std::fs::remove_file(&disk);
        run(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                &disk.to_string_lossy(),
                &format!("{disk_gib}G"),
            ],
        )?;
        let _ = Command::new("ip").args(["link", "del", tap]).output();
        run("ip", &["tuntap", "add", "dev", tap, "mode", "tap"])?;
        let vm = Vm {
            mac: mac.to_string(),
            tap: tap.to_string(),
            dir: dir.to_path_buf(),
            disk,
            console: dir.join(format!("{tap}.console")),
            memory_mib: 1536,
            qemu: None,
            boots: 0,
        };
        run("ip", &["link", "set", tap, "master", bridge, "up"])?;
        Ok(vm)
    }

    /// Powers the machine on: it boots from the network.
    pub fn power_on(&mut self) -> Result<()> {
        if self.qemu.is_some() {
            bail!("the machine is on");
        }
        self.boots += 1;
        let accel = std::env::var("SERVERWARE_TEST_QEMU_ACCEL").unwrap_or_else(|_| "tcg".into());
        let console = std::fs::File::create(&self.console)?;
        let child = Command::new("qemu-system-x86_64")
            .args([
                "-accel",
                &accel,
                "-m",
                &self.memory_mib.to_string(),
                "-smp",
                "1",
            ])
            .args(["-nographic", "-monitor", "none", "-boot", "n"])
            .args([
                "-netdev",
                &format!("tap,id=n0,ifname={},script=no,downscript=no", self.tap),
            ])
            .args([
                "-device",
                &format!("virtio-net-pci,netdev=n0,mac={}", self.mac),
            ])
            .args([
                "-drive",
                &format!("file={},if=virtio,format=qcow2", self.disk.display()),
            ])
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run qemu-system-x86_64 (apt install qemu-system-x86)")?;
        self.qemu = Some(child);
        Ok(())
    }

    /// Pulls the plug: QEMU is killed, the disk stays.
    pub fn power_off(&mut self) {
        if let Some(mut c) = self.qemu.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether QEMU still runs.
    pub fn is_on(&mut self) -> bool {
        matches!(self.qemu.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// What the machine printed on its serial console since it was last powered on.
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.console).unwrap_or_default()).into_owned()
    }

    /// How many times it was powered on.
    pub fn boots(&self) -> u32 {
        self.boots
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.power_off();
        let _ = Command::new("ip").args(["link", "del", &self.tap]).output();
        let _ = std::fs::remove_file(&self.disk);
        let _ = std::fs::remove_file(&self.console);
    }
}
