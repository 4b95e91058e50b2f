//! Running `nft`: one script as one transaction, and JSON listings. Every run has a deadline
//! and is killed when it is abandoned. nft is started from the calling thread, so it acts in
//! that thread's network namespace. What the scripts say is the balancer's business
//! (`balancer::nft` renders and parses them).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// How long one run of `nft` may take. The first load on a freshly booted machine makes the
/// kernel load nf_tables and a dozen expression modules on demand: seconds on a small router,
/// over 10 s in an emulated (TCG) guest on a busy host. A hung nft still ends here.
pub const NFT_DEADLINE: Duration = Duration::from_secs(30);

/// Why nft refused.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run nft (is the nftables package installed?): {0}")]
    Spawn(std::io::Error),
    #[error("nft rejected the {what}: {stderr}")]
    Rejected { what: &'static str, stderr: String },
    #[error("cannot read nft's output: {0}")]
    Parse(String),
    #[error("nft did not finish the {0} within {NFT_DEADLINE:?}")]
    Timeout(&'static str),
}

/// Runs one nft script as one transaction. nft is started from the calling thread, so it
/// acts in that thread's network namespace.
pub async fn apply(script: &str, what: &'static str) -> Result<(), NftError> {
    if script.is_empty() {
        return Ok(());
    }
    tracing::debug!(what, "nft script:\n{script}");
    let run = async {
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(NftError::Spawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .await
                .map_err(NftError::Spawn)?;
        }
        child.wait_with_output().await.map_err(NftError::Spawn)
    };
    let out = tokio::time::timeout(NFT_DEADLINE, run)
        .await
        .map_err(|_| NftError::Timeout(what))??;
    if out.status.success() {
        Ok(())
    } else {
        Err(NftError::Rejected {
            what,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// `nft -j list ARGS…`: the JSON listing, or `None` when the object does not exist.
pub async fn list_json(what: &'static str, args: &[&str]) -> Result<Option<Vec<u8>>, NftError> {
    let run = Command::new("nft")
        .arg("-j")
        .arg("list")
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(NFT_DEADLINE, run)
        .await
        .map_err(|_| NftError::Timeout(what))?
        .map_err(NftError::Spawn)?;
    if out.status.success() {
        return Ok(Some(out.stdout));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No such file or directory") {
        return Ok(None);
    }
    Err(NftError::Rejected {
        what,
        stderr: stderr.trim().to_string(),
    })
}
