//! The `switchyard` command: `run`, `check`, `import`, `demo`, `demo-backend`
//! and `healthcheck`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use switchyard::app::{self, StartOptions, Threads};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A layer-7 HTTP load balancer for moving a monolith to microservices.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy.
    Run {
        /// The config file.
        #[arg(short, long, default_value = "config/switchyard.toml")]
        config: PathBuf,
        /// Worker threads serving client connections, 1-1024 (default:
        /// `[global] threads`, else one per CPU this process may run on).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
        threads: Option<u16>,
        /// Where generated files (the admin token) go.
        #[arg(long, default_value = ".switchyard")]
        state_dir: PathBuf,
    },
    /// Validate a config file: exit 0 with a summary, or 1 with every error.
    /// With `--diff`: print what a reload of it would change.
    Check {
        /// The config file.
        #[arg(short, long, default_value = "config/switchyard.toml")]
        config: PathBuf,
        /// Compare with the config the running instance serves (or with
        /// `--against`), one change per line.
        #[arg(long)]
        diff: bool,
        /// Compare with this file instead of the running instance.
        #[arg(long, requires = "diff")]
        against: Option<PathBuf>,
        /// The running instance's admin URL (default: the file's `[admin] listen`).
        #[arg(long, requires = "diff")]
        admin: Option<String>,
        /// Where the generated admin token is (`<state_dir>/admin-token`).
        #[arg(long, default_value = ".switchyard")]
        state_dir: PathBuf,
    },
    /// Translate an HAProxy configuration into Switchyard's TOML: exit 0 when
    /// every line was translated, 3 when some were not (each listed on stderr
    /// and as a comment in the output), 1 when HAProxy would reject the file.
    Import {
        /// The HAProxy configuration, e.g. /etc/haproxy/haproxy.cfg.
        file: PathBuf,
        /// Where to write the TOML (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Run the proxy on :8000 in front of two built-in demo backends.
    Demo {
        #[arg(short, long, default_value = "config/demo.toml")]
        config: PathBuf,
        #[arg(long, default_value = ".switchyard")]
        state_dir: PathBuf,
        /// Listen here instead of the config's frontend address (port 0: a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Run the admin server here instead of the config's address.
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// Bind the monolith and users demo backends here instead of
        /// 127.0.0.1:9001,127.0.0.1:9002. With any of these options the
        /// running addresses differ from the file's, so reloading the file
        /// is off.
        #[arg(long, value_delimiter = ',', num_args = 1)]
        backends: Option<Vec<SocketAddr>>,
    },
    /// Rewrite a state file forever (to test that a kill -9 never leaves it
    /// half-written).
    #[command(hide = true)]
    WriteStateForever {
        #[arg(long)]
        file: PathBuf,
    },
    /// Run one demo backend, which echoes what it receives.
    DemoBackend {
        /// The name it answers with.
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
    },
    /// GET a URL and exit 0 on a 2xx answer, else 1: a container health
    /// check for images without curl.
    Healthcheck {
        /// The URL to probe (http only).
        #[arg(long, default_value = "http://127.0.0.1:8001/healthz")]
        url: http::Uri,
        /// Most time for the connection and the answer ("3s", "500ms").
        #[arg(long, default_value = "3s", value_parser = switchyard::config::parse_duration)]
        timeout: Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match &cli.command {
        Command::Check {
            config,
            diff: false,
            ..
        } => return check(config),
        Command::Healthcheck { url, timeout } => return healthcheck(url, *timeout),
        Command::Import { file, output } => return import(file, output.as_deref()),
        Command::WriteStateForever { file } => {
            return match app::persist::write_forever(file) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("switchyard: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Check { diff: true, .. }
        | Command::Run { .. }
        | Command::Demo { .. }
        | Command::DemoBackend { .. } => {}
    }
    // The control plane (reloads, checks, the admin server) runs here; `run`
    // and `demo` serve client connections on worker threads of their own
    // (`proxy::Workers`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchyard: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run {
                config,
                state_dir,
                threads,
            } => run(&config, state_dir, threads).await,
            Command::Demo {
                config,
                state_dir,
                listen,
                admin,
                backends,
            } => {
                let addresses = DemoOptions {
                    listen,
                    admin,
                    backends,
                };
                demo(&config, state_dir, addresses).await
            }
            Command::DemoBackend { name, listen } => demo_backend(name, listen).await,
            Command::Check {
                config,
                against,
                admin,
                state_dir,
                ..
            } => preview(&config, against, admin, &state_dir).await,
            Command::WriteStateForever { .. }
            | Command::Healthcheck { .. }
            | Command::Import { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

fn check(path: &Path) -> ExitCode {
    match switchyard::config::load(path) {
        Ok(t) => {
            let servers: usize = t.backends.iter().map(|b| b.servers.len()).sum();
            println!(
                "{}: ok: {} frontend(s), {} backend(s), {} server(s)",
                path.display(),
                t.frontends.len(),
                t.backends.len(),
                servers
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `check --diff`: prints each change a reload of `config` would make.
async fn preview(
    config: &Path,
    against: Option<PathBuf>,
    admin: Option<String>,
    state_dir: &Path,
) -> anyhow::Result<()> {
    use switchyard::app::preview::{self, Against};
    let against = match against {
        Some(file) => Against::File(file),
        None => {
            let topology = app::load(config)?;
            let url = admin.unwrap_or_else(|| preview::default_admin_url(&topology));
            Against::Admin {
                url,
                token: admin_token(&topology, state_dir)?,
            }
        }
    };
    let lines = preview::changes(config, &against).await?;
    if lines.is_empty() {
        println!("no changes");
    }
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// The admin token: `SWITCHYARD_ADMIN_TOKEN`, else the file's `token_file`,
/// else the generated one in `state_dir`.
fn admin_token(topology: &switchyard::model::Topology, state_dir: &Path) -> anyhow::Result<String> {
    if let Ok(token) = std::env::var("SWITCHYARD_ADMIN_TOKEN") {
        return Ok(token.trim().to_owned());
    }
    let file = topology
        .admin
        .token_file
        .clone()
        .unwrap_or_else(|| switchyard::admin::generated_token_path(state_dir));
    std::fs::read_to_string(&file)
        .map(|t| t.trim().to_owned())
        .map_err(|e| anyhow::anyhow!("cannot read the admin token from {}: {e}", file.display()))
}

/// Probes `url` on a single-threaded runtime: this runs every few seconds
/// in a container, so it stays small and prints nothing when healthy.
fn healthcheck(url: &http::Uri, timeout: Duration) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchyard healthcheck: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::healthcheck::probe(url, timeout)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard healthcheck: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Exit status of `import` when some lines were not translated.
const IMPORT_INCOMPLETE: u8 = 3;

fn import(file: &Path, output: Option<&Path>) -> ExitCode {
    let source = match std::fs::read_to_string(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let name = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let translation = match switchyard::import::translate(&source, &name) {
        Ok(t) => t,
        Err(rejected) => {
            eprintln!("{rejected}");
            eprintln!(
                "{}: HAProxy would reject this file; nothing written",
                file.display()
            );
            return ExitCode::FAILURE;
        }
    };
    for skipped in &translation.skipped {
        eprintln!(
            "{}:{}: not translated: {}: {}",
            file.display(),
            skipped.line,
            skipped.text,
            skipped.reason
        );
    }
    let written = match output {
        Some(path) => std::fs::write(path, &translation.toml),
        None => std::io::Write::write_all(&mut std::io::stdout(), translation.toml.as_bytes()),
    };
    if let Err(e) = written {
        eprintln!("switchyard import: cannot write the output: {e}");
        return ExitCode::FAILURE;
    }
    match translation.skipped.len() {
        0 => ExitCode::SUCCESS,
        n => {
            eprintln!(
                "{}: {n} line(s) not translated, listed above and in the output",
                file.display()
            );
            ExitCode::from(IMPORT_INCOMPLETE)
        }
    }
}

async fn run(config: &Path, state_dir: PathBuf, threads: Option<u16>) -> anyhow::Result<()> {
    // Before anything is served: a SIGTERM right after the first request
    // must find the handler, not the default action.
    let signals = Signals::install()?;
    let topology = app::load(config)?;
    let running = start_topology(topology, Some(config.to_owned()), state_dir, threads).await?;
    serve_until_signalled(running, signals).await
}

async fn start_topology(
    topology: switchyard::model::Topology,
    config_file: Option<PathBuf>,
    state_dir: PathBuf,
    threads: Option<u16>,
) -> anyhow::Result<app::Running> {
    let options = StartOptions {
        config_file,
        admin_token: None,
        state_dir,
        threads: Threads::Own(threads),
    };
    app::start(topology, options).await
}

/// `demo`'s address options.
struct DemoOptions {
    listen: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    backends: Option<Vec<SocketAddr>>,
}

async fn demo(config: &Path, state_dir: PathBuf, options: DemoOptions) -> anyhow::Result<()> {
    let signals = Signals::install()?;
    let stop = CancellationToken::new();
    let wanted = options.backends.unwrap_or_default();
    if !wanted.is_empty() && wanted.len() != app::demo::BACKENDS.len() {
        anyhow::bail!("--backends expects two addresses: monolith,users");
    }
    let mut addresses = app::demo::Addresses {
        listen: options.listen,
        admin: options.admin,
        backends: Vec::new(),
    };
    for (i, (name, configured)) in app::demo::BACKENDS.into_iter().enumerate() {
        let configured: SocketAddr = configured.parse()?;
        let addr = wanted.get(i).copied().unwrap_or(configured);
        let bound = app::demo::bind_and_serve(addr, name.to_owned(), stop.clone()).await?;
        eprintln!("demo: backend {name} on {bound}");
        addresses.backends.push((configured, bound));
    }
    let mut topology = app::load(config)?;
    let config_file = match addresses.apply(&mut topology) {
        true => None,
        false => Some(config.to_owned()),
    };
    let running = start_topology(topology, config_file, state_dir, None).await?;
    for (name, addr) in &running.frontends {
        eprintln!(
            "demo: frontend {name} on http://{addr}/ (try: curl localhost:{}/ and /api/users)",
            addr.port()
        );
    }
    if let (Some(admin), Some(token)) = (running.admin, running.admin_token.as_deref()) {
        eprintln!("demo: admin server on http://{admin}/");
        eprintln!("demo: stats page http://admin:{token}@{admin}/");
    }
    let result = serve_until_signalled(running, signals).await;
    stop.cancel();
    result
}

async fn demo_backend(name: String, listen: SocketAddr) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let local = app::demo::bind_and_serve(listen, name.clone(), stop.clone()).await?;
    eprintln!("demo backend {name} on {local}");
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    stop.cancel();
    Ok(())
}

/// The signals `run` and `demo` answer, caught from `install` on.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// Serves until SIGTERM or SIGINT, reloading the config on SIGHUP. A second
/// SIGTERM or SIGINT during the grace period exits at once.
async fn serve_until_signalled(running: app::Running, signals: Signals) -> anyhow::Result<()> {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                match running.runtime.reload(switchyard::runtime::ReloadCause::Signal).await {
                    Ok(generation) => tracing::info!(generation, "reloaded on SIGHUP"),
                    Err(e) => tracing::error!("reload on SIGHUP failed: {e}"),
                }
            }
        }
    }
    tracing::info!("shutting down: no new connections; in-flight requests finish");
    tokio::select! {
        () = running.shutdown() => Ok(()),
        _ = term.recv() => { tracing::warn!("second signal: exiting now"); Ok(()) }
        _ = int.recv() => { tracing::warn!("second signal: exiting now"); Ok(()) }
    }
}
