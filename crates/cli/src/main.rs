//! The `nimbus` binary: parses the command line and hands off to the library.

fn main() -> std::process::ExitCode {
    nimbus_cli::main()
}
