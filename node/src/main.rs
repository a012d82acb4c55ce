//! The `herd` command. All logic lives in the library so that tests and
//! examples can use it; this file only maps the outcome to an exit code.

fn main() -> std::process::ExitCode {
    herd_node::cli::main()
}
