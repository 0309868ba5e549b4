//! The job control API's token: a client sends it as `authorization: Bearer
//! <token>`, and a coordinator given one refuses every call that lacks it.
//! On Kubernetes the controller keeps each job's token in a Secret; the CLI
//! reads it from `--api-token` or [`TOKEN_ENV`].

use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

/// The environment variable that carries the token to the coordinator and the CLI.
pub const TOKEN_ENV: &str = "WEIR_API_TOKEN";

/// The metadata key the token travels in.
const HEADER: &str = "authorization";

/// Adds `token` to `request`, if there is one.
pub fn authorize<T>(request: &mut Request<T>, token: Option<&str>) -> Result<(), Status> {
    if let Some(token) = token {
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| Status::invalid_argument("the API token is not printable ASCII"))?;
        request.metadata_mut().insert(HEADER, value);
    }
    Ok(())
}

/// A client-side interceptor that sends the token, if there is one.
#[derive(Clone, Debug, Default)]
pub struct SendToken {
    token: Option<String>,
}

impl SendToken {
    /// Sends `token` with every call; `None` or empty: sends none.
    pub fn new(token: Option<String>) -> Self {
        SendToken {
            token: token.filter(|t| !t.is_empty()),
        }
    }
}

impl tonic::service::Interceptor for SendToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        authorize(&mut request, self.token.as_deref())?;
        Ok(request)
    }
}

/// A server-side check of the token: a tonic interceptor.
#[derive(Clone, Debug)]
pub struct RequireToken {
    token: Option<String>,
}

impl RequireToken {
    /// A check for `token`; `None` lets every call through (a local job).
    pub fn new(token: Option<String>) -> Self {
        RequireToken {
            token: token.filter(|t| !t.is_empty()),
        }
    }

    /// Whether a token is required.
    pub fn required(&self) -> bool {
        self.token.is_some()
    }

    /// Lets `request` through if it carries the token.
    #[allow(clippy::result_large_err)]
    pub fn check(&self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.token else {
            return Ok(request);
        };
        let sent = request
            .metadata()
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match sent {
            Some(sent) if same(sent.as_bytes(), token.as_bytes()) => Ok(request),
            Some(_) => Err(Status::unauthenticated(
                "wrong API token: the job's token is in its Secret (NAME-api-token, key token)",
            )),
            None => Err(Status::unauthenticated(format!(
                "this coordinator needs an API token: pass --api-token or set {TOKEN_ENV}"
            ))),
        }
    }
}

impl tonic::service::Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(request)
    }
}

/// Whether `a` equals `b`, in time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(token: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        authorize(&mut request, token).unwrap();
        request
    }

    #[test]
    fn a_coordinator_with_a_token_lets_only_calls_with_it_through() {
        let check = RequireToken::new(Some("s3cret".into()));
        assert!(check.check(sent(Some("s3cret"))).is_ok());
        let wrong = check.check(sent(Some("s3cres"))).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        assert!(wrong.message().contains("wrong API token"), "{wrong}");
        let missing = check.check(sent(None)).unwrap_err();
        assert!(missing.message().contains(TOKEN_ENV), "{missing}");
        assert!(check.check(sent(Some("s3cret-and-more"))).is_err());
    }

    #[test]
    fn a_coordinator_without_a_token_lets_every_call_through() {
        let open = RequireToken::new(Some(String::new()));
        assert!(!open.required());
        assert!(open.check(sent(None)).is_ok());
        assert!(open.check(sent(Some("anything"))).is_ok());
    }
}
