//! The `endpoints` verbs and the credentials flags that `create` and `set` share. Apart from the top of the
//! command line because managing endpoints at run time is the largest verb group.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum EndpointsVerb {
    /// List endpoints in name order, a page at a time (`--after` the last name shown for the next).
    List {
        /// Only endpoints of this format.
        #[arg(long)]
        format: Option<String>,
        /// Only endpoints in this state (active, unverified, paused, disabled, circuit_open, probing).
        #[arg(long)]
        state: Option<String>,
        /// Only endpoints whose name starts with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Endpoints per page, 1 to 1000.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after this endpoint name.
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one endpoint: settings (secrets masked), where it is defined, run-time overrides, state, counts.
    Show {
        /// The endpoint's name.
        name: String,
    },
    /// Create an endpoint at run time (kept in the store; the config file's [defaults] fill what is not given).
    Create {
        /// The new endpoint's name (letters, digits, - _ . ; 1 to 64).
        name: String,
        /// The receiver protocol: json, notification, sms-status-xml, dlr-json, gateway-json, app-inbox.
        #[arg(long)]
        format: String,
        /// The receiver's URL (http or https).
        #[arg(long)]
        url: String,
        #[command(flatten)]
        auth: AuthArgs,
        /// Any other endpoint key, in config-file names (`retry.jitter=0.1`, `max_age=2h`, `concurrency=4`);
        /// a value that parses as JSON is taken as JSON, else as a string; `-` reads it from stdin.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Delete an endpoint created through the API (refused while it has messages, unless --messages says what
    /// becomes of them).
    Delete {
        /// The endpoint's name.
        name: String,
        /// What becomes of its queued messages: dead-letter (reason "endpoint deleted") or purge. When it
        /// has messages, shows what it would do and asks first on a terminal; without a terminal it needs
        /// --yes.
        #[arg(long, value_parser = ["dead-letter", "purge"])]
        messages: Option<String>,
        /// Delete without asking, even when --messages retires messages (needed without a terminal).
        #[arg(long, short = 'y', conflicts_with = "dry_run")]
        yes: bool,
        /// Change nothing: show the endpoint's counts and what deleting it would do.
        #[arg(long)]
        dry_run: bool,
    },
    /// Drop a declared endpoint's run-time overrides: the config file's table applies again.
    Reset {
        /// The endpoint's name.
        name: String,
    },
    /// Run the verification handshake now (endpoints with `verification`).
    Verify {
        /// The endpoint's name.
        name: String,
    },
    /// Stop sending to an endpoint; its messages stay queued with their attempts untouched.
    Pause {
        /// The endpoint's name.
        name: String,
    },
    /// Send again to a paused endpoint.
    Resume {
        /// The endpoint's name.
        name: String,
    },
    /// Send again to an endpoint disabled by a 410 Gone (also closes its circuit breaker).
    Enable {
        /// The endpoint's name.
        name: String,
    },
    /// Change settings at run time (kept across restarts; for a declared endpoint, laid over the config file
    /// until `reset`).
    Set {
        /// The endpoint's name.
        name: String,
        /// The receiver's URL.
        #[arg(long)]
        url: Option<String>,
        /// Time allowed for the whole exchange, in milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Attempts before a message is dead-lettered.
        #[arg(long)]
        max_attempts: Option<u32>,
        /// No attempt past this age, e.g. "24h".
        #[arg(long)]
        max_age: Option<String>,
        #[command(flatten)]
        auth: AuthArgs,
        /// Any endpoint key, in config-file names (`retry.jitter=0.1`, `concurrency=4`, `rate_limit=null` to
        /// drop one); a value that parses as JSON is taken as JSON, else as a string; `-` reads it from stdin.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
}

/// Credentials for an endpoint. A secret given as `-` is read from stdin, as `@PATH` from that file; it is
/// never echoed.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthArgs {
    /// Basic auth: USER:PASSWORD (PASSWORD may be `-` or `@PATH`).
    #[arg(long, value_name = "USER:PASSWORD", conflicts_with = "auth_bearer")]
    pub auth_basic: Option<String>,
    /// Bearer auth: TOKEN (or `-` for stdin, `@PATH` for a file).
    #[arg(long, value_name = "TOKEN")]
    pub auth_bearer: Option<String>,
}
