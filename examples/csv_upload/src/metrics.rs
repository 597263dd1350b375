//! `/metrics`: the job metrics of `kosh_jobs::metrics` (and any the app adds) in the
//! Prometheus text format.
//!
//! The recorder is installed once per process, before the job client and workers are made
//! (they take their metric handles from it). The worker samples the store-wide gauges every
//! `METRICS_SAMPLE_SECS`; see the README for the queries that watch the imports.

use std::sync::{Mutex, PoisonError};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::web::Web;

/// A handle on the installed recorder, to render what it holds.
#[derive(Clone)]
pub struct Metrics(PrometheusHandle);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Everything recorded so far, in the Prometheus text format.
    pub fn render(&self) -> String {
        self.0.render()
    }
}

static INSTALLED: Mutex<Option<Metrics>> = Mutex::new(None);

/// Installs the Prometheus recorder as the process's metrics recorder, once; later calls
/// return the same handle.
pub fn install() -> anyhow::Result<Metrics> {
    let mut slot = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(m) = slot.as_ref() {
        return Ok(m.clone());
    }
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))?;
    let m = Metrics(handle);
    *slot = Some(m.clone());
    Ok(m)
}

/// `GET /metrics`.
pub async fn serve(State(web): State<Web>) -> Response {
    match &web.metrics {
        Some(m) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            m.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are off (METRICS=off)").into_response(),
    }
}
