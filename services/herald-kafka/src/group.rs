//! Noticing a consumer that has lost its group for good, and replacing it. After a broker
//! outage a consumer can sit without partitions and without a group coordinator long after the
//! broker is back; a new client finds the group at once.

use rdkafka::consumer::StreamConsumer;
use rdkafka::error::KafkaError;
use std::time::Duration;

use herald_contracts::metric_names::CONSUMER_REBUILDS;

use crate::HeraldContext;

/// How often a waiting loop looks at its consumer's group state.
pub const GROUP_CHECK_INTERVAL: Duration = Duration::from_secs(5);

type Consumer = StreamConsumer<HeraldContext>;

/// Makes a consumer subscribed to the role's topics, with the role's shared context.
pub type MakeConsumer = dyn Fn() -> Result<Consumer, KafkaError> + Send + Sync;

/// Whether a consumer error leaves the client unusable in a way a new client cures: a fatal
/// error (a static member fenced by its own rejoin after a session timeout, say). Errors that
/// need an operator (authorisation) are not among them.
pub fn cured_by_rebuild(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    match error {
        KafkaError::MessageConsumptionFatal(code) => !needs_an_operator(*code),
        KafkaError::MessageConsumption(code) | KafkaError::Global(code) => {
            matches!(code, Code::Fatal | Code::FencedInstanceId)
        }
        _ => false,
    }
}

fn needs_an_operator(code: rdkafka::types::RDKafkaErrorCode) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        code,
        Code::TopicAuthorizationFailed
            | Code::GroupAuthorizationFailed
            | Code::ClusterAuthorizationFailed
            | Code::SaslAuthenticationFailed
            | Code::Authentication
    )
}

/// Whether a consumer call failed in a way a new consumer cures (`Ok(true)`: the caller
/// rebuilds it); any other failure is passed on.
pub fn lost<T>(result: Result<T, KafkaError>) -> Result<bool, KafkaError> {
    match result {
        Ok(_) => Ok(false),
        Err(e) if cured_by_rebuild(&e) => {
            tracing::warn!(error = %e, "consumer error");
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// Whether `consumer` has had no partitions and no coordinator for longer than `bound`.
pub fn is_stuck(consumer: &Consumer, bound: Duration) -> bool {
    use rdkafka::consumer::Consumer as _;
    consumer
        .context()
        .group_lost_for()
        .is_some_and(|lost| lost > bound)
}

/// Puts a new consumer from `make` in place of the one in `slot`, which is closed on a
/// blocking thread (closing waits for a coordinator that may not answer).
pub fn rebuild(slot: &mut Consumer, make: &MakeConsumer) -> Result<(), KafkaError> {
    use rdkafka::consumer::Consumer as _;
    let lost = slot.context().group_lost_for().unwrap_or_default();
    tracing::warn!(
        lost_for_s = lost.as_secs(),
        "the consumer lost its group (no partitions and no coordinator for too long, or a fatal error); creating it anew"
    );
    metrics::counter!(CONSUMER_REBUILDS).increment(1);
    slot.context().reset_group_state();
    slot.context().forget_assignment();
    let old = std::mem::replace(slot, make()?);
    tokio::task::spawn_blocking(move || drop(old));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode as Code;

    #[test]
    fn fatal_consumer_errors_are_cured_by_a_new_client_unless_an_operator_must_act() {
        assert!(cured_by_rebuild(&KafkaError::MessageConsumptionFatal(
            Code::FencedInstanceId
        )));
        assert!(cured_by_rebuild(&KafkaError::Global(Code::Fatal)));
        assert!(!cured_by_rebuild(&KafkaError::MessageConsumptionFatal(
            Code::GroupAuthorizationFailed
        )));
        assert!(!cured_by_rebuild(&KafkaError::MessageConsumption(
            Code::AllBrokersDown
        )));
    }
}
