//! The key commands: `rcluster put|get|del` store, print and delete one key's value through a
//! node's HTTP API (`/api/kv/{key}`), with an optional write or read quorum (a warning on
//! standard error when it makes w + r <= n with the config's other quorum).

use std::io::{Read, Write};

use clap::Args;
use rcluster_domain::node_config::Role;

use super::conn::{Body, Conn, ConnArgs};
use super::{CliError, EXIT_CODES};
use crate::api::Quorum;
use crate::client::percent_encode;

/// `rcluster put`.
#[derive(Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct PutArgs {
    /// The key.
    pub key: String,
    /// The value; `-` reads it from standard input (raw bytes).
    #[arg(allow_hyphen_values = true)]
    pub value: String,
    /// Write quorum: acknowledgements needed (default: the config's quorum.w; warns when
    /// w + r <= n).
    #[arg(short = 'w', long = "write-quorum", value_name = "N",
          value_parser = clap::value_parser!(u8).range(1..))]
    pub w: Option<u8>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `rcluster get`.
#[derive(Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct GetArgs {
    /// The key.
    pub key: String,
    /// Read quorum: replies needed (default: the config's quorum.r; warns when w + r <= n).
    #[arg(short = 'r', long = "read-quorum", value_name = "N",
          value_parser = clap::value_parser!(u8).range(1..))]
    pub r: Option<u8>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `rcluster del`.
#[derive(Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct DelArgs {
    /// The key.
    pub key: String,
    /// Write quorum: acknowledgements needed (default: the config's quorum.w; warns when
    /// w + r <= n).
    #[arg(short = 'w', long = "write-quorum", value_name = "N",
          value_parser = clap::value_parser!(u8).range(1..))]
    pub w: Option<u8>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

fn check_key(key: &str) -> Result<(), CliError> {
    if key.is_empty() {
        return Err(CliError::input("the key must not be empty"));
    }
    Ok(())
}

/// Warns (on standard error) when a request's own write or read quorum, with the config's
/// other one, lets reads miss acknowledged writes.
fn warn_weak_quorum(conn: &Conn, w: Option<u8>, r: Option<u8>) {
    let q = conn.config.quorum;
    let request = Quorum {
        n: q.n,
        w: w.unwrap_or(q.w),
        r: r.unwrap_or(q.r),
    };
    if let Some(warning) = request.warning().filter(|_| w.or(r).is_some()) {
        eprintln!("warning: {warning}");
    }
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
    let conn = Conn::open(&args.conn, Role::Admin)?;
    warn_weak_quorum(&conn, args.w, None);
    let path = format!(
        "/api/kv/{}{}",
        percent_encode(&args.key),
        quorum_query("w", args.w)
    );
    conn.send("PUT", &path, Some(Body::octets(&value))).await?;
    println!("stored '{}' ({} bytes)", args.key, value.len());
    Ok(())
}

pub async fn get(args: GetArgs) -> Result<(), CliError> {
    check_key(&args.key)?;
    let conn = Conn::open(&args.conn, Role::Read)?;
    warn_weak_quorum(&conn, None, args.r);
    let path = format!(
        "/api/kv/{}{}",
        percent_encode(&args.key),
        quorum_query("r", args.r)
    );
    let (_, r) = conn.send("GET", &path, None).await?;
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
    let conn = Conn::open(&args.conn, Role::Admin)?;
    warn_weak_quorum(&conn, args.w, None);
    let path = format!(
        "/api/kv/{}{}",
        percent_encode(&args.key),
        quorum_query("w", args.w)
    );
    conn.send("DELETE", &path, None).await?;
    println!("deleted '{}'", args.key);
    Ok(())
}
