//! Waiting on the gateway's runtime from synchronous callers without entering it.

use std::future::Future;
use std::io::Read;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `fut` on the current thread, parking between polls. Meant for futures that are
/// completed by another runtime (channel receivers), so it never needs a runtime context and
/// never panics inside one.
pub(crate) fn park_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// Chunks of a response body produced by a task on the gateway's runtime.
pub(crate) type Chunks = tokio::sync::mpsc::Receiver<Result<bytes::Bytes, String>>;

/// A blocking [`Read`] over [`Chunks`]. Dropping it stops the transfer.
pub(crate) struct BlockingBody {
    rx: Chunks,
    buf: bytes::Bytes,
    done: bool,
}

impl BlockingBody {
    pub fn new(rx: Chunks) -> Self {
        BlockingBody {
            rx,
            buf: bytes::Bytes::new(),
            done: false,
        }
    }
}

impl Read for BlockingBody {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.buf.is_empty() {
            if self.done {
                return Ok(0);
            }
            match park_on(self.rx.recv()) {
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => {
                    self.done = true;
                    return Err(std::io::Error::other(e));
                }
                None => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        let _ = self.buf.split_to(n);
        Ok(n)
    }
}
