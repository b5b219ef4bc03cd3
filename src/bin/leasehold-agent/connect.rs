//! The connection to NATS, as both commands (the agent and `status`) take it on the command
//! line.

use leasehold::NatsOptions;
use std::path::PathBuf;
use std::time::Duration;

/// The flags of a NATS connection.
#[derive(clap::Args, Debug)]
pub(crate) struct NatsFlags {
    /// The NATS server (an agent reconnects to this one only).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub(crate) nats: String,
    /// NATS user (with --password).
    #[arg(long)]
    user: Option<String>,
    /// NATS password (with --user).
    #[arg(long, env = "LEASEHOLD_NATS_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// NATS token.
    #[arg(long, env = "LEASEHOLD_NATS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// NATS credentials (.creds) file.
    #[arg(long)]
    creds: Option<PathBuf>,
    /// Require TLS.
    #[arg(long)]
    tls: bool,
    /// Extra CA certificate (PEM) to trust.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), with --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Client key (PEM), with --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How long the first connection to NATS may take; then the command exits 1 with an error
    /// naming the URL.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    connect_timeout: Duration,
    /// Prefix of this agent's reply inboxes (default `_INBOX`): with per-agent permissions,
    /// give each agent its own, e.g. `_INBOX.n0` (see deploy/nats-server-auth.conf).
    #[arg(long)]
    inbox_prefix: Option<String>,
}

impl NatsFlags {
    /// The connection's options; `name` is the client's name on the server, `ping` how often
    /// the client pings it.
    pub(crate) fn options(&self, name: String, ping: Option<Duration>) -> NatsOptions {
        NatsOptions {
            url: self.nats.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            token: self.token.clone(),
            credentials_file: self.creds.clone(),
            tls: self.tls,
            tls_ca: self.tls_ca.clone(),
            tls_client: self.tls_cert.clone().zip(self.tls_key.clone()),
            name: Some(name),
            connect_timeout: Some(self.connect_timeout),
            inbox_prefix: self.inbox_prefix.clone(),
            ping_interval: ping,
        }
    }

    /// A `--nats` that cannot be a URL is the user's typing, not an unreachable server: said
    /// before connecting.
    pub(crate) fn check_url(&self) -> Result<(), String> {
        self.nats
            .parse::<async_nats::ServerAddr>()
            .map(|_| ())
            .map_err(|e| format!("--nats {:?} is not a NATS URL: {e}", self.nats))
    }
}
