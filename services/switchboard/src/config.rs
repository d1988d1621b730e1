//! Typed configuration per role. Every flag also reads `SWITCHBOARD_<FLAG>`; `validate`
//! turns raw arguments into a checked config or a message that says what to fix.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use policy::Secret;

/// Flags every serving role shares.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Redis 7+ URL for shared state; unset: in-memory (single node only).
    #[arg(long, env = "SWITCHBOARD_REDIS_URL")]
    pub redis_url: Option<String>,
    /// NATS URL for cross-node fan-out; unset: local fan-out (single node only).
    #[arg(long, env = "SWITCHBOARD_NATS_URL")]
    pub nats_url: Option<String>,
    /// This node's id in logs, metrics and the bus; random when unset.
    #[arg(long, env = "SWITCHBOARD_NODE_ID")]
    pub node_id: Option<String>,
    /// How long, in seconds, this node's connection and presence records outlive its last
    /// heartbeat to Redis: a node that dies without a goodbye leaves no ghosts after this.
    #[arg(long, env = "SWITCHBOARD_STATE_LIVENESS_SECONDS", default_value_t = 15)]
    pub state_liveness_seconds: u64,
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// NATS credentials, TLS and history. Bus traffic must not be open to anyone on the
/// network: production deployments set credentials and TLS.
#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// NATS user (with --nats-password).
    #[arg(long, env = "SWITCHBOARD_NATS_USER")]
    pub nats_user: Option<String>,
    #[arg(long, env = "SWITCHBOARD_NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
    /// NATS token authentication.
    #[arg(long, env = "SWITCHBOARD_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    /// NATS nkey seed (SU...).
    #[arg(long, env = "SWITCHBOARD_NATS_NKEY_SEED", hide_env_values = true)]
    pub nats_nkey_seed: Option<String>,
    /// Require TLS to NATS.
    #[arg(long, env = "SWITCHBOARD_NATS_TLS_REQUIRED")]
    pub nats_tls_required: bool,
    /// PEM file of CA certificates trusted for NATS TLS.
    #[arg(long, env = "SWITCHBOARD_NATS_CA_FILE")]
    pub nats_ca_file: Option<std::path::PathBuf>,
    /// How long room history is kept on the bus, in seconds (resume reaches this far).
    #[arg(long, env = "SWITCHBOARD_HISTORY_SECONDS", default_value_t = 900)]
    pub history_seconds: u64,
    /// Most messages kept per room.
    #[arg(long, env = "SWITCHBOARD_HISTORY_MAX_PER_ROOM", default_value_t = 10_000)]
    pub history_max_per_room: i64,
    /// Keep room history in memory instead of on disk (faster; lost if NATS restarts).
    #[arg(long, env = "SWITCHBOARD_HISTORY_IN_MEMORY")]
    pub history_in_memory: bool,
}

impl CommonArgs {
    fn node_id(&self) -> anyhow::Result<String> {
        match &self.node_id {
            Some(n)
                if n.is_empty()
                    || n.len() > 64
                    || !n.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') =>
            {
                bail!("--node-id must be 1-64 characters of A-Z a-z 0-9 - _")
            }
            Some(n) => Ok(n.clone()),
            None => Ok(format!("node-{}", state::random_token(4))),
        }
    }

    fn check_backends(&self) -> anyhow::Result<()> {
        if !(1..=300).contains(&self.state_liveness_seconds) {
            bail!("--state-liveness-seconds must be between 1 and 300");
        }
        if let Some(u) = &self.redis_url
            && !(u.starts_with("redis://") || u.starts_with("redis-cluster://"))
        {
            bail!("--redis-url must start with redis:// or redis-cluster://");
        }
        if let Some(u) = &self.nats_url
            && !(u.starts_with("nats://") || u.starts_with("tls://"))
        {
            bail!("--nats-url must start with nats:// or tls://");
        }
        let n = &self.nats;
        if n.nats_user.is_some() != n.nats_password.is_some() {
            bail!("--nats-user and --nats-password go together");
        }
        if !(10..=7 * 86_400).contains(&n.history_seconds) {
            bail!("--history-seconds must be between 10 and 604800");
        }
        if !(1..=1_000_000).contains(&n.history_max_per_room) {
            bail!("--history-max-per-room must be between 1 and 1000000");
        }
        Ok(())
    }

    /// The bus configuration, when a NATS URL is set.
    pub fn nats_config(&self, node_id: &str) -> Option<bus::NatsConfig> {
        let url = self.nats_url.as_ref()?;
        let n = &self.nats;
        let mut c = bus::NatsConfig::new(url.clone(), node_id);
        c.user = n.nats_user.clone();
        c.password = n.nats_password.clone();
        c.token = n.nats_token.clone();
        c.nkey_seed = n.nats_nkey_seed.clone();
        c.require_tls = n.nats_tls_required || url.starts_with("tls://");
        c.ca_file = n.nats_ca_file.clone();
        c.history_max_age = Duration::from_secs(n.history_seconds);
        c.history_max_per_room = n.history_max_per_room;
        c.history_in_memory = n.history_in_memory;
        Some(c)
    }
}

fn addr(s: &str, flag: &str) -> anyhow::Result<SocketAddr> {
    s.parse().with_context(|| {
        format!("{flag} must be host:port with an IP address, e.g. 127.0.0.1:4000, not {s:?}")
    })
}

fn admin_token(t: &str) -> anyhow::Result<Secret> {
    if t.len() < 16 {
        bail!("--admin-token must be at least 16 characters");
    }
    Ok(Secret::new(t))
}

/// Edge tuning flags shared by `dev` and `edge`.
#[derive(Debug, Clone, Args)]
pub struct EdgeTuning {
    /// Largest Engine.IO packet accepted, in bytes.
    #[arg(long, env = "SWITCHBOARD_MAX_PAYLOAD_BYTES", default_value_t = 1024 * 1024)]
    pub max_payload_bytes: u64,
    /// Handshakes per second one client IP may start (same burst); 0: no limit.
    #[arg(long, env = "SWITCHBOARD_HANDSHAKE_RATE_PER_IP", default_value_t = 200)]
    pub handshake_rate_per_ip: u32,
    /// Handshakes per second one tenant may receive on one edge (same burst); 0: no limit.
    #[arg(long, env = "SWITCHBOARD_HANDSHAKE_RATE_PER_TENANT", default_value_t = 5000)]
    pub handshake_rate_per_tenant: u32,
    /// How long an edge uses a cached tenant (policy, keys, revocations) before reading it
    /// again when no change notice came, in seconds; 0 reads the store on every handshake.
    #[arg(long, env = "SWITCHBOARD_TENANT_CACHE_SECONDS", default_value_t = 10)]
    pub tenant_cache_seconds: u64,
    /// Let tenants' webhooks and subscribe hooks reach loopback, private and link-local
    /// addresses (tests, or endpoints inside the cluster's network). Off: they are refused.
    #[arg(long, env = "SWITCHBOARD_HOOKS_ALLOW_PRIVATE_NETWORKS")]
    pub hooks_allow_private_networks: bool,
}

impl EdgeTuning {
    fn edge_config(&self, node_id: String) -> anyhow::Result<edge::EdgeConfig> {
        if !(1024..=64 * 1024 * 1024).contains(&self.max_payload_bytes) {
            bail!("--max-payload-bytes must be between 1024 and 67108864");
        }
        Ok(edge::EdgeConfig {
            node_id,
            max_payload_bytes: self.max_payload_bytes,
            handshake_rate_per_ip: self.handshake_rate_per_ip,
            handshake_rate_per_tenant: self.handshake_rate_per_tenant,
            tenant_cache_ttl: Duration::from_secs(self.tenant_cache_seconds.min(3600)),
            hooks_allow_private_networks: self.hooks_allow_private_networks,
        })
    }
}

/// `switchboard dev`.
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    #[arg(long, env = "SWITCHBOARD_EDGE_ADDR", default_value = "127.0.0.1:4000")]
    pub edge_addr: String,
    #[arg(long, env = "SWITCHBOARD_ADMIN_ADDR", default_value = "127.0.0.1:4001")]
    pub admin_addr: String,
    /// Operator credential for the admin API; generated and printed when unset.
    #[arg(long, env = "SWITCHBOARD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    #[command(flatten)]
    pub tuning: EdgeTuning,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// A checked `dev` configuration.
#[derive(Debug, Clone)]
pub struct DevConfig {
    pub edge_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub admin_token: Secret,
    pub edge: edge::EdgeConfig,
    pub nats: Option<bus::NatsConfig>,
    /// May hold a password: redacted in `Debug`.
    pub redis_url: Option<Secret>,
    pub state_liveness: Duration,
}

impl DevArgs {
    pub fn validate(self) -> anyhow::Result<DevConfig> {
        self.common.check_backends()?;
        let node_id = self.common.node_id()?;
        Ok(DevConfig {
            edge_addr: addr(&self.edge_addr, "--edge-addr")?,
            admin_addr: addr(&self.admin_addr, "--admin-addr")?,
            admin_token: match &self.admin_token {
                Some(t) => admin_token(t)?,
                None => Secret::new(format!("sba_{}", state::random_token(24))),
            },
            nats: self.common.nats_config(&node_id),
            redis_url: self.common.redis_url.clone().map(Secret::new),
            state_liveness: Duration::from_secs(self.common.state_liveness_seconds),
            edge: self.tuning.edge_config(node_id)?,
        })
    }
}

/// `switchboard edge`.
#[derive(Debug, Clone, Args)]
pub struct EdgeArgs {
    #[arg(long, env = "SWITCHBOARD_EDGE_ADDR", default_value = "127.0.0.1:4000")]
    pub edge_addr: String,
    #[command(flatten)]
    pub tuning: EdgeTuning,
    /// How long a SIGTERM drain spreads session ends over, in seconds.
    #[arg(long, env = "SWITCHBOARD_DRAIN_SECONDS", default_value_t = 10)]
    pub drain_seconds: u64,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// A checked `edge` configuration.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub edge_addr: SocketAddr,
    pub edge: edge::EdgeConfig,
    pub drain: Duration,
    pub nats: Option<bus::NatsConfig>,
    /// May hold a password: redacted in `Debug`.
    pub redis_url: Option<Secret>,
    pub state_liveness: Duration,
}

impl EdgeArgs {
    pub fn validate(self) -> anyhow::Result<EdgeConfig> {
        self.common.check_backends()?;
        if self.drain_seconds > 3600 {
            bail!("--drain-seconds must be at most 3600");
        }
        let node_id = self.common.node_id()?;
        Ok(EdgeConfig {
            edge_addr: addr(&self.edge_addr, "--edge-addr")?,
            nats: self.common.nats_config(&node_id),
            redis_url: self.common.redis_url.clone().map(Secret::new),
            state_liveness: Duration::from_secs(self.common.state_liveness_seconds),
            edge: self.tuning.edge_config(node_id)?,
            drain: Duration::from_secs(self.drain_seconds),
        })
    }
}

/// `switchboard admin`.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    #[arg(long, env = "SWITCHBOARD_ADMIN_ADDR", default_value = "127.0.0.1:4001")]
    pub admin_addr: String,
    /// Operator credential for the admin API (required).
    #[arg(long, env = "SWITCHBOARD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// A checked `admin` configuration.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub admin_addr: SocketAddr,
    pub admin_token: Secret,
    pub node_id: String,
    pub nats: Option<bus::NatsConfig>,
    /// May hold a password: redacted in `Debug`.
    pub redis_url: Option<Secret>,
    pub state_liveness: Duration,
}

impl AdminArgs {
    pub fn validate(self) -> anyhow::Result<AdminConfig> {
        self.common.check_backends()?;
        let Some(t) = &self.admin_token else {
            bail!("switchboard admin needs --admin-token (or SWITCHBOARD_ADMIN_TOKEN)")
        };
        let node_id = self.common.node_id()?;
        Ok(AdminConfig {
            admin_addr: addr(&self.admin_addr, "--admin-addr")?,
            admin_token: admin_token(t)?,
            nats: self.common.nats_config(&node_id),
            redis_url: self.common.redis_url.clone().map(Secret::new),
            state_liveness: Duration::from_secs(self.common.state_liveness_seconds),
            node_id,
        })
    }
}

/// `switchboard operator`.
#[derive(Debug, Clone, Args)]
pub struct OperatorArgs {
    /// The namespace whose Tenants (and their Secrets) are reconciled; unset: the pod's
    /// namespace (`POD_NAMESPACE`), else the kubeconfig's default.
    #[arg(long, env = "SWITCHBOARD_NAMESPACE")]
    pub namespace: Option<String>,
    /// The coordination.k8s.io Lease that elects the one replica that writes.
    #[arg(long, env = "SWITCHBOARD_LEASE_NAME", default_value = "switchboard-operator")]
    pub lease_name: String,
    /// Where `/healthz` and `/readyz` are served (the kubelet's probes).
    #[arg(long, env = "SWITCHBOARD_HEALTH_ADDR", default_value = "127.0.0.1:4002")]
    pub health_addr: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// A checked `operator` configuration.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    pub namespace: Option<String>,
    pub lease_name: String,
    pub health_addr: SocketAddr,
    /// The Lease holder identity: `--node-id`, else the pod's name (`POD_NAME`), else random.
    pub node_id: String,
    pub nats: Option<bus::NatsConfig>,
    /// May hold a password: redacted in `Debug`.
    pub redis_url: Option<Secret>,
    pub state_liveness: Duration,
}

/// A Kubernetes DNS label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63).
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl OperatorArgs {
    pub fn validate(self) -> anyhow::Result<OperatorConfig> {
        self.common.check_backends()?;
        if self.common.redis_url.is_none() || self.common.nats_url.is_none() {
            bail!(
                "switchboard operator needs --redis-url and --nats-url (SWITCHBOARD_REDIS_URL, \
                 SWITCHBOARD_NATS_URL): it writes the store the edges and the admin API share"
            );
        }
        if let Some(n) = &self.namespace
            && !dns_label(n)
        {
            bail!("--namespace must be a Kubernetes namespace name ([a-z0-9-], at most 63)");
        }
        if self.lease_name.len() > 253 || !self.lease_name.split('.').all(dns_label) {
            bail!("--lease-name must be a Kubernetes object name ([a-z0-9-.], at most 253)");
        }
        let node_id = match (&self.common.node_id, std::env::var("POD_NAME")) {
            (None, Ok(pod)) if !pod.is_empty() && pod.len() <= 253 => pod,
            _ => self.common.node_id()?,
        };
        Ok(OperatorConfig {
            namespace: self.namespace.clone(),
            lease_name: self.lease_name.clone(),
            health_addr: addr(&self.health_addr, "--health-addr")?,
            nats: self.common.nats_config(&node_id),
            redis_url: self.common.redis_url.clone().map(Secret::new),
            state_liveness: Duration::from_secs(self.common.state_liveness_seconds),
            node_id,
        })
    }
}

/// `switchboard token`.
#[derive(Clone, Args)]
pub struct TokenArgs {
    /// The tenant (the token's `aud`).
    #[arg(long)]
    pub tenant: String,
    /// The user id (`sub`).
    #[arg(long)]
    pub sub: String,
    /// The HMAC secret, as the admin API returned it (HS256/384/512).
    #[arg(
        long,
        env = "SWITCHBOARD_TOKEN_SECRET",
        hide_env_values = true,
        required_unless_present = "private_key_file",
        conflicts_with = "private_key_file"
    )]
    pub secret: Option<String>,
    /// A PEM private key file (RS256/384/512, ES256/384, EdDSA), whose public key the
    /// tenant holds (`public_key_pem`).
    #[arg(long, env = "SWITCHBOARD_TOKEN_PRIVATE_KEY_FILE")]
    pub private_key_file: Option<std::path::PathBuf>,
    /// The key id (`kid` header).
    #[arg(long)]
    pub kid: Option<String>,
    /// HS256, HS384 or HS512 with --secret; RS256, RS384, RS512, ES256, ES384 or EdDSA
    /// with --private-key-file.
    #[arg(long, default_value = "HS256")]
    pub alg: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
    /// Capabilities as JSON, e.g. '{"chat:*": ["subscribe", "publish"]}'.
    #[arg(long)]
    pub caps: Option<String>,
    /// Presence metadata as a JSON object.
    #[arg(long)]
    pub meta: Option<String>,
    /// Token id, needed to revoke this one token.
    #[arg(long)]
    pub jti: Option<String>,
}

impl std::fmt::Debug for TokenArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenArgs")
            .field("tenant", &self.tenant)
            .field("sub", &self.sub)
            .field("secret", &self.secret.as_ref().map(|_| "REDACTED"))
            .field("private_key_file", &self.private_key_file)
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TokenArgs {
    pub fn mint(&self) -> anyhow::Result<String> {
        if !policy::validate_tenant_id(&self.tenant) {
            bail!("--tenant must match [a-z0-9][a-z0-9-]{{0,62}}");
        }
        let alg = policy::parse_algorithm(&self.alg)
            .context("--alg must be one of HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, EdDSA")?;
        let now = bus::now_ms() / 1000;
        let mut claims = serde_json::json!({
            "aud": self.tenant, "sub": self.sub, "iat": now, "exp": now + self.ttl as i64,
        });
        if let Some(c) = &self.caps {
            let v: serde_json::Value = serde_json::from_str(c).context("--caps must be JSON")?;
            policy::Caps::from_json(&v).map_err(|e| anyhow::anyhow!("--caps: {e}"))?;
            claims["caps"] = v;
        }
        if let Some(m) = &self.meta {
            let v: serde_json::Value = serde_json::from_str(m).context("--meta must be JSON")?;
            policy::check_meta(Some(v.clone()))
                .map_err(|_| anyhow::anyhow!("--meta must be an object of at most 1 KiB"))?;
            claims["meta"] = v;
        }
        if let Some(j) = &self.jti {
            claims["jti"] = serde_json::Value::String(j.clone());
        }
        match (&self.secret, &self.private_key_file) {
            (Some(secret), _) => {
                policy::mint_hmac(alg, self.kid.as_deref(), &Secret::new(secret.clone()), &claims)
                    .map_err(|_| anyhow::anyhow!("with --secret, --alg must be HS256, HS384 or HS512"))
            }
            (None, Some(path)) => {
                let pem =
                    std::fs::read(path).with_context(|| format!("--private-key-file {}", path.display()))?;
                policy::mint_pem(alg, self.kid.as_deref(), &pem, &claims).map_err(|e| match e {
                    policy::KeyError::Pem => anyhow::anyhow!(
                        "--private-key-file {}: not a PEM private key for {}",
                        path.display(),
                        self.alg
                    ),
                    _ => anyhow::anyhow!(
                        "with --private-key-file, --alg must be RS256, RS384, RS512, ES256, ES384 or EdDSA, matching the key"
                    ),
                })
            }
            (None, None) => bail!("--secret or --private-key-file is required"),
        }
    }
}

/// `switchboard check-config <role>`.
#[derive(Debug, Clone, Subcommand)]
pub enum CheckRole {
    Dev(DevArgs),
    Edge(EdgeArgs),
    Admin(AdminArgs),
    Operator(OperatorArgs),
}

impl CheckRole {
    pub fn check(self) -> anyhow::Result<String> {
        Ok(match self {
            CheckRole::Dev(a) => format!("{:?}", a.validate()?),
            CheckRole::Edge(a) => format!("{:?}", a.validate()?),
            CheckRole::Admin(a) => format!("{:?}", a.validate()?),
            CheckRole::Operator(a) => format!("{:?}", a.validate()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::{Cli, Command};

    fn edge(args: &[&str]) -> anyhow::Result<super::EdgeConfig> {
        let cli = Cli::try_parse_from([&["switchboard", "edge"], args].concat()).expect("parses");
        match cli.command {
            Command::Edge(a) => a.validate(),
            _ => unreachable!("an edge command"),
        }
    }

    fn operator(args: &[&str]) -> anyhow::Result<super::OperatorConfig> {
        let cli = Cli::try_parse_from([&["switchboard", "operator"], args].concat()).expect("parses");
        match cli.command {
            Command::Operator(a) => a.validate(),
            _ => unreachable!("an operator command"),
        }
    }

    #[test]
    fn operator_config_is_checked_and_secrets_redacted() {
        let backends =
            ["--redis-url", "redis://:hunter2-secret@redis:6379", "--nats-url", "nats://nats:4222"];
        let e = operator(&[]).expect_err("no backends").to_string();
        assert!(e.contains("needs --redis-url and --nats-url"), "{e}");
        let e = operator(&backends[..2]).expect_err("no NATS").to_string();
        assert!(e.contains("--nats-url"), "{e}");
        let c = operator(&backends).expect("valid");
        assert_eq!(c.lease_name, "switchboard-operator");
        assert_eq!(c.health_addr.to_string(), "127.0.0.1:4002");
        assert_eq!(c.namespace, None);
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        let c = operator(
            &[
                &backends[..],
                &["--namespace", "prod", "--lease-name", "sb.lease", "--node-id", "op-1"],
                &["--health-addr", "0.0.0.0:8081"],
            ]
            .concat(),
        )
        .expect("valid");
        assert_eq!(
            (c.namespace.as_deref(), c.lease_name.as_str(), c.node_id.as_str()),
            (Some("prod"), "sb.lease", "op-1")
        );
        assert_eq!(c.health_addr.to_string(), "0.0.0.0:8081");
        for (flag, bad) in [
            ("--namespace", "Prod"),
            ("--namespace", "-x"),
            ("--lease-name", "a..b"),
            ("--lease-name", "A"),
            ("--health-addr", "nowhere"),
        ] {
            let arg = format!("{flag}={bad}");
            let e = operator(&[&backends[..], &[arg.as_str()]].concat()).expect_err(bad).to_string();
            assert!(e.contains(flag), "{e}");
        }
    }

    #[test]
    fn state_liveness_is_checked_and_carried() {
        assert_eq!(edge(&[]).expect("defaults").state_liveness.as_secs(), 15);
        assert_eq!(edge(&["--state-liveness-seconds", "2"]).expect("valid").state_liveness.as_secs(), 2);
        for bad in ["0", "301"] {
            let e = edge(&["--state-liveness-seconds", bad]).expect_err(bad).to_string();
            assert!(e.contains("--state-liveness-seconds must be between 1 and 300"), "{e}");
        }
        assert!(Cli::try_parse_from(["switchboard", "edge", "--state-liveness-seconds", "-1"]).is_err());
    }

    fn token(args: &[&str]) -> anyhow::Result<String> {
        let cli = Cli::try_parse_from(
            [&["switchboard", "token", "--tenant", "acme", "--sub", "alice"], args].concat(),
        )?;
        match cli.command {
            Command::Token(a) => {
                assert!(!format!("{a:?}").contains("s3cret-s3cret"), "secret redacted in Debug");
                a.mint()
            }
            _ => unreachable!("a token command"),
        }
    }

    fn fixture(name: &str) -> String {
        format!("{}/../policy/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    /// The minted token verifies with the matching public key, as a tenant key added with
    /// `public_key_pem` would.
    fn verifies(token: &str, alg: policy::Algorithm, public: &str) -> bool {
        let pem = std::fs::read_to_string(fixture(public)).expect("fixture");
        let material = policy::KeyMaterial::PublicPem { pem };
        let record =
            policy::KeyRecord { kid: "k1".into(), alg: Some(format!("{alg:?}")), material, created_at: 0 };
        let (ring, errors) = policy::KeyRing::from_records([&record]);
        assert!(errors.is_empty(), "{errors:?}");
        let pol = policy::TenantPolicy::default();
        let now = bus::now_ms() / 1000;
        policy::verify_token(token, "acme", &ring, &pol, policy::CredentialSource::Auth, now)
            .is_ok_and(|id| id.sub == "alice")
    }

    #[test]
    fn tokens_from_hmac_secrets_and_private_keys() {
        use policy::Algorithm::*;
        assert!(token(&["--secret", "s3cret-s3cret"]).is_ok());
        for (alg, private, public) in [
            (RS256, "rsa2048-private.pem", "rsa2048-public.pem"),
            (RS512, "rsa2048-private.pem", "rsa2048-public.pem"),
            (ES256, "ec-p256-private.pem", "ec-p256-public.pem"),
            (ES384, "ec-p384-private.pem", "ec-p384-public.pem"),
            (EdDSA, "ed25519-private.pem", "ed25519-public.pem"),
        ] {
            let name = format!("{alg:?}");
            let t = token(&["--alg", &name, "--kid", "k1", "--private-key-file", &fixture(private)])
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(verifies(&t, alg, public), "{name} verifies");
        }
        // Wrong pairings and bad input: errors naming the flag, never a panic.
        let (ec256, ec384, rsa, rsa_pub) = (
            fixture("ec-p256-private.pem"),
            fixture("ec-p384-private.pem"),
            fixture("rsa2048-private.pem"),
            fixture("rsa2048-public.pem"),
        );
        let bad = [
            vec!["--alg", "RS256", "--private-key-file", &ec256],
            vec!["--alg", "ES256", "--private-key-file", &ec384],
            vec!["--alg", "HS256", "--private-key-file", &rsa],
            vec!["--alg", "RS256", "--secret", "s3cret-s3cret"],
            vec!["--alg", "RS256", "--private-key-file", &rsa_pub],
            vec!["--alg", "RS256", "--private-key-file", "/nonexistent/key.pem"],
            vec!["--alg", "none", "--secret", "s3cret-s3cret"],
        ];
        for args in bad {
            let e = token(&args).expect_err(&format!("{args:?}")).to_string();
            assert!(e.contains("--"), "{args:?}: {e}");
        }
        assert!(token(&[]).is_err(), "a key is required");
        let both = ["--secret", "s3cret-s3cret", "--private-key-file", "x.pem"];
        assert!(token(&both).is_err(), "one key, not two");
    }
}
