//! The data commands of the command-line tool: `rcluster put|get|del` for keys and
//! `rcluster file put|get|ls|rm` for files, over a node's HTTP API. Every command takes the node
//! from `--node` or uses the first node of the config that accepts a connection (trying the next
//! one when a node cannot be reached). File transfers are streamed (never held in memory), show a
//! progress bar on a terminal, and are checked end to end with SHA-256.
//!
//! Exit status: 0 ok; 2 bad input (bad arguments, or a 4xx refusal such as 400, 401, 403, 404,
//! 413); 1 failure (no node reachable, a 5xx answer, a timeout or 408/429, a checksum mismatch,
//! a cut transfer).

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rcluster_domain::config::{self, ClusterConfig, NodeConfig};
use rcluster_domain::node_config::{check_file_name, Role};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::client::{self, percent_encode, Response, StreamError, StreamTarget};
use crate::CliError;

const EXIT_CODES: &str = "Exit status: 0 success; 2 bad input (bad arguments, or the node \
    refused the request with a 4xx answer such as 400, 404 or 413); 1 failure (no node \
    reachable, a server error, a timeout, a checksum mismatch or a cut transfer).";

/// How long to wait for a TCP connection to a node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Where to send requests and with which key (shared by every data command).
#[derive(Args, Debug)]
pub struct Conn {
    /// Cluster configuration file (where to find the nodes and the default API key).
    #[arg(long, default_value = "config/cluster.yaml")]
    pub config: PathBuf,
    /// API key (default: $RCLUSTER_API_KEY, else the config's first admin key for writes and
    /// first read key for reads).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Send the request to this node (its id in the config), instead of the first node of the
    /// config that can be reached.
    #[arg(long, value_name = "ID")]
    pub node: Option<String>,
}

/// `rcluster put`.
#[derive(Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct PutArgs {
    /// The key.
    pub key: String,
    /// The value; `-` reads it from standard input (raw bytes).
    #[arg(allow_hyphen_values = true)]
    pub value: String,
    /// Write quorum: acknowledgements needed (default: the config's quorum.w).
    #[arg(short = 'w', long = "write-quorum", value_name = "N",
          value_parser = clap::value_parser!(u8).range(1..))]
    pub w: Option<u8>,
    #[command(flatten)]
    pub conn: Conn,
}

/// `rcluster get`.
#[derive(Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct GetArgs {
    /// The key.
    pub key: String,
    /// Read quorum: replies needed (default: the config's quorum.r).
    #[arg(short = 'r', long = "read-quorum", value_name = "N",
          value_parser = clap::value_parser!(u8).range(1..))]
    pub r: Option<u8>,
    #[command(flatten)]
    pub conn: Conn,
}

/// `rcluster del`.
#[derive(Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct DelArgs {
    /// The key.
    pub key: String,
    /// Write quorum: acknowledgements needed (default: the config's quorum.w).
    #[arg(short = 'w', long = "write-quorum", value_name = "N",
          value_parser = clap::value_parser!(u8).range(1..))]
    pub w: Option<u8>,
    #[command(flatten)]
    pub conn: Conn,
}

/// `rcluster file ...`.
#[derive(Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct FileArgs {
    #[command(subcommand)]
    pub command: FileCommand,
}

#[derive(Subcommand, Debug)]
pub enum FileCommand {
    /// Upload a file (streamed; its SHA-256 is computed while sending and checked against the
    /// node's). Prints the new file's id, size and SHA-256.
    #[command(after_help = EXIT_CODES)]
    Put(FilePutArgs),
    /// Download a file by id (streamed to a temporary file beside the destination, checked
    /// against the stored SHA-256, then renamed into place; nothing is left on failure).
    #[command(after_help = EXIT_CODES)]
    Get(FileGetArgs),
    /// List the stored files: id, name, size, chunks, creation time (UTC), SHA-256 prefix.
    #[command(after_help = EXIT_CODES)]
    Ls(FileLsArgs),
    /// Delete a file by id.
    #[command(after_help = EXIT_CODES)]
    Rm(FileRmArgs),
}

#[derive(Args, Debug)]
pub struct FilePutArgs {
    /// The local file to upload.
    pub path: PathBuf,
    /// Name to store it under (default: the file's own name).
    #[arg(long)]
    pub name: Option<String>,
    /// Content type to record.
    #[arg(long, default_value = "application/octet-stream", value_name = "TYPE")]
    pub content_type: String,
    /// Write quorum for every chunk and the metadata (default: the config's quorum.w).
    #[arg(short = 'w', long = "write-quorum", value_name = "N",
          value_parser = clap::value_parser!(u8).range(1..))]
    pub w: Option<u8>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Args, Debug)]
pub struct FileGetArgs {
    /// The file's id (as printed by `file put` or `file ls`).
    pub id: String,
    /// Where to write it: a file path, or an existing folder to put it in under its stored name
    /// (default: the stored name in the current folder).
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Replace the destination if it exists.
    #[arg(short, long)]
    pub force: bool,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Args, Debug)]
pub struct FileLsArgs {
    /// Show at most this many files (pages are followed until then).
    #[arg(long, default_value_t = 1000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub limit: u64,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Args, Debug)]
pub struct FileRmArgs {
    /// The file's id.
    pub id: String,
    #[command(flatten)]
    pub conn: Conn,
}

/// The loaded config, the key to present and the nodes to try, in order.
struct Session {
    config: ClusterConfig,
    key: Option<String>,
    nodes: Vec<NodeConfig>,
}

impl Session {
    /// Loads the config; `write` picks an admin key by default, else a read key.
    fn open(conn: &Conn, write: bool) -> Result<Session, CliError> {
        let path = &conn.config;
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::input(format!("cannot read config {}: {e}", path.display())))?;
        let config = config::parse(&text)
            .map_err(|e| CliError::input(format!("config {}: {e}", path.display())))?;
        let key = api_key(&config, conn.api_key.clone(), write);
        let nodes = match &conn.node {
            Some(id) => vec![config.node(id).cloned().ok_or_else(|| {
                let ids: Vec<&str> = config.nodes.iter().map(|n| n.id.as_str()).collect();
                CliError::input(format!(
                    "no node '{id}' in {} (nodes: {})",
                    path.display(),
                    ids.join(", ")
                ))
            })?],
            None => config.nodes.clone(),
        };
        Ok(Session { config, key, nodes })
    }

    fn target<'a>(&'a self, node: &'a NodeConfig, transfer: Duration) -> StreamTarget<'a> {
        StreamTarget {
            host: &node.host,
            port: node.http_port,
            api_key: self.key.as_deref(),
            connect_timeout: CONNECT_TIMEOUT,
            transfer_timeout: transfer,
        }
    }

    /// Bound on a key or metadata request.
    fn small_timeout(&self) -> Duration {
        Duration::from_millis(self.config.api.request_timeout_ms.saturating_add(5_000))
    }

    /// Bound on a file transfer.
    fn file_timeout(&self) -> Duration {
        Duration::from_millis(self.config.files.transfer_timeout_ms.saturating_add(5_000))
    }

    /// The nodes to try, starting with `first` (the node that answered before).
    fn nodes_from(&self, first: &str) -> Vec<NodeConfig> {
        let mut nodes = self.nodes.clone();
        if let Some(i) = nodes.iter().position(|n| n.id == first) {
            nodes.rotate_left(i);
        }
        nodes
    }

    /// A small request (body buffered both ways) to the first of `nodes` that can be reached;
    /// returns that node's id and its answer, whatever the status.
    async fn small_on(
        &self,
        nodes: &[NodeConfig],
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(String, Response), CliError> {
        let mut failures = Vec::new();
        for node in nodes {
            let target = self.target(node, self.small_timeout());
            let result = match body {
                Some(body) => {
                    client::request_streaming_upload(
                        &target,
                        method,
                        path,
                        "application/octet-stream",
                        body.len() as u64,
                        body,
                        |_| {},
                    )
                    .await
                }
                None => {
                    let mut out = Vec::new();
                    match client::request_streaming_download(
                        &target,
                        method,
                        path,
                        &mut out,
                        |_| {},
                    )
                    .await
                    {
                        Ok(d) if !d.complete => Err(StreamError::Transfer(format!(
                            "the answer was cut short after {} bytes",
                            d.bytes_written + d.response.body.len() as u64
                        ))),
                        Ok(mut d) => {
                            if d.bytes_written > 0 {
                                d.response.body = out;
                            }
                            Ok(d.response)
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            match result {
                Ok(r) => return Ok((node.id.clone(), r)),
                Err(StreamError::Connect(e)) => failures.push(format!("{}: {e}", node.id)),
                Err(StreamError::Transfer(e)) => {
                    return Err(CliError::failed(format!("node {}: {e}", node.id)))
                }
            }
        }
        Err(unreachable(&failures))
    }

    /// Like [`Session::small_on`] on the configured nodes, failing on a non-2xx answer.
    async fn small(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(String, Response), CliError> {
        let (node, r) = self.small_on(&self.nodes, method, path, body).await?;
        check(&node, r).map(|r| (node, r))
    }
}

/// The API key to send: the one given, else `$RCLUSTER_API_KEY`, else the config's first admin
/// key (`write`) or read key.
pub fn api_key(config: &ClusterConfig, given: Option<String>, write: bool) -> Option<String> {
    given
        .or_else(|| std::env::var("RCLUSTER_API_KEY").ok())
        .or_else(|| {
            let want = if write { Role::Admin } else { Role::Read };
            let keys = &config.api.keys;
            keys.iter()
                .find(|k| k.role == want)
                .or(keys.first())
                .map(|k| k.key.clone())
        })
}

fn unreachable(failures: &[String]) -> CliError {
    CliError::failed(format!("no node could be reached: {}", failures.join("; ")))
}

/// Passes a 2xx answer; turns any other into an error carrying the server's message, with
/// the exit code for its class (4xx: bad input, except 408/429; else failure).
fn check(node: &str, r: Response) -> Result<Response, CliError> {
    if (200..300).contains(&r.status) {
        return Ok(r);
    }
    let parsed: Option<Value> = serde_json::from_slice(&r.body).ok();
    let said = match parsed.as_ref().map(|v| &v["error"]) {
        Some(e) if e.is_object() => format!(
            " {}: {}",
            e["code"].as_str().unwrap_or("ERROR"),
            e["message"].as_str().unwrap_or_default()
        ),
        _ if r.body.is_empty() => String::new(),
        _ => format!(": {}", truncate(r.text().trim(), 500)),
    };
    let mut text = format!("node {node} answered {}{said}", r.status);
    match r.status {
        401 | 403 => {
            text.push_str(" (pass --api-key or set RCLUSTER_API_KEY)");
            Err(CliError::input(text))
        }
        408 | 429 => {
            if let Some(s) = r.header("retry-after") {
                text.push_str(&format!(" (retry after {s} s)"));
            }
            Err(CliError::failed(text))
        }
        400..=499 => Err(CliError::input(text)),
        _ => Err(CliError::failed(text)),
    }
}

fn json(node: &str, r: &Response) -> Result<Value, CliError> {
    serde_json::from_slice(&r.body)
        .map_err(|e| CliError::failed(format!("node {node} sent invalid JSON: {e}")))
}

fn check_key(key: &str) -> Result<(), CliError> {
    if key.is_empty() {
        return Err(CliError::input("the key must not be empty"));
    }
    Ok(())
}

fn quorum_query(name: &str, value: Option<u8>) -> String {
    value.map_or_else(String::new, |v| format!("?{name}={v}"))
}

pub async fn put(args: PutArgs) -> Result<(), CliError> {
    check_key(&args.key)?;
    let value = if args.value == "-" {
        let mut v = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut v)
            .map_err(|e| CliError::input(format!("cannot read the value from stdin: {e}")))?;
        v
    } else {
        args.value.into_bytes()
    };
    let session = Session::open(&args.conn, true)?;
    let path = format!(
        "/api/kv/{}{}",
        percent_encode(&args.key),
        quorum_query("w", args.w)
    );
    session.small("PUT", &path, Some(&value)).await?;
    println!("stored '{}' ({} bytes)", args.key, value.len());
    Ok(())
}

pub async fn get(args: GetArgs) -> Result<(), CliError> {
    check_key(&args.key)?;
    let session = Session::open(&args.conn, false)?;
    let path = format!(
        "/api/kv/{}{}",
        percent_encode(&args.key),
        quorum_query("r", args.r)
    );
    let (_, r) = session.small("GET", &path, None).await?;
    let mut out = std::io::stdout().lock();
    match out.write_all(&r.body).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::failed(format!(
            "cannot write the value to stdout: {e}"
        ))),
        _ => Ok(()),
    }
}

pub async fn del(args: DelArgs) -> Result<(), CliError> {
    check_key(&args.key)?;
    let session = Session::open(&args.conn, true)?;
    let path = format!(
        "/api/kv/{}{}",
        percent_encode(&args.key),
        quorum_query("w", args.w)
    );
    session.small("DELETE", &path, None).await?;
    println!("deleted '{}'", args.key);
    Ok(())
}

pub async fn file(args: FileArgs) -> Result<(), CliError> {
    match args.command {
        FileCommand::Put(a) => file_put(a).await,
        FileCommand::Get(a) => file_get(a).await,
        FileCommand::Ls(a) => file_ls(a).await,
        FileCommand::Rm(a) => file_rm(a).await,
    }
}

/// A local file used as an async reader or writer. Disk I/O is done in place: the CLI runs one
/// transfer on a single-threaded runtime, so a short blocking read or write holds up nothing
/// else (and this crate does not build tokio's `fs`).
struct LocalFile(std::fs::File);

impl AsyncRead for LocalFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            match self.0.read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for LocalFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.0.write(buf))
    }
    fn poll_flush(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.0.flush())
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A byte progress bar on stderr, hidden when asked or when stderr is not a terminal.
pub fn progress_bar(len: u64, quiet: bool, what: &str) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

fn human_bytes(b: u64) -> String {
    crate::status::human_bytes(b, false)
}

/// "sent 95.4 MiB in 1.20 s (79.5 MiB/s)", on stderr unless quiet.
fn report_rate(quiet: bool, verb: &str, bytes: u64, started: Instant) {
    if quiet {
        return;
    }
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        format!(
            " ({}/s)",
            human_bytes((bytes as f64 / secs).min(u64::MAX as f64) as u64)
        )
    } else {
        String::new()
    };
    eprintln!("{verb} {} in {secs:.2} s{rate}", human_bytes(bytes));
}

async fn file_put(args: FilePutArgs) -> Result<(), CliError> {
    let shown = args.path.display().to_string();
    let file = std::fs::File::open(&args.path)
        .map_err(|e| CliError::input(format!("cannot open {shown}: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| CliError::input(format!("cannot read {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(CliError::input(format!("{shown} is not a regular file")));
    }
    let len = meta.len();
    let name = match args.name {
        Some(n) => n,
        None => args
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| CliError::input(format!("{shown} has no file name; pass --name")))?,
    };
    check_file_name(&name).map_err(|e| CliError::input(format!("bad --name: {e}")))?;
    let session = Session::open(&args.conn, true)?;
    let mut path = format!("/api/files?name={}", percent_encode(&name));
    if let Some(w) = args.w {
        path.push_str(&format!("&w={w}"));
    }
    let mut reader = LocalFile(file);
    let mut hasher = Sha256::new();
    let bar = progress_bar(len, args.quiet, "upload");
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut answer = None;
    for node in &session.nodes {
        let target = session.target(node, session.file_timeout());
        // A connection failure leaves the reader and the hash untouched: try the next node.
        let result = client::request_streaming_upload(
            &target,
            "POST",
            &path,
            &args.content_type,
            len,
            &mut reader,
            |piece| {
                hasher.update(piece);
                bar.inc(piece.len() as u64);
            },
        )
        .await;
        match result {
            Ok(r) => {
                answer = Some((node.id.clone(), r));
                break;
            }
            Err(StreamError::Connect(e)) => failures.push(format!("{}: {e}", node.id)),
            Err(StreamError::Transfer(e)) => {
                bar.abandon();
                return Err(CliError::failed(format!(
                    "node {}: upload failed: {e}",
                    node.id
                )));
            }
        }
    }
    bar.finish_and_clear();
    let Some((node, r)) = answer else {
        return Err(unreachable(&failures));
    };
    let r = check(&node, r)?;
    report_rate(args.quiet, "sent", len, started);
    let stored = json(&node, &r)?;
    let local = hex::encode(hasher.finalize());
    let id = stored["id"].as_str().unwrap_or("?").to_string();
    let remote = stored["sha256"].as_str().unwrap_or("");
    let size = stored["size"].as_u64();
    println!("id: {id}");
    println!("name: {}", stored["name"].as_str().unwrap_or(&name));
    println!("size: {}", size.map_or("?".into(), |s| s.to_string()));
    println!("sha256: {remote}");
    if remote != local || size != Some(len) {
        return Err(CliError::failed(format!(
            "checksum mismatch: sent {len} bytes with sha256 {local}, node {node} stored {} \
             bytes with sha256 {remote}; delete it with `rcluster file rm {id}` and upload again",
            size.map_or("?".into(), |s| s.to_string())
        )));
    }
    println!("checksum verified");
    Ok(())
}

/// A temporary file removed on drop unless kept.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Where `file get` writes: `-o` (a folder gets the stored name inside it) or the stored name
/// in the current folder.
fn destination(output: Option<PathBuf>, stored_name: &str) -> Result<PathBuf, CliError> {
    let by_name = || {
        check_file_name(stored_name)
            .map(|()| PathBuf::from(stored_name))
            .map_err(|e| {
                CliError::input(format!(
                    "the stored name {stored_name:?} cannot be used as a path ({e}); pass -o PATH"
                ))
            })
    };
    match output {
        Some(p) if p.is_dir() => Ok(p.join(by_name()?)),
        Some(p) => Ok(p),
        None => by_name(),
    }
}

async fn file_get(args: FileGetArgs) -> Result<(), CliError> {
    if args.id.is_empty() {
        return Err(CliError::input("the file id must not be empty"));
    }
    let session = Session::open(&args.conn, false)?;
    let id = percent_encode(&args.id);
    let (node, r) = session
        .small("GET", &format!("/api/files/{id}"), None)
        .await?;
    let meta = json(&node, &r)?;
    let size = meta["size"].as_u64().unwrap_or(0);
    let want_sha = meta["sha256"].as_str().unwrap_or("").to_string();
    let name = meta["name"].as_str().unwrap_or("").to_string();
    let dest = destination(args.output, &name)?;
    let shown = dest.display().to_string();
    if !args.force && dest.exists() {
        return Err(CliError::input(format!(
            "{shown} already exists; pass --force to replace it or -o to choose another path"
        )));
    }
    let folder = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| CliError::input(format!("{shown} is not a file path")))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let temp = TempFile {
        path: folder.join(format!(".{base}.{}-{nanos}.part", std::process::id())),
        keep: false,
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp.path)
        .map_err(|e| {
            CliError::input(format!(
                "cannot create {} (in the destination's folder): {e}",
                temp.path.display()
            ))
        })?;
    let mut writer = LocalFile(file);
    let mut hasher = Sha256::new();
    let bar = progress_bar(size, args.quiet, "download");
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut answer = None;
    for n in session.nodes_from(&node) {
        let target = session.target(&n, session.file_timeout());
        let result = client::request_streaming_download(
            &target,
            "GET",
            &format!("/api/files/{id}/content"),
            &mut writer,
            |piece| {
                hasher.update(piece);
                bar.inc(piece.len() as u64);
            },
        )
        .await;
        match result {
            Ok(d) => {
                answer = Some((n.id.clone(), d));
                break;
            }
            Err(StreamError::Connect(e)) => failures.push(format!("{}: {e}", n.id)),
            Err(StreamError::Transfer(e)) => {
                bar.abandon();
                return Err(CliError::failed(format!(
                    "node {}: download failed: {e}; removed the partial file",
                    n.id
                )));
            }
        }
    }
    let Some((node, d)) = answer else {
        bar.abandon();
        return Err(unreachable(&failures));
    };
    bar.finish_and_clear();
    let header_sha = d.response.header("x-file-sha256").unwrap_or("").to_string();
    let (written, expected, complete) = (d.bytes_written, d.expected_len, d.complete);
    check(&node, d.response)?;
    if !complete || expected.is_some_and(|e| e != written) {
        return Err(CliError::failed(format!(
            "the download from node {node} was cut short: got {written} of {} bytes; removed \
             the partial file",
            expected.unwrap_or(size)
        )));
    }
    let got = hex::encode(hasher.finalize());
    if written != size || got != want_sha || got != header_sha {
        return Err(CliError::failed(format!(
            "checksum mismatch for {}: received {written} bytes with sha256 {got}, node {node} \
             declared sha256 {header_sha} and the metadata {size} bytes with sha256 \
             {want_sha}; removed the partial file",
            args.id
        )));
    }
    writer
        .0
        .sync_all()
        .map_err(|e| CliError::failed(format!("cannot write {}: {e}", temp.path.display())))?;
    drop(writer);
    if !args.force && dest.exists() {
        return Err(CliError::input(format!(
            "{shown} appeared during the download; pass --force to replace it"
        )));
    }
    let mut temp = temp;
    std::fs::rename(&temp.path, &dest)
        .map_err(|e| CliError::failed(format!("cannot move the download to {shown}: {e}")))?;
    temp.keep = true;
    report_rate(args.quiet, "received", written, started);
    println!("saved: {shown}");
    println!("size: {written}");
    println!("sha256: {got}");
    println!("checksum verified");
    Ok(())
}

/// `2024-05-06 07:08:09` (UTC) for milliseconds since the epoch.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut t: String = text.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

pub fn files_table(files: &[Value]) -> String {
    const NAME_MAX: usize = 40;
    let name_width = files
        .iter()
        .map(|f| {
            truncate(f["name"].as_str().unwrap_or(""), NAME_MAX)
                .chars()
                .count()
        })
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!(
        "{:<32}  {:<name_width$}  {:>10}  {:>6}  {:<19}  {}\n",
        "ID", "NAME", "SIZE", "CHUNKS", "CREATED", "SHA256"
    );
    for f in files {
        let sha = f["sha256"].as_str().unwrap_or("");
        out.push_str(&format!(
            "{:<32}  {:<name_width$}  {:>10}  {:>6}  {:<19}  {}\n",
            f["id"].as_str().unwrap_or("?"),
            truncate(f["name"].as_str().unwrap_or(""), NAME_MAX),
            f["size"].as_u64().map_or("?".into(), human_bytes),
            f["chunk_count"]
                .as_u64()
                .map_or("?".into(), |c| c.to_string()),
            f["created_ms"].as_u64().map_or("?".into(), utc),
            &sha[..sha.len().min(12)]
        ));
    }
    out
}

async fn file_ls(args: FileLsArgs) -> Result<(), CliError> {
    let session = Session::open(&args.conn, false)?;
    let mut files: Vec<Value> = Vec::new();
    let mut after: Option<String> = None;
    let mut pinned: Option<String> = None;
    let mut more = false;
    loop {
        let page = (args.limit - files.len() as u64).min(1000);
        let mut path = format!("/api/files?limit={page}");
        if let Some(a) = &after {
            path.push_str(&format!("&after={}", percent_encode(a)));
        }
        // Follow the pages on the node that answered first.
        let nodes = match &pinned {
            Some(n) => session.nodes_from(n),
            None => session.nodes.clone(),
        };
        let (node, r) = session.small_on(&nodes, "GET", &path, None).await?;
        let r = check(&node, r)?;
        let body = json(&node, &r)?;
        files.extend(body["files"].as_array().cloned().unwrap_or_default());
        pinned = Some(node);
        let next = body["next_after"].as_str().map(str::to_string);
        if files.len() as u64 >= args.limit {
            more = next.is_some();
            break;
        }
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    if files.is_empty() {
        println!("no files");
    } else {
        print!("{}", files_table(&files));
    }
    if more {
        eprintln!("(more files: raise --limit to see them)");
    }
    Ok(())
}

async fn file_rm(args: FileRmArgs) -> Result<(), CliError> {
    if args.id.is_empty() {
        return Err(CliError::input("the file id must not be empty"));
    }
    let session = Session::open(&args.conn, true)?;
    let (node, r) = session
        .small(
            "DELETE",
            &format!("/api/files/{}", percent_encode(&args.id)),
            None,
        )
        .await?;
    let body = json(&node, &r)?;
    println!(
        "deleted file {} ({} chunk copies removed)",
        args.id,
        body["chunk_copies_removed"]
            .as_u64()
            .map_or("?".into(), |n| n.to_string())
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_encoding() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_709_251_199_000), "2024-02-29 23:59:59");
        assert_eq!(percent_encode("a b/ü"), "a%20b%2F%C3%BC");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 19), "1.5 MiB");
        assert_eq!(crate::status::human_bytes(3 << 19, true), "1.5M");
        assert_eq!(crate::status::human_bytes(5 << 30, true), "5.0G");
    }

    #[test]
    fn errors_keep_the_server_message_and_class() {
        let r = |status, body: &str| Response {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        };
        let e = check(
            "n1",
            r(
                404,
                r#"{"error":{"code":"NOT_FOUND","message":"no file 'x'"}}"#,
            ),
        )
        .unwrap_err();
        assert!(e.bad_input && e.message.contains("no file 'x'"), "{e}");
        assert!(!check("n1", r(503, "down")).unwrap_err().bad_input);
        assert!(!check("n1", r(429, "{}")).unwrap_err().bad_input);
        assert!(check("n1", r(201, "{}")).is_ok());
    }
}
