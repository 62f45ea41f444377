//! The masking key: read from `PGCOPY_MASK_KEY` or the file `PGCOPY_MASK_KEY_FILE` names,
//! checked for strength and for a file others may read, and shown nowhere.

use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::path::Path;

/// The masking key: shown as nothing in every `Debug`, written nowhere.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct MaskKey(std::sync::Arc<Vec<u8>>);

impl MaskKey {
    pub(crate) fn new(bytes: Vec<u8>) -> MaskKey {
        MaskKey(std::sync::Arc::new(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Tells keys apart without saying anything of them: 64 bits of the key's HMAC of a
    /// fixed label, in hex.
    pub(crate) fn fingerprint(&self) -> String {
        let mac =
            crate::rules::rewrite::hmac::Hmac::new(self.bytes()).mac(b"pgcopy: key fingerprint");
        mac[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// From `PGCOPY_MASK_KEY`, else the file `PGCOPY_MASK_KEY_FILE` names (its content
    /// without the final newline).
    pub(super) fn from_environment(warnings: &mut Vec<String>) -> Result<MaskKey> {
        let key = match (
            std::env::var_os("PGCOPY_MASK_KEY"),
            std::env::var_os("PGCOPY_MASK_KEY_FILE"),
        ) {
            (Some(key), _) => key.into_encoded_bytes(),
            (None, Some(file)) => {
                warnings.extend(readable(Path::new(&file)));
                let mut bytes = std::fs::read(&file).with_context(|| {
                    format!(
                        "reading the masking key from {}",
                        Path::new(&file).display()
                    )
                })?;
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                bytes
            }
            (None, None) => bail!(
                "the rules hash columns, which needs a key: set PGCOPY_MASK_KEY, or \
                 PGCOPY_MASK_KEY_FILE to a file that holds it (never a flag, so that no \
                 process list shows it)"
            ),
        };
        if key.len() < 16 {
            bail!("the masking key is shorter than 16 bytes: take a long random one");
        }
        let distinct = key.iter().collect::<HashSet<_>>().len();
        if distinct < 16 {
            warnings.push(format!(
                "the masking key has only {distinct} distinct bytes (sixteen zeros, twenty \
                 spaces?): anyone who guesses it can undo the masks; take a random one, such \
                 as `openssl rand -base64 32`"
            ));
        }
        Ok(MaskKey::new(key))
    }
}

/// A warning when the key file may be read by others than its owner: the key undoes the
/// masks.
fn readable(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "the masking key file {} may be read by others (mode {mode:04o}): `chmod 600` it, \
             since the key undoes the masks",
            path.display()
        )
    })
}

impl std::fmt::Debug for MaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MaskKey(..)")
    }
}
