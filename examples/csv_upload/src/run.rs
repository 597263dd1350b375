//! Wiring: the app's services from a [`Config`], the web server and the worker.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use kosh_jobs::limits::QueueLimits;
use kosh_jobs::worker::WorkerStats;
use kosh_jobs::{AnyBackend, Client, Job, Worker};

use crate::backend::open_jobs;

/// Where the jobs dashboard is mounted, and its user name.
const ADMIN_PATH: &str = "/admin/jobs";
const ADMIN_USER: &str = "admin";
use crate::config::Config;
use crate::db;
use crate::import::{App, ImportCsv};
use crate::queueing::Queueing;
use crate::web::{self, Web};

/// The app database, the upload folder and the job store, opened.
#[derive(Clone)]
pub struct Services {
    /// What handlers share.
    pub app: App,
    /// The job store.
    pub backend: AnyBackend,
    /// The job client over it.
    pub jobs: Client,
    /// How an upload's import and its job are created (one transaction when the app's tables
    /// and the job store are one Postgres database).
    pub queueing: Queueing,
    /// The configuration they came from.
    pub config: Config,
    /// What `/metrics` serves, when metrics are on.
    pub metrics: Option<crate::metrics::Metrics>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Services {
    /// Opens everything `config` names.
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.upload_dir).with_context(|| {
            format!(
                "cannot create the upload folder {}",
                config.upload_dir.display()
            )
        })?;
        // Say where the data is (the binary makes relative paths absolute first, see
        // `config::base_dir`).
        for (what, path) in config.data_paths() {
            let path = std::path::absolute(&path).unwrap_or(path);
            tracing::info!(path = %path.display(), "data folder: {what}");
        }
        let pool = db::connect(&config.database_url)
            .await
            .with_context(|| "cannot open the app database (DATABASE_URL)".to_string())?;
        // Installed before the job client and workers exist: their metric handles are taken
        // from the recorder installed at that time.
        let metrics = if config.metrics {
            Some(crate::metrics::install()?)
        } else {
            None
        };
        let jobs = open_jobs(&config.jobs_url, config.jobs_prefix.as_deref()).await?;
        let queueing = Queueing::choose(
            &config.database_url,
            &config.jobs_url,
            &pool,
            jobs.postgres.as_ref(),
        );
        if queueing.is_one_transaction() {
            tracing::info!("the app's tables and the job queue share one Postgres database: each upload's import and its job are created in one transaction");
        }
        let backend = jobs.backend;
        Ok(Services {
            app: App {
                db: pool,
                upload_dir: config.upload_dir.clone(),
                batch_rows: config.batch_rows,
                row_delay: config.row_delay,
                default_date_order: config.date_order,
            },
            jobs: Client::new(backend.clone()),
            queueing,
            backend,
            config,
            metrics,
        })
    }

    /// The web app's router.
    pub fn router(&self) -> axum::Router {
        self.router_closing(kosh_jobs::CancellationToken::new())
    }

    /// The routes, with live streams that end when `closing` is cancelled (a graceful
    /// shutdown waits for open responses, and a page's event stream never ends by itself).
    fn router_closing(&self, closing: kosh_jobs::CancellationToken) -> axum::Router {
        let app = web::router(Web {
            app: self.app.clone(),
            jobs: self.jobs.clone(),
            queueing: self.queueing.clone(),
            max_upload_bytes: self.config.max_upload_bytes,
            metrics: self.metrics.clone(),
            closing,
        });
        match &self.config.admin_password {
            Some(password) => app.nest(
                ADMIN_PATH,
                kosh_jobs_web::router(
                    self.backend.clone(),
                    kosh_jobs_web::Options::new()
                        .title("csv_upload jobs")
                        .backend_url(&self.config.jobs_url)
                        .basic_auth(ADMIN_USER, password),
                ),
            ),
            None => app,
        }
    }

    /// A line for the start-up log about the dashboard: where it is, or how to turn it on.
    pub fn dashboard_status(&self) -> String {
        match self.config.admin_password {
            Some(_) => format!("jobs dashboard at {ADMIN_PATH} (user `{ADMIN_USER}`, password from ADMIN_PASSWORD)"),
            None => format!("jobs dashboard off: set ADMIN_PASSWORD to serve it at {ADMIN_PATH}"),
        }
    }

    /// Makes the import queue run at most one import per user at once (its jobs' group is
    /// their user, see [`crate::user`]), keeping any other limit the store has for it (an
    /// operator's concurrency or rate limit, set with `kosh-jobs queues limit`); logs the
    /// limits. Returns them.
    ///
    /// Every worker does this when it starts, so the store always has the limit. Read, then
    /// write: a limit an operator changes in between is overwritten with what was read.
    pub async fn limit_imports_per_user(&self) -> anyhow::Result<QueueLimits> {
        let queue = ImportCsv::QUEUE;
        let flows = self
            .jobs
            .queue_flows()
            .await
            .context("cannot read the queue limits of the job store")?;
        let before = flows
            .iter()
            .find(|f| f.queue == queue)
            .map(|f| f.limits)
            .unwrap_or_default();
        let limits = before.with_group_concurrency(1);
        if limits != before {
            self.jobs
                .set_queue_limits(queue, limits)
                .await
                .with_context(|| format!("cannot set the limits of the queue `{queue}`"))?;
        }
        tracing::info!(
            queue,
            concurrency = ?limits.concurrency,
            rate = ?limits.rate,
            "imports run one at a time per user (group concurrency 1)"
        );
        Ok(limits)
    }

    /// A worker running the import job, after [`Services::limit_imports_per_user`].
    pub async fn worker(&self, concurrency: usize) -> anyhow::Result<Worker<App>> {
        self.limit_imports_per_user().await?;
        let mut builder = Worker::builder(self.backend.clone())
            .state(self.app.clone())
            .register::<ImportCsv>()
            .concurrency(concurrency)
            .lease(self.config.lease);
        if self.metrics.is_some() && !self.config.metrics_sample.is_zero() {
            builder = builder.sample_metrics(self.config.metrics_sample);
        }
        Ok(builder.build()?)
    }

    /// Binds the web server (`addr`, or the configured address) and returns the address it
    /// listens on and the server, which runs until `shutdown`.
    pub async fn bind_web(
        &self,
        addr: Option<SocketAddr>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<(SocketAddr, impl Future<Output = std::io::Result<()>>)> {
        let addr = addr.unwrap_or(self.config.bind);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (BIND)"))?;
        let local = listener.local_addr()?;
        let closing = kosh_jobs::CancellationToken::new();
        let router = self.router_closing(closing.clone());
        let server = axum::serve(listener, router).with_graceful_shutdown(async move {
            shutdown.await;
            closing.cancel();
        });
        Ok((local, std::future::IntoFuture::into_future(server)))
    }
}

/// Runs the worker until `shutdown`, then stops gracefully.
pub async fn run_worker(
    services: &Services,
    concurrency: usize,
    shutdown: impl Future + Send,
) -> anyhow::Result<WorkerStats> {
    Ok(services
        .worker(concurrency)
        .await?
        .run_until(shutdown)
        .await?)
}

/// Resolves on Ctrl-C or SIGTERM (what systemd and container runtimes send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
