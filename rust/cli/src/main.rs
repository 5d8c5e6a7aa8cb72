//! The `meshrl` binary: see the `meshrl_cli` library.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(meshrl_cli::run(std::env::args_os()).clamp(0, 255) as u8)
}
