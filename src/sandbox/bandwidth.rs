//! A pod's traffic shaping from its annotations, for the CNI `bandwidth` capability.
//!
//! Kubelet has no CRI field for it: pods carry `kubernetes.io/ingress-bandwidth` and
//! `kubernetes.io/egress-bandwidth` annotations, resource quantities in bits per second
//! (`10M`), which the runtime hands to the plugins (containerd's `toCNIBandWidth`, kubelet's
//! `ExtractPodBandwidthResources`). The same bounds apply: at least 1 kbit/s, at most
//! 1 Pbit/s. The burst is left unlimited (`u32::MAX` bits), as containerd does.

use std::collections::BTreeMap;

use super::quantity;
use crate::cni::Bandwidth;

/// The annotation limiting traffic into the pod.
pub const INGRESS_ANNOTATION: &str = "kubernetes.io/ingress-bandwidth";
/// The annotation limiting traffic out of the pod.
pub const EGRESS_ANNOTATION: &str = "kubernetes.io/egress-bandwidth";

/// The smallest rate accepted, bit/s (kubelet's `minRsrc`).
const MIN_RATE: u128 = 1_000;
/// The largest rate accepted, bit/s (kubelet's `maxRsrc`).
const MAX_RATE: u128 = 1_000_000_000_000_000;
/// The burst given with each rate: "no limit", as containerd passes it.
const UNLIMITED_BURST: u64 = u32::MAX as u64;

/// The pod's shaping, `None` when neither annotation is set; a bad value is an error naming
/// the annotation.
pub fn from_annotations(
    annotations: &BTreeMap<String, String>,
) -> Result<Option<Bandwidth>, String> {
    let ingress = annotations
        .get(INGRESS_ANNOTATION)
        .map(|text| rate(INGRESS_ANNOTATION, text))
        .transpose()?;
    let egress = annotations
        .get(EGRESS_ANNOTATION)
        .map(|text| rate(EGRESS_ANNOTATION, text))
        .transpose()?;
    if ingress.is_none() && egress.is_none() {
        return Ok(None);
    }
    let mut bandwidth = Bandwidth::default();
    if let Some(rate) = ingress {
        bandwidth.ingress_rate = rate;
        bandwidth.ingress_burst = UNLIMITED_BURST;
    }
    if let Some(rate) = egress {
        bandwidth.egress_rate = rate;
        bandwidth.egress_burst = UNLIMITED_BURST;
    }
    Ok(Some(bandwidth))
}

fn rate(annotation: &str, text: &str) -> Result<u64, String> {
    let value =
        quantity::parse_whole(text).map_err(|err| format!("annotation {annotation}: {err}"))?;
    if value < MIN_RATE {
        return Err(format!(
            "annotation {annotation}: {text:?} is unreasonably small (< 1kbit)"
        ));
    }
    if value > MAX_RATE {
        return Err(format!(
            "annotation {annotation}: {text:?} is unreasonably large (> 1Pbit)"
        ));
    }
    // At most 10^15: fits.
    u64::try_from(value).map_err(|_| format!("annotation {annotation}: {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaping(pairs: &[(&str, &str)]) -> Result<Option<Bandwidth>, String> {
        let annotations: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        from_annotations(&annotations)
    }

    #[test]
    fn bandwidth_from_annotations() {
        assert_eq!(shaping(&[("other", "1M")]), Ok(None));
        assert_eq!(
            shaping(&[(INGRESS_ANNOTATION, "10M"), (EGRESS_ANNOTATION, "1.5Mi")]),
            Ok(Some(Bandwidth {
                ingress_rate: 10_000_000,
                ingress_burst: UNLIMITED_BURST,
                egress_rate: 1_572_864,
                egress_burst: UNLIMITED_BURST,
            }))
        );
        assert_eq!(
            shaping(&[(EGRESS_ANNOTATION, "1k")]),
            Ok(Some(Bandwidth {
                egress_rate: 1_000,
                egress_burst: UNLIMITED_BURST,
                ..Bandwidth::default()
            }))
        );
    }

    #[test]
    fn bandwidth_rejects_bad_and_unreasonable_values() {
        for (key, value, needle) in [
            (INGRESS_ANNOTATION, "10 M", "not a quantity"),
            (EGRESS_ANNOTATION, "fast", "not a quantity"),
            (INGRESS_ANNOTATION, "-1M", "negative"),
            (INGRESS_ANNOTATION, "999", "small"),
            (EGRESS_ANNOTATION, "2P", "large"),
        ] {
            let err = shaping(&[(key, value)]).expect_err(value);
            assert!(err.contains(key) && err.contains(needle), "{err}");
        }
    }
}
