//! Work that mostly waits on storage, several items at once: transfers of files
//! to, from and within checkpoint storage, and the restores of a deployment's tasks.

use crate::error::{Error, Result};

/// Files moved at once (per RocksDB instance, per savepoint being written).
pub const TRANSFERS: usize = 4;

/// `each(item)` for every item, on up to [`TRANSFERS`] threads; the results
/// in the items' order, or the first error met (the rest are not started).
pub fn each_at_once<T: Sync, R: Send>(
    items: &[T],
    each: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    each_on_threads(TRANSFERS, items, each)
}

/// [`each_at_once`] on up to `threads` threads.
pub fn each_on_threads<T: Sync, R: Send>(
    threads: usize,
    items: &[T],
    each: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let results = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(items.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    while !failed.load(std::sync::atomic::Ordering::Relaxed) {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            break;
                        };
                        let result = each(item);
                        if result.is_err() {
                            failed.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        done.push((i, result));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().map_err(|_| {
                    Error::Internal("a thread working through items at once panicked".into())
                })
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let mut results: Vec<(usize, Result<R>)> = results.into_iter().flatten().collect();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_the_items_order_and_an_error_stops_the_rest() {
        let items: Vec<u32> = (0..100).collect();
        let doubled = each_at_once(&items, |i| Ok(i * 2)).unwrap();
        assert_eq!(doubled, (0..100).map(|i| i * 2).collect::<Vec<_>>());
        let started = std::sync::atomic::AtomicUsize::new(0);
        let err = each_at_once(&items, |i| {
            started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if *i == 3 {
                return Err(Error::Internal("file 3".into()));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
            Ok(*i)
        })
        .unwrap_err();
        assert!(err.to_string().contains("file 3"), "{err}");
        assert!(started.into_inner() < 100, "the rest were not started");
    }
}
