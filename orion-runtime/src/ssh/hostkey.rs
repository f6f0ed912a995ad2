//! The server's host key, checked against the known-hosts file; a refusal
//! names the host and the offered key's SHA256 fingerprint.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use russh::client;
use russh::keys::{HashAlg, PublicKey};

use super::config::SshTarget;
use super::pool::lock;

/// The russh handler: checks the server's key against the known-hosts file and
/// keeps the reason of a refusal for the error message.
pub(crate) struct Client {
    target: SshTarget,
    known_hosts: PathBuf,
    refusal: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = host_key_verdict(&self.target, &self.known_hosts, &offered.public_key());
        match verdict {
            Ok(()) => Ok(true),
            Err(why) => {
                *lock(&self.refusal) = Some(why);
                Ok(false)
            }
        }
    }
}

/// Whether `key` is the target's key in the known-hosts file; the refusal
/// names the host and the key's SHA256 fingerprint.
fn host_key_verdict(target: &SshTarget, file: &PathBuf, key: &PublicKey) -> Result<(), String> {
    let name = target.known_hosts_name();
    let offered = format!(
        "{} {}",
        key.algorithm().as_str(),
        key.fingerprint(HashAlg::Sha256)
    );
    match russh::keys::check_known_hosts_path(&target.host, target.port, key, file) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "host key of {name} ({offered}) is not in {}: refusing an unknown host",
            file.display()
        )),
        // (russh's line number skips comment lines, so it is not quoted.)
        Err(russh::keys::Error::KeyChanged { .. }) => Err(format!(
            "host key of {name} does not match the key recorded for it in {}: the server \
             offered {offered} (a changed server or a man in the middle): refusing it",
            file.display()
        )),
        Err(e) => Err(format!(
            "cannot check the host key of {name} ({offered}) against {}: {e}",
            file.display()
        )),
    }
}

impl Client {
    /// A handler for `target` trusting the keys in `known_hosts`; the reason
    /// of a refusal is left in `refusal`.
    pub(crate) fn new(
        target: SshTarget,
        known_hosts: PathBuf,
        refusal: Arc<Mutex<Option<String>>>,
    ) -> Client {
        Client {
            target,
            known_hosts,
            refusal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAICnxm6Q6siX4/bOBwVLZPPN/2m2RUi1sNbUqjn1EMaaq";
    const KEY_FINGERPRINT: &str = "SHA256:y2glLmHAh4xnesQiKZQkaLdnMp5CjBLLequje+XmaNM";
    const OTHER: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJT4VmTKXvOvxJbGq2FPlLZcW9IUWwNWvrGUOBeHaGSA";

    fn verdict(known_hosts: &str, target: &str) -> Result<(), String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("known_hosts");
        std::fs::write(&file, known_hosts).expect("write");
        let key = russh::keys::parse_public_key_base64(KEY).expect("key");
        let target = SshTarget::parse(target).expect("target");
        host_key_verdict(&target, &file, &key)
    }

    #[test]
    fn the_recorded_key_is_trusted() {
        let line = format!("[127.0.0.1]:2222 ssh-ed25519 {KEY}\n");
        assert_eq!(verdict(&line, "me@127.0.0.1:2222"), Ok(()));
        let line = format!("box ssh-ed25519 {KEY}\n");
        assert_eq!(verdict(&line, "me@box"), Ok(()));
    }

    #[test]
    fn another_key_is_refused_with_host_and_fingerprint() {
        let line = format!("# comment\n[127.0.0.1]:2222 ssh-ed25519 {OTHER}\n");
        let e = verdict(&line, "me@127.0.0.1:2222").expect_err("mismatch");
        assert!(e.contains("[127.0.0.1]:2222"), "{e}");
        assert!(e.contains(KEY_FINGERPRINT), "{e}");
        assert!(e.contains("does not match the key recorded"), "{e}");
    }

    #[test]
    fn an_unknown_host_is_refused() {
        let line = format!("[127.0.0.1]:2223 ssh-ed25519 {KEY}\n");
        let e = verdict(&line, "me@127.0.0.1:2222").expect_err("unknown");
        assert!(
            e.contains("is not in") && e.contains(KEY_FINGERPRINT),
            "{e}"
        );
    }
}
