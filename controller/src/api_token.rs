//! Each job's API token: a random secret that the controller keeps in a
//! Secret owned by the StreamJob (`NAME-api-token`, key `token`), that the
//! coordinator requires of every job control call, and that the controller
//! sends with its own. A user's `weir status/savepoint/cancel` reads it from
//! the same Secret.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};
use weir_proto::api_token::TOKEN_ENV;

use crate::crd::StreamJob;
use crate::error::{Error, Result};
use crate::resources::labels;

/// The key of the token in the Secret.
const KEY: &str = "token";

/// The Secret holding job `name`'s token.
pub fn secret_name(name: &str) -> String {
    format!("{name}-api-token")
}

/// The coordinator's environment variable that takes the token from the Secret.
pub fn env_var(job: &StreamJob) -> Value {
    json!({
        "name": TOKEN_ENV,
        "valueFrom": {"secretKeyRef": {"name": secret_name(&job.name_any()), "key": KEY}},
    })
}

/// A new Secret for `job` with a fresh random token.
fn secret(job: &StreamJob) -> Result<Secret> {
    let owner = job
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Invalid("the StreamJob has no uid yet".into()))?;
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(&job.name_any())),
            namespace: job.namespace(),
            labels: Some(labels(job, "api-token")),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            KEY.to_string(),
            ByteString(new_token()?.into_bytes()),
        )])),
        ..Secret::default()
    })
}

/// 32 random bytes, as 64 hex digits.
fn new_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Invalid(format!("no randomness for an API token: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Creates `job`'s Secret unless it exists; a token once made is kept for the
/// life of the StreamJob (its coordinators come and go, the token stays).
pub async fn ensure(secrets: &Api<Secret>, job: &StreamJob) -> Result<()> {
    match secrets.create(&PostParams::default(), &secret(job)?).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Job `name`'s token, if its Secret exists (jobs deployed before tokens
/// have none, and their coordinators require none).
pub async fn read(secrets: &Api<Secret>, name: &str) -> Result<Option<String>> {
    let Some(secret) = secrets.get_opt(&secret_name(name)).await? else {
        return Ok(None);
    };
    let token = secret
        .data
        .and_then(|mut d| d.remove(KEY))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned());
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_token_is_new_and_printable() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
    }
}
