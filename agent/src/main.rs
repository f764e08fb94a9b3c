//! The `loupe` binary: parse flags, set up logging, hand over to the library.
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use loupe::{
    cli::{Cli, Command, ConfigCommand},
    config::{Config, FileConfig},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if !matches!(cli.command, Command::Run(_) | Command::Collect(_)) {
        // A command that prints and ends: a reader that stops reading
        // (`| head`) ends it quietly, as it does any other tool. The
        // servers keep SIGPIPE ignored, so that a scraper that goes away
        // is an error on its socket, not the end of the agent.
        // SAFETY: changes this process's disposition before any thread
        // starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match cli.command {
        Command::Check { pids } => return loupe::check::run(&pids),
        Command::Run(args) => run(&args),
        Command::Config(ConfigCommand::Check { file }) => check_config(&file),
        Command::Collect(args) => collect(&args),
        Command::Helper => return loupe::privileges::helper::serve(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("loupe: error: {}", loupe::describe_error(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: &std::path::Path) -> anyhow::Result<()> {
    let file = FileConfig::load(path)?;
    let config = Config::check_file(path, file)?;
    print!("{}", config.describe());
    println!("{}: valid", path.display());
    Ok(())
}

fn collect(args: &loupe::cli::CollectArgs) -> anyhow::Result<()> {
    let file = FileConfig::load(&args.config)?;
    let flags = loupe::config::Overrides {
        listen: args.listen.clone(),
        ..Default::default()
    };
    let config = Config::for_collectors(Some((args.config.as_path(), file)), flags)?;
    let web = web(&args.web)?;
    loupe::memory::limit_arenas();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(loupe::runtime::collect(config, web))?;
    Ok(())
}

fn run(args: &loupe::cli::RunArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => Some((path.as_path(), FileConfig::load(path)?)),
        None => None,
    };
    let config = Config::build(file, args.overrides())?;
    let web = web(&args.web)?;
    let reload: Option<loupe::runtime::reload::Reloader> = args.config.clone().map(|path| {
        let overrides = args.overrides();
        Box::new(move || {
            let file = FileConfig::load(&path)?;
            Ok(Config::build(
                Some((path.as_path(), file)),
                overrides.clone(),
            )?)
        }) as loupe::runtime::reload::Reloader
    });
    loupe::memory::limit_arenas();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(loupe::runtime::run(config, args.data_hook, web, reload))?;
    Ok(())
}

/// The web configuration `--web.config.file` names, loaded: an unusable
/// one stops the start-up.
fn web(
    args: &loupe::cli::WebArgs,
) -> anyhow::Result<Option<std::sync::Arc<loupe::export::server::web::Web>>> {
    let Some(path) = &args.config_file else {
        return Ok(None);
    };
    let web = loupe::export::server::web::Web::load(path, args.auth_probes)?;
    Ok(Some(std::sync::Arc::new(web)))
}
