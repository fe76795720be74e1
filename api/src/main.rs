//! The `webinar` binary: everything lives in the library; this only hands over to the CLI.

/// glibc's allocator spent half of a rebuild's CPU time consolidating and unlinking chunks of the
/// batches' short-lived JSON values; mimalloc does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    webinar_api::cli::main()
}
