//! The file commands: `rcluster file put|get|ls|rm` over a node's HTTP API (`/api/files`).
//! Transfers are streamed (never held in memory), show a progress bar on a terminal, and are
//! checked end to end with SHA-256; a download goes to a temporary file beside the destination
//! and is renamed into place only once checked.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rcluster_domain::node_config::{check_file_name, Role};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::conn::{check, json, Conn, ConnArgs, Retry};
use super::http_client;
use super::text::{human_bytes, truncate};
use super::{CliError, EXIT_CODES};
use crate::api::{FileDeleted, FileList, FileMeta};
use crate::client::percent_encode;

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
    /// against the stored SHA-256, then renamed into place; nothing is left on failure). A
    /// download cut short goes on from the next node with a Range request.
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
    pub conn: ConnArgs,
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
    pub conn: ConnArgs,
}

#[derive(Args, Debug)]
pub struct FileLsArgs {
    /// Show at most this many files (pages are followed until then).
    #[arg(long, default_value_t = 1000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub limit: u64,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Args, Debug)]
pub struct FileRmArgs {
    /// The file's id.
    pub id: String,
    #[command(flatten)]
    pub conn: ConnArgs,
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

/// "sent 95.4 MiB in 1.20 s (79.5 MiB/s)", on stderr unless quiet.
fn report_rate(quiet: bool, verb: &str, bytes: u64, started: Instant) {
    if quiet {
        return;
    }
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        format!(
            " ({}/s)",
            human_bytes((bytes as f64 / secs).min(u64::MAX as f64) as u64, false)
        )
    } else {
        String::new()
    };
    eprintln!("{verb} {} in {secs:.2} s{rate}", human_bytes(bytes, false));
}

/// What a transfer does with every piece sent or received: hash it and advance the bar.
fn tally<'a>(hasher: &'a mut Sha256, bar: &'a ProgressBar) -> impl FnMut(&[u8]) + 'a {
    |piece| {
        hasher.update(piece);
        bar.inc(piece.len() as u64);
    }
}

/// Ends a transfer's progress bar: cleared when the transfer went through or never started,
/// left showing how far it got when it broke.
fn finish<T>(bar: &ProgressBar, outcome: Result<T, CliError>) -> Result<T, CliError> {
    if outcome.is_ok() || bar.position() == 0 {
        bar.finish_and_clear();
    } else {
        bar.abandon();
    }
    outcome
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
    let conn = Conn::open(&args.conn, Role::Admin)?;
    let mut path = format!("/api/files?name={}", percent_encode(&name));
    if let Some(w) = args.w {
        path.push_str(&format!("&w={w}"));
    }
    let mut reader = LocalFile(file);
    let mut hasher = Sha256::new();
    let bar = progress_bar(len, args.quiet, "upload");
    let started = Instant::now();
    // Only a node that could not be reached is left for the next: then the reader and the hash
    // are untouched.
    let sent = conn
        .failover(conn.nodes(), Retry::Unsent, async |node| {
            let target = conn.target(node, conn.file_timeout());
            http_client::request_streaming_upload(
                &target,
                "POST",
                &path,
                &args.content_type,
                len,
                &mut reader,
                tally(&mut hasher, &bar),
            )
            .await
            .map_err(|e| e.when_broken(|e| format!("upload failed: {e}")))
        })
        .await;
    let (node, r) = finish(&bar, sent)?;
    let r = check(&node, r)?;
    report_rate(args.quiet, "sent", len, started);
    let stored: FileMeta = json(&node, &r)?;
    let local = hex::encode(hasher.finalize());
    let FileMeta {
        id,
        sha256: remote,
        size,
        ..
    } = &stored;
    println!("id: {id}");
    println!("name: {}", stored.name);
    println!("size: {size}");
    println!("sha256: {remote}");
    if *remote != local || *size != len {
        return Err(CliError::failed(format!(
            "checksum mismatch: sent {len} bytes with sha256 {local}, node {node} stored {size} \
             bytes with sha256 {remote}; delete it with `rcluster file rm {id}` and upload again"
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
    let conn = Conn::open(&args.conn, Role::Read)?;
    let id = percent_encode(&args.id);
    let (node, r) = conn.send("GET", &format!("/api/files/{id}"), None).await?;
    let FileMeta {
        size,
        sha256: want_sha,
        name,
        ..
    } = json(&node, &r)?;
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
    let path = format!("/api/files/{id}/content");
    // What arrived so far (in the temporary file and the hash): a cut download goes on from
    // there on the next node with a Range request, while the file is the same (If-Range).
    let received = std::cell::Cell::new(0u64);
    let etag = format!("\"{want_sha}\"");
    let mut from_node = node.clone();
    let mut fruitless = 0;
    let (node, d) = loop {
        let mut progress = |piece: &[u8]| {
            tally(&mut hasher, &bar)(piece);
            received.set(received.get() + piece.len() as u64);
        };
        // A node that cannot serve the content leaves it to the next. A broken exchange has
        // written into the temporary file: it is not repeated, it is resumed below.
        let got = conn
            .failover(&conn.nodes_from(&from_node), Retry::Refused, async |n| {
                let target = conn.target(n, conn.file_timeout());
                let from = received.get();
                let range = format!("bytes={from}-");
                let headers: &[(&str, &str)] = if from == 0 {
                    &[]
                } else {
                    &[("Range", &range), ("If-Range", &etag)]
                };
                let resumes = |r: &http_client::Response| {
                    if from == 0 {
                        (200..300).contains(&r.status)
                    } else {
                        r.status == 206
                            && r.header("content-range")
                                .is_some_and(|v| v.starts_with(&format!("bytes {from}-")))
                    }
                };
                http_client::request_streaming_download_with(
                    &target,
                    "GET",
                    &path,
                    headers,
                    resumes,
                    &mut writer,
                    &mut progress,
                )
                .await
                .map_err(|e| {
                    e.when_broken(|e| format!("download failed: {e}; removed the partial file"))
                })
            })
            .await;
        let (served_by, d) = match got {
            Ok(answer) => answer,
            Err(e) if received.get() == 0 => return finish(&bar, Err(e)),
            Err(e) => {
                // Broken after some bytes: resumed like a cut body.
                fruitless += 1;
                if fruitless >= conn.nodes().len() {
                    return finish(&bar, Err(e));
                }
                if !args.quiet {
                    eprintln!("{e}; resuming at byte {} on the next node", received.get());
                }
                from_node = next_node(&conn, &from_node);
                continue;
            }
        };
        let before = received.get() - d.bytes_written;
        if d.complete || !(200..300).contains(&d.response.status) {
            break (served_by, d);
        }
        if before > 0 && d.response.status != 206 {
            return finish(
                &bar,
                Err(CliError::failed(format!(
                    "node {served_by} answered {} instead of resuming at byte {before}; \
                     removed the partial file",
                    d.response.status
                ))),
            );
        }
        fruitless = if d.bytes_written == 0 {
            fruitless + 1
        } else {
            0
        };
        if fruitless >= conn.nodes().len() {
            break (served_by, d);
        }
        if !args.quiet {
            eprintln!(
                "the download from node {served_by} was cut at byte {} of {size}; resuming on \
                 the next node",
                received.get()
            );
        }
        from_node = next_node(&conn, &served_by);
    };
    let (node, d) = finish(&bar, Ok((node, d)))?;
    let header_sha = d.response.header("x-file-sha256").unwrap_or("").to_string();
    let written = received.get();
    let (expected, complete) = (
        d.expected_len.map(|n| n + written - d.bytes_written),
        d.complete,
    );
    check(&node, d.response)?;
    if !complete || expected.is_some_and(|e| e != written) {
        return Err(CliError::failed(format!(
            "the download was cut short: got {written} of {size} bytes (last from node \
             {node}); removed the partial file"
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

/// The node after `id` in the connection's order (where a cut download goes on).
fn next_node(conn: &Conn, id: &str) -> String {
    let nodes = conn.nodes_from(id);
    nodes
        .get(1)
        .or(nodes.first())
        .map_or_else(|| id.to_string(), |n| n.id.clone())
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

/// The `file ls` table: one line per file, names cut to 40 characters, SHA-256 to 12.
pub fn files_table(files: &[FileMeta]) -> String {
    const NAME_MAX: usize = 40;
    let name_width = files
        .iter()
        .map(|f| truncate(&f.name, NAME_MAX).chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!(
        "{:<32}  {:<name_width$}  {:>10}  {:>6}  {:<19}  {}\n",
        "ID", "NAME", "SIZE", "CHUNKS", "CREATED", "SHA256"
    );
    for f in files {
        out.push_str(&format!(
            "{:<32}  {:<name_width$}  {:>10}  {:>6}  {:<19}  {}\n",
            f.id,
            truncate(&f.name, NAME_MAX),
            human_bytes(f.size, false),
            f.chunk_count,
            utc(f.created_ms),
            f.sha256.get(..12).unwrap_or(&f.sha256)
        ));
    }
    out
}

async fn file_ls(args: FileLsArgs) -> Result<(), CliError> {
    let conn = Conn::open(&args.conn, Role::Read)?;
    let mut files: Vec<FileMeta> = Vec::new();
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
            Some(n) => conn.nodes_from(n),
            None => conn.nodes().to_vec(),
        };
        let (node, r) = conn.send_to(&nodes, "GET", &path, None).await?;
        let listed: FileList = json(&node, &r)?;
        files.extend(listed.files);
        pinned = Some(node);
        let next = listed.next_after;
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
    let conn = Conn::open(&args.conn, Role::Admin)?;
    let (node, r) = conn
        .send(
            "DELETE",
            &format!("/api/files/{}", percent_encode(&args.id)),
            None,
        )
        .await?;
    let deleted: FileDeleted = json(&node, &r)?;
    println!(
        "deleted file {} ({} chunk copies removed)",
        args.id, deleted.chunk_copies_removed
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
    }

    #[test]
    fn the_listing_cuts_long_names_and_hashes() {
        let file = FileMeta {
            id: "0123456789abcdef0123456789abcdef".into(),
            name: "n".repeat(50),
            size: 3 << 19,
            content_type: "application/octet-stream".into(),
            chunk_size: 1 << 20,
            chunk_count: 2,
            sha256: "ab".repeat(32),
            chunk_sha256: vec![],
            created_ms: 1_709_251_199_000,
        };
        let out = files_table(&[file]);
        let rows: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows[0],
            ["ID", "NAME", "SIZE", "CHUNKS", "CREATED", "SHA256"]
        );
        let name = format!("{}…", "n".repeat(39));
        assert_eq!(
            rows[1],
            [
                "0123456789abcdef0123456789abcdef",
                name.as_str(),
                "1.5",
                "MiB",
                "2",
                "2024-02-29",
                "23:59:59",
                "abababababab"
            ]
        );
    }
}
