//! The Kubernetes operator: the only crate that knows kube. It keeps the store the admin
//! API writes in line with `Tenant` resources (`switchboard.dev/v1alpha1`).
//!
//! - [`crd`]: the `Tenant` types, the single source of the CRD;
//! - [`plan`]: the reconcile core, with no IO: spec + Secrets + store contents → writes and
//!   status;
//! - [`controller`]: the kube-rs `Controller` (Tenants, and the Secrets they reference), the
//!   finalizer that removes the tenant like `DELETE /v1/tenants/{t}`, status, Events;
//! - [`lease`]: leader election on a `coordination.k8s.io` Lease, so that two replicas
//!   never both write.
//!
//! It writes only through `admin::service`, the admin API's own tenant and key code. It
//! does not serve HTTP, speak Socket.IO, or decide policy.

pub mod controller;
pub mod crd;
pub mod lease;
pub mod plan;

pub use crd::{Tenant, TenantSpec, TenantStatus, crd_yaml};
