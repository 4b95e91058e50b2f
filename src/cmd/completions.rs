//! `eqlplus-dialer completions SHELL` and `eqlplus-dialer man`: shell completion scripts and
//! the man page, generated from the command-line definition that `main.rs` hands in.

use std::io::{self, Write};

use clap_complete::Shell;

use super::ctl::exit;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Install, for example:
  bash: eqlplus-dialer completions bash > /etc/bash_completion.d/eqlplus-dialer
  zsh:  eqlplus-dialer completions zsh > /usr/local/share/zsh/site-functions/_eqlplus-dialer
  fish: eqlplus-dialer completions fish > /etc/fish/completions/eqlplus-dialer.fish")]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Install, for example:
  eqlplus-dialer man > /usr/local/share/man/man8/eqlplus-dialer.8")]
pub struct ManArgs {}

/// Ends quietly on EPIPE (`| head`); other write errors are reported.
fn finish(result: io::Result<()>) -> i32 {
    match result {
        Ok(()) => exit::OK,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => {
            eprintln!("eqlplus-dialer: cannot write to stdout: {e}");
            exit::TROUBLE
        }
    }
}

/// The completion script for `args.shell`, for the command `cli`.
pub fn completions(args: CompletionsArgs, mut cli: clap::Command) -> i32 {
    let mut script = Vec::new();
    let name = cli.get_name().to_string();
    clap_complete::generate(args.shell, &mut cli, name, &mut script);
    let mut out = io::stdout().lock();
    finish(out.write_all(&script).and_then(|()| out.flush()))
}

/// The man page (roff, section 8) of the command `cli`.
pub fn man(_args: ManArgs, cli: clap::Command) -> i32 {
    let mut page = Vec::new();
    let rendered = clap_mangen::Man::new(cli)
        .section("8")
        .manual("System Administration")
        .render(&mut page);
    if let Err(e) = rendered {
        eprintln!("eqlplus-dialer: cannot render the man page: {e}");
        return exit::TROUBLE;
    }
    let mut out = io::stdout().lock();
    finish(out.write_all(&page).and_then(|()| out.flush()))
}
