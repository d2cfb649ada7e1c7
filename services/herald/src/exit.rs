//! Exit codes, the same for every subcommand.

use std::process::ExitCode;

/// Everything worked.
pub(crate) const SUCCESS: ExitCode = ExitCode::SUCCESS;
/// Something failed (a server unreachable, a change refused).
pub(crate) const FAILURE: ExitCode = ExitCode::FAILURE;

/// Bad configuration or arguments; nothing was done.
pub(crate) fn config() -> ExitCode {
    ExitCode::from(2)
}

/// Some input was rejected; the rest was processed.
pub(crate) fn rejected() -> ExitCode {
    ExitCode::from(3)
}
