//! Secrets files in pppd's `pap-secrets`/`chap-secrets` format:
//!
//! ```text
//! # client   server   secret          [addresses…]
//! alice      *        "s3cret word"
//! ```
//!
//! A file readable or writable by group or others is refused: the daemon says so instead of
//! running with leaked (or planted) passwords.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A problem with the secrets file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretsError {
    #[error("cannot read secrets file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error(
        "secrets file {path} is readable or writable by group or others (mode {mode:04o}); run: chmod 600 {path}"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// One entry: who, towards which server, with what secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretEntry {
    pub client: String,
    pub server: String,
    pub secret: String,
}

impl std::fmt::Debug for SecretEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretEntry")
            .field("client", &self.client)
            .field("server", &self.server)
            .field("secret", &"??????")
            .finish()
    }
}

/// A parsed secrets file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretsFile {
    pub entries: Vec<SecretEntry>,
}

impl SecretsFile {
    /// Reads and parses `path`, refusing a file others can read.
    pub fn load(path: &Path) -> Result<SecretsFile, SecretsError> {
        let read_err = |e: std::io::Error| SecretsError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        let mode = meta.permissions().mode() & 0o7777;
        // Writable by others is as bad as readable: whoever can write it chooses the password
        // (and the peer) we authenticate with.
        if mode & 0o066 != 0 {
            return Err(SecretsError::Exposed {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        SecretsFile::parse(&text, path)
    }

    /// Parses secrets text; `path` names errors.
    pub fn parse(text: &str, path: &Path) -> Result<SecretsFile, SecretsError> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let words = split_words(raw).map_err(|message| SecretsError::Syntax {
                path: path.to_path_buf(),
                line: i + 1,
                message,
            })?;
            match words.len() {
                0 => continue,
                1 | 2 => {
                    return Err(SecretsError::Syntax {
                        path: path.to_path_buf(),
                        line: i + 1,
                        message: "expected: client server secret [addresses…]".into(),
                    });
                }
                _ => entries.push(SecretEntry {
                    client: words[0].clone(),
                    server: words[1].clone(),
                    secret: words[2].clone(),
                }),
            }
        }
        Ok(SecretsFile { entries })
    }

    /// The secret of `client` towards `server` (or any server): an exact server name wins
    /// over `*`, as in pppd.
    pub fn lookup(&self, client: &str, server: Option<&str>) -> Option<&str> {
        let exact = server.and_then(|s| {
            self.entries
                .iter()
                .find(|e| e.client == client && e.server == s)
        });
        exact
            .or_else(|| {
                self.entries
                    .iter()
                    .find(|e| e.client == client && e.server == "*")
            })
            .or_else(|| {
                // A dialer does not know the server's name before PAP: take the first match.
                server
                    .is_none()
                    .then(|| self.entries.iter().find(|e| e.client == client))
                    .flatten()
            })
            .map(|e| e.secret.as_str())
    }
}

/// pppd's word splitting: blanks separate, `#` starts a comment, `"…"` and `'…'` quote, a
/// backslash escapes the next character.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None | Some('#') => return Ok(words),
            _ => {}
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            match c {
                '"' | '\'' => loop {
                    match chars.next() {
                        None => return Err(format!("unterminated {c}quote")),
                        Some(q) if q == c => break,
                        Some('\\') => word.extend(chars.next()),
                        Some(other) => word.push(other),
                    }
                },
                '\\' => word.extend(chars.next()),
                other => word.push(other),
            }
        }
        words.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pppd_format() {
        let text = "# comment\nalice * \"s3cret word\" 10.0.0.2\nbob isp 'x y'\n\n  bob * any # trailing\ncarol\\ d * pa\\\"ss\n";
        let s = SecretsFile::parse(text, Path::new("pap-secrets")).unwrap();
        assert_eq!(s.entries.len(), 4);
        assert_eq!(s.lookup("alice", None), Some("s3cret word"));
        assert_eq!(s.lookup("bob", Some("isp")), Some("x y"));
        assert_eq!(s.lookup("bob", Some("other")), Some("any"));
        assert_eq!(
            s.lookup("bob", None),
            Some("any"),
            "* wins when the server is unknown"
        );
        assert_eq!(s.lookup("carol d", None), Some("pa\"ss"));
        assert_eq!(s.lookup("dave", None), None);
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = SecretsFile::parse("alice *\n", Path::new("f")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "f:1: expected: client server secret [addresses…]"
        );
        let e = SecretsFile::parse("ok * x\nalice * \"open", Path::new("f")).unwrap_err();
        assert!(e.to_string().starts_with("f:2: unterminated"), "{e}");
    }

    #[test]
    fn exposed_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets");
        std::fs::write(&path, "alice * pw\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = SecretsFile::load(&path).unwrap_err();
        assert!(
            e.to_string()
                .contains("readable or writable by group or others (mode 0644)"),
            "{e}"
        );
        assert!(e.to_string().contains("chmod 600"), "{e}");
        // Writable by group or others: whoever writes it picks our password.
        for mode in [0o622, 0o620, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(
                SecretsFile::load(&path),
                Err(SecretsError::Exposed {
                    path: path.clone(),
                    mode
                }),
                "mode {mode:o}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            SecretsFile::load(&path).unwrap().lookup("alice", None),
            Some("pw")
        );
    }
}
