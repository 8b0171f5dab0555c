//! The `hearth` binary: reads the settings, starts logging, and serves until told
//! to stop. Without the `ssr` feature (the WASM build) there is nothing to run.

#[cfg(feature = "ssr")]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    use tracing_subscriber::EnvFilter;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    use hearth::server::config::{Config, Startup};
    let config = match Config::load() {
        Ok(Startup::Serve(config)) => *config,
        Ok(Startup::Print(settings)) => {
            print!("{settings}");
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("hearth: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match hearth::server::serve(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hearth: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "ssr"))]
fn main() {}
