//! What operators watch, in Prometheus's text format at `/metrics`: connections and
//! rooms, messages in and out, how long fan-out and the store take, and every input
//! refused, by reason.

use super::socket;
use crate::protocol::{ApiError, ErrorCode};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

pub struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    pub rooms: Gauge,
    /// Messages people sent that were stored.
    pub messages_in: Counter,
    /// Messages queued to connections (one per recipient).
    pub messages_out: Counter,
    /// From a send's arrival to its message being queued for every recipient here.
    pub fanout_seconds: Histogram,
    /// One store write (a batch of sends).
    pub store_seconds: Histogram,
    /// Batches of sends the store could not write.
    pub store_failures: Counter,
    rejected: Family<Labels, Counter>,
    api_answers: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hearth");
        let connections = Gauge::default();
        let rooms = Gauge::default();
        let messages_in = Counter::default();
        let messages_out = Counter::default();
        // 50 µs to about 13 s.
        let fanout_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 19));
        let store_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 19));
        let store_failures = Counter::default();
        let rejected = Family::<Labels, Counter>::default();
        let api_answers = Family::<Labels, Counter>::default();
        registry.register("connections", "Chat connections open", connections.clone());
        registry.register("rooms", "Rooms with someone in them", rooms.clone());
        registry.register(
            "messages_in",
            "Messages sent by people here and stored",
            messages_in.clone(),
        );
        registry.register(
            "messages_out",
            "Messages queued to connections, one per recipient",
            messages_out.clone(),
        );
        registry.register(
            "fanout_seconds",
            "From a send's arrival to its message being queued for every recipient",
            fanout_seconds.clone(),
        );
        registry.register(
            "store_seconds",
            "One write of a batch of sends to the store",
            store_seconds.clone(),
        );
        registry.register(
            "store_failures",
            "Batches of sends the store could not write (each send is answered: try again)",
            store_failures.clone(),
        );
        registry.register("rejected", "Inputs refused, by reason", rejected.clone());
        registry.register(
            "api_answers",
            "Server functions' answers, by status class (2xx, 4xx: refused, 5xx: faults)",
            api_answers.clone(),
        );
        Self {
            registry,
            connections,
            rooms,
            messages_in,
            messages_out,
            fanout_seconds,
            store_seconds,
            store_failures,
            rejected,
            api_answers,
        }
    }
}

impl Metrics {
    /// Counts one refused input; `reason` is a short snake_case word.
    pub fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&vec![("reason", reason)]).inc();
    }

    /// Counts a refusal the client was told about.
    pub fn reject_code(&self, code: ErrorCode) {
        self.reject(code.as_str());
    }

    /// Counts a refusal, by its code (the one vocabulary of HTTP and the socket).
    pub fn reject_api(&self, error: &ApiError) {
        self.reject_code(error.code());
    }

    /// Counts a server function's answer by its status's class.
    pub fn api_answer(&self, status: u16) {
        let class = match status {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.api_answers
            .get_or_create(&vec![("class", class)])
            .inc();
    }

    /// Counts a connection closed for what its client sent.
    pub fn reject_close(&self, close_code: u16) {
        let reason = match close_code {
            socket::close_code::SIZE => "too_big",
            socket::close_code::INVALID => "not_utf8",
            socket::close_code::PROTOCOL => "protocol_error",
            socket::close_code::UNSUPPORTED => "binary_frame",
            _ => return,
        };
        self.reject(reason);
    }

    /// Everything, in Prometheus's text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_rendered_with_its_value() {
        let metrics = Metrics::default();
        metrics.connections.set(3);
        metrics.messages_in.inc();
        metrics.reject("rate_limited");
        metrics.reject("rate_limited");
        metrics.fanout_seconds.observe(0.001);
        metrics.api_answer(200);
        metrics.api_answer(409);
        metrics.api_answer(429);
        let text = metrics.render();
        assert!(text.contains("hearth_connections 3"), "{text}");
        assert!(text.contains("hearth_messages_in_total 1"), "{text}");
        assert!(
            text.contains("hearth_rejected_total{reason=\"rate_limited\"} 2"),
            "{text}"
        );
        assert!(text.contains("hearth_fanout_seconds_count 1"), "{text}");
        assert!(
            text.contains("hearth_api_answers_total{class=\"4xx\"} 2"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
