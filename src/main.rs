//! The `quadflow` command (see [`quadflow::cli`]).

fn main() -> std::process::ExitCode {
    quadflow::cli::main()
}
