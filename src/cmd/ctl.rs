//! The subcommands that talk to a running daemon over its control socket: `hangup` and
//! `reload` here; `up`/`down` (which also start and stop it), `status` and `watch` in their
//! own modules. They share the socket options
//! ([`SocketArgs`]), the exit codes ([`exit`]) and the handling of status reports
//! ([`status_report`], [`print_report`]).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::config::{DEFAULT_CONFIG, defaults};
use crate::control::{ClientError, Request, Response, StatusReport, client};

/// Exit codes of the control subcommands.
pub mod exit {
    /// Done.
    pub const OK: i32 = 0;
    /// The daemon refused or failed; its message was printed.
    pub const REFUSED: i32 = 1;
    /// Usage error, or the daemon could not be talked to (I/O error, bad answer, timeout).
    pub const TROUBLE: i32 = 2;
    /// The daemon is not running (no control socket, or nobody listening on it).
    pub const NOT_RUNNING: i32 = 3;
    /// Permission denied: neither root nor a member of the control group.
    pub const PERMISSION: i32 = 4;
}

/// The exit codes, for `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit status:
  0  done
  1  the daemon refused or failed (its message is printed)
  2  usage error, or the daemon could not be talked to (I/O error, bad answer, timeout)
  3  the daemon is not running (no control socket)
  4  permission denied (only root and members of the [control] group may)";

/// The exit codes, for the top-level `--help`.
pub const EXIT_CODES_TOP_HELP: &str = "\
Exit status of up, hangup, reload, status and watch:
  0 done, 1 the daemon refused or failed, 2 usage error or the daemon could not be talked to,
  3 the daemon is not running, 4 permission denied.
Other commands document their own (chat: chat(8)'s).";

/// Where the daemon's control socket is.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SocketArgs {
    /// The daemon's control socket [default: [control] socket of the configuration file if it
    /// exists, else /run/eqlplus-dialer/control.sock].
    #[arg(long, env = "EQLPLUS_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The configuration file to read the socket path from [default:
    /// /etc/eqlplus-dialer/eqlplus-dialer.toml].
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl SocketArgs {
    /// `--socket`, else `[control] socket` of `--config` (which must then be readable), else
    /// of the default configuration file if it exists and parses, else the default path.
    pub fn resolve(&self) -> Result<PathBuf, String> {
        if let Some(socket) = &self.socket {
            return Ok(socket.clone());
        }
        match &self.config {
            Some(file) => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                let socket =
                    socket_from_config(&text).map_err(|e| format!("{}: {e}", file.display()))?;
                Ok(relative_to(
                    file,
                    socket.unwrap_or_else(|| PathBuf::from(defaults::SOCKET)),
                ))
            }
            None => Ok(std::fs::read_to_string(DEFAULT_CONFIG)
                .ok()
                .and_then(|text| socket_from_config(&text).ok().flatten())
                .map(|s| relative_to(std::path::Path::new(DEFAULT_CONFIG), s))
                .unwrap_or_else(|| PathBuf::from(defaults::SOCKET))),
        }
    }
}

/// A path from a configuration file, relative to that file's directory (as the daemon reads it).
pub(crate) fn relative_to(config: &std::path::Path, path: PathBuf) -> PathBuf {
    match config.parent() {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path,
    }
}

/// `[control] socket` of a configuration file's text. Only that key is looked at, so the CLI
/// still finds the daemon when another part of the file has a mistake.
pub fn socket_from_config(text: &str) -> Result<Option<PathBuf>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.message().to_string())?;
    match table.get("control").and_then(|c| c.get("socket")) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(PathBuf::from(s))),
        Some(other) => Err(format!(
            "[control] socket must be a string (a path), not {}",
            other.type_str()
        )),
    }
}

/// Prints a client error and returns its exit code.
pub fn report_error(e: &ClientError) -> i32 {
    eprintln!("eqlplus-dialer: {e}");
    client_exit_code(e)
}

/// The exit code for a client error.
pub fn client_exit_code(e: &ClientError) -> i32 {
    match e {
        ClientError::NotRunning { .. } => exit::NOT_RUNNING,
        ClientError::PermissionDenied { .. } => exit::PERMISSION,
        _ => exit::TROUBLE,
    }
}

/// Prints an `error` response and returns its exit code.
pub fn report_refusal(message: &str) -> i32 {
    eprintln!("eqlplus-dialer: {message}");
    if message.starts_with("permission denied") {
        exit::PERMISSION
    } else {
        exit::REFUSED
    }
}

/// Writes `text` to stdout; `false` when stdout is gone (EPIPE: `| head` closed it), which
/// callers treat as a quiet, successful end.
pub fn print_out(text: &str) -> io::Result<bool> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
    }
}

/// The status report in the daemon's answer to `status` (or in one of a subscription's), or
/// the exit code after saying what came instead.
pub fn status_report(answer: Result<Response, ClientError>) -> Result<StatusReport, i32> {
    match answer {
        Ok(Response::Status(report)) => Ok(report),
        Ok(Response::Error { message }) => Err(report_refusal(&message)),
        Ok(Response::Ok { message }) => {
            eprintln!("eqlplus-dialer: expected a status report, got: {message}");
            Err(exit::TROUBLE)
        }
        Err(e) => Err(report_error(&e)),
    }
}

/// Prints a status report as one line of JSON, or as `render` makes it. Like [`print_out`]:
/// `Ok(false)` when stdout is gone; the exit code after saying why it could not.
pub fn print_report(
    report: &StatusReport,
    json: bool,
    render: impl FnOnce(&StatusReport) -> String,
) -> Result<bool, i32> {
    let text = if json {
        match serde_json::to_string(report) {
            Ok(json) => json + "\n",
            Err(e) => {
                eprintln!("eqlplus-dialer: cannot encode the report: {e}");
                return Err(exit::TROUBLE);
            }
        }
    } else {
        render(report)
    };
    print_out(&text).map_err(|e| {
        eprintln!("eqlplus-dialer: cannot write to stdout: {e}");
        exit::TROUBLE
    })
}

/// Resolves the socket, or prints why not (exit 2).
pub fn socket_or_exit(args: &SocketArgs) -> Result<PathBuf, i32> {
    args.resolve().map_err(|e| {
        eprintln!("eqlplus-dialer: {e}");
        exit::TROUBLE
    })
}

/// Sends a request that is answered with `ok` or `error`, prints the daemon's message and
/// returns the exit code.
pub async fn simple(socket: &Path, request: Request) -> i32 {
    match client::request(socket, request).await {
        Ok(Response::Ok { message }) => {
            if let Err(e) = print_out(&format!("{message}\n")) {
                eprintln!("eqlplus-dialer: cannot write to stdout: {e}");
            }
            exit::OK
        }
        Ok(Response::Error { message }) => report_refusal(&message),
        Ok(Response::Status(_)) => {
            eprintln!("eqlplus-dialer: the daemon answered with a status report, not ok/error");
            exit::TROUBLE
        }
        Err(e) => report_error(&e),
    }
}

#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES_HELP)]
pub struct HangupArgs {
    /// Lines to hang up and keep down until `up`.
    #[arg(value_name = "LINE", required = true)]
    pub lines: Vec<String>,
    #[command(flatten)]
    pub socket: SocketArgs,
}

#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES_HELP)]
pub struct ReloadArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
}

pub async fn hangup(args: HangupArgs) -> i32 {
    match socket_or_exit(&args.socket) {
        Ok(socket) => simple(&socket, Request::Hangup { lines: args.lines }).await,
        Err(code) => code,
    }
}

pub async fn reload(args: ReloadArgs) -> i32 {
    match socket_or_exit(&args.socket) {
        Ok(socket) => simple(&socket, Request::Reload).await,
        Err(code) => code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_from_config() {
        assert_eq!(
            socket_from_config("[control]\nsocket = \"/tmp/x.sock\"\n"),
            Ok(Some(PathBuf::from("/tmp/x.sock")))
        );
        assert_eq!(
            socket_from_config("[control]\ngroup = \"eqlplus\"\n"),
            Ok(None)
        );
        assert_eq!(socket_from_config(""), Ok(None));
        // Mistakes elsewhere in the file do not matter.
        assert_eq!(
            socket_from_config("[control]\nsocket = \"/s\"\n[[line]]\nbaud = \"fast\"\n"),
            Ok(Some(PathBuf::from("/s")))
        );
        assert!(
            socket_from_config("[control]\nsocket = 5\n")
                .unwrap_err()
                .contains("must be a string")
        );
        assert!(socket_from_config("[control\n").is_err());
    }

    #[test]
    fn socket_resolution_order() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("c.toml");
        std::fs::write(&config, "[control]\nsocket = \"/from/config.sock\"\n").unwrap();
        let args = SocketArgs {
            socket: Some("/explicit.sock".into()),
            config: Some(config.clone()),
        };
        assert_eq!(args.resolve(), Ok(PathBuf::from("/explicit.sock")));
        let args = SocketArgs {
            socket: None,
            config: Some(config),
        };
        assert_eq!(args.resolve(), Ok(PathBuf::from("/from/config.sock")));
        let args = SocketArgs {
            socket: None,
            config: Some(dir.path().join("missing.toml")),
        };
        assert!(args.resolve().unwrap_err().starts_with("cannot read"));
    }

    #[test]
    fn exit_codes() {
        let path = PathBuf::from("/nowhere");
        assert_eq!(
            client_exit_code(&ClientError::NotRunning { path: path.clone() }),
            3
        );
        assert_eq!(client_exit_code(&ClientError::PermissionDenied { path }), 4);
        assert_eq!(client_exit_code(&ClientError::Closed), 2);
        assert_eq!(
            ClientError::NotRunning {
                path: "/run/x.sock".into()
            }
            .to_string(),
            "eqlplus-dialer is not running (no control socket at /run/x.sock)"
        );
    }
}
