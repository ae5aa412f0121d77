//! An axum router served on its own thread and current-thread runtime, stopped on drop: the
//! engine's loop stays synchronous while HTTP runs beside it.

use std::net::SocketAddr;

use axum::Router;

/// A router being served in the background.
pub struct BackgroundServer {
    pub address: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundServer {
    /// Serves `router` on `listener` until dropped.
    pub fn start(
        listener: std::net::TcpListener,
        router: Router,
        name: &str,
    ) -> std::io::Result<BackgroundServer> {
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!(%error, "Cannot start the HTTP runtime.");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            tracing::error!(%error, "Cannot use the HTTP listener.");
                            return;
                        }
                    };
                    let served = axum::serve(listener, router).with_graceful_shutdown(async {
                        let _ = stop.await;
                    });
                    if let Err(error) = served.await {
                        tracing::error!(%error, "HTTP server stopped.");
                    }
                });
            })?;
        Ok(BackgroundServer {
            address,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
