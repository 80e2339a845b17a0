//! Errors of the stack supervisor. Messages are written for the person running `xtask up`.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(
        "{component}: port {port} on {host} is already in use by another process; stop it or choose another port (see `cargo xtask up --help`)"
    )]
    PortInUse {
        component: String,
        host: String,
        port: u16,
    },
    #[error("{component}: did not become healthy within {secs}s (last check: {last}); see log {}", log.display())]
    Unhealthy {
        component: String,
        secs: u64,
        last: String,
        log: PathBuf,
    },
    #[error("{component}: process exited during start ({status}); last log lines from {}:\n{tail}", log.display())]
    ExitedDuringStart {
        component: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{component}: {message}")]
    Setup { component: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown component `{0}`")]
    UnknownComponent(String),
}

impl StackError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| StackError::Io { context, source }
    }

    pub(crate) fn setup(component: &str, message: impl Into<String>) -> Self {
        StackError::Setup {
            component: component.to_owned(),
            message: message.into(),
        }
    }
}
