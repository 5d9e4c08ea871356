//! `rcluster`: the node process, the local cluster launcher and the command-line tool. This file
//! only parses the command line and hands over to the library (`lib.rs`) that does the work.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rcluster::{cli, members_cli, node, status, up, CliError};

#[derive(Parser)]
#[command(
    name = "rcluster",
    version,
    about = "RedisCluster: a replicated key-value and file store on Redis",
    long_about = "RedisCluster: a replicated key-value and file store on Redis.\n\n\
        Every node is a redis-server with the rcluster module plus this node process.\n\
        Start a local cluster with `rcluster up`; see README.md for the RC.* commands."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start every node of the config on this machine, print where they listen, and stop them
    /// all on Ctrl-C or SIGTERM.
    Up {
        /// Cluster configuration file.
        #[arg(long, default_value = "config/cluster.yaml")]
        config: PathBuf,
        /// Halve memory caps and lengthen intervals (for 1 core / 512 MB machines).
        #[arg(long)]
        low_resource: bool,
        /// The module to load (default: librcluster_module.so next to this binary).
        #[arg(long)]
        module: Option<PathBuf>,
        /// How long to wait for every node to answer, in seconds.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=600))]
        start_timeout_s: u64,
    },
    /// Show every node as the first answering node sees it (state, heartbeat, Redis, keys,
    /// memory, clock drift, Raft role and term, the topology epoch its module installed).
    Status {
        /// Cluster configuration file (where to find the nodes).
        #[arg(long, default_value = "config/cluster.yaml")]
        config: PathBuf,
        /// API key (default: $RCLUSTER_API_KEY, else the config's first read key).
        #[arg(long)]
        api_key: Option<String>,
        /// Print the raw JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Refresh every N seconds until interrupted.
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2",
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        watch: Option<u64>,
    },
    /// Store a value under a key (`-` as the value reads it from standard input).
    Put(cli::PutArgs),
    /// Print a key's value to standard output, as raw bytes.
    Get(cli::GetArgs),
    /// Delete a key.
    Del(cli::DelArgs),
    /// Upload, download, list and delete files (streamed, checked with SHA-256).
    File(cli::FileArgs),
    /// Run one node (its redis-server with the module, heartbeats, Raft, HTTP API), or add or
    /// remove a node: `rcluster node --id n1`, `rcluster node add n4`, `rcluster node remove n4`.
    Node(NodeArgs),
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct NodeArgs {
    #[command(subcommand)]
    action: Option<members_cli::NodeAction>,
    /// Cluster configuration file.
    #[arg(long, default_value = "config/cluster.yaml")]
    config: PathBuf,
    /// This node's id: one of the config's nodes, or a new node that joins the cluster (then
    /// give its ports the first time; they are saved in its data folder).
    #[arg(long)]
    id: Option<String>,
    /// Address a new node listens on (not needed for nodes in the config).
    #[arg(long)]
    host: Option<String>,
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
            Command::Up {
                config,
                low_resource,
                module,
                start_timeout_s,
            } => {
                up::run(up::UpArgs {
                    config,
                    low_resource,
                    module,
                    start_timeout: std::time::Duration::from_secs(start_timeout_s),
                })
                .await
            }
            Command::Status {
                config,
                api_key,
                json,
                watch,
            } => {
                status::run(status::StatusArgs {
                    config,
                    api_key,
                    json,
                    watch_s: watch,
                })
                .await
            }
            Command::Put(args) => cli::put(args).await,
            Command::Get(args) => cli::get(args).await,
            Command::Del(args) => cli::del(args).await,
            Command::File(args) => cli::file(args).await,
            Command::Node(args) => match (args.action, args.id) {
                (Some(action), _) => members_cli::run(action).await,
                (None, None) => Err(CliError::input(
                    "rcluster node needs --id <ID> to run a node, or a subcommand (add, remove); \
                     see rcluster node --help",
                )),
                (None, Some(id)) => {
                    let address = node::Address {
                        host: args.host,
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
