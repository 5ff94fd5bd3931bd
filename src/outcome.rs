//! How a command or the console ends: its exit code (DESIGN: 0 all done and
//! verified, 3 something left, 2 bad usage or config, 1 other error), shared
//! by the command line and the console.

/// An error with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }

    pub fn other(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<crate::tomlfile::ConfigError> for Failure {
    fn from(e: crate::tomlfile::ConfigError) -> Self {
        Failure::usage(format!("config: {e}"))
    }
}

pub type CmdResult = Result<u8, Failure>;
