//! The `switchyard` command: `run`, `check`, `demo` and `demo-backend`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchyard::app::{self, StartOptions};
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
        /// Worker threads (default: one per available CPU).
        #[arg(long)]
        threads: Option<usize>,
        /// Where generated files (the admin token) go.
        #[arg(long, default_value = ".switchyard")]
        state_dir: PathBuf,
    },
    /// Validate a config file: exit 0 with a summary, or 1 with every error.
    Check {
        /// The config file.
        #[arg(short, long, default_value = "config/switchyard.toml")]
        config: PathBuf,
    },
    /// Run the proxy on :8000 in front of two built-in demo backends.
    Demo {
        #[arg(short, long, default_value = "config/demo.toml")]
        config: PathBuf,
        #[arg(long, default_value = ".switchyard")]
        state_dir: PathBuf,
    },
    /// Run one demo backend, which echoes what it receives.
    DemoBackend {
        /// The name it answers with.
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    if let Command::Check { config } = &cli.command {
        return check(config);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
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
                config, state_dir, ..
            } => run(&config, state_dir).await,
            Command::Demo { config, state_dir } => demo(&config, state_dir).await,
            Command::DemoBackend { name, listen } => demo_backend(name, listen).await,
            Command::Check { .. } => Ok(()),
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

async fn run(config: &Path, state_dir: PathBuf) -> anyhow::Result<()> {
    serve_until_signalled(start(config, state_dir).await?).await
}

/// Loads `config` and starts serving it.
async fn start(config: &Path, state_dir: PathBuf) -> anyhow::Result<app::Running> {
    let topology = app::load(config)?;
    let options = StartOptions {
        config_file: Some(config.to_owned()),
        admin_token: None,
        state_dir,
    };
    app::start(topology, options).await
}

async fn demo(config: &Path, state_dir: PathBuf) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    for (name, addr) in [("monolith", "127.0.0.1:9001"), ("users", "127.0.0.1:9002")] {
        let addr: SocketAddr = addr.parse()?;
        app::demo::bind_and_serve(addr, name.to_owned(), stop.clone()).await?;
    }
    let running = start(config, state_dir).await?;
    for (name, addr) in &running.frontends {
        eprintln!(
            "demo: frontend {name} on http://{addr}/ (try: curl localhost:{}/ and /api/users)",
            addr.port()
        );
    }
    if let (Some(admin), Some(token)) = (running.admin, running.admin_token.as_deref()) {
        eprintln!("demo: stats page http://admin:{token}@{admin}/");
    }
    let result = serve_until_signalled(running).await;
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

/// Serves until SIGTERM or SIGINT, reloading the config on SIGHUP. A second
/// SIGTERM or SIGINT during the grace period exits at once.
async fn serve_until_signalled(running: app::Running) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
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
