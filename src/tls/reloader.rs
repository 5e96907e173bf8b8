//! Hot reload of every PEM file the proxy uses. Triggers: a filesystem watch (notify) on the
//! directories holding the files, SIGHUP, and a periodic re-check as a safety net. Each trigger
//! re-reads every store; a store swaps only when its files' content changed and passes every
//! check (see `store`). Runs as a pingora background service.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::pem::CertSummary;
use super::store::{HasLeaf, Reload, Store};
use crate::config::{PemSource, ReloadSettings};
use crate::metrics::Metrics;

/// Quiet time after a filesystem event before reloading, so that a burst of writes (a file
/// written in pieces, a Kubernetes secret update) is read once, whole.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How often a store waiting for the other half of its pair is re-checked.
const SETTLE_POLL: Duration = Duration::from_millis(200);

/// Material the reloader can refresh.
pub trait Reloadable: Send + Sync {
    /// What it is, for logs.
    fn label(&self) -> &str;
    /// Where it reads from.
    fn sources(&self) -> &[PemSource];
    /// Re-reads the files; see [`Store::reload`].
    fn reload(&self, now: Instant, settle: Duration) -> Reload;
    /// The current certificate (leaf, or first CA), for logs.
    fn summary(&self) -> Option<CertSummary>;
    /// When a reload last applied new material, and the last failure since then.
    fn reload_status(&self) -> (Option<std::time::SystemTime>, Option<String>);
}

impl<T: HasLeaf + Send + Sync> Reloadable for Store<T> {
    fn label(&self) -> &str {
        Store::label(self)
    }

    fn sources(&self) -> &[PemSource] {
        Store::sources(self)
    }

    fn reload(&self, now: Instant, settle: Duration) -> Reload {
        Store::reload(self, now, settle)
    }

    fn summary(&self) -> Option<CertSummary> {
        Store::summary(self)
    }

    fn reload_status(&self) -> (Option<std::time::SystemTime>, Option<String>) {
        Store::reload_status(self)
    }
}

/// Watches and reloads a set of stores.
pub struct Reloader {
    stores: Vec<Arc<dyn Reloadable>>,
    settings: ReloadSettings,
    metrics: Arc<Metrics>,
}

impl Reloader {
    /// A reloader for `stores`, counting outcomes in `metrics`.
    pub fn new(
        stores: Vec<Arc<dyn Reloadable>>,
        settings: ReloadSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        // Every series exists from the start (dashboards and alerts see zeros, not "no data"),
        // and the start-up load counts as the last successful one.
        let now = unix_now();
        for store in &stores {
            set_expiry(&metrics, store.as_ref());
            for result in ["applied", "failed"] {
                metrics.reloads.with_label_values(&[store.label(), result]);
            }
            metrics
                .last_reload
                .with_label_values(&[store.label()])
                .set(now);
        }
        Self {
            stores,
            settings,
            metrics,
        }
    }

    /// Reloads every store once and logs what changed. Returns whether a store is waiting for
    /// the other half of its pair.
    pub fn reload_all(&self) -> bool {
        let now = Instant::now();
        let mut settling = false;
        for store in &self.stores {
            match store.reload(now, self.settings.settle) {
                Reload::Unchanged | Reload::StillFailing => {}
                // Not a reload (nothing new is served), but the error logged before is over.
                Reload::Restored => tracing::info!(
                    store = store.label(),
                    "files hold the served material again; the earlier reload error is cleared"
                ),
                Reload::Settling => {
                    settling = true;
                    tracing::debug!(
                        store = store.label(),
                        "key and certificate do not match yet; waiting for the pair to settle"
                    );
                }
                Reload::Applied => {
                    log_applied(store.as_ref());
                    self.metrics
                        .reloads
                        .with_label_values(&[store.label(), "applied"])
                        .inc();
                    self.metrics
                        .last_reload
                        .with_label_values(&[store.label()])
                        .set(unix_now());
                    set_expiry(&self.metrics, store.as_ref());
                }
                Reload::Failed(e) => {
                    self.metrics
                        .reloads
                        .with_label_values(&[store.label(), "failed"])
                        .inc();
                    tracing::error!(
                        store = store.label(),
                        error = %e,
                        "reload failed; still serving the last good material"
                    )
                }
            }
        }
        settling
    }

    /// Directories to watch: each file's own directory, and the directory of the file a symlink
    /// points to, so replacing either the link or its target is seen.
    fn watch_dirs(&self) -> BTreeSet<PathBuf> {
        let mut dirs = BTreeSet::new();
        let files = self
            .stores
            .iter()
            .flat_map(|s| s.sources())
            .filter_map(PemSource::path);
        for path in files {
            dirs.insert(parent(path));
            if let Ok(real) = std::fs::canonicalize(path) {
                dirs.insert(parent(&real));
            }
        }
        dirs
    }
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn set_expiry(metrics: &Metrics, store: &dyn Reloadable) {
    if let Some(s) = store.summary() {
        metrics
            .certificate_not_after
            .with_label_values(&[store.label()])
            .set(s.not_after_unix);
    }
}

fn list(sources: &[PemSource]) -> String {
    sources
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn log_applied(store: &dyn Reloadable) {
    match store.summary() {
        Some(s) => tracing::info!(
            store = store.label(),
            files = %list(store.sources()),
            subject = %s.subject,
            sans = ?s.sans,
            serial = %s.serial,
            not_after = %s.not_after,
            sha256 = %s.sha256,
            "reloaded"
        ),
        None => tracing::info!(store = store.label(), files = %list(store.sources()), "reloaded"),
    }
}

/// Whether a watch event can mean new content. Reads are not: the reloader's own reads of the
/// files it watches would otherwise trigger the next reload, about every debounce interval.
/// Closing a file that was open for writing is: it ends an in-place write.
fn may_change_files(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Keeps a notify watcher on the directories the stores need, adding any that appear later
/// (a directory that did not exist at start, a new symlink target).
struct DirWatch {
    watcher: Option<notify::RecommendedWatcher>,
    watched: BTreeSet<PathBuf>,
}

impl DirWatch {
    fn new(enabled: bool, events: mpsc::UnboundedSender<()>) -> Self {
        let watcher = enabled.then(|| {
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if res.is_ok_and(|event| may_change_files(&event.kind)) {
                    let _ = events.send(());
                }
            })
        });
        let watcher = match watcher {
            Some(Ok(w)) => Some(w),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot watch certificate files; relying on SIGHUP and the periodic check");
                None
            }
            None => None,
        };
        Self {
            watcher,
            watched: BTreeSet::new(),
        }
    }

    fn refresh(&mut self, wanted: BTreeSet<PathBuf>) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        for dir in wanted.difference(&self.watched.clone()) {
            match watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(dir.clone());
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory; relying on SIGHUP and the periodic check")
                }
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (tx, mut events) = mpsc::unbounded_channel();
        let mut dirs = DirWatch::new(self.settings.watch, tx);
        dirs.refresh(self.watch_dirs());
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP");
                None
            }
        };
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + self.settings.interval,
            self.settings.interval,
        );
        tracing::info!(
            sources = self.stores.iter().map(|s| s.sources().len()).sum::<usize>(),
            watch = self.settings.watch,
            interval = ?self.settings.interval,
            "certificate reloader running"
        );
        // Anything replaced between start-up and the watch being set up is caught here.
        let mut settling = self.reload_all();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = events.recv() => {
                    tokio::time::sleep(DEBOUNCE).await;
                    while events.try_recv().is_ok() {}
                }
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading certificates");
                }
                _ = tick.tick() => {}
                _ = tokio::time::sleep(SETTLE_POLL), if settling => {}
            }
            settling = self.reload_all();
            dirs.refresh(self.watch_dirs());
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RenameMode};

    #[test]
    fn reads_do_not_trigger_a_reload_but_writes_and_renames_do() {
        assert!(!may_change_files(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!may_change_files(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(may_change_files(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(may_change_files(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
        assert!(may_change_files(&EventKind::Create(CreateKind::File)));
        assert!(may_change_files(&EventKind::Remove(
            notify::event::RemoveKind::File
        )));
    }
}
