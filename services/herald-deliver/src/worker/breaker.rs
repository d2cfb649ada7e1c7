//! The circuit breaker in front of a worker's provider (one provider per worker, so one
//! breaker per provider).
//!
//! Closed: calls go through and their outcomes are counted over a sliding window (ten buckets
//! of a tenth of the window each, so memory stays fixed whatever the call rate). When the
//! window holds at least `min_calls` calls and transient failures make up at least
//! `failure_ratio` of them, the breaker opens. Open: no call is admitted until `open_for` has
//! passed. Then half-open: `half_open_probes` calls are admitted; when all of them succeed the
//! breaker closes with an empty window, and the first one that fails opens it again.
//!
//! Only transient outcomes are failures: a permanent rejection (a 4xx) says the provider is
//! up and the request was wrong, so it counts as an answered call. Outcomes of calls admitted
//! before the last change of state are not counted (a slow call admitted while closed says
//! nothing about a half-open provider).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_contracts::metric_names::DELIVER_BREAKER_STATE;

use super::clock::Clock;
use crate::Outcome;
use crate::config::limits::BreakerConfig;

const BUCKETS: u32 = 10;

/// The breaker's state, as its gauge reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

impl State {
    fn gauge(self) -> f64 {
        f64::from(self as u8)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    index: u64,
    calls: u32,
    failures: u32,
}

/// Calls and failures over the last `BUCKETS` buckets.
#[derive(Debug)]
struct Window {
    origin: Instant,
    width: Duration,
    buckets: [Bucket; BUCKETS as usize],
}

impl Window {
    fn new(window: Duration, now: Instant) -> Self {
        Self {
            origin: now,
            width: (window / BUCKETS).max(Duration::from_millis(1)),
            buckets: [Bucket::default(); BUCKETS as usize],
        }
    }

    fn index(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.origin);
        u64::try_from(elapsed.as_nanos() / self.width.as_nanos()).unwrap_or(u64::MAX)
    }

    fn record(&mut self, failed: bool, now: Instant) {
        let index = self.index(now);
        let bucket = &mut self.buckets[(index % u64::from(BUCKETS)) as usize];
        if bucket.index != index {
            *bucket = Bucket {
                index,
                ..Bucket::default()
            };
        }
        bucket.calls += 1;
        bucket.failures += u32::from(failed);
    }

    /// (calls, failures) in the window ending now.
    fn totals(&self, now: Instant) -> (u32, u32) {
        let current = self.index(now);
        self.buckets
            .iter()
            .filter(|b| b.calls > 0 && current.saturating_sub(b.index) < u64::from(BUCKETS))
            .fold((0, 0), |(c, f), b| (c + b.calls, f + b.failures))
    }
}

#[derive(Debug)]
enum Inner {
    Closed(Window),
    Open { until: Instant },
    HalfOpen { admitted: u32, succeeded: u32 },
}

/// An admitted call, to be answered with [`Circuit::record`] or [`Circuit::forgo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ticket {
    generation: u64,
}

/// The state machine, with time passed in.
#[derive(Debug)]
struct Circuit {
    config: BreakerConfig,
    inner: Inner,
    /// Bumped on every change of state; a ticket from an older generation is not counted.
    generation: u64,
}

impl Circuit {
    fn new(config: BreakerConfig, now: Instant) -> Self {
        let window = Window::new(config.window, now);
        Self {
            config,
            inner: Inner::Closed(window),
            generation: 0,
        }
    }

    fn state(&self) -> State {
        match self.inner {
            Inner::Closed(_) => State::Closed,
            Inner::Open { .. } => State::Open,
            Inner::HalfOpen { .. } => State::HalfOpen,
        }
    }

    fn to(&mut self, inner: Inner) {
        self.inner = inner;
        self.generation += 1;
    }

    /// A ticket for one call, or how long until calls may be admitted again.
    fn admit(&mut self, now: Instant) -> Result<Ticket, Duration> {
        if let Inner::Open { until } = self.inner {
            if now < until {
                return Err(until - now);
            }
            self.to(Inner::HalfOpen {
                admitted: 0,
                succeeded: 0,
            });
        }
        let generation = self.generation;
        match &mut self.inner {
            Inner::Closed(_) => Ok(Ticket { generation }),
            Inner::HalfOpen { admitted, .. } if *admitted < self.config.half_open_probes => {
                *admitted += 1;
                Ok(Ticket { generation })
            }
            // The probes are out; their answers decide.
            Inner::HalfOpen { .. } => Err(Duration::ZERO),
            Inner::Open { .. } => Err(Duration::ZERO),
        }
    }

    /// The outcome of an admitted call.
    fn record(&mut self, ticket: Ticket, failed: bool, now: Instant) {
        if ticket.generation != self.generation {
            return;
        }
        let open = Inner::Open {
            until: now + self.config.open_for,
        };
        match &mut self.inner {
            Inner::Closed(window) => {
                window.record(failed, now);
                let (calls, failures) = window.totals(now);
                if calls >= self.config.min_calls
                    && f64::from(failures) >= self.config.failure_ratio * f64::from(calls)
                {
                    self.to(open);
                }
            }
            Inner::HalfOpen { .. } if failed => self.to(open),
            Inner::HalfOpen { succeeded, .. } => {
                *succeeded += 1;
                if *succeeded >= self.config.half_open_probes {
                    let window = Window::new(self.config.window, now);
                    self.to(Inner::Closed(window));
                }
            }
            Inner::Open { .. } => {}
        }
    }

    /// An admitted call that was not made after all: a probe goes back to the pool.
    fn forgo(&mut self, ticket: Ticket) {
        if ticket.generation != self.generation {
            return;
        }
        if let Inner::HalfOpen { admitted, .. } = &mut self.inner {
            *admitted = admitted.saturating_sub(1);
        }
    }
}

/// A provider's breaker, shared by the worker's concurrent sends.
#[derive(Debug)]
pub(crate) struct Breaker {
    provider: &'static str,
    /// `None`: the breaker is turned off.
    circuit: Option<Mutex<Circuit>>,
    clock: Arc<dyn Clock>,
}

/// The breaker refused a call; calls may be admitted again after `wait` (zero while
/// half-open probes are out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejected {
    pub(crate) wait: Duration,
}

/// Leave to make one provider call. Record its outcome with [`Permit::record`]; a permit
/// dropped unrecorded (the call was not made) gives a half-open probe back.
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    ticket: Option<Ticket>,
}

impl Breaker {
    pub(crate) fn new(
        provider: &'static str,
        config: &BreakerConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let circuit = config
            .enabled
            .then(|| Mutex::new(Circuit::new(config.clone(), clock.now())));
        metrics::gauge!(DELIVER_BREAKER_STATE, "provider" => provider).set(State::Closed.gauge());
        Self {
            provider,
            circuit,
            clock,
        }
    }

    /// Runs `f` on the circuit and reports a change of state.
    fn with<T>(&self, f: impl FnOnce(&mut Circuit, Instant) -> T) -> Option<T> {
        let circuit = self.circuit.as_ref()?;
        // A panic while holding this lock cannot leave the circuit half-updated in a way
        // that matters more than stopping the worker would, so a poisoned lock is used as is.
        let mut circuit = circuit.lock().unwrap_or_else(|p| p.into_inner());
        let before = circuit.state();
        let result = f(&mut circuit, self.clock.now());
        let after = circuit.state();
        drop(circuit);
        if before != after {
            metrics::gauge!(DELIVER_BREAKER_STATE, "provider" => self.provider).set(after.gauge());
            match after {
                State::Open => tracing::warn!(provider = self.provider, "circuit breaker opened"),
                State::HalfOpen => {
                    tracing::info!(
                        provider = self.provider,
                        "circuit breaker half-open: probing"
                    )
                }
                State::Closed => tracing::info!(provider = self.provider, "circuit breaker closed"),
            }
        }
        Some(result)
    }

    pub(crate) fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        match self.with(|circuit, now| circuit.admit(now)) {
            None => Ok(Permit {
                breaker: self,
                ticket: None,
            }),
            Some(Ok(ticket)) => Ok(Permit {
                breaker: self,
                ticket: Some(ticket),
            }),
            Some(Err(wait)) => Err(Rejected { wait }),
        }
    }

    #[cfg(test)]
    fn state(&self) -> State {
        self.with(|circuit, _| circuit.state())
            .unwrap_or(State::Closed)
    }
}

impl Permit<'_> {
    pub(crate) fn record(mut self, outcome: &Outcome) {
        if let Some(ticket) = self.ticket.take() {
            let failed = matches!(outcome, Outcome::Transient { .. });
            self.breaker
                .with(|circuit, now| circuit.record(ticket, failed, now));
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.breaker.with(|circuit, _| circuit.forgo(ticket));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::clock::manual::ManualClock;
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            enabled: true,
            window: Duration::from_secs(10),
            min_calls: 4,
            failure_ratio: 0.5,
            open_for: Duration::from_secs(5),
            half_open_probes: 2,
            ..BreakerConfig::default()
        }
    }

    fn breaker(config: BreakerConfig) -> (Breaker, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        (Breaker::new("test", &config, clock.clone()), clock)
    }

    fn call(breaker: &Breaker, outcome: &Outcome) -> Result<(), Rejected> {
        breaker.try_acquire()?.record(outcome);
        Ok(())
    }

    fn fail() -> Outcome {
        Outcome::transient("503")
    }

    fn ok() -> Outcome {
        Outcome::sent("id")
    }

    #[test]
    fn opens_at_the_failure_ratio_once_there_are_enough_calls() {
        let (breaker, _clock) = breaker(config());
        // Three failures are under min_calls: still closed.
        for _ in 0..3 {
            call(&breaker, &fail()).unwrap();
        }
        assert_eq!(breaker.state(), State::Closed);
        call(&breaker, &fail()).unwrap();
        assert_eq!(breaker.state(), State::Open);
        let rejected = breaker.try_acquire().unwrap_err();
        assert_eq!(rejected.wait, Duration::from_secs(5));
    }

    #[test]
    fn stays_closed_below_the_ratio_and_permanent_failures_do_not_count() {
        let (breaker, _clock) = breaker(config());
        for i in 0..20 {
            // 1 in 3 transient, the rest permanent rejections or successes.
            let outcome = match i % 3 {
                0 => ok(),
                1 => Outcome::permanent("400"),
                _ => fail(),
            };
            call(&breaker, &outcome).unwrap();
        }
        assert_eq!(breaker.state(), State::Closed);
    }

    #[test]
    fn failures_leave_the_window_as_it_slides() {
        let (breaker, clock) = breaker(config());
        for _ in 0..3 {
            call(&breaker, &fail()).unwrap();
        }
        // Past the window, the three failures no longer count: four more successes and one
        // failure are 1 in 5.
        clock.advance(Duration::from_secs(11));
        for _ in 0..4 {
            call(&breaker, &ok()).unwrap();
        }
        call(&breaker, &fail()).unwrap();
        assert_eq!(breaker.state(), State::Closed);
        // Within the window they do: 3 failures of 4 calls.
        let (breaker, clock) = super::tests::breaker(config());
        for _ in 0..3 {
            call(&breaker, &fail()).unwrap();
        }
        clock.advance(Duration::from_secs(8));
        call(&breaker, &ok()).unwrap();
        assert_eq!(breaker.state(), State::Open);
    }

    #[test]
    fn half_opens_after_open_for_and_closes_when_every_probe_succeeds() {
        let (breaker, clock) = breaker(config());
        for _ in 0..4 {
            call(&breaker, &fail()).unwrap();
        }
        clock.advance(Duration::from_secs(3));
        assert_eq!(
            breaker.try_acquire().unwrap_err().wait,
            Duration::from_secs(2)
        );
        clock.advance(Duration::from_secs(2));
        // Two probes are let through, a third is not while they are out.
        let first = breaker.try_acquire().unwrap();
        assert_eq!(breaker.state(), State::HalfOpen);
        let second = breaker.try_acquire().unwrap();
        assert_eq!(breaker.try_acquire().unwrap_err().wait, Duration::ZERO);
        first.record(&ok());
        assert_eq!(breaker.state(), State::HalfOpen);
        second.record(&ok());
        assert_eq!(breaker.state(), State::Closed);
        // Closed with an empty window: three failures are under min_calls again.
        for _ in 0..3 {
            call(&breaker, &fail()).unwrap();
        }
        assert_eq!(breaker.state(), State::Closed);
    }

    #[test]
    fn a_failed_probe_opens_again_and_an_unused_probe_is_given_back() {
        let (breaker, clock) = breaker(config());
        for _ in 0..4 {
            call(&breaker, &fail()).unwrap();
        }
        clock.advance(Duration::from_secs(5));
        let unused = breaker.try_acquire().unwrap();
        let probe = breaker.try_acquire().unwrap();
        drop(unused);
        // The dropped probe's place is free again.
        let again = breaker.try_acquire().unwrap();
        probe.record(&fail());
        assert_eq!(breaker.state(), State::Open);
        assert_eq!(
            breaker.try_acquire().unwrap_err().wait,
            Duration::from_secs(5)
        );
        // The other probe's late answer belongs to the old half-open spell: ignored.
        again.record(&ok());
        assert_eq!(breaker.state(), State::Open);
    }

    #[test]
    fn a_slow_call_from_before_the_opening_is_not_counted() {
        let (breaker, clock) = breaker(config());
        let slow = breaker.try_acquire().unwrap();
        for _ in 0..4 {
            call(&breaker, &fail()).unwrap();
        }
        clock.advance(Duration::from_secs(5));
        let probe = breaker.try_acquire().unwrap();
        slow.record(&ok());
        probe.record(&ok());
        // One probe of two answered: still half-open.
        assert_eq!(breaker.state(), State::HalfOpen);
    }

    #[test]
    fn a_disabled_breaker_admits_everything() {
        let (breaker, _clock) = breaker(BreakerConfig {
            enabled: false,
            ..config()
        });
        for _ in 0..100 {
            call(&breaker, &fail()).unwrap();
        }
        assert_eq!(breaker.state(), State::Closed);
    }
}
