//! How a command fails: a message and the process exit code that goes with it.

use std::process::ExitCode;

/// A failed command: what to tell the operator, and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// Exit 1: the command could not do its job.
    pub fn failed(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }

    /// Exit 2: bad usage or configuration.
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    /// Exit 3: partly done; the message says which part was not.
    pub fn partial(message: impl Into<String>) -> Self {
        Failure {
            code: 3,
            message: message.into(),
        }
    }

    /// Prints the message and returns the exit code.
    pub fn report(self) -> ExitCode {
        if !self.message.is_empty() {
            eprintln!("error: {}", self.message);
        }
        ExitCode::from(self.code)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::failed(format!("{e:#}"))
    }
}
