//! Leader election with a `coordination.k8s.io/v1` Lease: one controller replica
//! reconciles, the others wait to take over.
//!
//! The holder renews the Lease every `renew` seconds; a Lease not renewed for
//! `duration` may be taken by another replica. Updates carry the resourceVersion
//! they read, so two replicas can never both win a round. A holder that cannot
//! renew in time stops reconciling (the process exits and is restarted), so two
//! leaders never overlap: every renewal has a deadline (two thirds of the
//! duration since the last one succeeded), and one that hangs past it (an API
//! server that accepts the connection and never answers) counts as failed.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::error::Result;

/// Lease settings.
#[derive(Debug, Clone)]
pub struct Election {
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub duration: Duration,
}

/// Whether `lease` is free for `identity` at `now`: unheld, held by it, or expired.
pub fn free_for(lease: &Lease, identity: &str, now: jiff::Timestamp) -> bool {
    let Some(spec) = &lease.spec else { return true };
    match spec.holder_identity.as_deref() {
        None | Some("") => true,
        Some(holder) if holder == identity => true,
        Some(_) => {
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
            let renewed = spec.renew_time.as_ref().map(|t| t.0);
            renewed.is_none_or(|t| now.duration_since(t).as_secs() > duration)
        }
    }
}

impl Election {
    fn lease(
        &self,
        now: jiff::Timestamp,
        acquired: Option<MicroTime>,
        version: Option<String>,
    ) -> Lease {
        let mut lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.duration.as_secs(),
            },
        }))
        .unwrap_or_default();
        lease.metadata.resource_version = version;
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(MicroTime(now));
            spec.acquire_time = Some(acquired.unwrap_or(MicroTime(now)));
        }
        lease
    }

    /// Tries once to hold the Lease; `true` if this replica holds it now.
    pub async fn try_hold(&self, leases: &Api<Lease>) -> Result<bool> {
        let now = jiff::Timestamp::now();
        match leases.get_opt(&self.name).await? {
            None => {
                let created = leases
                    .create(&PostParams::default(), &self.lease(now, None, None))
                    .await;
                match created {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
            Some(current) if free_for(&current, &self.identity, now) => {
                let ours = current
                    .spec
                    .as_ref()
                    .and_then(|s| s.holder_identity.as_deref())
                    == Some(self.identity.as_str());
                let acquired = if ours {
                    current.spec.as_ref().and_then(|s| s.acquire_time.clone())
                } else {
                    None
                };
                let lease = self.lease(now, acquired, current.metadata.resource_version.clone());
                match leases
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
            Some(_) => Ok(false),
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self, leases: &Api<Lease>) {
        loop {
            match self.try_hold(leases).await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became the leader");
                    return;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election failed; retrying"),
            }
            tokio::time::sleep(self.duration / 3).await;
        }
    }

    /// Gives the Lease up if this replica holds it (on a graceful shutdown), so
    /// that a standby takes over at once instead of after the Lease expires.
    pub async fn release(&self, leases: &Api<Lease>) -> Result<()> {
        let Some(mut current) = leases.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = current.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        match leases
            .replace(&self.name, &PostParams::default(), &current)
            .await
        {
            Ok(_) => {
                tracing::info!(lease = %self.name, "released the leader lease");
                Ok(())
            }
            // Someone else wrote it meanwhile: it is not ours to release any more.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Renews the Lease until it cannot; returns when leadership is lost: when
    /// another replica took it, or when no renewal succeeded for two thirds of
    /// the duration (well before another replica may take it over).
    pub async fn keep(&self, leases: &Api<Lease>) {
        let mut last = tokio::time::Instant::now();
        let deadline = self.duration * 2 / 3;
        loop {
            tokio::time::sleep(self.duration / 3).await;
            let left = deadline.saturating_sub(last.elapsed());
            match tokio::time::timeout(left, self.try_hold(leases)).await {
                Ok(Ok(true)) => last = tokio::time::Instant::now(),
                Ok(Ok(false)) => {
                    tracing::error!("another replica took the lease");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not renew the lease");
                    if last.elapsed() >= deadline {
                        tracing::error!("the lease could not be renewed in time");
                        return;
                    }
                }
                Err(_) => {
                    tracing::error!(
                        waited_ms = left.as_millis() as u64,
                        "renewing the lease hung past its deadline; stepping down"
                    );
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_secs_ago: i64) -> Lease {
        let now = jiff::Timestamp::now();
        serde_json::from_value(json!({
            "metadata": {"name": "l"},
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": 15,
                "renewTime": MicroTime(now - jiff::SignedDuration::from_secs(renewed_secs_ago)),
            },
        }))
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_that_hangs_steps_down_before_the_lease_expires() {
        // An API server that takes the request and never answers.
        let (service, mut handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let hung = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some((_, respond)) = handle.next_request().await {
                held.push(respond);
            }
        });
        let client = kube::Client::new(service, "default");
        let leases: Api<Lease> = Api::namespaced(client, "default");
        let election = Election {
            namespace: "default".into(),
            name: "weir-controller".into(),
            identity: "me".into(),
            duration: Duration::from_secs(15),
        };
        let started = tokio::time::Instant::now();
        let kept = tokio::time::timeout(Duration::from_secs(60), election.keep(&leases)).await;
        assert!(
            kept.is_ok(),
            "still leading a minute after renewals stopped answering"
        );
        let stepped_down = started.elapsed();
        assert!(
            stepped_down <= Duration::from_secs(11),
            "stepped down after {stepped_down:?}, the lease lasts 15 s"
        );
        hung.abort();
    }

    #[test]
    fn a_lease_is_free_when_ours_unheld_or_expired() {
        let now = jiff::Timestamp::now();
        assert!(free_for(&lease("me", 1), "me", now));
        assert!(!free_for(&lease("other", 1), "me", now));
        assert!(free_for(&lease("other", 60), "me", now));
        assert!(free_for(&lease("", 1), "me", now));
    }
}
