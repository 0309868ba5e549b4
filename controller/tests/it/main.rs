//! Integration tests of the controller: the planner table, the child objects, the
//! CRD, and the reconciler against a mocked API server and a mocked coordinator.

// A panic is how a test reports failure, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod argocd_health;
mod crd;
mod fixtures;
mod planner;
mod reconciler;
mod resources;
mod tables;
