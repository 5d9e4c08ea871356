//! The one way every CLI command reaches the cluster: the config's nodes tried in order, one API
//! key chosen by role, and one rule for when a node's answer (or its silence) sends the request
//! on to the next node. Writes move on only when nothing reached a node; reads also move on when
//! a node cannot serve them itself (its storage or Raft is unavailable, it rate-limits us) or
//! when its answer breaks off, so one dead Redis does not fail a read that the others can serve.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use rcluster_domain::config::{ClusterConfig, NodeConfig};
use rcluster_domain::node_config::Role;
use serde::de::DeserializeOwned;

use super::http_client::{self, Download, Response, StreamError, StreamTarget};
use super::CliError;
use crate::api::{ErrorBody, ErrorCode, ErrorDetail};
use crate::paths;

/// How long to wait for a TCP connection to a node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What may be sent to the next node after a node failed to serve a request, from least to
/// most: each level includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Retry {
    /// Only when the node could not be reached (nothing was sent): writes, which a node may
    /// have applied even when its answer never came.
    Unsent,
    /// Also when the node answered that it cannot serve the request itself (see
    /// [`cannot_serve`]): a read whose answer streams into a destination that a broken answer
    /// may already have touched.
    Refused,
    /// Also when the node's answer broke off or never came: reads with a buffered answer.
    Broken,
}

impl Retry {
    /// Reads may be repeated on another node; anything else is a write.
    pub fn for_method(method: &str) -> Retry {
        match method {
            "GET" | "HEAD" => Retry::Broken,
            _ => Retry::Unsent,
        }
    }
}

/// Error codes a node answers with when its own storage or Raft cannot serve a request, though
/// another node may: its Redis does not answer or failed (503 REDIS_UNAVAILABLE, 502
/// STORAGE_FAILED), is loading, busy or out of memory (503 NOT_READY, 507
/// INSUFFICIENT_STORAGE), Raft is not started (503 RAFT_NOT_READY).
const NODE_LOCAL_CODES: [ErrorCode; 5] = [
    ErrorCode::RedisUnavailable,
    ErrorCode::StorageFailed,
    ErrorCode::NotReady,
    ErrorCode::InsufficientStorage,
    ErrorCode::RaftNotReady,
];

/// The error an answer carries, if it is the API's error body.
fn error_of(r: &Response) -> Option<ErrorDetail> {
    serde_json::from_slice::<ErrorBody>(&r.body)
        .ok()
        .map(|b| b.error)
}

/// Whether an answer says this node cannot serve the request but another node may: it
/// rate-limits us (429), or its own storage or Raft is unavailable (a 5xx with one of
/// [`NODE_LOCAL_CODES`]).
pub fn cannot_serve(r: &Response) -> bool {
    r.status == 429
        || (r.status >= 500 && error_of(r).is_some_and(|e| NODE_LOCAL_CODES.contains(&e.code)))
}

/// Whether a node's answer sends a request with `retry` on to the next node.
fn skips_answer(retry: Retry, r: &Response) -> bool {
    retry >= Retry::Refused && cannot_serve(r)
}

/// Whether a node that gave no (complete) answer sends a request with `retry` on to the next
/// node: always when nothing was sent; after a broken exchange only for buffered reads.
fn skips_failure(retry: Retry, e: &StreamError) -> bool {
    match e {
        StreamError::Connect(_) => true,
        StreamError::Transfer(_) => retry >= Retry::Broken,
    }
}

/// An exchange's outcome that carries a response.
pub trait Answer {
    fn response(&self) -> &Response;
}

impl Answer for Response {
    fn response(&self) -> &Response {
        self
    }
}

impl Answer for Download {
    fn response(&self) -> &Response {
        &self.response
    }
}

/// A request body and its content type.
#[derive(Clone, Copy)]
pub struct Body<'a> {
    pub content_type: &'a str,
    pub bytes: &'a [u8],
}

impl<'a> Body<'a> {
    /// Raw bytes (a value to store).
    pub fn octets(bytes: &'a [u8]) -> Body<'a> {
        Body {
            content_type: "application/octet-stream",
            bytes,
        }
    }

    /// A JSON document.
    pub fn json(bytes: &'a [u8]) -> Body<'a> {
        Body {
            content_type: "application/json",
            bytes,
        }
    }
}

/// Where to send requests and with which key: the options every data command shares.
#[derive(Args, Debug)]
pub struct ConnArgs {
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

/// The API key to send: the one given, else `$RCLUSTER_API_KEY`, else the config's first key of
/// `role` (else its first key at all).
pub fn api_key(config: &ClusterConfig, given: Option<String>, role: Role) -> Option<String> {
    choose_key(
        config,
        given.or_else(|| std::env::var("RCLUSTER_API_KEY").ok()),
        role,
    )
}

fn choose_key(config: &ClusterConfig, given: Option<String>, role: Role) -> Option<String> {
    given.or_else(|| {
        let keys = &config.api.keys;
        keys.iter()
            .find(|k| k.role == role)
            .or(keys.first())
            .map(|k| k.key.clone())
    })
}

/// The config, the key to present, the nodes to try in order and how long a small exchange
/// may take.
pub struct Conn {
    pub config: ClusterConfig,
    key: Option<String>,
    nodes: Vec<NodeConfig>,
    timeout: Duration,
}

impl Conn {
    /// Every node of `config`, with the key for `role`; small exchanges are bounded by the API's
    /// request timeout plus 5 s.
    pub fn new(config: ClusterConfig, given_key: Option<String>, role: Role) -> Conn {
        let key = api_key(&config, given_key, role);
        let timeout = Duration::from_millis(config.api.request_timeout_ms.saturating_add(5_000));
        let nodes = config.nodes.clone();
        Conn {
            config,
            key,
            nodes,
            timeout,
        }
    }

    /// Loads the config of `args`; `role` picks the default key (admin for writes).
    pub fn open(args: &ConnArgs, role: Role) -> Result<Conn, CliError> {
        let config = paths::read_config(&args.config)?;
        let conn = Conn::new(config, args.api_key.clone(), role);
        match &args.node {
            Some(id) => conn.only(id, &args.config),
            None => Ok(conn),
        }
    }

    /// Only node `id` of the config (named in errors by `path`).
    fn only(mut self, id: &str, path: &std::path::Path) -> Result<Conn, CliError> {
        let Some(node) = self.config.node(id).cloned() else {
            let ids: Vec<&str> = self.config.nodes.iter().map(|n| n.id.as_str()).collect();
            return Err(CliError::input(format!(
                "no node '{id}' in {} (nodes: {})",
                path.display(),
                ids.join(", ")
            )));
        };
        self.nodes = vec![node];
        Ok(self)
    }

    /// Bounds every small exchange by `timeout` instead.
    pub fn with_timeout(mut self, timeout: Duration) -> Conn {
        self.timeout = timeout;
        self
    }

    /// The nodes tried, in order.
    pub fn nodes(&self) -> &[NodeConfig] {
        &self.nodes
    }

    /// The nodes to try, starting with `first` (the node that answered before).
    pub fn nodes_from(&self, first: &str) -> Vec<NodeConfig> {
        let mut nodes = self.nodes.clone();
        if let Some(i) = nodes.iter().position(|n| n.id == first) {
            nodes.rotate_left(i);
        }
        nodes
    }

    /// Bound on a file transfer.
    pub fn file_timeout(&self) -> Duration {
        Duration::from_millis(self.config.files.transfer_timeout_ms.saturating_add(5_000))
    }

    /// Where one exchange with `node` goes, bounded by `transfer`.
    pub fn target<'a>(&'a self, node: &'a NodeConfig, transfer: Duration) -> StreamTarget<'a> {
        StreamTarget {
            host: &node.host,
            port: node.http_port,
            api_key: self.key.as_deref(),
            connect_timeout: CONNECT_TIMEOUT,
            transfer_timeout: transfer,
        }
    }

    /// Runs `attempt` on each of `nodes` in turn until one gives an answer to take (see
    /// [`Retry`]); returns that node's id and its answer, whatever its status. A broken exchange
    /// that may not be repeated fails at once. When every node failed, the error names each
    /// one's failure (a single node's refusal is returned as it is).
    pub async fn failover<T: Answer>(
        &self,
        nodes: &[NodeConfig],
        retry: Retry,
        mut attempt: impl AsyncFnMut(&NodeConfig) -> Result<T, StreamError>,
    ) -> Result<(String, T), CliError> {
        let mut failures = Vec::new();
        let mut refusals = Vec::new();
        let mut reached = false;
        for node in nodes {
            match attempt(node).await {
                Ok(answer) if skips_answer(retry, answer.response()) => {
                    let e = refusal(&node.id, answer.response());
                    failures.push(e.message.clone());
                    refusals.push(e);
                    reached = true;
                }
                Ok(answer) => return Ok((node.id.clone(), answer)),
                Err(e) if skips_failure(retry, &e) => {
                    reached |= matches!(e, StreamError::Transfer(_));
                    failures.push(format!("{}: {e}", node.id));
                }
                Err(e) => return Err(CliError::failed(format!("node {}: {e}", node.id))),
            }
        }
        if failures.len() == 1 && refusals.len() == 1 {
            return Err(refusals.remove(0));
        }
        let all = failures.join("; ");
        Err(CliError::failed(if reached {
            format!("no node could serve the request: {all}")
        } else {
            format!("no node could be reached: {all}")
        }))
    }

    /// One small request (body buffered both ways) to the first of `nodes` that serves it;
    /// returns that node's id and its answer, whatever the status.
    pub async fn exchange(
        &self,
        nodes: &[NodeConfig],
        method: &str,
        path: &str,
        body: Option<Body<'_>>,
    ) -> Result<(String, Response), CliError> {
        self.failover(
            nodes,
            Retry::for_method(method),
            async |node: &NodeConfig| {
                let target = self.target(node, self.timeout);
                match body {
                    Some(body) => {
                        http_client::request_streaming_upload(
                            &target,
                            method,
                            path,
                            body.content_type,
                            body.bytes.len() as u64,
                            body.bytes,
                            |_| {},
                        )
                        .await
                    }
                    None => {
                        let mut out = Vec::new();
                        let d = http_client::request_streaming_download(
                            &target,
                            method,
                            path,
                            &mut out,
                            |_| {},
                        )
                        .await?;
                        if !d.complete {
                            return Err(StreamError::Transfer(format!(
                                "the answer was cut short after {} bytes",
                                d.bytes_written + d.response.body.len() as u64
                            )));
                        }
                        let mut response = d.response;
                        if d.bytes_written > 0 {
                            response.body = out;
                        }
                        Ok(response)
                    }
                }
            },
        )
        .await
    }

    /// Like [`Conn::exchange`] on `nodes`, failing on a non-2xx answer.
    pub async fn send_to(
        &self,
        nodes: &[NodeConfig],
        method: &str,
        path: &str,
        body: Option<Body<'_>>,
    ) -> Result<(String, Response), CliError> {
        let (node, r) = self.exchange(nodes, method, path, body).await?;
        check(&node, r).map(|r| (node, r))
    }

    /// Like [`Conn::send_to`] on this connection's nodes.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Body<'_>>,
    ) -> Result<(String, Response), CliError> {
        self.send_to(&self.nodes, method, path, body).await
    }

    /// `GET path` on this connection's nodes, its 2xx JSON answer parsed as `T`.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<(String, T), CliError> {
        let (node, r) = self.send("GET", path, None).await?;
        let value = json(&node, &r)?;
        Ok((node, value))
    }
}

/// The error for a non-2xx answer: the server's message, with the exit code of its class (4xx:
/// bad input, except 408 and 429; else failure).
fn refusal(node: &str, r: &Response) -> CliError {
    let said = match error_of(r) {
        Some(e) => format!(" {}: {}", e.code, e.message),
        None if r.body.is_empty() => String::new(),
        None => format!(": {}", super::text::truncate(r.text().trim(), 500)),
    };
    let mut text = format!("node {node} answered {}{said}", r.status);
    match r.status {
        401 | 403 => {
            text.push_str(" (pass --api-key or set RCLUSTER_API_KEY)");
            CliError::input(text)
        }
        408 | 429 => {
            if let Some(s) = r.header("retry-after") {
                text.push_str(&format!(" (retry after {s} s)"));
            }
            CliError::failed(text)
        }
        400..=499 => CliError::input(text),
        _ => CliError::failed(text),
    }
}

/// Passes a 2xx answer; turns any other into the error [`refusal`] describes.
pub fn check(node: &str, r: Response) -> Result<Response, CliError> {
    if (200..300).contains(&r.status) {
        Ok(r)
    } else {
        Err(refusal(node, &r))
    }
}

/// A JSON answer of `node` parsed as `T`.
pub fn json<T: DeserializeOwned>(node: &str, r: &Response) -> Result<T, CliError> {
    serde_json::from_slice(&r.body)
        .map_err(|e| CliError::failed(format!("node {node} sent an unexpected answer: {e}")))
}

#[cfg(test)]
mod tests {
    use rcluster_domain::node_config::ApiKey;

    use super::*;

    fn r(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    fn coded(status: u16, code: &str) -> Response {
        r(
            status,
            &format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#),
        )
    }

    #[test]
    fn an_unreachable_node_is_skipped_by_reads_and_writes() {
        let e = StreamError::Connect("refused".into());
        for retry in [Retry::Unsent, Retry::Refused, Retry::Broken] {
            assert!(skips_failure(retry, &e), "{retry:?}");
        }
    }

    #[test]
    fn a_broken_answer_moves_buffered_reads_on_and_stops_writes_and_streams() {
        let e = StreamError::Transfer("no answer within 3s".into());
        assert!(skips_failure(Retry::Broken, &e));
        assert!(!skips_failure(Retry::Refused, &e));
        assert!(!skips_failure(Retry::Unsent, &e));
        assert_eq!(Retry::for_method("GET"), Retry::Broken);
        for write in ["PUT", "POST", "DELETE"] {
            assert_eq!(Retry::for_method(write), Retry::Unsent);
        }
    }

    #[test]
    fn reads_move_on_when_a_node_cannot_serve_them_itself() {
        for answer in [
            coded(503, "REDIS_UNAVAILABLE"),
            coded(502, "STORAGE_FAILED"),
            coded(503, "NOT_READY"),
            coded(503, "RAFT_NOT_READY"),
            coded(507, "INSUFFICIENT_STORAGE"),
            r(429, "{}"),
        ] {
            assert!(skips_answer(Retry::Broken, &answer), "{answer:?}");
            assert!(skips_answer(Retry::Refused, &answer), "{answer:?}");
            // A write may have been applied: its answer is final.
            assert!(!skips_answer(Retry::Unsent, &answer), "{answer:?}");
        }
    }

    #[test]
    fn answers_about_the_request_or_the_cluster_are_final() {
        for answer in [
            r(200, "v"),
            r(204, ""),
            coded(404, "NOT_FOUND"),
            coded(400, "BAD_REQUEST"),
            coded(401, "UNAUTHORIZED"),
            coded(403, "FORBIDDEN"),
            // No quorum is the cluster's state, not this node's alone.
            coded(503, "NO_QUORUM"),
            coded(500, "INTERNAL"),
            r(503, "down"),
        ] {
            assert!(!skips_answer(Retry::Broken, &answer), "{answer:?}");
        }
    }

    /// Runs `failover` over n1..n3 of the shipped config, each node giving the outcome listed
    /// for it; returns the node taken (or the error) and the nodes asked.
    fn run_failover(
        retry: Retry,
        outcomes: Vec<Result<Response, StreamError>>,
    ) -> (Result<String, CliError>, Vec<String>) {
        let config = rcluster_domain::config::parse(include_str!("../../../config/cluster.yaml"))
            .expect("the shipped config parses");
        let conn = Conn::new(config, Some("k".into()), Role::Read);
        let mut outcomes = outcomes.into_iter();
        let mut asked = Vec::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let taken = runtime.block_on(conn.failover(conn.nodes(), retry, async |n| {
            asked.push(n.id.clone());
            outcomes.next().expect("an outcome per node asked")
        }));
        (taken.map(|(node, _)| node), asked)
    }

    #[test]
    fn failover_takes_the_first_node_that_serves() {
        let down = || Err(StreamError::Connect("refused".into()));
        let outcomes = || vec![down(), Ok(coded(503, "REDIS_UNAVAILABLE")), Ok(r(200, "v"))];
        let (taken, asked) = run_failover(Retry::Broken, outcomes());
        assert_eq!(taken.expect("n3 serves"), "n3");
        assert_eq!(asked, ["n1", "n2", "n3"]);
        // A write takes n2's answer: n2 may have acted on it.
        let (taken, asked) = run_failover(Retry::Unsent, outcomes());
        assert_eq!(taken.expect("n2 answered"), "n2");
        assert_eq!(asked, ["n1", "n2"]);
        // A write whose exchange broke is not sent again.
        let broken = vec![Err(StreamError::Transfer("reset".into()))];
        let (taken, asked) = run_failover(Retry::Unsent, broken);
        let e = taken.expect_err("stops at n1");
        assert!(
            !e.bad_input && e.message.starts_with("node n1: reset"),
            "{e}"
        );
        assert_eq!(asked, ["n1"]);
    }

    #[test]
    fn failover_names_every_failure_when_no_node_serves() {
        let (taken, _) = run_failover(
            Retry::Broken,
            (0..3)
                .map(|_| Err(StreamError::Connect("refused".into())))
                .collect(),
        );
        let e = taken.expect_err("none reachable");
        assert_eq!(
            e.message,
            "no node could be reached: n1: refused; n2: refused; n3: refused"
        );
        let (taken, _) = run_failover(
            Retry::Broken,
            vec![
                Err(StreamError::Connect("refused".into())),
                Err(StreamError::Transfer("no answer within 3s".into())),
                Ok(coded(503, "NOT_READY")),
            ],
        );
        let e = taken.expect_err("none served");
        assert!(!e.bad_input, "{e}");
        assert!(
            e.message
                .starts_with("no node could serve the request: n1: refused; n2: no answer")
                && e.message.ends_with("node n3 answered 503 NOT_READY: m"),
            "{e}"
        );
    }

    #[test]
    fn errors_keep_the_server_message_and_class() {
        let e = check(
            "n1",
            r(
                404,
                r#"{"error":{"code":"NOT_FOUND","message":"no file 'x'"}}"#,
            ),
        )
        .unwrap_err();
        assert!(e.bad_input && e.message.contains("no file 'x'"), "{e}");
        assert!(
            e.message.starts_with("node n1 answered 404 NOT_FOUND"),
            "{e}"
        );
        assert!(!check("n1", r(503, "down")).unwrap_err().bad_input);
        assert!(!check("n1", r(429, "{}")).unwrap_err().bad_input);
        assert!(check("n1", r(403, "")).unwrap_err().bad_input);
        assert!(check("n1", r(201, "{}")).is_ok());
    }

    fn config(keys: &[(&str, Role)]) -> ClusterConfig {
        let mut c = rcluster_domain::config::parse(include_str!("../../../config/cluster.yaml"))
            .expect("the shipped config parses");
        c.api.keys = keys
            .iter()
            .map(|(k, role)| ApiKey {
                name: format!("{k}-name"),
                key: k.to_string(),
                role: *role,
            })
            .collect();
        c
    }

    #[test]
    fn the_key_given_wins_else_the_first_of_the_role_else_the_first() {
        let c = config(&[("r1", Role::Read), ("a1", Role::Admin), ("a2", Role::Admin)]);
        assert_eq!(
            choose_key(&c, Some("g".into()), Role::Admin).as_deref(),
            Some("g")
        );
        assert_eq!(choose_key(&c, None, Role::Admin).as_deref(), Some("a1"));
        assert_eq!(choose_key(&c, None, Role::Read).as_deref(), Some("r1"));
        let admins_only = config(&[("a1", Role::Admin)]);
        assert_eq!(
            choose_key(&admins_only, None, Role::Read).as_deref(),
            Some("a1")
        );
        assert_eq!(choose_key(&config(&[]), None, Role::Read), None);
    }
}
