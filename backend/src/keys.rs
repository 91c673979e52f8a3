//! The controller's own SSH identity: an ed25519 key created on first start in the data
//! directory (mode 0600), installed on every host it manages.

use anyhow::Context;
use rand::RngCore;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{PrivateKey, PublicKey};
use std::path::Path;

pub const KEY_FILE: &str = "controller_ed25519";

/// The SSH command line's host key, beside it.
pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";

pub fn load_or_create(data_dir: &Path) -> anyhow::Result<PrivateKey> {
    load_or_create_named(data_dir, KEY_FILE, "serverware-controller")
}

/// An ed25519 key kept in `data_dir/file` (mode 0600), made on first use.
pub fn load_or_create_named(
    data_dir: &Path,
    file: &str,
    comment: &str,
) -> anyhow::Result<PrivateKey> {
    let path = data_dir.join(file);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return PrivateKey::from_openssh(text)
            .with_context(|| format!("{} is not an OpenSSH private key", path.display()));
    }
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment(comment);
    let text = key
        .to_openssh(LineEnding::LF)
        .context("cannot encode the controller key")?;
    crate::files::private_dir(data_dir)?;
    crate::files::write_secret(&path, text.as_bytes())?;
    Ok(key)
}

pub fn public_line(key: &PrivateKey) -> String {
    key.public_key().to_openssh().unwrap_or_default()
}

/// The SHA-256 fingerprint of an OpenSSH public key line, as `ssh-keygen -l` prints it.
pub fn fingerprint(line: &str) -> Option<String> {
    PublicKey::from_openssh(line.trim())
        .ok()
        .map(|k| k.fingerprint(russh::keys::HashAlg::Sha256).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(public_line(&a), public_line(&b));
        assert!(public_line(&a).starts_with("ssh-ed25519 "));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
