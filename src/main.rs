fn main() -> std::process::ExitCode {
    offboard::cli::main()
}
