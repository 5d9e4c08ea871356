//! The HTTP connections a node serves, each with a handle a handler can limit it by: the
//! listener wraps every accepted socket, and a download arms a stall limit on its connection
//! (a client that accepts no byte for that long has its connection cut, which frees the
//! download's slot) or cuts it at once when its time is up. Hyper stops polling a response body
//! while the socket does not take bytes, so only the socket itself can notice a stalled reader.
//! Handlers find their connection by the client's address (`ConnectInfo`).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

/// What a handler may do to its connection.
#[derive(Default)]
pub struct Control {
    /// A write that stays pending this long cuts the connection (0: no limit).
    stall_ms: AtomicU64,
    cut: AtomicBool,
    /// The task waiting on a pending write, woken by [`Control::cut`].
    waker: Mutex<Option<Waker>>,
    /// Called once when the stall limit cuts the connection.
    on_stall: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Control {
    /// From now on, a client that accepts no byte for `limit` has its connection cut; `on_stall`
    /// runs when that happens.
    pub fn limit_stalls(&self, limit: Duration, on_stall: impl FnOnce() + Send + 'static) {
        *self.on_stall.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(on_stall));
        let ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX).max(1);
        self.stall_ms.store(ms, Ordering::Relaxed);
    }

    /// Cuts the connection now (its next read or write fails).
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
        if let Some(w) = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take() {
            w.wake();
        }
    }

    fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Relaxed)
    }

    fn stall_limit(&self) -> Option<Duration> {
        match self.stall_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    fn stalled(&self) {
        self.cut.store(true, Ordering::Relaxed);
        let on_stall = self
            .on_stall
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(f) = on_stall {
            f();
        }
    }
}

/// The connections being served, by client address.
#[derive(Clone, Default)]
pub struct Conns(Arc<Mutex<HashMap<SocketAddr, Weak<Control>>>>);

impl Conns {
    /// The connection of the client at `addr`, while it is open.
    pub fn get(&self, addr: &SocketAddr) -> Option<Arc<Control>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(addr)
            .and_then(Weak::upgrade)
    }

    fn add(&self, addr: SocketAddr) -> Arc<Control> {
        let control = Arc::new(Control::default());
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(addr, Arc::downgrade(&control));
        control
    }

    fn remove(&self, addr: &SocketAddr) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(addr);
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The node's HTTP listener: every connection it accepts is registered in `conns`.
pub struct Listener {
    inner: TcpListener,
    conns: Conns,
}

impl Listener {
    pub fn new(inner: TcpListener, conns: Conns) -> Listener {
        Listener { inner, conns }
    }
}

impl axum::serve::Listener for Listener {
    type Io = Guarded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Guarded, SocketAddr) {
        // axum's own accept loop: it retries (and backs off) on accept errors.
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let _ = io.set_nodelay(true);
        let control = self.conns.add(addr);
        let io = Guarded {
            inner: io,
            control,
            stall: None,
            conns: self.conns.clone(),
            addr,
        };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One accepted connection, with its limits.
pub struct Guarded {
    inner: TcpStream,
    control: Arc<Control>,
    /// Started when a write went pending under a stall limit; cleared by any progress.
    stall: Option<Pin<Box<Sleep>>>,
    conns: Conns,
    addr: SocketAddr,
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.conns.remove(&self.addr);
    }
}

fn cut_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection cut by the server",
    )
}

impl Guarded {
    /// A write that made no progress: keeps waiting, or fails once the stall limit passed.
    fn pending_write<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        *self.control.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
        if self.control.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        let Some(limit) = self.control.stall_limit() else {
            return Poll::Pending;
        };
        let timer = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_ready() {
            self.control.stalled();
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client accepted no bytes within the stall limit",
            )));
        }
        Poll::Pending
    }

    fn wrote<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Pending => self.pending_write(cx),
            ready => {
                self.stall = None;
                ready
            }
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.control.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.control.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.control.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.control.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.wrote(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair(conns: &Conns) -> (Guarded, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut listener = Listener::new(listener, conns.clone());
        let client = TcpStream::connect(addr);
        let (accepted, client) = tokio::join!(axum::serve::Listener::accept(&mut listener), client);
        (accepted.0, client.expect("connect"))
    }

    #[tokio::test]
    async fn a_reader_that_stalls_is_cut_after_the_limit_and_counted() {
        let conns = Conns::default();
        let (mut server, client) = pair(&conns).await;
        let addr = client.local_addr().expect("client addr");
        let control = conns.get(&addr).expect("registered by client address");
        let (tx, rx) = std::sync::mpsc::channel();
        control.limit_stalls(Duration::from_millis(200), move || {
            let _ = tx.send(());
        });
        // The client never reads: the socket buffers fill, then writes stall and fail.
        let block = vec![7u8; 1 << 20];
        let error = loop {
            if let Err(e) = server.write_all(&block).await {
                break e;
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        rx.try_recv().expect("the stall was reported");
        drop(server);
        assert!(
            conns.get(&addr).is_none(),
            "a closed connection is forgotten"
        );
        drop(client);
    }

    #[tokio::test]
    async fn a_reader_that_keeps_reading_is_not_cut_and_a_cut_wakes_a_pending_write() {
        let conns = Conns::default();
        let (mut server, mut client) = pair(&conns).await;
        let control = conns
            .get(&client.local_addr().expect("addr"))
            .expect("registered");
        control.limit_stalls(Duration::from_millis(300), || {});
        let reader = tokio::spawn(async move {
            let mut got = 0usize;
            let mut buf = vec![0u8; 64 << 10];
            // Slow, but never silent for 300 ms.
            while got < 16 << 20 {
                let n = client.read(&mut buf).await.expect("read");
                got += n;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            client
        });
        let block = vec![1u8; 1 << 20];
        for _ in 0..16 {
            server.write_all(&block).await.expect("not cut");
        }
        let _client = reader.await.expect("reader");
        // Nobody reads now: a write goes pending, and cut() ends it at once.
        let cutter = control.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            cutter.cut();
        });
        control.limit_stalls(Duration::from_secs(3600), || {});
        let error = loop {
            if let Err(e) = server.write_all(&block).await {
                break e;
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted);
    }
}
