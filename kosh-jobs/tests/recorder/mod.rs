//! Reading metrics back from `metrics-util`'s debugging recorder, for the metrics tests.
#![allow(dead_code)]

use std::collections::HashMap;

use metrics_util::debugging::{DebugValue, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};

/// Every metric recorded: (kind, name, sorted labels) → value.
pub(crate) type Values = HashMap<(MetricKind, String, Vec<(String, String)>), DebugValue>;

pub(crate) fn read(snapshotter: &Snapshotter) -> Values {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value): (CompositeKey, _, _, _)| {
            let (kind, key) = key.into_parts();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            ((kind, key.name().to_owned(), labels), value)
        })
        .collect()
}

pub(crate) fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    v.sort();
    v
}

pub(crate) fn counter(values: &Values, name: &str, pairs: &[(&str, &str)]) -> u64 {
    match values.get(&(MetricKind::Counter, name.to_owned(), labels(pairs))) {
        Some(DebugValue::Counter(n)) => *n,
        None => 0,
        other => panic!("{name} {pairs:?} is not a counter: {other:?}"),
    }
}

pub(crate) fn histogram_len(values: &Values, name: &str, pairs: &[(&str, &str)]) -> usize {
    match values.get(&(MetricKind::Histogram, name.to_owned(), labels(pairs))) {
        Some(DebugValue::Histogram(v)) => v.len(),
        None => 0,
        other => panic!("{name} {pairs:?} is not a histogram: {other:?}"),
    }
}

pub(crate) fn gauge(values: &Values, name: &str, pairs: &[(&str, &str)]) -> Option<f64> {
    match values.get(&(MetricKind::Gauge, name.to_owned(), labels(pairs))) {
        Some(DebugValue::Gauge(g)) => Some(g.into_inner()),
        None => None,
        other => panic!("{name} {pairs:?} is not a gauge: {other:?}"),
    }
}
