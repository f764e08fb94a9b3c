//! The endpoint's connections, held against hostile clients: at most
//! [`MAX_CONNECTIONS`] at once, and when one more comes, the one that made
//! progress least lately (read or wrote a byte) is closed to make room, so
//! that thousands of idle connections never keep a scraper out; a
//! connection that makes no progress for the idle time (a client that
//! stopped reading its answer, a half-open one) is closed too.
use std::{
    collections::HashMap,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::Notify,
    time::Instant,
};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 512;

/// One connection's progress and its way to be told to close.
#[derive(Debug)]
pub struct Conn {
    /// Milliseconds since the registry's start at its last progress.
    progress_ms: AtomicU64,
    close: Notify,
    start: Instant,
}

impl Conn {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn progressed(&self) {
        self.progress_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Resolves when the registry closed the connection to make room.
    pub async fn evicted(&self) {
        self.close.notified().await;
    }

    /// Resolves once the connection made no progress for `idle`.
    pub async fn idle(&self, idle: Duration) {
        loop {
            let last = self.progress_ms.load(Ordering::Relaxed);
            let deadline = self.start + Duration::from_millis(last) + idle;
            tokio::time::sleep_until(deadline).await;
            if self.progress_ms.load(Ordering::Relaxed) == last {
                return;
            }
        }
    }
}

/// The open connections.
#[derive(Debug)]
pub struct Registry {
    start: Instant,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    next: u64,
    conns: HashMap<u64, Arc<Conn>>,
}

/// A connection's place in the registry, given up when dropped.
pub struct Admitted {
    pub conn: Arc<Conn>,
    id: u64,
    registry: Arc<Registry>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.registry.lock().conns.remove(&self.id);
    }
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            open: Mutex::new(Open::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes in a new connection; returns it and whether an older one was
    /// closed to make room.
    pub fn admit(self: &Arc<Self>) -> (Admitted, bool) {
        let mut open = self.lock();
        let mut evicted = false;
        if open.conns.len() >= MAX_CONNECTIONS {
            let stalest = open
                .conns
                .iter()
                .min_by_key(|(_, c)| c.progress_ms.load(Ordering::Relaxed))
                .map(|(&id, _)| id);
            if let Some(conn) = stalest.and_then(|id| open.conns.remove(&id)) {
                // Stored if the task is not waiting yet: it closes at once.
                conn.close.notify_one();
                evicted = true;
            }
        }
        let conn = Arc::new(Conn {
            progress_ms: AtomicU64::new(0),
            close: Notify::new(),
            start: self.start,
        });
        conn.progressed();
        let id = open.next;
        open.next += 1;
        open.conns.insert(id, Arc::clone(&conn));
        let admitted = Admitted {
            conn,
            id,
            registry: Arc::clone(self),
        };
        (admitted, evicted)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().conns.len()
    }
}

/// A socket whose reads and writes mark its connection's progress.
pub struct Tracked<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, conn: Arc<Conn>) -> Self {
        Self { inner, conn }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.progressed();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.progressed();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.progressed();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_connection_idle_longest_makes_room() {
        let registry = Registry::new();
        let mut admitted = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            tokio::time::advance(Duration::from_millis(2)).await;
            admitted.push(registry.admit().0);
        }
        // The first connection made progress since: the second goes.
        tokio::time::advance(Duration::from_millis(2)).await;
        admitted[0].conn.progressed();
        let (_new, evicted) = registry.admit();
        assert!(evicted);
        assert_eq!(registry.len(), MAX_CONNECTIONS);
        tokio::time::timeout(Duration::from_millis(1), admitted[1].conn.evicted())
            .await
            .expect("the second connection is told to close");
        // A closed connection gives up its place: ten kept (the evicted
        // second among them) and the new one.
        admitted.truncate(10);
        assert_eq!(registry.len(), 10);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_connection_without_progress_goes_idle() {
        let registry = Registry::new();
        let (admitted, _) = registry.admit();
        let conn = Arc::clone(&admitted.conn);
        let waiting = tokio::spawn(async move { conn.idle(Duration::from_secs(30)).await });
        tokio::time::advance(Duration::from_secs(20)).await;
        admitted.conn.progressed();
        tokio::time::advance(Duration::from_secs(20)).await;
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "progress 20 s ago");
        tokio::time::advance(Duration::from_secs(11)).await;
        waiting.await.expect("idle after 30 s without progress");
    }
}
