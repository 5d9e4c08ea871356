//! `rcluster`: the node process, the local cluster launcher and the command-line tool. This file
//! only parses the command line and hands over to the library (`lib.rs`) that does the work.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rcluster::cli::{self, CliError};
use rcluster::node;

#[derive(Parser)]
#[command(
    name = "rcluster",
    version,
    about = "RedisCluster: a replicated key-value and file store on Redis",
    long_about = "RedisCluster: a replicated key-value and file store on Redis.\n\n\
        Every node is a redis-server with the rcluster module plus this node process.\n\
        Start a local cluster with `rcluster up`; see docs/commands.md for the RC.*\n\
        commands and docs/http-api.md for the HTTP API."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start every node of the config on this machine, print where they listen, and stop them
    /// all on Ctrl-C or SIGTERM.
    Up(cli::up::UpArgs),
    /// Show every node as the first answering node sees it (state, heartbeat, Redis, keys,
    /// memory, clock drift, Raft role and term, the topology epoch its module installed).
    Status(cli::status::StatusArgs),
    /// Store a value under a key (`-` as the value reads it from standard input).
    Put(cli::kv::PutArgs),
    /// Print a key's value to standard output, as raw bytes.
    Get(cli::kv::GetArgs),
    /// Delete a key.
    Del(cli::kv::DelArgs),
    /// Show a request trace as a timeline, one lane per node with microsecond offsets:
    /// `rcluster trace <id>`, or the newest ones with `rcluster trace --last [N]`.
    Trace(cli::trace::TraceArgs),
    /// Run a guided scenario (normal, node-failure, scaling, resources, trade-offs) on the
    /// cluster, narrated step by step, ending with its verdict measured on the spot.
    Demo(cli::demo::DemoArgs),
    /// Upload, download, list and delete files (streamed, checked with SHA-256).
    File(cli::file::FileArgs),
    /// Inject a fault (partition, cut, latency, loss, skew, crash, pause) with a time to live,
    /// list the faults held, clear them: `rcluster fault partition n1,n2 / n3 --ttl 30s`.
    Fault(cli::fault::FaultArgs),
    /// Run a consistency check: a workload through every node while a schedule of faults is
    /// injected, then heal and judge (lost writes, stale reads, replicas not converged).
    Check(cli::check::CheckArgs),
    /// Run one node (its redis-server with the module, heartbeats, Raft, HTTP API), or add or
    /// remove a node: `rcluster node --id n1`, `rcluster node add n4`, `rcluster node remove n4`.
    /// A node logs timestamped lines to stderr at the config's log_level (RCLUSTER_LOG or
    /// RUST_LOG win), and refuses to start beyond loopback with development keys or without
    /// redis_password.
    Node(NodeArgs),
    /// Print a Prometheus configuration that scrapes every node of the config and loads the
    /// rules of config/prometheus/rules (see docs/metrics.md).
    PrometheusConfig(cli::prometheus::PrometheusArgs),
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct NodeArgs {
    #[command(subcommand)]
    action: Option<cli::members::NodeAction>,
    /// Cluster configuration file.
    #[arg(long, default_value = "config/cluster.yaml")]
    config: PathBuf,
    /// This node's id: one of the config's nodes, or a new node that joins the cluster (then
    /// give its ports the first time; they are saved in its data folder).
    #[arg(long)]
    id: Option<String>,
    /// Address peers and clients use to reach a new node (not needed for nodes in the config).
    #[arg(long)]
    host: Option<String>,
    /// Address to bind the node's ports on, e.g. 0.0.0.0 in a container (any node; default: the
    /// config's listen_host, else its host).
    #[arg(long)]
    listen_host: Option<String>,
    /// Redis port of a new node.
    #[arg(long)]
    redis_port: Option<u16>,
    /// HTTP port of a new node.
    #[arg(long)]
    http_port: Option<u16>,
    /// Peer port (heartbeats, Raft) of a new node.
    #[arg(long)]
    peer_port: Option<u16>,
    /// Halve memory caps and lengthen intervals.
    #[arg(long)]
    low_resource: bool,
    /// The module to load (default: librcluster_module.so next to this binary).
    #[arg(long)]
    module: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread: a node process is light, and children spawned from the main thread get their
    // parent-death signal tied to a thread that lives as long as the process.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => cli::up::run(args).await,
            Command::Status(args) => cli::status::run(args).await,
            Command::Put(args) => cli::kv::put(args).await,
            Command::Get(args) => cli::kv::get(args).await,
            Command::Del(args) => cli::kv::del(args).await,
            Command::Trace(args) => cli::trace::run(args).await,
            Command::File(args) => cli::file::file(args).await,
            Command::Demo(args) => cli::demo::run(args).await,
            Command::PrometheusConfig(args) => cli::prometheus::run(args).await,
            Command::Fault(args) => cli::fault::run(args).await,
            Command::Check(args) => cli::check::run(args).await,
            Command::Node(args) => match (args.action, args.id) {
                (Some(action), _) => cli::members::run(action).await,
                (None, None) => Err(CliError::input(
                    "rcluster node needs --id <ID> to run a node, or a subcommand (add, remove); \
                     see rcluster node --help",
                )),
                (None, Some(id)) => {
                    let address = node::Address {
                        host: args.host,
                        listen_host: args.listen_host,
                        redis_port: args.redis_port,
                        http_port: args.http_port,
                        peer_port: args.peer_port,
                    };
                    let args = node::NodeArgs {
                        config: args.config,
                        id,
                        address,
                        low_resource: args.low_resource,
                        module: args.module,
                    };
                    rcluster::run_node(args).await.map_err(CliError::from)
                }
            },
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(e.exit_code())
        }
    }
}
