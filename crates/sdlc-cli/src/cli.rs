//! The command line: every command, flag and default of `sdlc`, in one place.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The default management and webhook listener (loopback only).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7711";

#[derive(Debug, Parser)]
#[command(
    name = "sdlc",
    version,
    about = "Fire tools on a schedule or when a webhook arrives"
)]
pub struct Cli {
    /// Project root (the folder holding .sdlc/); default: nearest ancestor with .sdlc/
    #[arg(long, global = true, env = "SDLC_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// The database: a redb file (default: .sdlc/orchestrator.db under the project root), or
    /// postgres://USER@HOST/DBNAME to share one PostgreSQL database between daemons
    #[arg(
        long,
        global = true,
        env = "SDLC_DATABASE_URL",
        value_name = "PATH|URL"
    )]
    pub db: Option<String>,

    /// A daemon elsewhere, such as https://ci-tracker:7711: every command talks to its API
    /// (no .sdlc/ needed here); with --token
    #[arg(long, global = true, env = "SDLC_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// The token for --server (a named token, `token add`, or the daemon's own)
    #[arg(
        long,
        global = true,
        env = "SDLC_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// Trust only the --server certificate of this SHA-256 fingerprint (hex; for a
    /// self-signed one: `openssl x509 -noout -fingerprint -sha256 -in cert.pem`)
    #[arg(
        long,
        global = true,
        env = "SDLC_SERVER_CERT_SHA256",
        value_name = "HEX"
    )]
    pub server_cert_sha256: Option<String>,

    /// The daemon's settings file (default: .sdlc/orchestrator.toml when it exists); flags and
    /// environment variables override it
    #[arg(long, global = true, env = "SDLC_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// More logging on stderr (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// How logs are written on stderr: text, or one JSON object a line for log shippers
    #[arg(
        long,
        global = true,
        env = "SDLC_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Cli {
    /// Whether this invocation runs the long-lived daemon.
    pub fn is_daemon(&self) -> bool {
        matches!(&self.command, Command::Orchestrate(o) if o.command.is_none())
    }

    /// Whether this invocation starts or retries a plan run and follows it.
    pub fn follows_a_plan_run(&self) -> bool {
        matches!(
            &self.command,
            Command::Orchestrate(o) if matches!(
                &o.command,
                Some(OrchestrateCommand::Plan {
                    command: PlanCommand::Run { .. } | PlanCommand::Retry { .. }
                })
            )
        )
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the tick daemon (no subcommand), or manage its actions
    Orchestrate(Box<OrchestrateArgs>),
    /// See and try the tools in .sdlc/tools/
    Tool {
        #[command(subcommand)]
        command: ToolCommand,
    },
    /// Print shell completions (e.g. `sdlc completions bash > ~/.local/share/bash-completion/completions/sdlc`)
    Completions {
        /// The shell: bash, zsh or fish (also elvish, powershell)
        shell: clap_complete::Shell,
    },
    /// Print the man page, in roff (e.g. `sdlc man > ~/.local/share/man/man1/sdlc.1`)
    Man {
        /// Print the whole command reference as Markdown instead (docs/cli.md)
        #[arg(long)]
        markdown: bool,
    },
    /// Print the management API's OpenAPI 3.1 document (also served at
    /// /api/orchestrator/openapi.json), to generate a client
    Openapi,
}

#[derive(Debug, Args)]
pub struct OrchestrateArgs {
    #[command(flatten)]
    pub daemon: DaemonArgs,

    #[command(subcommand)]
    pub command: Option<OrchestrateCommand>,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Heartbeat in seconds (fractions allowed): the longest an action waits past its due time
    #[arg(long, default_value = "60", value_name = "SECS", value_parser = parse_seconds)]
    pub tick_rate: std::time::Duration,

    /// Address of the HTTP listener (webhooks and management API); 127.0.0.1:0 picks a free port
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,

    /// How many tools may run at once (default: four per core, at least 4, at most 64)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrency: Option<u16>,

    /// Default limit on one tool run (an action's --timeout overrides it)
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub timeout: std::time::Duration,

    /// At shutdown, how long running tools may finish before they are killed
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub grace: std::time::Duration,

    /// Run tools this many steps nicer than the daemon (0-19, capped at niceness 19), so that
    /// on a machine the tools keep busy the daemon still starts runs on time and acknowledges
    /// webhooks promptly; 0 runs them at the daemon's own priority
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=19))]
    pub tool_nice: u8,

    /// At start, only report tools a killed daemon left running instead of killing them
    #[arg(long)]
    pub keep_orphans: bool,

    /// On PostgreSQL: this daemon's name among the nodes sharing the database (default:
    /// HOSTNAME-PID). A name whose lease still holds is refused
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,

    /// On PostgreSQL: how long a node's claims hold without its heartbeat (renewed every
    /// third of it); past it, the other nodes recover what it was running
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_lease)]
    pub lease: std::time::Duration,

    /// Delete finished actions older than this (such as 30d); default: keep everything
    #[arg(long, value_name = "DURATION", value_parser = parse_keep)]
    pub keep: Option<std::time::Duration>,

    /// The most bytes of a run's stdout and stderr its log keeps (the first quarter and the
    /// newest lines, with a note between); 0 keeps no logs
    #[arg(long, default_value_t = sdlc_core::logs::DEFAULT_CAP as u64, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(0..=256 * 1024 * 1024))]
    pub log_cap: u64,

    /// Largest webhook body accepted, in bytes (larger ones get 413 and are not stored)
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..=1024 * 1024 * 1024))]
    pub max_body: u64,

    /// Most HTTP connections open at once; when full, a new one closes the oldest idle one.
    /// Default: 1024, or half the open-file limit when that is lower
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: Option<u32>,

    /// Close a connection that sends no request (or no complete headers) for this long,
    /// including an idle keep-alive connection
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub idle_timeout: std::time::Duration,

    /// Read the daemon's management (admin) token from this file (mode 0600, first line)
    /// instead of making a random one; SDLC_ORCHESTRATOR_TOKEN wins over it
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1, unencrypted)
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve GET /metrics without a token to scrapers on this machine (loopback peers);
    /// others still need the token
    #[arg(long)]
    pub metrics_open: bool,

    /// Answer 408 to a request (its body included) that takes longer than this
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub request_timeout: std::time::Duration,

    /// Send notifications to this Slack incoming webhook (repeatable)
    #[arg(
        long,
        value_name = "URL",
        env = "SDLC_SLACK_WEBHOOK",
        hide_env_values = true
    )]
    pub notify_slack: Vec<String>,

    /// Send notifications as JSON to this URL, with an Idempotency-Key header (repeatable)
    #[arg(
        long,
        value_name = "URL",
        env = "SDLC_NOTIFY_WEBHOOK",
        hide_env_values = true
    )]
    pub notify_webhook: Vec<String>,

    /// Read Slack incoming webhook URLs from this file (one a line, mode 0600), so they stay
    /// out of argv
    #[arg(long, value_name = "PATH")]
    pub notify_slack_file: Option<PathBuf>,

    /// Read --notify-webhook URLs from this file (one a line, mode 0600)
    #[arg(long, value_name = "PATH")]
    pub notify_webhook_file: Option<PathBuf>,

    /// Which events notify: awaiting_approval, failed, rejected (the default three),
    /// interrupted, plan_failed, plan_succeeded (comma-separated or repeated)
    #[arg(long, value_name = "EVENTS")]
    pub notify_on: Vec<String>,

    /// The address people reach the dashboard at (such as https://ci.example.com:7711):
    /// notifications then link to the run's page and its log
    #[arg(long, value_name = "URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,

    /// Wait before retrying a notification the receiver refused; doubles each time (at most
    /// 15m apart)
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub notify_backoff: std::time::Duration,

    /// Stop retrying a notification this long after its first try (it is then marked failed)
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = parse_duration)]
    pub notify_give_up: std::time::Duration,
}

impl DaemonArgs {
    /// `--max-concurrency`, or its default for this machine.
    pub fn concurrency(&self) -> u16 {
        self.max_concurrency.unwrap_or_else(default_concurrency)
    }
}

/// Tool runs mostly wait on their processes, so more slots than cores pay off. Not a clap
/// default, so that the generated reference (`docs/cli.md`) is the same on every machine.
pub fn default_concurrency() -> u16 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores * 4).clamp(4, 64) as u16
}

#[derive(Debug, Subcommand)]
pub enum OrchestrateCommand {
    /// Schedule a tool run; prints the new action's id
    Add(Box<AddArgs>),
    /// List actions, newest first
    List(ListArgs),
    /// Runs summed per run id (one CI run's tasks, a plan run, a day of a schedule),
    /// newest group first
    Groups(GroupsArgs),
    /// Show one action in full
    Show {
        /// The action's id
        id: String,
        /// Print the record as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print a run's whole log: what its tool (or a plan step's command) printed on stdout
    /// and stderr, the latest attempt unless --attempt says which
    Logs(LogsArgs),
    /// Change a pending or paused action (or a recurring action's next occurrence), with the
    /// checks of add; prints its id
    Edit(EditArgs),
    /// Cancel an action: a running one is stopped (SIGTERM to its process group, SIGKILL
    /// after --grace) and ends canceled; a pending one is canceled before it runs (for a
    /// recurring action: its next occurrence, ending the series)
    Cancel {
        /// The action's id
        id: String,
        /// How long a running tool has after SIGTERM before SIGKILL
        #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_positive_duration)]
        grace: std::time::Duration,
    },
    /// Hold an action (or a recurring action's next occurrence): it never fires until resumed
    Pause {
        /// The action's id
        id: String,
        /// Why, shown in list and show
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a paused action; missed slots follow its --catch-up policy
    Resume {
        /// The action's id
        id: String,
    },
    /// Fire an action once now, outside its schedule (recorded as manual); prints the new id
    Run {
        /// The action's id
        id: String,
    },
    /// Print the coming due times of an action, to check a schedule before trusting it
    Next {
        /// The action's id
        id: String,
        /// How many
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
        count: u16,
    },
    /// Show whether a daemon serves the database, its storage's health and counts by status
    Status {
        /// Print the status as JSON (the same fields as GET /api/orchestrator/status)
        #[arg(long)]
        json: bool,
    },
    /// Print the daemon's effective settings and where each came from (default, file,
    /// environment, flag), secrets masked
    Config {
        /// Print them as JSON
        #[arg(long)]
        json: bool,
    },
    /// Verify every page of the database file (through the daemon while one runs)
    Check,
    /// Approve an action awaiting approval: it completes (a plan step's dependents run)
    Approve(DecisionArgs),
    /// Reject an action awaiting approval: it fails with the reason (a step's on_failure applies)
    Reject(DecisionArgs),
    /// Manage webhook routes: POST /webhooks/<path> fires a tool
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// Plans: JSON DAGs of steps in .sdlc/plans/ (check, run, follow, cancel, retry)
    Plan {
        #[command(subcommand)]
        command: PlanCommand,
    },
    /// List notifications, newest first, with each receiver's last answer
    Notifications {
        /// Only notifications in this status: pending, sent, failed
        #[arg(long)]
        status: Option<String>,
        /// At most this many
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10000))]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Open the dashboard: prints its address with a one-time login token (a daemon must run)
    Ui {
        /// Also open it in the default browser (xdg-open, or open on macOS)
        #[arg(long)]
        open: bool,
    },
    /// Notifications: `notify test` sends a test message to every configured receiver
    Notify {
        #[command(subcommand)]
        command: NotifyCommand,
    },
    /// Runs reported from outside (a CI job, a script elsewhere): start, finish, or run a
    /// command and report it
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Named API tokens with a role (admin, operator, viewer): add, list, rm
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Dashboard sessions: list the live ones, end one (rm)
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// List the live sessions: id, the token that opened them, role, when made and when they expire
    List {
        #[arg(long)]
        json: bool,
    },
    /// End a session: its page must log in again
    Rm {
        /// The session's id, as `session list` shows it (a unique prefix is enough)
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Record that a task started elsewhere; prints its id (status running, trigger external)
    Start {
        /// The task, such as seo.validate (its label, and its tool unless --tool says)
        task: String,
        #[command(flatten)]
        start: ReportStartArgs,
        /// Not started yet: pending until a report says running
        #[arg(long)]
        queued: bool,
    },
    /// Report how a run started with `report start` ended
    Finish {
        /// The run's id (or 6+ hex digits of it)
        id: String,
        /// completed (or succeeded), failed, skipped, canceled, awaiting_approval; also
        /// running, queued
        #[arg(long, value_name = "STATUS")]
        status: String,
        /// A link to what the run produced
        #[arg(long, value_name = "URL")]
        outputs_uri: Option<String>,
        /// Why it failed, was skipped or canceled
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// What it printed, kept as the run's log: a file, or - for standard input
        #[arg(long, value_name = "FILE|-")]
        log: Option<PathBuf>,
        /// How long it ran (default: since its start report)
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        duration: Option<std::time::Duration>,
    },
    /// Run a command and report it: its start, its output as the run's log (an
    /// `outputs_uri: URL` or `outputs_uri=URL` line names its link), its outcome and
    /// duration; exits with the command's status
    Run {
        /// The task, such as seo.validate
        task: String,
        #[command(flatten)]
        start: ReportStartArgs,
        /// The command and its arguments, after --
        #[arg(required = true, last = true, value_name = "CMD")]
        command: Vec<String>,
    },
}

/// What a reported run starts with.
#[derive(Debug, Args)]
pub struct ReportStartArgs {
    /// The grouping it belongs to, such as nightly-2026-12-01
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// What it was given (JSON), kept with the run
    #[arg(long, value_name = "JSON")]
    pub input: Option<String>,
    /// The tool it counts as in history (default: the task)
    #[arg(long, value_name = "NAME")]
    pub tool: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token; prints its secret once (only its digest is stored)
    Add {
        /// Its name: letters, digits, '.', '_' or '-' (recorded as the approver of what it approves)
        name: String,
        /// viewer: read everything; operator: also add, run, pause, cancel, approve, reject;
        /// admin: also webhook routes and tokens
        #[arg(long, value_name = "ROLE", value_parser = parse_role)]
        role: sdlc_core::access::Role,
    },
    /// List the tokens: names, roles, when made and last used (never a secret)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a token: it opens nothing from then on
    Rm {
        /// The token's name
        name: String,
    },
}

fn parse_role(text: &str) -> Result<sdlc_core::access::Role, String> {
    text.parse()
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a test message to every receiver the daemon has and print each answer
    Test {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct EditArgs {
    /// The action's id
    pub id: String,
    /// A new label
    #[arg(long)]
    pub label: Option<String>,
    /// New JSON input for the tool (checked against its input_schema)
    #[arg(long, value_name = "JSON")]
    pub input: Option<String>,
    /// When it is due: now, now+30s, or RFC 3339
    #[arg(long, value_name = "SPEC")]
    pub at: Option<String>,
    /// Repeat at this interval instead
    #[arg(long, value_name = "DURATION", conflicts_with = "cron")]
    pub every: Option<String>,
    /// Repeat on this cron schedule instead
    #[arg(long, value_name = "EXPR")]
    pub cron: Option<String>,
    /// The cron's time zone
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,
    /// A new limit on one run
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
}

#[derive(Debug, Args)]
pub struct DecisionArgs {
    /// The action's id (with --step: the plan run's id)
    pub id: String,
    /// Decide the approval step of this id of the plan run <ID> (a gate, or a step whose
    /// action awaits approval)
    #[arg(long, value_name = "STEP")]
    pub step: Option<String>,
    /// Who decides; default: the OS user
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    /// Why, recorded with the decision (and in a rejection's reason)
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Check a plan (its id in .sdlc/plans/, or a file); every problem is listed
    Check {
        /// The plan's id or file
        plan: String,
        /// Check as if run with this variable (repeatable)
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
    },
    /// Start a run of a plan and follow it to its end (exit 0 when it succeeded)
    Run {
        /// The plan's id or file
        plan: String,
        /// A variable for ${KEY} in the steps (repeatable)
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Return once the run is stored (print its id) instead of following it
        #[arg(long)]
        detach: bool,
        /// Print the run's events as JSON lines
        #[arg(long)]
        json: bool,
        /// Group the run's steps in history, such as release-{date}
        #[arg(long, value_name = "ID")]
        run_id: Option<String>,
        /// Notify about these events of this run instead of the daemon's --notify-on
        #[arg(long, value_name = "EVENTS", conflicts_with = "no_notify")]
        notify_on: Vec<String>,
        /// Never notify about this run
        #[arg(long)]
        no_notify: bool,
    },
    /// Show a run: its progress, its steps and the graph (the first 50 steps of a large run,
    /// those that need a look first, with counts of the rest)
    Status {
        /// The run's id
        run_id: String,
        #[arg(long)]
        json: bool,
        /// Every step of a large run, not only the first 50
        #[arg(long)]
        all: bool,
    },
    /// List the plans in .sdlc/plans/ with their last run
    List {
        #[arg(long)]
        json: bool,
    },
    /// List runs, newest first, with their step counts
    Runs {
        /// Only runs of this plan
        #[arg(long, value_name = "PLAN")]
        plan: Option<String>,
        /// Only runs in this status: running, succeeded, failed, canceled
        #[arg(long)]
        status: Option<String>,
        /// At most this many
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10000))]
        limit: u32,
        /// Continue a listing (the cursor printed on stderr)
        #[arg(long)]
        cursor: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a run: steps not started are canceled, running ones are stopped (SIGTERM, then
    /// SIGKILL after --grace)
    Cancel {
        /// The run's id
        run_id: String,
        /// How long a running step has after SIGTERM before SIGKILL
        #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_positive_duration)]
        grace: std::time::Duration,
    },
    /// Run again the failed, canceled and skipped steps of a finished run, keeping what succeeded
    Retry {
        /// The run's id
        run_id: String,
        /// Only this step (and what depends on it)
        #[arg(long, value_name = "ID")]
        step: Option<String>,
        /// Return at once instead of following the run
        #[arg(long)]
        detach: bool,
        #[arg(long)]
        json: bool,
    },
    /// Print a run's events as JSON lines
    Events {
        /// The run's id
        run_id: String,
        /// Keep printing until the run ends
        #[arg(long)]
        follow: bool,
    },
}

/// `KEY=VALUE` of `--var`.
fn parse_var(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}': write --var KEY=VALUE"))?;
    if !sdlc_core::plan::vars::is_var_name(key) {
        return Err(format!(
            "'{key}' is not a variable name: use letters, digits and underscores"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Register a path: POST /webhooks/<path> runs the tool
    Add {
        /// The path, such as deploy (served at /webhooks/deploy)
        path: String,
        /// The tool to run
        #[arg(long, value_name = "NAME", required_unless_present = "plan")]
        tool: Option<String>,
        /// Start a run of this plan instead; the template renders its variables
        #[arg(long, value_name = "ID", conflicts_with = "tool")]
        plan: Option<String>,
        /// The tool's input: JSON with {{payload}}, {{payload.a.b}}, {{headers.x-name}}
        #[arg(long, value_name = "TEXT")]
        template: Option<String>,
        /// Require X-Hub-Signature-256 (HMAC-SHA256 of the body with this secret)
        #[arg(
            long,
            value_name = "SECRET",
            env = "SDLC_WEBHOOK_SECRET",
            hide_env_values = true,
            conflicts_with = "secret_file"
        )]
        secret: Option<String>,
        /// Read the secret from this file (first line, mode 0600) instead: it stays out of argv
        #[arg(long, value_name = "PATH")]
        secret_file: Option<PathBuf>,
    },
    /// List the routes
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove a route by id or path
    Rm {
        /// The route's id or path
        route: String,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// A name for the action, such as the service it checks
    pub label: String,
    /// The tool to run (a folder in .sdlc/tools/)
    #[arg(long, value_name = "NAME")]
    pub tool: Option<String>,
    /// Start a run of this plan (.sdlc/plans/<ID>.json) instead of running a tool
    #[arg(long, value_name = "ID", conflicts_with = "tool")]
    pub plan: Option<String>,
    /// A variable of the plan's runs (repeatable; with --plan)
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// JSON given to the tool on stdin
    #[arg(long, default_value = "{}", value_name = "JSON")]
    pub input: String,
    /// When: now, now+30s (or +5m, +2h), or RFC 3339; default now (with --cron: its first slot)
    #[arg(long, value_name = "SPEC")]
    pub at: Option<String>,
    /// Repeat every DURATION: seconds (60) or 30s, 5m, 1h
    #[arg(long, value_name = "DURATION")]
    pub every: Option<String>,
    /// Limit on one run of this action
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Repeat on a cron schedule: "minute hour day month weekday" (or 6 fields, seconds first)
    #[arg(long, value_name = "EXPR")]
    pub cron: Option<String>,
    /// Time zone of --cron (IANA name such as Europe/Berlin); default UTC
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,
    /// Retry a failed run up to N times
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Wait before the first retry, doubling each time with jitter (capped at 1h); default 10s
    #[arg(long, value_name = "DURATION")]
    pub backoff: Option<String>,
    /// When a run is still going at the next slot: skip (default), queue-one, allow
    #[arg(long, value_name = "POLICY")]
    pub overlap: Option<String>,
    /// Slots missed while down or paused: latest (default, one run), none, all (capped at 100)
    #[arg(long, value_name = "POLICY")]
    pub catch_up: Option<String>,
    /// Each run waits for a person (approve or reject) before its tool starts
    #[arg(long)]
    pub requires_approval: bool,
    /// With approval: nobody deciding within this long rejects the run ("approval timed out")
    #[arg(long, value_name = "DURATION")]
    pub approval_timeout: Option<String>,
    /// Group this action's runs in history, such as nightly-{date} ({date} and {datetime}
    /// are formatted for each occurrence's slot)
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// Notify about these events of this action instead of the daemon's --notify-on
    #[arg(long, value_name = "EVENTS", conflicts_with = "no_notify")]
    pub notify_on: Vec<String>,
    /// Never notify about this action
    #[arg(long)]
    pub no_notify: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only actions in this status: pending, running, completed, failed, paused, skipped,
    /// awaiting_approval
    #[arg(long)]
    pub status: Option<String>,
    /// Only actions of this tool
    #[arg(long, value_name = "NAME")]
    pub tool: Option<String>,
    /// Only actions with this label
    #[arg(long, value_name = "LABEL")]
    pub label: Option<String>,
    /// Only actions of this run: a plan run's id or a grouping set with add --run-id
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// Only runs due since (their slot, or when asked): RFC 3339, or how long ago (7d, 12h)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only runs due until (their slot, or when asked): RFC 3339, or how long ago
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Continue a listing from the cursor printed on stderr
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,
    /// At most this many (newest first); default 500 for table and json, every match for
    /// csv and jsonl
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// table (default), json (an array), csv (RFC 4180, with a header) or jsonl (one action
    /// per line)
    #[arg(long, value_name = "FORMAT", conflicts_with = "json")]
    pub format: Option<String>,
    /// The same as --format json
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GroupsArgs {
    /// Only groups whose first run was due since: RFC 3339, or how long ago (7d, 12h)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only groups whose first run was due until: RFC 3339, or how long ago
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Continue a listing from the cursor printed on stderr
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,
    /// At most this many groups (newest first); default 50 for table and json, every
    /// match for csv
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// table (default), json (an array) or csv (RFC 4180, with a header)
    #[arg(long, value_name = "FORMAT", conflicts_with = "json")]
    pub format: Option<String>,
    /// The same as --format json
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ToolCommand {
    /// List the tools with their version and description
    List {
        /// Print JSON (each tool's --meta)
        #[arg(long)]
        json: bool,
    },
    /// Run a tool once, now, and print its answer
    Run {
        /// The tool's name
        name: String,
        /// JSON given to the tool on stdin
        #[arg(long, default_value = "{}", value_name = "JSON")]
        input: String,
        /// Limit on the run
        #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
}

/// A lease: long enough to renew over a loaded machine, short enough to recover in time.
fn parse_lease(text: &str) -> Result<std::time::Duration, String> {
    let lease = sdlc_core::schedule::parse_duration(text)?;
    if lease < std::time::Duration::from_secs(1) {
        return Err(format!(
            "a lease of {text} is too short to renew: give at least 1s (30s is the default)"
        ));
    }
    Ok(lease)
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    sdlc_core::schedule::parse_duration(text)
}

/// A duration above zero (a zero timeout would fail every run at once).
fn parse_positive_duration(text: &str) -> Result<std::time::Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!("'{text}': must be longer than zero"));
    }
    Ok(duration)
}

/// Retention of at least a minute: a shorter one would delete what just finished.
/// `sdlc orchestrate logs`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// The action's id (a plan step's too: see plan status --json)
    pub id: String,
    /// Keep printing the lines of a running run as they come, until it ends (a pending
    /// action: until it has run)
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only what it printed on stdout
    #[arg(long, conflicts_with = "stderr")]
    pub stdout: bool,
    /// Only what it printed on stderr
    #[arg(long)]
    pub stderr: bool,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Which attempt of a retried action (1 is the first); default the latest
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub attempt: Option<u32>,
}

fn parse_public_url(text: &str) -> Result<String, String> {
    let url = text.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            format!("'{text}': give the dashboard's address as http(s)://HOST[:PORT]")
        })?;
    if rest.is_empty() || rest.contains(['?', '#', ' ', '<', '>', '|']) {
        return Err(format!(
            "'{text}': give the dashboard's address as http(s)://HOST[:PORT][/PATH], without a query"
        ));
    }
    Ok(url.to_string())
}

fn parse_keep(text: &str) -> Result<std::time::Duration, String> {
    let duration = parse_duration(text)?;
    if duration < std::time::Duration::from_secs(60) {
        return Err(format!(
            "'{text}': keep finished actions at least a minute (such as 30d)"
        ));
    }
    Ok(duration)
}

/// The shortest heartbeat: below it an idle daemon would spend a noticeable share of a core
/// waking up, and due times are met by the loop's own timer anyway.
const MIN_TICK_SECS: f64 = 0.01;

fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds (such as 60 or 0.5)"))?;
    if !(seconds.is_finite() && (MIN_TICK_SECS..=86_400.0).contains(&seconds)) {
        return Err(format!(
            "'{text}': use a number of seconds from {MIN_TICK_SECS} to 86400"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}
