//! The controller's errors, classified by who can fix them.

/// Result with the controller's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while reconciling a `StreamJob`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The job's coordinator could not be reached or refused a request.
    #[error("coordinator: {0}")]
    Coordinator(String),
    /// The StreamJob cannot be acted on as it is.
    #[error("{0}")]
    Invalid(String),
    /// The job's checkpoint storage could not be read or changed.
    #[error("storage: {0}")]
    Storage(String),
}

impl Error {
    /// A short CamelCase reason, for the failure metric and conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesApi",
            Error::Coordinator(_) => "CoordinatorUnreachable",
            Error::Invalid(_) => "InvalidSpec",
            Error::Storage(_) => "StorageUnreachable",
        }
    }
}
