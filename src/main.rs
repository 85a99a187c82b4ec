//! The `recall` binary: telemetry, settings, then the chosen command.

fn main() -> std::process::ExitCode {
    let cli = recall::cli::Cli::parse_args();
    recall::cli::init_tracing(&cli);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("recall: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(recall::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("recall: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
