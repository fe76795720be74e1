//! One small read that many tasks need "as of now" at the same moment (the log's watermark for
//! every consumer woken by one commit, the live page's version for every viewer): each caller is
//! answered by a read that *began after it arrived*, so the answer is as fresh as a read of its
//! own, but callers waiting at the same moment share one read instead of each sending theirs.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

pub struct SharedRead<T> {
    /// How many reads have begun.
    begun: AtomicU64,
    /// One read at a time; callers queue here (fairly) and most find their answer waiting.
    running: tokio::sync::Mutex<()>,
    /// The last read to finish: which one it was, and its answer (`None`: it failed).
    last: Mutex<(u64, Option<T>)>,
}

impl<T> Default for SharedRead<T> {
    fn default() -> Self {
        Self {
            begun: AtomicU64::new(0),
            running: tokio::sync::Mutex::new(()),
            last: Mutex::new((0, None)),
        }
    }
}

impl<T: Clone> SharedRead<T> {
    /// The value as of some moment after this call began: from `read`, or from a read another
    /// caller began after this one arrived. `None` when that read failed (the reader logs why).
    /// A caller dropped mid-read leaves the next caller to read.
    pub async fn get<F, Fut>(&self, read: F) -> Option<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let arrived = self.begun.load(Ordering::SeqCst);
        let _turn = self.running.lock().await;
        {
            let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            if last.0 > arrived {
                return last.1.clone();
            }
        }
        let this = self.begun.fetch_add(1, Ordering::SeqCst) + 1;
        let value = read().await;
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = (this, value.clone());
        value
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn callers_at_the_same_moment_share_a_read_that_began_after_they_arrived() {
        let shared = Arc::new(SharedRead::<usize>::default());
        let reads = Arc::new(AtomicUsize::new(0));
        let read = |reads: Arc<AtomicUsize>| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some(reads.fetch_add(1, Ordering::SeqCst) + 1)
        };
        // The first read is under way; 50 callers arrive meanwhile.
        let first = {
            let (shared, reads) = (shared.clone(), reads.clone());
            tokio::spawn(async move { shared.get(|| read(reads)).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let waiting: Vec<_> = (0..50)
            .map(|_| {
                let (shared, reads) = (shared.clone(), reads.clone());
                tokio::spawn(async move { shared.get(|| read(reads)).await })
            })
            .collect();
        assert_eq!(first.await.ok().flatten(), Some(1));
        for caller in waiting {
            // Not the read that was under way when they arrived: the next one, shared.
            assert_eq!(caller.await.ok().flatten(), Some(2));
        }
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        // A caller arriving later gets a read of its own.
        assert_eq!(shared.get(|| read(reads.clone())).await, Some(3));
    }
}
