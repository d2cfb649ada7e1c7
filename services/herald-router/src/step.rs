//! The router as the engine's step: a batch's events are routed concurrently, one
//! recipient's in order.

use herald_kafka::engine::{Batch, EngineMetrics, Step, apply_by_key};
use herald_runtime::metric_names::{
    ROUTER_COMMIT_SECONDS, ROUTER_TRANSACTIONS, ROUTER_TRANSIENT_FAULTS,
};

use crate::route::{OutRecord, Router, Transient};

/// The engine's metrics, under the router's names.
pub const METRICS: EngineMetrics = EngineMetrics {
    transactions: ROUTER_TRANSACTIONS,
    commit_seconds: ROUTER_COMMIT_SECONDS,
    transient_faults: ROUTER_TRANSIENT_FAULTS,
};

impl Step for Router {
    type Fault = Transient;

    async fn apply(
        &self,
        batch: &Batch,
        max_in_flight: usize,
    ) -> Result<Vec<OutRecord>, Transient> {
        apply_by_key(&batch.inputs, 0..batch.len(), max_in_flight, |input| {
            self.route(input)
        })
        .await
    }

    fn stage(fault: &Transient) -> &'static str {
        fault.stage()
    }
}
