//! Shutdown: SIGTERM and SIGINT both stop accepting and drain in-flight requests for up to the
//! configured grace period, then the process exits 0. Pingora's own graceful path sleeps for a
//! fixed period instead of waiting for requests; [`drain_then_exit`] ends that sleep as soon as
//! the last request is done.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{SignalKind, signal};

/// Counts requests in progress across all listeners.
#[derive(Clone, Debug, Default)]
pub struct InFlight(Arc<AtomicUsize>);

/// One request in progress; dropping it ends the request.
#[derive(Debug)]
pub struct InFlightGuard(Arc<AtomicUsize>);

impl InFlight {
    /// Marks a request as started.
    pub fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.0.clone())
    }

    /// Requests in progress now.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Maps both SIGTERM and SIGINT to a graceful stop (pingora treats SIGINT as an immediate one).
pub struct GracefulSignals;

#[async_trait]
impl ShutdownSignalWatch for GracefulSignals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; stopping now");
            return ShutdownSignal::FastShutdown;
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = name,
            "stopping: no new connections, draining requests"
        );
        ShutdownSignal::GracefulTerminate
    }
}

/// Waits (on its own thread) for pingora to enter its grace period, then exits the process as
/// soon as no request is in flight, or when `grace` runs out.
pub fn drain_then_exit(
    mut phases: tokio::sync::broadcast::Receiver<ExecutionPhase>,
    in_flight: InFlight,
    grace: Duration,
    before_exit: Box<dyn FnOnce() + Send>,
) {
    std::thread::spawn(move || {
        loop {
            match phases.blocking_recv() {
                Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
        let deadline = Instant::now() + grace;
        while in_flight.count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        match in_flight.count() {
            0 => tracing::info!("drained; exiting"),
            n => {
                tracing::warn!(requests = n, grace = ?grace, "grace period over; exiting with requests in flight")
            }
        }
        before_exit();
        std::process::exit(0);
    });
}
