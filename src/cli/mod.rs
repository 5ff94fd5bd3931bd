//! Command line: argument parsing and wiring. Exit codes: 0 all done and
//! verified; 3 something is left (failed, unconfirmed or manual); 2 bad
//! usage or config; 1 other error.

pub mod auth;
pub mod batch;
pub mod case;
pub mod fleet;
pub mod sandbox;
pub mod store;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "offboard",
    version,
    about = "Find a leaver's residual SaaS access, revoke it in a safe order, confirm every removal, keep evidence.",
    after_help = "Without a command, opens the console on your config. Exit codes: 0 all verified, 3 something left, 2 bad usage or config, 1 other error."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Config file (default: $OFFBOARD_CONFIG, else the platform config dir).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// ASCII borders and symbols (automatic when the locale is not UTF-8).
    #[arg(long, global = true)]
    pub ascii: bool,
    /// No action keys at all; `[RO]` in the header.
    #[arg(long, global = true)]
    pub read_only: bool,
    /// Console theme: default, mono, light, high-contrast, or a file in themes/.
    #[arg(long, global = true, value_name = "NAME")]
    pub theme: Option<String>,
}

impl Global {
    /// The console's share of the global options.
    pub fn flags(&self) -> crate::tui::app::Flags {
        crate::tui::app::Flags {
            config: self.config.clone(),
            ascii: self.ascii,
            read_only: self.read_only,
            theme: self.theme.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the embedded sandbox and the console against it.
    Demo(sandbox::DemoArgs),
    /// Show a leaver's residual access; changes nothing.
    Scan(ScanArgs),
    /// Revoke a leaver's access in phases, then wait until each removal is verified.
    Revoke(RevokeArgs),
    /// Re-read every app and report what is still live.
    Verify(VerifyArgs),
    /// `run --due`: revoke every roster leaver whose exit time has passed, by policy (cron, systemd timers).
    Run(RunArgs),
    /// Tick off a manual step (or a failed/unconfirmed grant fixed by hand), with a note for the evidence.
    Done(DoneArgs),
    /// Evidence report for a leaver, `evidence report --since DATE` for an audit period, or `evidence verify` to check the ledger chain.
    Evidence(EvidenceArgs),
    /// Sign in to an app and cache its token.
    Login(LoginArgs),
    /// Revoke an app's cached token and delete it.
    Logout(LogoutArgs),
    /// Check credentials, tokens, scopes and reachability of every connector.
    Doctor,
    /// List every account in every app and report those that outlived their person.
    Sweep(SweepArgs),
    /// Run the API emulator alone (for scripts and tests).
    Sandbox(sandbox::SandboxArgs),
    /// Team mode: the shared store on PostgreSQL (migrate, import, queue, add, watch).
    Store(store::StoreArgs),
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    pub email: String,
    /// Only these apps (connector ids); repeatable.
    #[arg(long = "app", value_name = "APP")]
    pub apps: Vec<String>,
    /// Pick one of several accounts that match in an app: `APP=ID` (the
    /// ids are listed by `scan`); repeatable. Recorded in the ledger.
    #[arg(long = "account", value_name = "APP=ID")]
    pub accounts: Vec<String>,
    /// Whom the leaver's data goes to in a hand-over (Google Drive and
    /// Calendar); default: their manager in `[roster] path`.
    #[arg(long, value_name = "EMAIL")]
    pub hand_over_to: Option<String>,
    /// Machine-readable output (see README: JSON output).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The leaver (or `--from FILE` for a batch).
    #[arg(required_unless_present = "from", conflicts_with = "from")]
    pub email: Option<String>,
    /// A batch: one email per line, or a roster (CSV or JSON Lines: its
    /// `leaving` and `left` people, their managers taking their data).
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Confirms a batch over the cap (`[batch] max_batch`, `max_share`):
    /// the exact number of leavers in it.
    #[arg(long, value_name = "N", requires = "from")]
    pub confirm_count: Option<usize>,
    /// Only these apps; repeatable.
    #[arg(long = "app", value_name = "APP")]
    pub apps: Vec<String>,
    /// Pick one of several accounts that match in an app: `APP=ID` (the
    /// ids are listed by `scan`); repeatable. Recorded in the ledger.
    #[arg(long = "account", value_name = "APP=ID")]
    pub accounts: Vec<String>,
    /// Only these grant kinds (session, oauth_grant, group, ...); repeatable.
    #[arg(long = "kind", value_name = "KIND")]
    pub kinds: Vec<String>,
    /// Whom the leaver's data goes to in a hand-over (Google Drive and
    /// Calendar); default: their manager in `[roster] path` (with
    /// `--from`, the file's manager column).
    #[arg(long, value_name = "EMAIL", conflicts_with = "from")]
    pub hand_over_to: Option<String>,
    /// Print the phased plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Act without asking (required when stdin is not a terminal).
    #[arg(long)]
    pub yes: bool,
    /// Team mode: take the leaver over from the host that holds it (recorded in the ledger).
    #[arg(long)]
    pub take_over: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    pub email: String,
    /// Only these apps; repeatable.
    #[arg(long = "app", value_name = "APP")]
    pub apps: Vec<String>,
    /// Pick one of several accounts that match in an app: `APP=ID` (the
    /// ids are listed by `scan`); repeatable. Recorded in the ledger.
    #[arg(long = "account", value_name = "APP=ID")]
    pub accounts: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Every leaver whose exit time has passed (status leaving or left).
    #[arg(long)]
    pub due: bool,
    /// The roster (CSV or JSON Lines; `-` for stdin). Default: `[roster] path`.
    #[arg(long, value_name = "FILE")]
    pub roster: Option<PathBuf>,
    /// Act. Without it, a dry run that changes nothing.
    #[arg(long)]
    pub yes: bool,
    /// Machine-readable output (`offboard.run/1`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoneArgs {
    pub email: String,
    /// The grant's key as `scan` shows it in --json (`connector/id`, e.g. `google/manual:data_transfer`).
    pub key: String,
    /// What was done, by whom: goes into the evidence ledger.
    #[arg(long)]
    pub note: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EvidenceArgs {
    /// A leaver's email, `report` (every leaver of a period, with --since),
    /// or `verify` to check the ledger's hash chain.
    pub target: String,
    /// `report`: start of the period (RFC 3339, or a date in the roster's time zone).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// `report`: end of the period (a date includes that day; default: now).
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// `report`: the roster for names and exit times (default: `[roster] path`; `-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub roster: Option<PathBuf>,
    #[arg(long, default_value = "md", value_parser = ["md", "json", "csv"])]
    pub format: String,
    /// Write the report here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Ledger file to check or read (default: the data directory's).
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The roster (CSV or JSON Lines, `-` for stdin). Default: `[roster] path`.
    #[arg(long, value_name = "FILE")]
    pub roster: Option<PathBuf>,
    /// The app whose suspended users are suspended identities (default: the first configured).
    #[arg(long, value_name = "APP")]
    pub directory: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Connector id from the config.
    pub app: String,
    /// Use the device authorization grant (show a code to enter elsewhere).
    #[arg(long, conflicts_with = "no_browser")]
    pub device: bool,
    /// Do not open a browser: print the URL and paste the redirect back.
    #[arg(long)]
    pub no_browser: bool,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    pub app: String,
}

pub use crate::outcome::{CmdResult, Failure};

/// Starts file logging in the data directory. Never logs to the terminal.
pub fn init_logging(
    data_dir: &std::path::Path,
) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use std::os::unix::fs::OpenOptionsExt;
    use tracing_subscriber::EnvFilter;
    // Created 0600 here: the appender keeps an existing file's mode.
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(data_dir.join("offboard.log"));
    let appender = tracing_appender::rolling::never(data_dir, "offboard.log");
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = EnvFilter::try_from_env("OFFBOARD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init()
        .ok()?;
    Some(guard)
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Some(
            Command::Scan(_)
                | Command::Verify(_)
                | Command::Evidence(_)
                | Command::Doctor
                | Command::Sweep(_)
        )
    ) {
        // Read-only commands end quietly when their reader goes away
        // (`offboard scan … | head`), like other Unix tools. Sockets are
        // unaffected: they are written with MSG_NOSIGNAL.
        // SAFETY: called before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let data_dir = match crate::config::data_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("offboard: data directory: {e}");
            return ExitCode::from(1);
        }
    };
    let guard = init_logging(&data_dir);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("offboard: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(dispatch(cli, data_dir));
    drop(runtime);
    drop(guard); // flush logs before exit
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("offboard: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn dispatch(cli: Cli, data_dir: PathBuf) -> CmdResult {
    match cli.command {
        Some(Command::Sandbox(args)) => sandbox::run(args).await,
        Some(Command::Store(args)) => store::run(&cli.global, args, data_dir).await,
        Some(Command::Login(args)) => auth::login(&cli.global, args, data_dir).await,
        Some(Command::Logout(args)) => auth::logout(&cli.global, args, data_dir).await,
        Some(Command::Doctor) => auth::doctor(&cli.global, data_dir).await,
        Some(Command::Sweep(args)) => batch::sweep_cmd(&cli.global, args, &data_dir).await,
        Some(Command::Scan(args)) => case::scan(&cli.global, args, data_dir).await,
        Some(Command::Revoke(args)) if args.from.is_some() => {
            batch::revoke_batch(&cli.global, args, &data_dir).await
        }
        Some(Command::Revoke(args)) => case::revoke(&cli.global, args, data_dir).await,
        Some(Command::Verify(args)) => case::verify(&cli.global, args, data_dir).await,
        Some(Command::Evidence(args)) if args.target == "report" => {
            fleet::report(&cli.global, args, data_dir).await
        }
        Some(Command::Evidence(args)) => case::evidence(&cli.global, args, data_dir).await,
        Some(Command::Run(args)) => fleet::run(&cli.global, args, data_dir).await,
        Some(Command::Done(args)) => case::done(&cli.global, args, data_dir).await,
        Some(Command::Demo(args)) => match args.faults.to_faults() {
            Ok(faults) => {
                let sandbox = crate::sandbox::Options {
                    port: args.port,
                    faults,
                    ..Default::default()
                };
                crate::tui::app::demo(&cli.global.flags(), sandbox, data_dir).await
            }
            Err(e) => Err(e),
        },
        None => crate::tui::app::console(&cli.global.flags(), data_dir).await,
    }
}
